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

/// What temporary files of [`write_atomic`] have in their name: `.NAME.partial-XXXXXX`.
pub const PARTIAL: &str = ".partial-";

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it,
/// and syncs the folder: after a crash, `path` holds the old bytes or the new ones.
///
/// The temporary file is private (0600) while it is written and is named
/// `.NAME.partial-XXXXXX`, so that [`remove_partials`] can find one a killed process left.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}{PARTIAL}");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    // The result is an ordinary file (0644 before the umask, as `fs::write` makes them).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = 0o644 & !umask();
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// The process's file-creation mask.
#[cfg(unix)]
fn umask() -> u32 {
    // Read without changing it: a file created 0o666 in a private folder shows it.
    let probe = || -> io::Result<u32> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("probe");
        std::fs::write(&file, [])?;
        Ok(!std::fs::metadata(&file)?.permissions().mode() & 0o666)
    };
    static MASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MASK.get_or_init(|| probe().unwrap_or(0o022))
}

/// Makes a rename in `dir` durable (a no-op where folders cannot be opened for it).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Every file of a run folder: those in `dir` and in its subfolders, one level down (a run
/// keeps each model's files in a folder of its own).
pub fn run_files(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            for sub in std::fs::read_dir(entry.path())? {
                let sub = sub?;
                if sub.file_type()?.is_file() {
                    files.push(sub.path());
                }
            }
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(files)
}

/// Removes the temporary files of [`write_atomic`] that killed processes left in `dir` and
/// its subfolders (one level down); returns how many. Only for folders no other process is
/// writing to.
pub fn remove_partials(dir: &Path) -> io::Result<usize> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut removed = 0;
    for file in run_files(dir)? {
        if file.file_name().is_some_and(|n| is_partial(&n.to_string_lossy())) {
            std::fs::remove_file(file)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether a file name is one of [`write_atomic`]'s temporary files.
pub fn is_partial(name: &str) -> bool {
    name.starts_with('.') && name.contains(PARTIAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644 & !umask(), "an ordinary file");
        }
    }

    #[test]
    fn partials_of_a_killed_write_are_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("relu")).unwrap();
        // What a write killed before its rename leaves.
        std::fs::write(dir.path().join(".summary.json.partial-AbC123"), b"half").unwrap();
        std::fs::write(dir.path().join("relu/.relu.f32.fmlp.partial-XyZ789"), b"half").unwrap();
        std::fs::write(dir.path().join("relu/history.csv"), b"keep").unwrap();
        assert_eq!(remove_partials(dir.path()).unwrap(), 2);
        assert!(dir.path().join("relu/history.csv").is_file());
        assert_eq!(std::fs::read_dir(dir.path().join("relu")).unwrap().count(), 1);
    }
}
