//! IDX files (the format of MNIST and Fashion-MNIST): images of any size, labels, gzipped
//! or raw, read within bounds; and a folder of the four standard files.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::data::Split;
use crate::error::DataError;

/// Most bytes an IDX file may have once decompressed, when its size is not known in
/// advance: room for EMNIST's largest split (547 MB of images). A gzip bomb stops here.
pub const MAX_IDX_BYTES: u64 = 1 << 30;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The four files of an IDX dataset: training images and labels, test images and labels,
/// by the names MNIST gave them (a prefix such as EMNIST's `emnist-letters-` is allowed).
pub const STANDARD_NAMES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// Reads a file of at most `limit` bytes (decompressed), decompressing it when its name
/// ends in `.gz`.
///
/// Memory and time stay bounded whatever the file holds: reading stops one byte past
/// `limit` (a gzip bomb is refused after inflating `limit` bytes). A gzip file of several
/// members is read whole; bytes after the last member that are not a member are an error.
pub fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let io = |error| DataError::Io { path: path.to_path_buf(), error };
    let file = runio::fsutil::open_regular(path).map_err(io)?;
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
        let io = |error| DataError::Io { path: path.to_path_buf(), error };
        reader.take(limit + 1).read_to_end(&mut out).map_err(io)?;
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

/// Parses IDX image bytes: the pixels and the images' (rows, columns). With `shape`, the
/// images must be of that size.
pub fn parse_images(bytes: &[u8], path: &Path, shape: Option<[usize; 2]>) -> Result<(Vec<u8>, [usize; 2]), DataError> {
    let dims = header(bytes, path, "images", IMAGES_MAGIC, 3)?;
    let (rows, cols) = (dims[1], dims[2]);
    // The size of an image first: a file of 32x32 images is that, not a truncated file.
    if shape.is_some_and(|s| s != [rows, cols]) || rows == 0 || cols == 0 {
        return Err(DataError::WrongImageSize { path: path.to_path_buf(), rows, cols, expected: shape });
    }
    let pixels = rows.saturating_mul(cols);
    body(bytes, path, 16, dims[0].saturating_mul(pixels))?;
    Ok((bytes[16..16 + dims[0] * pixels].to_vec(), [rows, cols]))
}

/// Parses IDX label bytes.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let dims = header(bytes, path, "labels", LABELS_MAGIC, 1)?;
    body(bytes, path, 8, dims[0])?;
    Ok(bytes[8..8 + dims[0]].to_vec())
}

/// A split read from IDX files: the split, its images' (rows, columns), and the two files'
/// decompressed bytes (for checksums).
pub type SplitRead = (Split, [usize; 2], [Vec<u8>; 2]);

/// One split read from an image file and a label file of at most `limits` bytes each
/// (decompressed), with images of `shape` if given.
pub fn read_split(
    images_path: &Path,
    labels_path: &Path,
    limits: [u64; 2],
    shape: Option<[usize; 2]>,
) -> Result<SplitRead, DataError> {
    let image_bytes = read_maybe_gz(images_path, limits[0])?;
    let label_bytes = read_maybe_gz(labels_path, limits[1])?;
    // Structure first, then the counts: a truncated or wrong file says what is wrong
    // rather than "checksum".
    let (pixels, shape) = parse_images(&image_bytes, images_path, shape)?;
    let labels = parse_labels(&label_bytes, labels_path)?;
    let width = shape[0] * shape[1];
    if pixels.len() / width != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: pixels.len() / width,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    Ok((Split::bytes(pixels, labels, width), shape, [image_bytes, label_bytes]))
}

/// Reads one split from an image file and a label file (any image size).
pub fn load_split(images_path: &Path, labels_path: &Path) -> Result<Split, DataError> {
    Ok(read_split(images_path, labels_path, [MAX_IDX_BYTES; 2], None)?.0)
}

/// The file of `dir` whose name ends in `name` (or `name.gz`), gzip preferred; an error
/// when there is none, or more than one.
pub fn find(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let entries = fs::read_dir(dir).map_err(|error| DataError::Io { path: dir.to_path_buf(), error })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Whatever the entry is: one that is not a regular file is said so when read.
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(name) || n.ends_with(&format!("{name}.gz")))
        })
        .collect();
    found.sort();
    // The same file gzipped and raw is one file: the gzip is read.
    if found.len() == 2 && found[1].to_string_lossy() == format!("{}.gz", found[0].to_string_lossy()) {
        found.remove(0);
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DataError::IdxFiles { dir: dir.to_path_buf(), why: format!("no file named *{name}[.gz]") }),
        _ => {
            let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
            Err(DataError::IdxFiles {
                dir: dir.to_path_buf(),
                why: format!("several files for {name}: {}", names.join(", ")),
            })
        }
    }
}
