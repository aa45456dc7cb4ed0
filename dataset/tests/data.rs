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
    let r = data::load_split(&i, &l);
    (dir, r)
}

#[test]
fn valid_small_split_loads_gzip_and_raw() {
    let (_d, r) = split(&idx_images(3, 28, 28, 3 * 784), &idx_labels(&[0, 9, 4]));
    let s = r.unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s.labels, [0, 9, 4]);
    assert_eq!(s.pixels[785], 17);
    assert_eq!(s.values[255], 1.0);
    assert_eq!(s.values[1], 1.0 / 255.0);
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

/// A folder with Fashion-MNIST's four file names: these training files, small valid test files.
fn official(images: &[u8], labels: &[u8]) -> (tempfile::TempDir, Result<data::Dataset, DataError>) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), FILES[0].name, images);
    write(dir.path(), FILES[1].name, labels);
    write(dir.path(), FILES[2].name, &idx_images(1, 28, 28, 784));
    write(dir.path(), FILES[3].name, &idx_labels(&[3]));
    let r = data::load(Some(dir.path()));
    (dir, r)
}

#[test]
fn wrong_image_size_is_reported() {
    // Any size is an IDX file's own; Fashion-MNIST's are 28x28.
    let (_d, r) = split(&idx_images(1, 32, 32, 1024), &idx_labels(&[1]));
    assert_eq!(r.unwrap().width, 1024);
    let (_d, r) = official(&idx_images(1, 32, 32, 1024), &idx_labels(&[1]));
    let e = r.unwrap_err();
    assert!(matches!(e, DataError::WrongImageSize { rows: 32, cols: 32, expected: Some([28, 28]), .. }), "{e}");
}

#[test]
fn count_mismatch_is_reported() {
    let (_d, r) = split(&idx_images(2, 28, 28, 2 * 784), &idx_labels(&[1, 2, 3]));
    assert!(matches!(r.unwrap_err(), DataError::CountMismatch { images: 2, labels: 3, .. }));
}

#[test]
fn label_out_of_range_is_reported() {
    let (_d, r) = official(&idx_images(3, 28, 28, 3 * 784), &idx_labels(&[1, 10, 3]));
    assert!(matches!(r.unwrap_err(), DataError::BadLabel { index: 1, label: 10, classes: 10, .. }));
}

#[test]
fn corrupt_gzip_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = gz(&idx_images(1, 28, 28, 784));
    let len = bytes.len();
    bytes.truncate(len / 2);
    let i = write(dir.path(), "images.gz", &bytes);
    let l = write(dir.path(), "labels", &idx_labels(&[1]));
    assert!(matches!(data::load_split(&i, &l).unwrap_err(), DataError::Gzip { .. }));
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

    // A cache that cannot be written (here a path through a file, which root cannot write
    // either) is reported as such, before anything is downloaded (nothing listens).
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let e = data::fetch(&dir.path().join("file/cache"), "http://127.0.0.1:9", |_, _, _| {}).unwrap_err();
    assert!(matches!(e, DataError::Write { .. }) && e.to_string().contains("cannot write"), "{e}");
    #[cfg(unix)]
    if is_root() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        let e = data::fetch(&locked, "http://127.0.0.1:9", |_, _, _| {}).unwrap_err();
        assert!(matches!(e, DataError::Write { .. }) && e.to_string().contains("cannot write"), "{e}");
    }
}

/// Whether the tests run as root, for whom a folder's permissions do not stop a write.
#[cfg(unix)]
fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

#[test]
fn image_size_is_checked_before_the_length() {
    // 32x32 images under Fashion-MNIST's names, whose bytes are not all there: the size is
    // what is wrong.
    let (_d, r) = official(&idx_images(2, 32, 32, 784), &idx_labels(&[1, 2]));
    assert!(matches!(r.unwrap_err(), DataError::WrongImageSize { rows: 32, cols: 32, .. }));
    // Elsewhere the truncation is.
    let (_d, r) = split(&idx_images(2, 32, 32, 784), &idx_labels(&[1, 2]));
    assert!(matches!(r.unwrap_err(), DataError::Truncated { .. }));
}

#[test]
fn counts_are_checked_before_checksums() {
    // Official names, so checksums are verified, and one label too many: the count is
    // what is wrong, not "checksum".
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), FILES[0].name, &idx_images(2, 28, 28, 2 * 784));
    write(dir.path(), FILES[1].name, &idx_labels(&[1, 2, 3]));
    write(dir.path(), FILES[2].name, &idx_images(1, 28, 28, 784));
    write(dir.path(), FILES[3].name, &idx_labels(&[3]));
    let e = data::load(Some(dir.path())).unwrap_err();
    assert!(matches!(e, DataError::CountMismatch { images: 2, labels: 3, .. }), "{e}");
}

#[test]
fn a_gzip_of_several_members_is_read_whole_and_trailing_garbage_is_refused() {
    let img = idx_images(3, 28, 28, 3 * 784);
    let mut two = gz(&img[..1000]);
    two.extend(gz(&img[1000..]));
    let dir = tempfile::tempdir().unwrap();
    let i = write(dir.path(), "images.gz", &two);
    let l = write(dir.path(), "labels", &idx_labels(&[0, 1, 2]));
    assert_eq!(data::load_split(&i, &l).unwrap().len(), 3, "multi-member gzip");

    let mut tail = gz(&img);
    tail.extend_from_slice(b"not gzip at all");
    let i = write(dir.path(), "images.gz", &tail);
    let e = data::load_split(&i, &l).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e}");
}

/// A gzip stream of `mib` MiB of zeros: about a thousandth of that compressed.
fn zeros_gz(mib: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        e.write_all(&block).unwrap();
    }
    e.finish().unwrap()
}

#[test]
fn a_gzip_bomb_is_refused_after_inflating_no_more_than_the_file_should_hold() {
    let bomb = zeros_gz(256);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &format!("{}.gz", FILES[1].name), &bomb);
    // Under the labels' name: refused from its size (at most 60,008 bytes can be inflated
    // from it, and no gzip file that large holds that little).
    let e = data::read_maybe_gz(&path, FILES[1].size).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { limit: 60_008, .. }), "{e}");
    // Under a bound of 64 MiB, a quarter of what the bomb inflates to. Inflating stops
    // there: a quarter of the compressed bytes are read (and the decoder's buffer), not all
    // of them.
    let bound = 64 << 20;
    assert!(matches!(data::read_maybe_gz(&path, bound), Err(DataError::TooLarge { .. })));
    struct Counting<'a>(&'a [u8], usize);
    impl std::io::Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = std::io::Read::read(&mut self.0, buf)?;
            self.1 += n;
            Ok(n)
        }
    }
    let mut counting = Counting(&bomb, 0);
    assert!(matches!(data::read_limited(&mut counting, true, bound, &path), Err(DataError::TooLarge { .. })));
    assert!(counting.1 < bomb.len() / 3, "read {} of the bomb's {} bytes", counting.1, bomb.len());
    // A raw file larger than its bound is refused from its size, unread.
    let raw = write(dir.path(), "big", &vec![0u8; 70_000]);
    assert!(matches!(data::read_maybe_gz(&raw, FILES[1].size).unwrap_err(), DataError::TooLarge { .. }));
}

#[test]
fn an_io_error_is_said_once() {
    let e = DataError::Io { path: "f".into(), error: std::io::Error::from(std::io::ErrorKind::PermissionDenied) };
    // The OS error is in the message and not also a cause: a chain of causes (anyhow's
    // `{:#}`) prints it once.
    assert!(std::error::Error::source(&e).is_none());
    assert_eq!(e.to_string().matches("ermission denied").count(), 1, "{e}");
}

/// A one-connection HTTP server on loopback that answers with `respond`; returns its URL.
#[cfg(feature = "fetch")]
fn serve(respond: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut request);
            respond(stream);
        }
    });
    url
}

#[cfg(feature = "fetch")]
#[test]
fn fetch_gives_up_on_a_server_that_stalls_and_on_a_bomb() {
    let patience =
        data::Patience { answer: std::time::Duration::from_secs(1), per_mib: std::time::Duration::from_millis(10) };
    // Headers, then nothing, until the test lets go (or ten minutes pass: then the fetch
    // was still waiting, a hang).
    let (let_go, wait) = std::sync::mpsc::channel::<()>();
    let (said, held) = std::sync::mpsc::channel();
    let url = serve(move |mut s| {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc").unwrap();
        let hung = wait.recv_timeout(std::time::Duration::from_secs(600)).is_err();
        said.send(hung).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let e = data::fetch_with(dir.path(), &url, patience, |_, _, _| {}).unwrap_err();
    let _ = let_go.send(());
    assert!(!held.recv().unwrap(), "the fetch waited until the server closed the connection");
    assert!(matches!(e, DataError::Fetch { .. }), "{e}");

    // A small download that inflates past the file's size.
    let bomb = zeros_gz(64);
    let url = serve(move |mut s| {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", bomb.len());
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&bomb).unwrap();
    });
    let e = data::fetch_with(dir.path(), &url, data::Patience::default(), |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("inflates to more than"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
}
