//! Checkpoints: all a run needs to continue after a crash, written after every epoch.
//!
//! A checkpoint holds a run's [`TrainState`] (the parameters, the optimizer state, the
//! generator's state, the order the images were last visited in, the history and the best
//! weights so far) with the recipe and image count it belongs to; a run continued from it
//! ends with the same bits as one never interrupted. The file is
//! `FMLPCKPT`, a format version, a CRC-32 and the length of a postcard payload, and is
//! replaced atomically, so a kill at any moment leaves the previous checkpoint or the new
//! one. Writing overlaps the next epoch: the payload is encoded at the end of an epoch and
//! written and synced by a thread of its own.

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use runio::fsutil;

use crate::state::{TrainState, Unfit};

/// First bytes of a checkpoint file.
pub const MAGIC: &[u8; 8] = b"FMLPCKPT";
/// Version of the payload layout.
pub const VERSION: u32 = 4;
/// Largest checkpoint read: four 1024-wide layers with Adam's state and the best weights
/// come to about 70 MB.
pub const MAX_BYTES: u64 = 512 << 20;
const HEADER: usize = 8 + 4 + 4 + 8;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A run's state after an epoch, and what it must continue.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Checkpoint {
    /// The recipe, as `summary.json` writes it: a run continues only with the same one.
    pub recipe: String,
    /// Images trained on (after any `--limit` and validation split).
    pub train_images: u64,
    /// The run's state after its last epoch.
    pub state: TrainState,
}

/// What a checkpoint file holds, borrowed: [`Checkpoint`]'s bytes without a copy of the state.
#[derive(serde::Serialize)]
struct Payload<'a> {
    recipe: &'a str,
    train_images: u64,
    state: &'a TrainState,
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
    /// Checks that this checkpoint (read from `path`) continues the run of `recipe` (as JSON)
    /// that starts from `start`, of `epochs` epochs validated on `validation` held-out images
    /// (0: the test set). Nothing in it can then index out of bounds, even where a file was
    /// made to pass its checksum.
    pub fn check(
        &self,
        path: &Path,
        recipe: &str,
        start: &TrainState,
        validation: usize,
        epochs: usize,
    ) -> Result<(), CheckpointError> {
        let mismatch = |what: String| CheckpointError::Mismatch { path: path.to_path_buf(), what };
        if self.recipe != recipe {
            return Err(mismatch(format!("another recipe: {}", self.recipe)));
        }
        let images = start.order.len();
        if self.train_images != images as u64 {
            return Err(mismatch(format!("{} training images, not {images}", self.train_images)));
        }
        self.state.continues(start, validation, epochs).map_err(|unfit| match unfit {
            Unfit::Network => mismatch("another network or optimizer".into()),
            Unfit::Inconsistent(why) => CheckpointError::Corrupt { path: path.to_path_buf(), why: why.into() },
        })
    }
}

/// The bytes of a checkpoint file of `state`, trained on `train_images` images with
/// `recipe` (as JSON).
pub fn encode(recipe: &str, train_images: u64, state: &TrainState) -> Vec<u8> {
    let payload = postcard::to_allocvec(&Payload { recipe, train_images, state }).expect("a checkpoint serializes");
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

    /// Waits for the previous checkpoint, then starts writing `state` (see [`encode`]).
    pub fn save(&mut self, recipe: &str, train_images: u64, state: &TrainState) -> Result<(), CheckpointError> {
        self.finish()?;
        let bytes = encode(recipe, train_images, state);
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
