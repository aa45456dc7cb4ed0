//! Model files on disk, in the format `infer_core::format` defines, written and read by
//! `infer_core`'s codec.

use std::path::{Path, PathBuf};

use infer_core::f32net::{self, F32Layer};
use infer_core::format::{Header, Quant};

use crate::model::{Dense, Mlp};

/// A model file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The OS refused. (Its error is part of the message, not a separate cause, so that
    /// a chain of causes does not print it twice.)
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The bytes are not a valid model.
    #[error("{path}: {error}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: infer_core::Error,
    },
}

/// Encodes `model` as an f32 model file (with its norms folded in, if it has any).
pub fn encode_f32(model: &Mlp) -> Result<Vec<u8>, infer_core::Error> {
    let model = &*model.plain();
    let arch = model.architecture()?;
    let layers: Vec<F32Layer<'_>> = model.layers.iter().map(|l| F32Layer { weights: &l.w, biases: &l.b }).collect();
    let mut out = vec![0u8; Header::new(arch, model.activation, Quant::F32).file_len()];
    let len = f32net::encode(&arch, model.activation, &layers, &infer_core::format::Extras::NONE, &mut out)?;
    out.truncate(len);
    Ok(out)
}

/// Decodes an f32 model file of any architecture (validating it fully).
pub fn decode_f32(bytes: &[u8]) -> Result<Mlp, infer_core::Error> {
    Ok(mlp_of(&infer_core::F32Model::from_bytes(bytes)?))
}

/// The network of an f32 model file infer-core has read (and validated).
pub fn mlp_of(model: &infer_core::F32Model<'_>) -> Mlp {
    let arch = model.architecture();
    let layers = (0..arch.layers())
        .map(|l| {
            let (inputs, outputs) = arch.layer(l);
            Dense { inputs, outputs, w: model.weights(l).collect(), b: model.biases(l).collect() }
        })
        .collect();
    Mlp { activation: model.activation(), layers, norms: Vec::new() }
}

/// Writes `model` to `path` atomically.
pub fn save_f32(model: &Mlp, path: &Path) -> Result<(), ModelFileError> {
    let bytes = encode_f32(model).map_err(|error| ModelFileError::Invalid { path: path.to_path_buf(), error })?;
    runio::fsutil::write_atomic(path, &bytes).map_err(|error| ModelFileError::Io { path: path.to_path_buf(), error })
}

/// Reads an f32 model from `path`.
pub fn load_f32(path: &Path) -> Result<Mlp, ModelFileError> {
    let max = infer_core::format::MAX_FILE_BYTES as u64;
    let bytes = runio::fsutil::read_bounded(path, max)
        .map_err(|error| ModelFileError::Io { path: path.to_path_buf(), error })?;
    decode_f32(&bytes).map_err(|error| ModelFileError::Invalid { path: path.to_path_buf(), error })
}
