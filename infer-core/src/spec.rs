//! What the model format fixes, at the bottom of the crate where every module can use it:
//! the limits of a network, the activations and quantizations a file names, the format
//! version and the int8 shifts' ranges. (Each is also re-exported where it is used most:
//! [`crate::arch`], [`crate::format`], [`crate::int8net`].)

use serde::{Deserialize, Serialize};

/// Inputs that share one 32-bit word of an int8 weight row (see [`crate::int8net`]).
pub const GROUP: usize = 4;

/// Outputs per block of an int8 weight matrix (see [`crate::int8net`]).
pub const BLOCK: usize = 128;

/// Fewest hidden layers a network has.
pub const MIN_HIDDEN: usize = 1;

/// Most hidden layers a network has.
pub const MAX_HIDDEN: usize = 4;

/// Most dense layers a network has: the hidden ones and the output layer.
pub const MAX_LAYERS: usize = MAX_HIDDEN + 1;

/// Widest hidden or output layer.
pub const MAX_WIDTH: usize = 1024;

/// Widest input: features or pixels per example. With it, an int8 accumulator stays below
/// 2^27 (4096 · 255 · 127), and a group of four inputs is numbered by a `u16`.
pub const MAX_INPUT: usize = 4096;

/// Bytes of the sigmoid lookup table of an int8 sigmoid model.
pub const SIGMOID_TABLE_BYTES: usize = 256;

/// The newest format version this build writes (for a model with an int4 layer; a model
/// without one is written as version 4 or 3, which older readers load); it reads every
/// version from 1 to this one.
pub const FORMAT_VERSION: u16 = 5;

/// The version of a file with a sparse layer and no int4 layer.
pub const SPARSE_FORMAT_VERSION: u16 = 4;

/// The version of a file whose layers are all dense.
pub const DENSE_FORMAT_VERSION: u16 = 3;

/// Most bytes of a file's class names, separators included.
pub const MAX_NAMES_BYTES: usize = 16 * 1024;

/// Largest rounding shift `r` a file may hold.
pub const MAX_ROUNDING_SHIFT: u8 = 24;
/// Largest multiplier shift `s` a file may hold.
pub const MAX_MULTIPLIER_SHIFT: u8 = 30;

/// Hidden-layer nonlinearity. Dropout only matters in training, so a dropout model is `Relu`.
///
/// Part of the file format (as its variant index): a new variant is a new format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Logistic sigmoid, `1 / (1 + e^-x)`.
    Sigmoid,
    /// Rectified linear unit, `max(x, 0)`.
    Relu,
}

/// How the parameters in the payload are stored.
///
/// Part of the file format (as its variant index): a new variant is a new format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    /// Every parameter as little-endian f32.
    F32,
    /// int8 weights with per-output-channel scales, 8-bit activations and integer
    /// requantization (see [`crate::int8net`]).
    Int8,
}
