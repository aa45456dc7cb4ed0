//! Files on disk: atomic writes (a reader sees the old file or the new one, never half of
//! one) and bounded reads (a file larger than it can be is refused unread).

use std::io::{self, Read, Write};
use std::path::Path;

/// Opens `path` for reading if it is a regular file (after following symbolic links, as
/// many as the system allows: a loop is an error). Anything else is an `InvalidInput`
/// error that says what it is, found without blocking: a FIFO is opened non-blocking and
/// never read, so that no reader waits forever for a writer.
pub fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}, not a regular file", describe(kind))))
}

/// What a file type is, in words: `a folder`, `a FIFO (named pipe)`, ...
pub fn describe(kind: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else if kind.is_file() {
        "a file"
    } else {
        "not a file"
    }
}

/// Reads `path` whole if it is a regular file ([`open_regular`]) of at most `max` bytes; a
/// larger file is an `InvalidData` error that says so, and no more than `max + 1` bytes
/// are read.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
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
    write_atomic_all(&[(path, bytes)])
}

/// Writes each `(path, bytes)` as [`write_atomic`] does, all or none: every temporary
/// file is written and synced before the first is renamed, so that a failure (a full disk)
/// leaves every path as it was.
pub fn write_atomic_all(files: &[(&Path, &[u8])]) -> io::Result<()> {
    let mut ready = Vec::new();
    for (path, bytes) in files {
        ready.push((*path, temporary(path, bytes)?));
    }
    for (path, tmp) in ready {
        tmp.persist(path).map_err(|e| e.error)?;
        sync_dir(parent(path))?;
    }
    Ok(())
}

/// The folder of `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A synced temporary file holding `bytes`, beside `path`, for [`write_atomic`].
fn temporary(path: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent(path);
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
    Ok(tmp)
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

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read_and_a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("model.fmlp");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = read_bounded(&fifo, 100).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (io::ErrorKind::InvalidInput, "a FIFO (named pipe), not a regular file".into())
        );
        assert!(read_bounded(dir.path(), 100).unwrap_err().to_string().starts_with("a folder"));
        assert!(read_bounded(Path::new("/dev/null"), 100).unwrap_err().to_string().starts_with("a device"));
        // A loop of links is an error of its own; a link to a file is that file.
        std::os::unix::fs::symlink(dir.path().join("b"), dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("b")).unwrap();
        assert!(read_bounded(&dir.path().join("a"), 100).is_err());
        std::fs::write(dir.path().join("f"), b"data").unwrap();
        std::os::unix::fs::symlink(dir.path().join("f"), dir.path().join("l")).unwrap();
        assert_eq!(read_bounded(&dir.path().join("l"), 100).unwrap(), b"data");
    }
}
