//! Allocation-free inference for the multilayer perceptrons `trainer` exports: any stack of
//! 1 to 4 dense hidden layers (ReLU or sigmoid) of up to 1024 units, in f32 or int8.
//!
//! The crate is `#![no_std]` and never allocates: the model is parsed from a byte slice
//! (which may live in flash) and borrowed in place, and the forward pass works in a
//! caller-provided fixed buffer whose size is a const parameter. A model file says its
//! own shape ([`arch::Architecture`]); [`Int8Model::scratch_bytes`] says the RAM its pass
//! needs, and a buffer that is too small is an error, never a panic.
//!
//! ```
//! use infer_core::arch::Architecture;
//! use infer_core::format::Extras;
//! use infer_core::int8net::{self, Int8Layer};
//! use infer_core::{Activation, Int8Model, Int8Scratch};
//!
//! // A 4-8-3 model: all weights zero, so the biases decide, and class 2's is largest.
//! let arch = Architecture::new(&[4, 8, 3]).unwrap();
//! let hidden = Int8Layer {
//!     weights: &[0; 4 * 8],
//!     biases: &[0; 8],
//!     multipliers: &[1; 8],
//!     rounding_shift: 0,
//!     multiplier_shift: 0,
//!     zero_point: 0,
//!     sparse: false,
//!     int4: false,
//! };
//! let output = Int8Layer { weights: &[0; 8 * 3], biases: &[1, 5, 9], multipliers: &[1; 3], ..hidden };
//! let mut file = [0u8; 512];
//! let len = int8net::encode(&arch, Activation::Relu, &[hidden, output], 0.1, None, &Extras::NONE, &mut file).unwrap();
//!
//! let model = Int8Model::from_bytes(&file[..len]).unwrap();
//! // Sized for this model: 8 activation bytes, and a u16 for each of the 2 groups of four
//! // inputs of the widest layer input.
//! assert_eq!(model.scratch_bytes(), 8 + 2 * 2);
//! let mut scratch = Int8Scratch::<{ 8 + 2 * 2 }>::for_model(&model).unwrap();
//! let mut scores = [0i32; 3];
//! let class = model.predict(&[10, 20, 30, 40], &mut scratch, &mut scores).unwrap();
//! assert_eq!((class, scores), (2, [1, 5, 9]));
//! // A buffer too small for the model, or an image of the wrong size, is an error.
//! assert!(Int8Scratch::<11>::for_model(&model).is_err());
//! assert!(model.predict(&[0; 5], &mut scratch, &mut scores).is_err());
//! ```
#![no_std]

pub mod arch;
mod buffers;
pub mod error;
pub mod f32net;
pub mod format;
pub mod int8net;
pub mod layout;
pub mod spec;
pub mod widen;

pub use error::{Error, Param};
pub use f32net::{F32Model, Scratch};
pub use int8net::{Int8Model, Int8Scratch};
pub use spec::{Activation, Quant};

/// A model of either quantization, as a file holds it.
///
/// Both variants only borrow the file.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum Model<'a> {
    /// f32 parameters.
    F32(F32Model<'a>),
    /// int8 parameters.
    Int8(Int8Model<'a>),
}

impl<'a> Model<'a> {
    /// Validates a model file of any quantization this build runs: magic, version, sizes,
    /// checksum, then the parameters. Any byte string gives `Ok` or `Err`, never a panic.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let file = format::read(bytes)?;
        match file.header().quant() {
            Quant::F32 => F32Model::from_file(file).map(Model::F32),
            Quant::Int8 => Int8Model::from_file(file).map(Model::Int8),
        }
    }

    /// Hidden-layer activation.
    pub fn activation(&self) -> Activation {
        match self {
            Model::F32(m) => m.activation(),
            Model::Int8(m) => m.activation(),
        }
    }

    /// Layer widths.
    pub fn architecture(&self) -> arch::Architecture {
        match self {
            Model::F32(m) => m.architecture(),
            Model::Int8(m) => m.architecture(),
        }
    }

    /// The file's class names and (int8) input quantizer.
    pub fn extras(&self) -> &format::Extras<'a> {
        match self {
            Model::F32(m) => m.extras(),
            Model::Int8(m) => m.extras(),
        }
    }
}
