//! Run folders: one run each. `trainer fit` refuses a folder that holds files unless told
//! to replace the run in it, and then removes that run's files before writing any of its
//! own, so a folder never mixes two runs; `manifest.json`, written last, ties every file to
//! the run (see [`crate::manifest`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::fsutil::{is_partial, remove_partials};
use crate::manifest::{FILE as MANIFEST, Manifest, run_of};

/// What a run was asked to do, written before training so that `fit --resume` can finish it.
pub const PLAN: &str = "run.json";
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
/// `NAME.int8.fmlp`).
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
    MODEL_FILES.contains(&name) || name.ends_with(".f32.fmlp") || name.ends_with(".int8.fmlp") || is_partial(name)
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

/// Makes `dir` ready for a new run: created if missing; if it holds files, refused unless
/// `overwrite`, and then emptied of the previous run's files (and only those: a folder that
/// holds anything else is refused).
pub fn prepare(dir: &Path, overwrite: bool) -> Result<()> {
    if !dir.exists() {
        return std::fs::create_dir_all(dir).with_context(|| format!("creating output folder {}", dir.display()));
    }
    anyhow::ensure!(dir.is_dir(), "--out {} is a file, not a folder", dir.display());
    let (ours, other) = inventory(dir)?;
    if ours.is_empty() && other.is_empty() {
        return Ok(());
    }
    if !other.is_empty() {
        let names: Vec<String> = other.iter().take(5).map(|p| p.display().to_string()).collect();
        bail!(
            "--out {} holds files that are not a run's ({}{}): choose another folder",
            dir.display(),
            names.join(", "),
            if other.len() > 5 { ", ..." } else { "" }
        );
    }
    if !overwrite {
        bail!(
            "--out {} already holds a run: pass --overwrite to replace it (its files are removed first), or choose another folder",
            dir.display()
        );
    }
    for path in ours {
        if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }
            .with_context(|| format!("removing {} of the previous run", path.display()))?;
    }
    remove_partials(dir)?;
    Ok(())
}

/// Writes the manifest of everything in `dir` for run `run_id`: the run's last write.
pub fn seal(dir: &Path, run_id: &str) -> Result<()> {
    let manifest = Manifest::of_folder(dir, run_id).with_context(|| format!("listing {}", dir.display()))?;
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
                dir.display()
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
