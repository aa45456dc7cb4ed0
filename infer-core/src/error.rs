//! Why a byte string is not a model this build can run, or a call cannot be carried out.

use core::fmt;

use crate::spec::{
    FORMAT_VERSION, MAX_HIDDEN, MAX_INPUT, MAX_MULTIPLIER_SHIFT, MAX_NAMES_BYTES, MAX_ROUNDING_SHIFT, MAX_WIDTH,
    MIN_HIDDEN, Quant,
};

/// Everything that can go wrong, as a small value: nothing here allocates or panics.
///
/// Layers are numbered from 1 in messages, from 0 in fields (`layer: 0` is the first dense
/// layer, whose inputs are the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the file's header says it has.
    Truncated,
    /// The file does not start with [`crate::format::MAGIC`]: not a model file.
    BadMagic,
    /// Written by a format version this build does not read.
    UnsupportedVersion {
        /// The version the file says it has.
        found: u16,
    },
    /// The checksum does not match the contents: the file is corrupt.
    Checksum {
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of the contents as read.
        computed: u32,
    },
    /// The header cannot be decoded, its padding is not zero, or bytes follow the checksum.
    Malformed,
    /// Not 1 to 4 hidden layers.
    HiddenLayers {
        /// Hidden layers declared.
        found: usize,
    },
    /// A writer was given another number of layers than the architecture has.
    LayerCount {
        /// Dense layers of the architecture.
        expected: usize,
        /// Layers given.
        found: usize,
    },
    /// A layer width is 0, or above [`MAX_INPUT`] (the input) or [`MAX_WIDTH`] (any other).
    Width {
        /// Position in the list of widths: 0 is the input, the last is the classes.
        index: usize,
        /// The width.
        width: usize,
    },
    /// The payload is not the size the architecture and quantization need.
    PayloadSize {
        /// Bytes the header implies.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The model is stored with another quantization than the one asked for.
    WrongQuantization {
        /// What the caller asked for.
        expected: Quant,
        /// What the file holds.
        found: Quant,
    },
    /// An output buffer is too small for the encoded file.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        found: usize,
    },
    /// A parameter's slice does not have the length the architecture gives it.
    ParameterCount {
        /// Dense layer (0-based).
        layer: usize,
        /// Which parameter.
        what: Param,
        /// Values the architecture needs.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// An f32 weight or bias is NaN or infinite.
    NonFinite {
        /// Dense layer (0-based).
        layer: usize,
    },
    /// An int8 requantization parameter is out of the format's range.
    OutOfRange {
        /// Dense layer (0-based).
        layer: usize,
        /// Which parameter.
        what: Param,
        /// Its value.
        value: i32,
    },
    /// A sparse int8 layer's counts or indices are inconsistent: a count above its block's
    /// outputs, indices not strictly increasing within a group or past the block, or counts
    /// that do not add up to the blocks the header says the layer keeps.
    SparseLayer {
        /// Dense layer (0-based).
        layer: usize,
    },
    /// The int8 score scale is not a finite positive number.
    ScoreScale,
    /// A sigmoid model without its table, or a ReLU model with one.
    SigmoidTable,
    /// The scratch buffer is smaller than the model needs.
    ScratchTooSmall {
        /// Bytes (int8) or values (f32) the model needs.
        needed: usize,
        /// What the buffer holds.
        capacity: usize,
    },
    /// The class names are not valid: not UTF-8, not one per class, an empty one, or more
    /// than [`MAX_NAMES_BYTES`] in all.
    ClassNames,
    /// The input quantizer is not one finite (scale, offset) pair per input, or is on an f32
    /// model (whose first layer takes raw values itself).
    InputQuantizer,
    /// Real-valued features were given to an int8 model without an input quantizer: it
    /// takes bytes (pixels) only.
    NoInputQuantizer,
    /// Scratch memory given as bytes does not start on an even address (its groups are
    /// 16-bit numbers).
    ScratchAlignment,
    /// The kernel asked for is not in this build or not run by this CPU
    /// ([`crate::int8net::Kernel::runs`]).
    KernelUnavailable,
    /// The input slice is not the model's input width.
    InputSize {
        /// The model's input width.
        expected: usize,
        /// The slice's length.
        found: usize,
    },
    /// The scores slice is shorter than the model's classes.
    OutputSize {
        /// The model's classes.
        expected: usize,
        /// The slice's length.
        found: usize,
    },
}

/// A parameter of a dense layer, as [`Error`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Param {
    /// The weight matrix.
    Weights,
    /// The biases.
    Biases,
    /// The int8 requantization multipliers (0..=32767).
    Multipliers,
    /// The int8 rounding shift (0..=24).
    RoundingShift,
    /// The int8 multiplier shift (0..=30).
    MultiplierShift,
    /// The int8 zero point (0 except on a sigmoid model's hidden layers).
    ZeroPoint,
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Param::Weights => "weights",
            Param::Biases => "biases",
            Param::Multipliers => "multiplier",
            Param::RoundingShift => "rounding shift",
            Param::MultiplierShift => "multiplier shift",
            Param::ZeroPoint => "zero point",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated => f.write_str("file is truncated"),
            Error::BadMagic => f.write_str("not a model file (bad magic bytes)"),
            Error::UnsupportedVersion { found } => write!(
                f,
                "model format version {found} is not supported (this build reads versions 1 to {FORMAT_VERSION}); \
                 re-export the model with this build's trainer"
            ),
            Error::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")
            }
            Error::Malformed => f.write_str("header cannot be decoded, or bytes follow the checksum"),
            Error::HiddenLayers { found } => {
                write!(f, "{found} hidden layers; a network has {MIN_HIDDEN} to {MAX_HIDDEN}")
            }
            Error::LayerCount { expected, found } => {
                write!(f, "{found} layers given for an architecture of {expected} dense layers")
            }
            Error::Width { index, width } => {
                let max = if index == 0 { MAX_INPUT } else { MAX_WIDTH };
                write!(f, "width {width} of layer {index} (0 is the input) is not in 1..={max}")
            }
            Error::PayloadSize { expected, found } => {
                write!(f, "payload has {found} bytes, the architecture needs {expected}")
            }
            Error::WrongQuantization { expected, found } => {
                write!(f, "the model is stored as {found:?}, not {expected:?}")
            }
            Error::BufferTooSmall { needed, found } => {
                write!(f, "output buffer of {found} bytes is too small: the file needs {needed}")
            }
            Error::ParameterCount { layer, what, expected, found } => {
                write!(f, "layer {}: {found} {what}, the architecture needs {expected}", layer + 1)
            }
            Error::NonFinite { layer } => write!(f, "layer {}: a weight or bias is NaN or infinite", layer + 1),
            Error::OutOfRange { layer, what, value } => {
                let range = match what {
                    Param::RoundingShift => "0..=24",
                    Param::MultiplierShift => "0..=30",
                    Param::Multipliers => "0..=32767",
                    Param::ZeroPoint => "0 on this layer",
                    Param::Weights | Param::Biases => "range",
                };
                write!(f, "layer {}: {what} {value} is out of {range}", layer + 1)
            }
            Error::SparseLayer { layer } => write!(
                f,
                "layer {}: the sparse layer's counts or indices are inconsistent (a count past its block, \
                 indices out of order or out of range, or counts that do not add up)",
                layer + 1
            ),
            Error::ScoreScale => f.write_str("the score scale is not a finite positive number"),
            Error::SigmoidTable => f.write_str("a sigmoid model needs its table, and only a sigmoid model has one"),
            Error::ScratchTooSmall { needed, capacity } => write!(
                f,
                "the model needs a scratch of {needed}, the buffer holds {capacity}: use a larger const parameter"
            ),
            Error::ClassNames => write!(
                f,
                "the class names are not one non-empty UTF-8 name per class (at most {MAX_NAMES_BYTES} bytes in all)"
            ),
            Error::InputQuantizer => {
                f.write_str("the input quantizer is not one finite (scale, offset) pair per input of an int8 model")
            }
            Error::NoInputQuantizer => {
                f.write_str("this int8 model takes bytes (pixels); it has no quantizer for real-valued features")
            }
            Error::ScratchAlignment => f.write_str("the scratch memory must start on an even address"),
            Error::KernelUnavailable => f.write_str("this build or this CPU does not have the int8 kernel asked for"),
            Error::InputSize { expected, found } => write!(f, "input has {found} values, the model takes {expected}"),
            Error::OutputSize { expected, found } => {
                write!(f, "scores buffer holds {found} values, the model has {expected} classes")
            }
        }
    }
}

impl core::error::Error for Error {}

const _: () = assert!(MAX_ROUNDING_SHIFT == 24 && MAX_MULTIPLIER_SHIFT == 30);
