//! Checkpoints: all a run needs to continue after a crash, written after every epoch.
//!
//! A checkpoint holds the parameters, the optimizer state, the generator's state, the
//! order the images were last visited in, the history and the best weights so far; a run
//! continued from it ends with the same bits as one never interrupted. The file is
//! `FMLPCKPT`, a format version, a CRC-32 and the length of a postcard payload, and is
//! replaced atomically, so a kill at any moment leaves the previous checkpoint or the new
//! one. Writing overlaps the next epoch: the payload is encoded at the end of an epoch and
//! written and synced by a thread of its own.

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rand_chacha::ChaCha8Rng;

use crate::fsutil;
use crate::model::Mlp;
use crate::optim::{LayerState, OptState};
use crate::train::EpochRecord;

/// First bytes of a checkpoint file.
pub const MAGIC: &[u8; 8] = b"FMLPCKPT";
/// Version of the payload layout.
pub const VERSION: u32 = 3;
/// Largest checkpoint read: four 1024-wide layers with Adam's state and the best weights
/// come to about 70 MB.
pub const MAX_BYTES: u64 = 512 << 20;
const HEADER: usize = 8 + 4 + 4 + 8;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A run's state after an epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The recipe, as `summary.json` writes it: a run continues only with the same one.
    pub recipe: String,
    /// Images trained on (after any `--limit` and validation split).
    pub train_images: u64,
    /// Epochs done.
    pub epoch: usize,
    /// Training ended (last epoch, or early stopping).
    pub finished: bool,
    /// Parameters after `epoch`, in training's pixel order (norms not folded).
    pub model: Mlp,
    /// Optimizer state.
    pub state: OptState,
    /// The generator that shuffles the images.
    pub rng: ChaCha8Rng,
    /// The order the images were visited in during `epoch` (the next shuffle starts from it).
    pub order: Vec<u32>,
    /// One record per epoch done.
    pub history: Vec<EpochRecord>,
    /// Epoch and parameters of the best epoch on the validation split so far.
    pub best: Option<(usize, Mlp)>,
    /// That epoch's prediction for each validation image (empty without `best`).
    pub best_predictions: Vec<u8>,
    /// Whether the best epoch is clearly better than the last on validation (its weights
    /// are then the model's, the last's otherwise).
    pub keep_best: bool,
    /// Epochs since the best one.
    pub since_best: usize,
    /// Training wall time so far.
    pub seconds: f64,
}

/// The run a checkpoint must continue.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The recipe, as JSON.
    pub recipe: &'a str,
    /// Images trained on.
    pub images: usize,
    /// Held-out images validated on (0: the test set is the validation set).
    pub validation: usize,
    /// Epochs of the recipe.
    pub epochs: usize,
    /// A model of the run's shape.
    pub model: &'a Mlp,
    /// State arrays per parameter of the run's optimizer.
    pub slots: usize,
}

/// A checkpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The file is not a whole checkpoint of this version.
    #[error("checkpoint {path} is damaged ({why}); remove it to train this model from its first epoch")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The checkpoint is of another recipe or dataset.
    #[error("checkpoint {path} was written for {what}; it cannot continue this run")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        what: String,
    },
}

impl Checkpoint {
    /// Checks that this checkpoint (read from `path`) continues `run`. Nothing in it can then
    /// index out of bounds, even where a file was made to pass its checksum.
    pub fn check(&self, path: &Path, run: &Run) -> Result<(), CheckpointError> {
        let Run { recipe, images, validation, epochs, model, slots } = *run;
        let mismatch = |what: String| CheckpointError::Mismatch { path: path.to_path_buf(), what };
        if self.recipe != recipe {
            return Err(mismatch(format!("another recipe: {}", self.recipe)));
        }
        if self.train_images != images as u64 {
            return Err(mismatch(format!("{} training images, not {images}", self.train_images)));
        }
        let same_shape = |m: &Mlp| {
            m.widths() == model.widths()
                && m.layers.iter().all(|l| l.w.len() == l.inputs * l.outputs && l.b.len() == l.outputs)
                && m.norms.len() == model.norms.len()
                && m.norms.iter().zip(&model.norms).all(|(a, b)| a.has_width(b.width()))
        };
        let fits = |s: &LayerState, (w, b): (usize, usize)| {
            s.w.len() == slots
                && s.b.len() == slots
                && s.w.iter().all(|v| v.len() == w)
                && s.b.iter().all(|v| v.len() == b)
        };
        let state_shape = self.state.layers.len() == model.layers.len()
            && self.state.layers.iter().zip(&model.layers).all(|(s, l)| fits(s, (l.w.len(), l.b.len())))
            && self.state.norms.len() == model.norms.len()
            && self.state.norms.iter().zip(&model.norms).all(|(s, n)| fits(s, (n.width(), n.width())));
        if !same_shape(&self.model) || !state_shape || self.best.as_ref().is_some_and(|(_, m)| !same_shape(m)) {
            return Err(mismatch("another network or optimizer".into()));
        }
        let corrupt = |why: &str| CheckpointError::Corrupt { path: path.to_path_buf(), why: why.into() };
        let mut seen = vec![false; images];
        let permutation = self.order.len() == images
            && self.order.iter().all(|&i| seen.get_mut(i as usize).is_some_and(|s| !std::mem::replace(s, true)));
        if !permutation {
            return Err(corrupt("the image order is not a permutation of the training images"));
        }
        if self.epoch > epochs
            || self.history.len() != self.epoch
            || self.best.as_ref().is_some_and(|(e, _)| *e == 0 || *e > self.epoch)
        {
            return Err(corrupt("its epoch counts disagree"));
        }
        let predictions = if self.best.is_some() { validation } else { 0 };
        if self.best_predictions.len() != predictions || (self.keep_best && self.best.is_none()) {
            return Err(corrupt("its validation predictions do not fit the held-out images"));
        }
        Ok(())
    }
}

/// The file's bytes.
pub fn encode(c: &Checkpoint) -> Vec<u8> {
    let payload = postcard::to_allocvec(c).expect("a checkpoint serializes");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&CRC.checksum(&payload).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Parses a checkpoint file's bytes; `path` names it in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |why: String| CheckpointError::Corrupt { path: path.to_path_buf(), why };
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(corrupt("not a checkpoint file".into()));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if word(8) != VERSION {
        let what = format!("another version of the trainer (checkpoint format {}; this one reads {VERSION})", word(8));
        return Err(CheckpointError::Mismatch { path: path.to_path_buf(), what });
    }
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(corrupt(format!("{} payload bytes, the header says {len}", payload.len())));
    }
    if CRC.checksum(payload) != word(12) {
        return Err(corrupt("checksum mismatch".into()));
    }
    postcard::from_bytes(payload).map_err(|e| corrupt(format!("payload: {e}")))
}

/// The checkpoint at `path`, or `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    match fsutil::read_bounded(path, MAX_BYTES) {
        Ok(bytes) => decode(&bytes, path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Io { path: path.to_path_buf(), source }),
    }
}

/// Writes a run's checkpoints to one file, each while the next epoch trains.
pub struct Writer {
    path: PathBuf,
    pending: Option<JoinHandle<io::Result<()>>>,
}

impl Writer {
    /// Checkpoints to `path`.
    pub fn new(path: &Path) -> Writer {
        Writer { path: path.to_path_buf(), pending: None }
    }

    /// Waits for the previous checkpoint, then starts writing `c`.
    pub fn save(&mut self, c: &Checkpoint) -> Result<(), CheckpointError> {
        self.finish()?;
        let bytes = encode(c);
        let path = self.path.clone();
        self.pending = Some(std::thread::spawn(move || fsutil::write_atomic(&path, &bytes)));
        Ok(())
    }

    /// Waits until the last checkpoint is on disk.
    pub fn finish(&mut self) -> Result<(), CheckpointError> {
        let Some(handle) = self.pending.take() else { return Ok(()) };
        let result = handle.join().unwrap_or_else(|_| Err(io::Error::other("the checkpoint writer panicked")));
        result.map_err(|source| CheckpointError::Io { path: self.path.clone(), source })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A run that failed still leaves its last whole checkpoint.
        let _ = self.finish();
    }
}
