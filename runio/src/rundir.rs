//! Run folders: one run each. `trainer fit` refuses a folder that holds files unless told
//! to replace the run in it, and then removes that run's files before writing any of its
//! own, so a folder never mixes two runs; `manifest.json`, written last, ties every file to
//! the run (see [`crate::manifest`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::fsutil::is_partial;
pub use crate::manifest::PLAN;
use crate::manifest::{FILE as MANIFEST, Manifest, run_of};
/// A model's checkpoint in its folder, while the run trains (removed when it completes).
pub const CHECKPOINT: &str = "checkpoint.bin";

/// Files `fit` and `report` write at the top of a run folder.
const RUN_FILES: [&str; 9] = [
    PLAN,
    "summary.json",
    "summary.md",
    "report.html",
    "samples.csv",
    "samples.png",
    "val_accuracy.png",
    "val_accuracy.svg",
    MANIFEST,
];

/// Files `fit`, `export` and `report` write in a model's folder (and `NAME.f32.fmlp`,
/// `NAME.int8.fmlp`, and `export --c-header`'s `NAME_model.c` and `NAME_model.h`).
const MODEL_FILES: [&str; 8] = [
    CHECKPOINT,
    "history.csv",
    "confusion.csv",
    "confusion.png",
    "curves.png",
    "curves.svg",
    "predictions.csv",
    "predictions_int8.csv",
];

fn is_model_file(name: &str) -> bool {
    let c = name.ends_with("_model.c") || name.ends_with("_model.h");
    MODEL_FILES.contains(&name) || name.ends_with(".f32.fmlp") || name.ends_with(".int8.fmlp") || c || is_partial(name)
}

/// What a run folder holds that a run wrote (files and model folders), and what it holds
/// besides.
fn inventory(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut ours, mut other) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            let mut all_ours = true;
            for sub in std::fs::read_dir(&path)? {
                let sub = sub?;
                all_ours &= sub.file_type()?.is_file() && is_model_file(&sub.file_name().to_string_lossy());
            }
            if all_ours { ours.push(path) } else { other.push(path) }
        } else if RUN_FILES.contains(&name.as_str()) || is_partial(&name) {
            ours.push(path);
        } else {
            other.push(path);
        }
    }
    Ok((ours, other))
}

/// A run folder this process writes: while it lives no other process can hold the same
/// folder (`fit`, `fit --resume`, `export` or `report` into it). An advisory lock on the
/// folder, which the system releases when the process ends, however it ends.
#[derive(Debug)]
#[must_use = "the folder is held only while this lives"]
pub struct Held {
    _lock: std::fs::File,
}

/// Holds `dir` for this process, or says that another one does.
pub fn hold(dir: &Path) -> Result<Held> {
    let lock = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    match lock.try_lock() {
        Ok(()) => Ok(Held { _lock: lock }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is being written by another process (a `trainer fit` still running there?): wait for it to end, \
             or choose another folder",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", dir.display())),
    }
}

/// Holds the run folder that `file` (which may not exist yet) would belong to, if it is in
/// one: its folder or the folder above, holding a run's plan or manifest.
pub fn hold_run_of(file: &Path) -> Result<Option<Held>> {
    let Some(dir) = file.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d }) else {
        return Ok(None);
    };
    let Ok(dir) = std::fs::canonicalize(dir) else { return Ok(None) };
    let is_run = |d: &&Path| d.join(PLAN).is_file() || d.join(MANIFEST).is_file();
    match [Some(dir.as_path()), dir.parent()].into_iter().flatten().find(is_run) {
        Some(run) => hold(run).map(Some),
        None => Ok(None),
    }
}

/// The files of the run in `dir`, if it holds one: those its manifest lists (and the
/// manifest), or for a run that did not finish (no manifest) the run's files at the top and
/// those of the models its plan names, in their folders; with any temporary files of killed
/// writes. `Ok(None)` when `dir` holds no run of this tool.
fn previous_run(dir: &Path) -> Result<Option<(Vec<PathBuf>, bool)>> {
    let exists = |p: &PathBuf| p.symlink_metadata().is_ok();
    let mut files: Vec<PathBuf> = match Manifest::read(dir)? {
        Some(manifest) => {
            // Only names a run writes: a file at the top or in a model's folder, never a path
            // that leads out of the folder, whatever a damaged manifest says.
            let inside = |rel: &&String| {
                let parts: Vec<&str> = rel.split('/').collect();
                parts.len() <= 2 && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\\'))
            };
            let mut files: Vec<PathBuf> =
                manifest.files.keys().filter(inside).map(|rel| dir.join(rel)).filter(exists).collect();
            files.push(dir.join(MANIFEST));
            files
        }
        None if dir.join(PLAN).is_file() => {
            let plan = crate::fsutil::read_bounded(&dir.join(PLAN), 16 << 20)
                .with_context(|| format!("reading {}", dir.join(PLAN).display()))?;
            let plan: serde_json::Value = serde_json::from_slice(&plan)
                .with_context(|| format!("{} is damaged: remove the folder yourself", dir.join(PLAN).display()))?;
            let models = plan["recipes"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str());
            let mut files: Vec<PathBuf> = RUN_FILES.iter().map(|f| dir.join(f)).filter(exists).collect();
            for model in models.filter(|m| !m.is_empty() && !m.contains(['/', '\\']) && *m != "." && *m != "..") {
                let folder = dir.join(model);
                if folder.is_dir() {
                    for entry in std::fs::read_dir(&folder)? {
                        let entry = entry?;
                        if entry.file_type()?.is_file() && is_model_file(&entry.file_name().to_string_lossy()) {
                            files.push(entry.path());
                        }
                    }
                }
            }
            files
        }
        None => return Ok(None),
    };
    let finished = files.contains(&dir.join(MANIFEST));
    for file in crate::fsutil::run_files(dir)? {
        if file.file_name().is_some_and(|n| is_partial(&n.to_string_lossy())) && !files.contains(&file) {
            files.push(file);
        }
    }
    Ok(Some((files, finished)))
}

/// Everything in `dir` (files, and folders one level down) but `ours`.
fn others(dir: &Path, ours: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut other = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            for sub in std::fs::read_dir(&path)? {
                let sub = sub?.path();
                if !ours.contains(&sub) {
                    other.push(sub);
                }
            }
        } else if !ours.contains(&path) {
            other.push(path);
        }
    }
    other.sort();
    Ok(other)
}

/// Makes `dir` ready for a new run and holds it ([`hold`]): created if missing. A folder
/// with files is refused unless they are all a previous run's and `overwrite`; then that
/// run's files are removed (only those: what its manifest lists, or for an unfinished run
/// the files its plan names) before any of the new run's is written.
pub fn prepare(dir: &Path, overwrite: bool) -> Result<Held> {
    if dir.symlink_metadata().is_err() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating output folder {}", dir.display()))?;
    }
    anyhow::ensure!(dir.is_dir(), "--out {} is not a folder", dir.display());
    let held = hold(dir)?;
    let (ours, finished) = previous_run(dir)?.unwrap_or_default();
    let other = others(dir, &ours)?;
    if !other.is_empty() {
        let names: Vec<String> = other.iter().take(5).map(|p| p.display().to_string()).collect();
        bail!(
            "--out {} holds files that are not a run's ({}{}): choose another folder",
            dir.display(),
            names.join(", "),
            if other.len() > 5 { ", ..." } else { "" }
        );
    }
    if ours.is_empty() {
        return Ok(held);
    }
    if !overwrite {
        let what = match finished {
            true => "a finished run".to_string(),
            false => {
                format!("an unfinished run: finish it with `trainer fit --resume {}`", crate::out::shell_word(dir))
            }
        };
        bail!(
            "--out {} holds {what}; or choose another folder, or pass --overwrite to remove that run's {} files",
            dir.display(),
            ours.len()
        );
    }
    for path in &ours {
        std::fs::remove_file(path).with_context(|| format!("removing {} of the previous run", path.display()))?;
    }
    // The previous run's model folders, now empty.
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && std::fs::read_dir(&path)?.next().is_none() {
            std::fs::remove_dir(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(held)
}

/// Writes the manifest of run `run_id` in `dir`: its last write. It lists the files the run
/// writes (those at the top of a run folder, and in the folders of `models` those of a
/// model), not whatever else the folder may hold.
pub fn seal(dir: &Path, run_id: &str, models: &[&str]) -> Result<()> {
    let mut files: Vec<PathBuf> = RUN_FILES.iter().map(|f| dir.join(f)).filter(|p| p.is_file()).collect();
    for model in models {
        let folder = dir.join(model);
        for entry in std::fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_file() && is_model_file(&entry.file_name().to_string_lossy()) {
                files.push(entry.path());
            }
        }
    }
    files.retain(|f| f.file_name().is_some_and(|n| n != MANIFEST && !is_partial(&n.to_string_lossy())));
    let manifest = Manifest::of_files(dir, run_id, &files).with_context(|| format!("listing {}", dir.display()))?;
    manifest.write(dir).with_context(|| format!("writing {}", dir.join(MANIFEST).display()))
}

/// Checks that every file of the run in `dir` is what the run wrote, and that it holds no
/// file the run did not write. `Ok(None)` for a folder of an earlier version (no run id in
/// its summary, no manifest), whose files cannot be tied.
pub fn verify(dir: &Path, run_id: Option<&str>) -> Result<Option<Manifest>> {
    let Some(manifest) = Manifest::read(dir)? else {
        if let Some(id) = run_id {
            bail!(
                "{} has no {MANIFEST}: run {id} did not finish (killed?), so its files cannot be trusted; finish it with `trainer fit --resume {}`",
                dir.display(),
                crate::out::shell_word(dir)
            );
        }
        return Ok(None);
    };
    if let Some(id) = run_id {
        anyhow::ensure!(
            manifest.run_id == id,
            "{}: summary.json is of run {id}, {MANIFEST} of run {}: the folder mixes two runs",
            dir.display(),
            manifest.run_id
        );
    }
    // Every file where a run writes must be listed and match; then every listed file not
    // seen there must still be there and match. Each file is read once.
    let (ours, _) = inventory(dir)?;
    let mut seen = std::collections::HashSet::new();
    for path in ours {
        let files = if path.is_dir() {
            std::fs::read_dir(&path)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<_>>>()?
        } else {
            vec![path]
        };
        for file in files {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name != MANIFEST && !is_partial(&name) {
                manifest.verify(dir, &file)?;
                seen.insert(file);
            }
        }
    }
    for rel in manifest.files.keys() {
        let file = dir.join(rel);
        if !seen.contains(&file) {
            manifest.verify(dir, &file)?;
        }
    }
    Ok(Some(manifest))
}

/// Records in `dir`'s manifest, if it has one, the files a tool has just rewritten.
pub fn record(dir: &Path, files: &[PathBuf]) -> Result<()> {
    if let Some(mut manifest) = Manifest::read(dir)? {
        manifest.record(dir, files)?;
        manifest.write(dir).with_context(|| format!("writing {}", dir.join(MANIFEST).display()))?;
    }
    Ok(())
}

/// Records `files` (just rewritten) in the manifest of the run that covers each, if any.
pub fn record_files(files: &[&Path]) -> Result<()> {
    for file in files {
        if let Some(dir) = run_of(file) {
            record(&dir, &[std::fs::canonicalize(file)?])?;
        }
    }
    Ok(())
}
