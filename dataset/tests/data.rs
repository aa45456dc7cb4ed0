//! Dataset errors, each on small IDX files the test writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use dataset::{self as data, DataError, FILES};

fn idx_images(count: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x0803u32, count, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend((0..body).map(|i| (i % 256) as u8));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0801u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn split(images: &[u8], labels: &[u8]) -> (tempfile::TempDir, Result<data::Split, DataError>) {
    let dir = tempfile::tempdir().unwrap();
    let i = write(dir.path(), "images.gz", &gz(images));
    let l = write(dir.path(), "labels", labels);
    let r = data::load_split(&i, &l, None);
    (dir, r)
}

#[test]
fn valid_small_split_loads_gzip_and_raw() {
    let (_d, r) = split(&idx_images(3, 28, 28, 3 * 784), &idx_labels(&[0, 9, 4]));
    let s = r.unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s.labels, [0, 9, 4]);
    assert_eq!(s.pixels[785], 17);
    assert_eq!(s.images[255], 1.0);
    assert_eq!(s.images[1], 1.0 / 255.0);
}

#[test]
fn wrong_magic_is_reported() {
    let mut bad = idx_images(1, 28, 28, 784);
    bad[3] = 0x01;
    let (_d, r) = split(&bad, &idx_labels(&[1]));
    let e = r.unwrap_err();
    assert!(matches!(e, DataError::BadMagic { kind: "images", .. }), "{e}");
    assert!(e.to_string().contains("images.gz"), "names the file: {e}");
}

#[test]
fn truncated_files_are_reported() {
    let mut img = idx_images(2, 28, 28, 2 * 784);
    img.truncate(16 + 784 + 10);
    let (_d, r) = split(&img, &idx_labels(&[1, 2]));
    let e = r.unwrap_err();
    assert!(matches!(e, DataError::Truncated { expected: 1584, found: 810, .. }), "{e}");
    let (_d, r) = split(&idx_images(1, 28, 28, 784)[..9], &idx_labels(&[1]));
    assert!(matches!(r.unwrap_err(), DataError::Truncated { .. }));
    let (_d, r) = split(&idx_images(1, 28, 28, 784), &idx_labels(&[1])[..8]);
    assert!(matches!(r.unwrap_err(), DataError::Truncated { .. }));
}

#[test]
fn wrong_image_size_is_reported() {
    let (_d, r) = split(&idx_images(1, 32, 32, 1024), &idx_labels(&[1]));
    assert!(matches!(r.unwrap_err(), DataError::WrongImageSize { rows: 32, cols: 32, .. }));
}

#[test]
fn count_mismatch_is_reported() {
    let (_d, r) = split(&idx_images(2, 28, 28, 2 * 784), &idx_labels(&[1, 2, 3]));
    assert!(matches!(r.unwrap_err(), DataError::CountMismatch { images: 2, labels: 3, .. }));
}

#[test]
fn label_out_of_range_is_reported() {
    let (_d, r) = split(&idx_images(3, 28, 28, 3 * 784), &idx_labels(&[1, 10, 3]));
    assert!(matches!(r.unwrap_err(), DataError::BadLabel { index: 1, label: 10, .. }));
}

#[test]
fn corrupt_gzip_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = gz(&idx_images(1, 28, 28, 784));
    let len = bytes.len();
    bytes.truncate(len / 2);
    let i = write(dir.path(), "images.gz", &bytes);
    let l = write(dir.path(), "labels", &idx_labels(&[1]));
    assert!(matches!(data::load_split(&i, &l, None).unwrap_err(), DataError::Gzip { .. }));
}

#[test]
fn checksum_mismatch_is_reported_for_files_with_official_names() {
    let dir = tempfile::tempdir().unwrap();
    // Structurally valid files under the official names, with the wrong content.
    write(dir.path(), &format!("{}.gz", FILES[0].name), &gz(&idx_images(2, 28, 28, 2 * 784)));
    write(dir.path(), FILES[1].name, &idx_labels(&[1, 2]));
    write(dir.path(), FILES[2].name, &idx_images(1, 28, 28, 784));
    write(dir.path(), FILES[3].name, &idx_labels(&[3]));
    let e = data::load(Some(dir.path())).unwrap_err();
    assert!(matches!(e, DataError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains("trainer data fetch"), "says what to do: {e}");
}

#[test]
fn missing_files_say_how_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), FILES[1].name, &idx_labels(&[1]));
    let e = data::load(Some(dir.path())).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::NotFound { .. }));
    assert!(msg.contains("missing train-images-idx3-ubyte"), "{msg}");
    assert!(msg.contains("apt-get install dataset-fashion-mnist"), "{msg}");
    assert!(msg.contains("trainer data fetch"), "{msg}");
}

#[cfg(feature = "fetch")]
#[test]
fn fetch_failure_is_clear_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback: the connection is refused at once.
    let e = data::fetch(dir.path(), "http://127.0.0.1:9", |_, _, _| {}).unwrap_err();
    assert!(matches!(e, DataError::Fetch { .. }), "{e}");
    assert!(e.to_string().contains("--data-dir"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
