//! Fashion-MNIST: finding, fetching, parsing and verifying the four IDX files.
//!
//! Shared by `trainer` (which trains on it) and `firmware-sim` (which checks models on the
//! test set). Downloading is behind the `fetch` feature, so that a program that only reads
//! the files links no HTTP client.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
#[cfg(feature = "fetch")]
use runio::fsutil;
use runio::sha256_hex;

/// Image side in pixels.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Classes.
pub const CLASSES: usize = 10;

/// Class names in label order.
pub const CLASS_NAMES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

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

/// Most bytes an IDX file of unknown name may have once decompressed: a little more than
/// the largest Fashion-MNIST file (47,040,016 bytes). A gzip bomb stops here.
pub const MAX_IDX_BYTES: u64 = 64 << 20;

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

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Everything that can be wrong with the dataset, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No directory holds the four files.
    #[error(
        "Fashion-MNIST not found. Looked in:\n{searched}\nTo get it, do one of:\n  \
         apt-get install dataset-fashion-mnist      (Debian; installs to /usr/share/datasets/fashion-mnist)\n  \
         trainer data fetch                         (downloads to {cache})\n  \
         trainer fit --data-dir DIR                 (a folder with the four .gz or raw IDX files)"
    )]
    NotFound {
        /// The places looked at, one per line.
        searched: String,
        /// Where `data fetch` would put the files.
        cache: String,
    },
    /// A file could not be read. (The OS error is part of the message, not a separate
    /// cause, so that a chain of causes does not print it twice.)
    #[error("{path}: cannot read: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A `.gz` file is not valid gzip (or has bytes after its last member).
    #[error("{path}: not valid gzip ({error}); the file is corrupt: delete it and fetch it again")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        error: io::Error,
    },
    /// A file is larger than the dataset file it should be, decompressed.
    #[error("{path}: more than {limit} bytes once decompressed, larger than the file it should be; not Fashion-MNIST")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most bytes it may have.
        limit: u64,
    },
    /// The file does not start with the IDX magic number for its kind.
    #[error("{path}: not an IDX {kind} file (magic {found:#010x}, expected {expected:#010x})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// "images" or "labels".
        kind: &'static str,
        /// The first four bytes, big-endian.
        found: u32,
        /// The expected magic number.
        expected: u32,
    },
    /// The file has fewer bytes than its header promises.
    #[error("{path}: truncated: the header promises {expected} bytes, the file has {found}; fetch it again")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Images are not 28x28.
    #[error("{path}: images are {rows}x{cols} pixels, expected 28x28: not Fashion-MNIST")]
    WrongImageSize {
        /// The file.
        path: PathBuf,
        /// Rows per image.
        rows: usize,
        /// Columns per image.
        cols: usize,
    },
    /// The image and label files of a split disagree on the count.
    #[error("{images_path} has {images} images but {labels_path} has {labels} labels")]
    CountMismatch {
        /// Image file.
        images_path: PathBuf,
        /// Image count.
        images: usize,
        /// Label file.
        labels_path: PathBuf,
        /// Label count.
        labels: usize,
    },
    /// A label is not a class index.
    #[error("{path}: label {label} at index {index} is not a class 0..9")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Position of the label.
        index: usize,
        /// The bad value.
        label: u8,
    },
    /// The decompressed content is not the official file's.
    #[error(
        "{path}: checksum mismatch (SHA-256 of the decompressed content is {found}, expected {expected}): \
         the file is corrupt or not the official Fashion-MNIST; delete it and run `trainer data fetch`"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Expected SHA-256.
        expected: String,
        /// Actual SHA-256.
        found: String,
    },
    /// Downloading failed.
    #[error(
        "download of {url} failed: {reason}\nIf this machine has no internet access, install Debian's dataset-fashion-mnist or copy the four files into a folder and pass --data-dir"
    )]
    Fetch {
        /// What was being downloaded.
        url: String,
        /// Why it failed.
        reason: String,
    },
}

/// Images and labels of one split.
#[derive(Debug, Clone)]
pub struct Split {
    /// Pixels, (len, 784) row-major, 0..=255.
    pub pixels: Vec<u8>,
    /// Pixels scaled to 0..1 as the study does (`/ 255`), (len, 784) row-major.
    pub images: Vec<f32>,
    /// Class of each image, 0..=9.
    pub labels: Vec<u8>,
}

impl Split {
    /// Builds a split from raw pixels and labels.
    pub fn new(pixels: Vec<u8>, labels: Vec<u8>) -> Split {
        assert_eq!(pixels.len(), labels.len() * PIXELS, "pixels and labels disagree");
        let images = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        Split { pixels, images, labels }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for a split without images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` images (or all of them).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            pixels: self.pixels[..n * PIXELS].to_vec(),
            images: self.images[..n * PIXELS].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }
}

/// The training and test splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// 60,000 training images.
    pub train: Split,
    /// 10,000 test images.
    pub test: Split,
    /// Folder the files were read from.
    pub dir: PathBuf,
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

/// The path of a file in `dir`, gzip preferred, if either form exists.
fn existing(dir: &Path, spec: &FileSpec) -> Option<PathBuf> {
    [dir.join(format!("{}.gz", spec.name)), dir.join(spec.name)].into_iter().find(|p| p.is_file())
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

/// Reads a file of at most `limit` bytes (decompressed), decompressing it when its name
/// ends in `.gz`.
///
/// Memory and time stay bounded whatever the file holds: reading stops one byte past
/// `limit` (a gzip bomb is refused after inflating `limit` bytes). A gzip file of several
/// members is read whole; bytes after the last member that are not a member are an error.
pub fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let io = |error| DataError::Io { path: path.to_path_buf(), error };
    let file = fs::File::open(path).map_err(io)?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    // A compressed file is never much larger than its content (gzip adds a few bytes per
    // 32 KiB of data it cannot compress).
    let stored = if gz { limit + limit / 1000 + (1 << 16) } else { limit };
    if file.metadata().map_err(io)?.len() > stored {
        return Err(DataError::TooLarge { path: path.to_path_buf(), limit });
    }
    read_limited(file, gz, limit, path)
}

/// [`read_maybe_gz`] of an open `reader` (`path` names it in errors): its bytes, inflated
/// when `gz`, of which no more than `limit + 1` are ever produced.
pub fn read_limited(reader: impl Read, gz: bool, limit: u64, path: &Path) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    if gz {
        let decoder = MultiGzDecoder::new(io::BufReader::new(reader));
        decoder
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|error| DataError::Gzip { path: path.to_path_buf(), error })?;
    } else {
        reader
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|error| DataError::Io { path: path.to_path_buf(), error })?;
    }
    if out.len() as u64 > limit {
        return Err(DataError::TooLarge { path: path.to_path_buf(), limit });
    }
    Ok(out)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The dimensions an IDX header declares, after checking its magic number.
fn header(bytes: &[u8], path: &Path, kind: &'static str, expected: u32, dims: usize) -> Result<Vec<usize>, DataError> {
    let head = 4 + 4 * dims;
    let truncated = || DataError::Truncated { path: path.to_path_buf(), expected: head, found: bytes.len() };
    let magic = be_u32(bytes, 0).ok_or_else(truncated)?;
    if magic != expected {
        return Err(DataError::BadMagic { path: path.to_path_buf(), kind, found: magic, expected });
    }
    (0..dims).map(|d| be_u32(bytes, 4 + 4 * d).map(|v| v as usize)).collect::<Option<_>>().ok_or_else(truncated)
}

/// Checks that `bytes` hold the `body` bytes after a header of `head` bytes.
fn body(bytes: &[u8], path: &Path, head: usize, body: usize) -> Result<(), DataError> {
    let expected = head.saturating_add(body);
    if bytes.len() < expected {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, found: bytes.len() });
    }
    Ok(())
}

/// Parses IDX image bytes: returns the pixels, checking the images are 28x28.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let dims = header(bytes, path, "images", IMAGES_MAGIC, 3)?;
    // The size of an image first: a file of 32x32 images is that, not a truncated file.
    if dims[1] != SIDE || dims[2] != SIDE {
        return Err(DataError::WrongImageSize { path: path.to_path_buf(), rows: dims[1], cols: dims[2] });
    }
    body(bytes, path, 16, dims[0].saturating_mul(PIXELS))?;
    Ok(bytes[16..16 + dims[0] * PIXELS].to_vec())
}

/// Parses IDX label bytes, checking every label is a class 0..9.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let dims = header(bytes, path, "labels", LABELS_MAGIC, 1)?;
    body(bytes, path, 8, dims[0])?;
    let labels = bytes[8..8 + dims[0]].to_vec();
    if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l > 9) {
        return Err(DataError::BadLabel { path: path.to_path_buf(), index, label });
    }
    Ok(labels)
}

fn verify(bytes: &[u8], path: &Path, spec: &FileSpec) -> Result<(), DataError> {
    let found = sha256_hex(bytes);
    if found != spec.sha256 {
        return Err(DataError::Checksum { path: path.to_path_buf(), expected: spec.sha256.into(), found });
    }
    Ok(())
}

/// Reads one split from an image file and a label file, optionally verifying checksums.
pub fn load_split(
    images_path: &Path,
    labels_path: &Path,
    checksums: Option<(&FileSpec, &FileSpec)>,
) -> Result<Split, DataError> {
    let limit = |spec: Option<&FileSpec>| spec.map_or(MAX_IDX_BYTES, |s| s.size);
    let image_bytes = read_maybe_gz(images_path, limit(checksums.map(|c| c.0)))?;
    let label_bytes = read_maybe_gz(labels_path, limit(checksums.map(|c| c.1)))?;
    // Structure first, then the counts: a truncated or wrong file says what is wrong
    // rather than "checksum".
    let pixels = parse_images(&image_bytes, images_path)?;
    let labels = parse_labels(&label_bytes, labels_path)?;
    if pixels.len() / PIXELS != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: pixels.len() / PIXELS,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    if let Some((img_spec, lbl_spec)) = checksums {
        verify(&image_bytes, images_path, img_spec)?;
        verify(&label_bytes, labels_path, lbl_spec)?;
    }
    Ok(Split::new(pixels, labels))
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
    let (train, test) = rayon::join(
        || load_split(&ti, &tl, Some((&FILES[0], &FILES[1]))),
        || load_split(&vi, &vl, Some((&FILES[2], &FILES[3]))),
    );
    Ok(Dataset { train: train?, test: test?, dir: dir.to_path_buf() })
}

/// Finds the dataset (see [`candidates`]) and loads it.
pub fn load(explicit: Option<&Path>) -> Result<Dataset, DataError> {
    load_dir(&locate(explicit)?)
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
    fs::create_dir_all(dir).map_err(|error| DataError::Io { path: dir.to_path_buf(), error })?;
    // Half-written files of a download that was killed.
    fsutil::remove_partials(dir).map_err(|error| DataError::Io { path: dir.to_path_buf(), error })?;
    for spec in &FILES {
        let target = dir.join(format!("{}.gz", spec.name));
        if target.is_file() && read_maybe_gz(&target, spec.size).is_ok_and(|b| verify(&b, &target, spec).is_ok()) {
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
        fsutil::write_atomic(&target, &body).map_err(|error| DataError::Io { path: target.clone(), error })?;
    }
    Ok(())
}
