//! Model files on disk, in the format `infer_core::format` defines.

use std::path::{Path, PathBuf};

use infer_core::arch;
use infer_core::format::{self, Header};

use crate::model::{Dense, Mlp};

/// A model file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The OS refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a valid model.
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: infer_core::Error,
    },
}

/// The payload of an f32 model file: W1, b1, W2, b2, W3, b3 as little-endian f32.
pub fn f32_payload(model: &Mlp) -> Vec<u8> {
    model.params().flat_map(f32::to_le_bytes).collect()
}

/// Encodes `model` as an f32 model file.
pub fn encode_f32(model: &Mlp) -> Result<Vec<u8>, infer_core::Error> {
    let payload = f32_payload(model);
    let mut out = vec![0u8; payload.len() + format::MAX_OVERHEAD];
    let len = format::write(&Header::f32(model.activation), &payload, &mut out)?;
    out.truncate(len);
    Ok(out)
}

/// Decodes an f32 model file (validating it fully).
pub fn decode_f32(bytes: &[u8]) -> Result<Mlp, infer_core::Error> {
    let model = infer_core::F32Model::from_bytes(bytes)?;
    let mut values = model.payload().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut take = |n: usize| values.by_ref().take(n).collect::<Vec<f32>>();
    let [i, h1, h2, o] = arch::LAYERS;
    let mut layer = |inputs, outputs| {
        let w = take(inputs * outputs);
        let b = take(outputs);
        Dense { inputs, outputs, w, b }
    };
    let layers = [layer(i, h1), layer(h1, h2), layer(h2, o)];
    Ok(Mlp { activation: model.activation(), layers })
}

/// Writes `model` to `path` atomically.
pub fn save_f32(model: &Mlp, path: &Path) -> Result<(), ModelFileError> {
    let bytes = encode_f32(model).map_err(|source| ModelFileError::Invalid { path: path.to_path_buf(), source })?;
    crate::fsutil::write_atomic(path, &bytes).map_err(|source| ModelFileError::Io { path: path.to_path_buf(), source })
}

/// Reads an f32 model from `path`.
pub fn load_f32(path: &Path) -> Result<Mlp, ModelFileError> {
    let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io { path: path.to_path_buf(), source })?;
    decode_f32(&bytes).map_err(|source| ModelFileError::Invalid { path: path.to_path_buf(), source })
}
