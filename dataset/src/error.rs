//! What can be wrong with data, each with what to do about it.

use std::io;
use std::path::PathBuf;

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
    /// A file or folder could not be written (a read-only or full cache).
    #[error("{path}: cannot write: {error}; choose a folder you can write to (trainer data fetch DIR)")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A `.gz` file is not valid gzip (or has bytes after its last member).
    #[error("{path}: not valid gzip ({error}); the file is corrupt: delete it and download or copy it again")]
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
    #[error(
        "{path}: truncated: the header promises {expected} bytes, the file has {found}; download or copy it again (or fix the header)"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Images are not the size they must be (Fashion-MNIST's 28x28, the training images'
    /// size for test images), or have no pixels.
    #[error("{path}: images are {rows}x{cols} pixels{}", match expected {
        Some([r, c]) => format!(", expected {r}x{c}"),
        None => String::new(),
    })]
    WrongImageSize {
        /// The file.
        path: PathBuf,
        /// Rows per image.
        rows: usize,
        /// Columns per image.
        cols: usize,
        /// The size they must be.
        expected: Option<[usize; 2]>,
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
    /// A label is not one of the classes.
    #[error("{path}: label {label} at index {index} is not one of the {classes} classes")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Position of the label.
        index: usize,
        /// The bad value.
        label: u8,
        /// Classes there are.
        classes: usize,
    },
    /// A folder of IDX files does not hold the four files.
    #[error(
        "{dir}: {why}; an IDX folder holds train-images-idx3-ubyte, train-labels-idx1-ubyte, \
         t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may end in .gz)"
    )]
    IdxFiles {
        /// The folder.
        dir: PathBuf,
        /// What is missing or ambiguous.
        why: String,
    },
    /// A table cannot be read: a bad row, field or header.
    #[error("{path}, row {row}: {why}")]
    Table {
        /// The file.
        path: PathBuf,
        /// The row, counted as a spreadsheet shows it (the header is row 1).
        row: u64,
        /// What is wrong, naming the column.
        why: String,
    },
    /// The labels do not make a classification problem (one class only, too many).
    #[error("{path}: {why}")]
    Classes {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A NumPy archive lacks an array, or holds one of the wrong kind or shape.
    #[error("{path}: {why}")]
    Npz {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The data options do not name data that can be read, or do not go together.
    #[error("{why}")]
    Options {
        /// What is wrong, naming the option.
        why: String,
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
