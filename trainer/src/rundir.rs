//! The trainer's side of a run folder (see [`runio::rundir`]): the plan `fit --resume`
//! continues, and the checkpoints a finished run removes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use runio::fsutil::{self, remove_partials};
use runio::manifest::FILE as MANIFEST;
pub use runio::rundir::{CHECKPOINT, PLAN};

use crate::recipe::Recipe;

/// The contents of [`PLAN`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// The run's id, as its manifest will say.
    pub run_id: String,
    /// The models to train, in order.
    pub recipes: Vec<Recipe>,
    /// `--limit`: training images used.
    pub limit: Option<u32>,
    /// `--data-dir`, if one was given (`--resume` looks there unless given another).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The data (Fashion-MNIST in runs of earlier versions): `fit --resume`, `trainer
    /// export` and `firmware-sim` read the same examples.
    #[serde(default)]
    pub data: Option<crate::data::DataSpec>,
}

impl Plan {
    /// The bytes of [`PLAN`]. Fails for a path that is not UTF-8 (JSON holds text).
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).context("encoding the run plan")
    }
}

/// Writes the plan of the run in `dir`.
pub fn write_plan(dir: &Path, plan: &Plan) -> Result<()> {
    fsutil::write_atomic(&dir.join(PLAN), &plan.encode()?)
        .with_context(|| format!("writing {}", dir.join(PLAN).display()))
}

/// The plan of an unfinished run in `dir`, and `dir` held ([`runio::rundir::hold`]) and
/// emptied of partial writes: what `fit --resume` continues.
pub fn resumable(dir: &Path) -> Result<(Plan, runio::rundir::Held)> {
    let path = dir.join(PLAN);
    if !dir.is_dir() {
        bail!("--resume {}: no such folder", dir.display());
    }
    let held = runio::rundir::hold(dir)?;
    if dir.join(MANIFEST).exists() {
        bail!("{} holds a complete run (it has {MANIFEST}): nothing to resume", dir.display());
    }
    let bytes = match fsutil::read_bounded(&path, 16 << 20) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} has no {PLAN}: it is not a run folder of this trainer, or its run was started by a version without resume",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let plan: Plan = serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))?;
    remove_partials(dir).with_context(|| format!("cleaning {}", dir.display()))?;
    for r in &plan.recipes {
        remove_partials(&dir.join(&r.name)).with_context(|| format!("cleaning {}", dir.join(&r.name).display()))?;
    }
    Ok((plan, held))
}

/// Removes the models' checkpoints once the run is complete.
pub fn remove_checkpoints(dir: &Path, plan: &Plan) -> Result<()> {
    for r in &plan.recipes {
        let path = dir.join(&r.name).join(CHECKPOINT);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}
