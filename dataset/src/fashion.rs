//! Fashion-MNIST, the dataset the tool knows by name: its four files, their sizes and
//! SHA-256 checksums, where to find them, and how to download them (feature `fetch`).

use std::path::{Path, PathBuf};

use runio::sha256_hex;
#[cfg(feature = "fetch")]
use {flate2::read::MultiGzDecoder, runio::fsutil, std::fs, std::io::Read};

use crate::data::{Dataset, Schema, Split};
use crate::error::DataError;
use crate::idx;

/// Image side in pixels.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Classes.
pub const CLASSES: usize = 10;

/// Class names in label order.
pub const CLASS_NAMES: [&str; CLASSES] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// What the dataset is called in reports.
pub const NAME: &str = "Fashion-MNIST";

/// Where `trainer data fetch` downloads from unless `FASHION_MNIST_URL` says otherwise.
pub const OFFICIAL_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";

/// One of the four files: its name (without `.gz`), size and the SHA-256 of its
/// decompressed bytes.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// File name of the raw IDX file; the gzip file adds `.gz`.
    pub name: &'static str,
    /// Bytes of the decompressed file: reading stops, with an error, past them.
    pub size: u64,
    /// SHA-256 of the decompressed content (Debian re-gzipped the files, so the gzip bytes vary).
    pub sha256: &'static str,
}

/// Training images, training labels, test images, test labels.
pub const FILES: [FileSpec; 4] = [
    FileSpec {
        name: "train-images-idx3-ubyte",
        size: 16 + 60_000 * 784,
        sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    },
    FileSpec {
        name: "train-labels-idx1-ubyte",
        size: 8 + 60_000,
        sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
    FileSpec {
        name: "t10k-images-idx3-ubyte",
        size: 16 + 10_000 * 784,
        sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    },
    FileSpec {
        name: "t10k-labels-idx1-ubyte",
        size: 8 + 10_000,
        sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
];

/// Fashion-MNIST's description: 28x28 pixels, 10 named classes.
pub fn schema() -> Schema {
    Schema {
        name: NAME.to_string(),
        inputs: PIXELS,
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        image: Some([SIDE, SIDE]),
        bytes: true,
    }
}

impl Schema {
    /// Whether this is Fashion-MNIST, the study's data.
    pub fn is_fashion_mnist(&self) -> bool {
        *self == schema()
    }
}

fn verify(bytes: &[u8], path: &Path, spec: &FileSpec) -> Result<(), DataError> {
    let found = sha256_hex(bytes);
    if found != spec.sha256 {
        return Err(DataError::Checksum { path: path.to_path_buf(), expected: spec.sha256.into(), found });
    }
    Ok(())
}

/// The user cache folder `data fetch` writes to.
pub fn cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("fashion-mnist")
}

/// Candidate folders in lookup order: explicit, `FASHION_MNIST_DIR`, `./data/fashion-mnist`,
/// Debian's `/usr/share/datasets/fashion-mnist`, then the user cache.
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(env) = std::env::var_os("FASHION_MNIST_DIR") {
        out.push(PathBuf::from(env));
    }
    out.push(PathBuf::from("data/fashion-mnist"));
    out.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
    out.push(cache_dir());
    out
}

/// The path of a file in `dir`, gzip preferred, if either form exists (as anything: one
/// that is not a regular file, or a link that leads nowhere, is said so when read).
fn existing(dir: &Path, spec: &FileSpec) -> Option<PathBuf> {
    [dir.join(format!("{}.gz", spec.name)), dir.join(spec.name)].into_iter().find(|p| p.symlink_metadata().is_ok())
}

/// The first candidate folder that holds all four files.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, DataError> {
    let dirs = candidates(explicit);
    for dir in &dirs {
        if FILES.iter().all(|f| existing(dir, f).is_some()) {
            return Ok(dir.clone());
        }
    }
    let searched = dirs
        .iter()
        .map(|d| {
            let missing: Vec<_> = FILES.iter().filter(|f| existing(d, f).is_none()).map(|f| f.name).collect();
            if missing.len() == FILES.len() {
                format!("  {} (no dataset files)", d.display())
            } else {
                format!("  {} (missing {})", d.display(), missing.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    Err(DataError::NotFound { searched, cache: cache_dir().display().to_string() })
}

/// Loads and verifies the dataset from `dir`.
pub fn load_dir(dir: &Path) -> Result<Dataset, DataError> {
    let path = |i: usize| {
        existing(dir, &FILES[i]).ok_or_else(|| DataError::NotFound {
            searched: format!("  {} (missing {})", dir.display(), FILES[i].name),
            cache: cache_dir().display().to_string(),
        })
    };
    let (ti, tl, vi, vl) = (path(0)?, path(1)?, path(2)?, path(3)?);
    // The two splits decompress side by side, on a thread of their own (not rayon's pool,
    // which a tool may not have started).
    let (train, test) = std::thread::scope(|scope| {
        let test = scope.spawn(|| load_split(&vi, &vl, &FILES[2], &FILES[3]));
        let train = load_split(&ti, &tl, &FILES[0], &FILES[1]);
        (train, test.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    Ok(Dataset { train: train?, test: test?, schema: schema(), origin: dir.display().to_string() })
}

/// One split of the official files: 28x28 images, labels 0..9, checksums verified.
fn load_split(images: &Path, labels: &Path, image_spec: &FileSpec, label_spec: &FileSpec) -> Result<Split, DataError> {
    let (split, _, bytes) = idx::read_split(images, labels, [image_spec.size, label_spec.size], Some([SIDE, SIDE]))?;
    if let Some((index, &label)) = split.labels.iter().enumerate().find(|&(_, &l)| usize::from(l) >= CLASSES) {
        return Err(DataError::BadLabel { path: labels.to_path_buf(), index, label, classes: CLASSES });
    }
    verify(&bytes[0], images, image_spec)?;
    verify(&bytes[1], labels, label_spec)?;
    Ok(split)
}

/// Finds the dataset (see [`candidates`]) and loads it.
pub fn load(explicit: Option<&Path>) -> Result<Dataset, DataError> {
    load_dir(&locate(explicit)?)
}

/// Whether the four IDX files in `dir` are Fashion-MNIST's (their decompressed content
/// has the official checksums).
pub fn is_fashion_mnist(files: &[Vec<u8>; 4]) -> bool {
    files.iter().zip(&FILES).all(|(bytes, spec)| bytes.len() as u64 == spec.size && sha256_hex(bytes) == spec.sha256)
}

#[cfg(feature = "fetch")]
/// Base URL for downloads: `FASHION_MNIST_URL` or the official location.
pub fn base_url() -> String {
    std::env::var("FASHION_MNIST_URL").unwrap_or_else(|_| OFFICIAL_URL.to_string())
}

/// How long a download may wait, so that a server that stalls cannot hold `fetch` for
/// as long as it likes.
#[cfg(feature = "fetch")]
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// For a connection, and then for the response's headers.
    pub answer: std::time::Duration,
    /// For a file's body, per MiB of the file decompressed, on top of `answer`: the
    /// slowest transfer rate accepted.
    pub per_mib: std::time::Duration,
}

#[cfg(feature = "fetch")]
impl Default for Patience {
    /// 30 s to answer, and at least 256 KiB/s of (decompressed) file: the training images
    /// may take up to 30 + 180 s.
    fn default() -> Patience {
        Patience { answer: std::time::Duration::from_secs(30), per_mib: std::time::Duration::from_secs(4) }
    }
}

/// Downloads the four files into `dir` (verifying each), skipping ones already valid there.
///
/// `progress` is called with (file name, bytes so far, total bytes if known).
#[cfg(feature = "fetch")]
pub fn fetch(dir: &Path, base: &str, progress: impl FnMut(&str, u64, Option<u64>)) -> Result<(), DataError> {
    fetch_with(dir, base, Patience::default(), progress)
}

/// [`fetch`] with its time limits given.
#[cfg(feature = "fetch")]
pub fn fetch_with(
    dir: &Path,
    base: &str,
    patience: Patience,
    mut progress: impl FnMut(&str, u64, Option<u64>),
) -> Result<(), DataError> {
    let unwritable = |error| DataError::Write { path: dir.to_path_buf(), error };
    fs::create_dir_all(dir).map_err(unwritable)?;
    // Half-written files of a download that was killed.
    fsutil::remove_partials(dir).map_err(unwritable)?;
    // A folder that cannot take the files is found before anything is downloaded.
    tempfile::tempfile_in(dir).map_err(unwritable)?;
    for spec in &FILES {
        let target = dir.join(format!("{}.gz", spec.name));
        if target.is_file() && idx::read_maybe_gz(&target, spec.size).is_ok_and(|b| verify(&b, &target, spec).is_ok()) {
            continue;
        }
        let url = format!("{}/{}.gz", base.trim_end_matches('/'), spec.name);
        let fail = |reason: String| DataError::Fetch { url: url.clone(), reason };
        let mib = spec.size.div_ceil(1 << 20) as u32;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(patience.answer))
            .timeout_recv_response(Some(patience.answer))
            .timeout_recv_body(Some(patience.answer + patience.per_mib * mib))
            .build()
            .into();
        let mut response = agent.get(&url).call().map_err(|e| fail(e.to_string()))?;
        let total = response.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
        let mut reader = response.body_mut().with_config().limit(64 << 20).reader();
        let mut body = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
            progress(spec.name, body.len() as u64, total);
        }
        // Inflated no further than the file's size: a gzip bomb stops there.
        let mut content = Vec::new();
        MultiGzDecoder::new(&body[..])
            .take(spec.size + 1)
            .read_to_end(&mut content)
            .map_err(|e| fail(format!("downloaded bytes are not valid gzip ({e})")))?;
        if content.len() as u64 > spec.size {
            return Err(fail(format!("the file inflates to more than its {} bytes: not Fashion-MNIST", spec.size)));
        }
        verify(&content, &target, spec)?;
        fsutil::write_atomic(&target, &body).map_err(|error| DataError::Write { path: target.clone(), error })?;
    }
    Ok(())
}
