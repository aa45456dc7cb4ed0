//! Allocation-free inference for the Fashion-MNIST multilayer perceptron
//! (784 inputs, hidden layers of 512 and 256 units, 10 classes) trained by `trainer`.
//!
//! The crate is `#![no_std]` and never allocates: the model is parsed from a byte slice
//! (which may live in flash) and borrowed in place, and the forward pass works in
//! caller-provided fixed buffers whose size is a `const`.
//!
//! ```
//! use infer_core::{arch, format, Activation, F32Model, Scratch};
//!
//! // A model whose weights are all zero and whose last bias favours class 3.
//! # extern crate std;
//! let mut payload = std::vec![0u8; arch::F32_PAYLOAD_BYTES];
//! let b3 = arch::F32_PAYLOAD_BYTES - 4 * arch::OUTPUT;
//! payload[b3 + 4 * 3..b3 + 4 * 4].copy_from_slice(&1.0f32.to_le_bytes());
//! let header = format::Header::f32(Activation::Relu);
//! let mut file = std::vec![0u8; arch::F32_PAYLOAD_BYTES + format::MAX_OVERHEAD];
//! let len = format::write(&header, &payload, &mut file).unwrap();
//!
//! let model = F32Model::from_bytes(&file[..len]).unwrap();
//! let mut scratch = Scratch::new();
//! let image = [0.5f32; arch::INPUT];
//! let (class, scores) = model.predict(&image, &mut scratch);
//! assert_eq!(class, 3);
//! assert!(scores[3] > scores[0]);
//! ```
#![no_std]

pub mod arch;
pub mod f32net;
pub mod format;
pub mod int8net;

pub use f32net::{F32Model, Scratch};

/// A model of either quantization, as a file holds it.
///
/// Both variants only borrow the file; the int8 one is larger (about 200 bytes of slices
/// and shifts), which does not matter for a value made once at boot.
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
        match file.header.quant {
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
}
pub use format::{Activation, Error, Quant};
pub use int8net::{Int8Model, Int8Scratch};
