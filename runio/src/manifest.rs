//! `manifest.json`: what a run folder holds, file by file, so that every file can be tied
//! to the run that wrote it.
//!
//! `trainer fit` writes it last, after every other file of the run: a run that was killed
//! has none. It lists each file's size and SHA-256 with the run's id; `trainer report` and
//! `firmware-sim check` refuse files that are not what their run wrote (left by another
//! run, changed since, or missing), and the tools that rewrite a run's files (`trainer
//! report`, `trainer export`) record the new ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::fsutil::{self, read_bounded};
use crate::sha256_hex;

/// The manifest's file name in a run folder.
pub const FILE: &str = "manifest.json";
/// A run's plan, written before training (what `fit --resume` continues); a folder with a
/// plan and no manifest holds a run that did not finish.
pub const PLAN: &str = "run.json";

/// Largest manifest read: thousands of entries.
const MAX_BYTES: u64 = 1 << 20;

/// One file of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Its length.
    pub bytes: u64,
    /// Hex SHA-256 of its content.
    pub sha256: String,
}

/// A run folder's manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The run's id, also in its `summary.json`.
    pub run_id: String,
    /// Every file of the run but the manifest, by path relative to the run folder (with `/`).
    pub files: BTreeMap<String, Entry>,
}

/// A run folder's files disagree with its manifest, or the manifest cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be read or parsed.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file the run wrote is missing, or its content is not what the run wrote.
    #[error(
        "{path} is not the file run {run_id} wrote ({reason}): the folder mixes files of different runs, or one \
         was changed since; rerun `trainer fit` into a new folder"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// The run the manifest is of.
        run_id: String,
        /// What differs.
        reason: String,
    },
    /// The file is in the folder of a run that did not finish (it has a plan but no
    /// manifest): killed, or still running.
    #[error(
        "{path} is a file of a run that did not finish ({dir} has {PLAN} but no {FILE}): its files cannot be \
         trusted yet; finish the run with `trainer fit --resume {resume}`"
    )]
    Unfinished {
        /// The file.
        path: PathBuf,
        /// The run folder.
        dir: PathBuf,
        /// The folder as a shell word.
        resume: String,
    },
    /// A file is not in the run's manifest at all.
    #[error("{path} is not a file of run {run_id} (not in its {FILE})")]
    Unlisted {
        /// The file.
        path: PathBuf,
        /// The run the manifest is of.
        run_id: String,
    },
}

fn entry_of(bytes: &[u8]) -> Entry {
    Entry { bytes: bytes.len() as u64, sha256: sha256_hex(bytes) }
}

/// The path of `file` relative to `dir`, with `/` between components.
fn relative(dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(dir).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

impl Manifest {
    /// The manifest of `files` (inside `dir`), for run `run_id`.
    pub fn of_files(dir: &Path, run_id: &str, files: &[PathBuf]) -> std::io::Result<Manifest> {
        let mut listed = BTreeMap::new();
        for path in files {
            if let Some(rel) = relative(dir, path) {
                listed.insert(rel, entry_of(&std::fs::read(path)?));
            }
        }
        Ok(Manifest { run_id: run_id.to_string(), files: listed })
    }

    /// Reads `dir`'s manifest; `Ok(None)` when it has none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>, ManifestError> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let unreadable = |reason: String| ManifestError::Unreadable { path: path.clone(), reason };
        let bytes = read_bounded(&path, MAX_BYTES).map_err(|e| unreadable(e.to_string()))?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| unreadable(e.to_string()))
    }

    /// Writes it as `dir`'s manifest (atomically).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        fsutil::write_atomic(&dir.join(FILE), text.as_bytes())
    }

    /// Checks that `file` (inside the run folder `dir`) is the one the run wrote.
    pub fn verify(&self, dir: &Path, file: &Path) -> Result<(), ManifestError> {
        let Some(rel) = relative(dir, file) else {
            return Err(ManifestError::Unlisted { path: file.to_path_buf(), run_id: self.run_id.clone() });
        };
        let Some(expected) = self.files.get(&rel) else {
            return Err(ManifestError::Unlisted { path: file.to_path_buf(), run_id: self.run_id.clone() });
        };
        let foreign =
            |reason: String| ManifestError::Foreign { path: file.to_path_buf(), run_id: self.run_id.clone(), reason };
        let bytes = read_bounded(file, expected.bytes).map_err(|e| foreign(e.to_string()))?;
        let found = entry_of(&bytes);
        if found != *expected {
            return Err(foreign(format!(
                "{} bytes with SHA-256 {}, the run wrote {} bytes with {}",
                found.bytes,
                &found.sha256[..16],
                expected.bytes,
                &expected.sha256[..16]
            )));
        }
        Ok(())
    }

    /// Records the current content of `files` (inside `dir`), which a tool just rewrote.
    pub fn record(&mut self, dir: &Path, files: &[PathBuf]) -> std::io::Result<()> {
        for file in files {
            if let Some(rel) = relative(dir, file) {
                self.files.insert(rel, entry_of(&std::fs::read(file)?));
            }
        }
        Ok(())
    }
}

/// The run folder whose manifest covers `file` (its folder, or the folder above a model's
/// folder), as a canonical path; `None` for a file outside any run (or one that does not
/// exist).
pub fn run_of(file: &Path) -> Option<PathBuf> {
    let file = std::fs::canonicalize(file).ok()?;
    let dir = file.parent()?;
    [Some(dir), dir.parent()].into_iter().flatten().find(|d| d.join(FILE).is_file()).map(Path::to_path_buf)
}

/// Checks `file` against the manifest of the run that covers it, if any: a file of a run
/// must be the one the run wrote, and a file of a run that did not finish (a folder, or the
/// one above, with a plan and no manifest) is refused.
pub fn verify_file(file: &Path) -> Result<(), ManifestError> {
    let Ok(canonical) = std::fs::canonicalize(file) else { return Ok(()) };
    let Some(dir) = canonical.parent() else { return Ok(()) };
    let run =
        [Some(dir), dir.parent()].into_iter().flatten().find(|d| d.join(FILE).is_file() || d.join(PLAN).is_file());
    let Some(run) = run else { return Ok(()) };
    match Manifest::read(run)? {
        Some(manifest) => manifest.verify(run, &canonical),
        None => Err(ManifestError::Unfinished {
            path: file.to_path_buf(),
            dir: run.to_path_buf(),
            resume: crate::out::shell_word(run),
        }),
    }
}

/// A new run id: the local time and 32 bits from the system's hasher seed.
pub fn new_run_id(time: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    format!("{time}-{:08x}", h.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_round_trips_and_a_changed_or_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("relu")).unwrap();
        std::fs::write(dir.path().join("summary.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("relu/relu.int8.fmlp"), b"model").unwrap();
        let files = [dir.path().join("summary.json"), dir.path().join("relu/relu.int8.fmlp")];
        let m = Manifest::of_files(dir.path(), "run-1", &files).unwrap();
        assert_eq!(m.files.keys().collect::<Vec<_>>(), ["relu/relu.int8.fmlp", "summary.json"]);
        m.write(dir.path()).unwrap();
        let m = Manifest::read(dir.path()).unwrap().unwrap();
        m.verify(dir.path(), &dir.path().join("relu/relu.int8.fmlp")).unwrap();

        std::fs::write(dir.path().join("relu/relu.int8.fmlp"), b"other").unwrap();
        let e = m.verify(dir.path(), &dir.path().join("relu/relu.int8.fmlp")).unwrap_err();
        assert!(matches!(e, ManifestError::Foreign { .. }), "{e}");
        let text = e.to_string();
        assert!(!text.contains('\\') && !text.contains('\n') && text.contains("one was changed"), "{text}");
        std::fs::write(dir.path().join("relu/predictions.csv"), b"x").unwrap();
        let e = m.verify(dir.path(), &dir.path().join("relu/predictions.csv")).unwrap_err();
        assert!(matches!(e, ManifestError::Unlisted { .. }), "{e}");
        std::fs::remove_file(dir.path().join("summary.json")).unwrap();
        assert!(m.verify(dir.path(), &dir.path().join("summary.json")).is_err());
    }

    #[test]
    fn a_file_of_a_run_that_did_not_finish_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("relu")).unwrap();
        std::fs::write(dir.path().join("relu/relu.int8.fmlp"), b"model").unwrap();
        verify_file(&dir.path().join("relu/relu.int8.fmlp")).expect("a file outside any run");
        std::fs::write(dir.path().join(PLAN), b"{}").unwrap();
        let e = verify_file(&dir.path().join("relu/relu.int8.fmlp")).unwrap_err();
        assert!(matches!(e, ManifestError::Unfinished { .. }) && e.to_string().contains("fit --resume"), "{e}");
        let files = [dir.path().join("relu/relu.int8.fmlp"), dir.path().join(PLAN)];
        Manifest::of_files(dir.path(), "run-1", &files).unwrap().write(dir.path()).unwrap();
        verify_file(&dir.path().join("relu/relu.int8.fmlp")).expect("the run finished");
    }

    #[test]
    fn run_ids_differ() {
        assert_ne!(new_run_id("t"), new_run_id("t"));
    }
}
