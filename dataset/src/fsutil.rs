//! Files on disk: atomic writes (a reader sees the old file or the new one, never half of
//! one) and bounded reads (a file larger than it can be is refused unread).

use std::io::{self, Read, Write};
use std::path::Path;

/// Reads `path` whole if it has at most `max` bytes; a larger file is an
/// `InvalidData` error that says so, and no more than `max + 1` bytes are read.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let too_large =
        || io::Error::new(io::ErrorKind::InvalidData, format!("larger than {max} bytes, more than it can hold"));
    if file.metadata()?.len() > max {
        return Err(too_large());
    }
    let mut out = Vec::new();
    file.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_large());
    }
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Temporary files are private (0600); the result is an ordinary file (0644 before umask).
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
