//! The shape of a network as data: input width, hidden widths and classes.
//!
//! Every size the crate needs (parameters, multiply-accumulates, payload offsets, scratch
//! RAM) is computed from an [`Architecture`], most of it by `const fn`, so firmware can size
//! its buffers at compile time for the model it embeds.

use crate::error::Error;

pub use crate::spec::{BLOCK, GROUP, MAX_HIDDEN, MAX_INPUT, MAX_LAYERS, MAX_WIDTH, MIN_HIDDEN, SIGMOID_TABLE_BYTES};

/// `x` rounded up to a whole number of groups of four.
pub const fn pad_to_group(x: usize) -> usize {
    x.div_ceil(GROUP) * GROUP
}

/// A validated stack of dense layers: `inputs`, 1 to 4 hidden widths, `classes`.
///
/// The input width is 1..=[`MAX_INPUT`], every other width 1..=[`MAX_WIDTH`]. Any width
/// will do: the int8 format pads a layer's inputs to a whole group of four (the kernels read
/// inputs four at a time), and an int8 pass copies an input whose width is not a multiple
/// of four into its scratch.
///
/// ```
/// use infer_core::arch::Architecture;
///
/// let small = Architecture::new(&[784, 128, 64, 10]).unwrap();
/// assert_eq!(small.to_string(), "784-128-64-10");
/// assert_eq!(small.params(), 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
/// assert_eq!(small.int8_scratch_bytes(), 128 + 64 + 2 * 784 / 4);
/// assert!(Architecture::new(&[784, 2000, 10]).is_err());
/// // 13 features: the 16 bytes of a padded copy of the input too.
/// assert_eq!(Architecture::new(&[13, 8, 3]).unwrap().int8_scratch_bytes(), 8 + 2 * 4 + 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Architecture {
    widths: [u16; MAX_LAYERS + 1],
    len: u8,
}

impl Architecture {
    /// The study's network: 784 pixels, hidden layers of 512 and 256 units, 10 classes.
    pub const FMNIST: Architecture = match Architecture::new(&[784, 512, 256, 10]) {
        Ok(a) => a,
        Err(_) => panic!("the study's architecture is valid"),
    };

    /// Validates layer widths, input first and classes last.
    pub const fn new(widths: &[usize]) -> Result<Architecture, Error> {
        let hidden = widths.len().saturating_sub(2);
        if widths.len() < 2 || hidden < MIN_HIDDEN || hidden > MAX_HIDDEN {
            return Err(Error::HiddenLayers { found: hidden });
        }
        let mut out = [0u16; MAX_LAYERS + 1];
        let mut i = 0;
        while i < widths.len() {
            let max = if i == 0 { MAX_INPUT } else { MAX_WIDTH };
            if widths[i] == 0 || widths[i] > max {
                return Err(Error::Width { index: i, width: widths[i] });
            }
            out[i] = widths[i] as u16;
            i += 1;
        }
        Ok(Architecture { widths: out, len: widths.len() as u8 })
    }

    /// Every width, input first.
    pub fn widths(&self) -> &[u16] {
        &self.widths[..self.len as usize]
    }

    /// Width `i` of [`Architecture::widths`] (0 is the input).
    pub const fn width(&self, i: usize) -> usize {
        self.widths[i] as usize
    }

    /// Input width (pixels per image).
    pub const fn inputs(&self) -> usize {
        self.widths[0] as usize
    }

    /// Output width (classes).
    pub const fn classes(&self) -> usize {
        self.widths[self.len as usize - 1] as usize
    }

    /// Dense layers: the hidden ones and the output layer.
    pub const fn layers(&self) -> usize {
        self.len as usize - 1
    }

    /// Hidden layers.
    pub const fn hidden_layers(&self) -> usize {
        self.len as usize - 2
    }

    /// Widths of the hidden layers.
    pub fn hidden(&self) -> &[u16] {
        &self.widths[1..self.len as usize - 1]
    }

    /// (inputs, outputs) of dense layer `l`.
    pub const fn layer(&self, l: usize) -> (usize, usize) {
        (self.widths[l] as usize, self.widths[l + 1] as usize)
    }

    /// Weights and biases of every dense layer.
    pub const fn params(&self) -> usize {
        let mut n = 0;
        let mut l = 0;
        while l < self.layers() {
            let (i, o) = self.layer(l);
            n += i * o + o;
            l += 1;
        }
        n
    }

    /// Multiply-accumulates of one forward pass.
    pub const fn macs(&self) -> usize {
        let mut n = 0;
        let mut l = 0;
        while l < self.layers() {
            let (i, o) = self.layer(l);
            n += i * o;
            l += 1;
        }
        n
    }

    /// Length of the largest of the hidden activation buffers that must coexist, in units
    /// of `unit(width)`: one hidden layer alone, or two consecutive ones (a layer reads its
    /// input from one end of the buffer and writes its output at the other).
    const fn live_activations(&self, grouped: bool) -> usize {
        let mut most = 0;
        let mut k = 0;
        while k < self.hidden_layers() {
            let a = self.widths[1 + k] as usize;
            let b = if k + 1 < self.hidden_layers() { self.widths[2 + k] as usize } else { 0 };
            let both = if grouped { pad_to_group(a) + pad_to_group(b) } else { a + b };
            if both > most {
                most = both;
            }
            k += 1;
        }
        most
    }

    /// Bytes of hidden activations an int8 pass keeps (see [`crate::Int8Scratch`]).
    pub const fn int8_activation_bytes(&self) -> usize {
        self.live_activations(true)
    }

    /// Bytes of the list of non-zero groups of four inputs an int8 pass keeps: a `u16` per
    /// group of the widest layer input.
    pub const fn int8_group_bytes(&self) -> usize {
        let mut most = 0;
        let mut l = 0;
        while l < self.layers() {
            let g = pad_to_group(self.widths[l] as usize) / GROUP;
            if g > most {
                most = g;
            }
            l += 1;
        }
        2 * most
    }

    /// Bytes of the padded copy of the input an int8 pass makes when the input is not a
    /// whole number of groups of four (0 when it is: the pass reads the input in place).
    pub const fn int8_input_bytes(&self) -> usize {
        match self.inputs() % GROUP {
            0 => 0,
            _ => pad_to_group(self.inputs()),
        }
    }

    /// RAM of an int8 forward pass of this network on raw bytes: hidden activations, the
    /// list of non-zero input groups and, for an input that is not a whole number of
    /// groups, its padded copy ([`crate::Int8Scratch`] needs at least this many bytes; a
    /// model with an input quantizer needs [`crate::Int8Model::scratch_bytes`]).
    pub const fn int8_scratch_bytes(&self) -> usize {
        self.int8_activation_bytes() + self.int8_group_bytes() + self.int8_input_bytes()
    }

    /// f32 values of hidden activations an f32 forward pass keeps ([`crate::Scratch`]
    /// needs at least this many).
    pub const fn f32_scratch_len(&self) -> usize {
        self.live_activations(false)
    }
}

impl core::fmt::Display for Architecture {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, w) in self.widths().iter().enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            write!(f, "{w}")?;
        }
        Ok(())
    }
}

const _: () = assert!(Architecture::FMNIST.params() == 535_818);
const _: () = assert!(Architecture::FMNIST.macs() == 535_040);
const _: () = assert!(Architecture::FMNIST.int8_scratch_bytes() == 512 + 256 + 2 * 784 / 4);
const _: () = assert!(Architecture::FMNIST.f32_scratch_len() == 512 + 256);
// Group numbers are a u16; the groups list starts on an even byte after the activations.
const _: () = assert!(MAX_INPUT / GROUP <= 1 << 16 && MAX_WIDTH <= MAX_INPUT);
// The largest int8 accumulator, |Σ x·w| <= MAX_INPUT · 255 · 127, fits in 27 bits, so
// adding the largest rounding term (2^23) stays in i32.
const _: () = assert!(MAX_INPUT * 255 * 127 < 1 << 27);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_checked() {
        assert_eq!(Architecture::new(&[784, 10]).unwrap_err(), Error::HiddenLayers { found: 0 });
        assert_eq!(Architecture::new(&[784, 1, 1, 1, 1, 1, 10]).unwrap_err(), Error::HiddenLayers { found: 5 });
        assert_eq!(Architecture::new(&[]).unwrap_err(), Error::HiddenLayers { found: 0 });
        assert_eq!(Architecture::new(&[784, 0, 10]).unwrap_err(), Error::Width { index: 1, width: 0 });
        assert_eq!(Architecture::new(&[784, 1025, 10]).unwrap_err(), Error::Width { index: 1, width: 1025 });
        assert_eq!(Architecture::new(&[4097, 8, 10]).unwrap_err(), Error::Width { index: 0, width: 4097 });
        assert_eq!(Architecture::new(&[30, 8, 1025]).unwrap_err(), Error::Width { index: 2, width: 1025 });
        assert_eq!(Architecture::new(&[4096, 8, 10]).unwrap().inputs(), 4096);
        assert_eq!(Architecture::new(&[1, 8, 2]).unwrap().inputs(), 1);
        let a = Architecture::new(&[8, 1024, 3, 1, 7, 2]).unwrap();
        assert_eq!((a.inputs(), a.classes(), a.layers(), a.hidden_layers()), (8, 2, 5, 4));
        assert_eq!(a.hidden(), &[1024, 3, 1, 7]);
        assert_eq!(a.layer(1), (1024, 3));
    }

    #[test]
    fn scratch_sizes_cover_every_pair_of_consecutive_hidden_layers() {
        // 4 + 1024 live together, then 1024 + 3 (padded to 4), 3 + 1, 1 + 7.
        let a = Architecture::new(&[8, 1024, 3, 1, 7, 2]).unwrap();
        assert_eq!(a.int8_activation_bytes(), 1024 + 4);
        assert_eq!(a.int8_group_bytes(), 2 * 256);
        assert_eq!(a.f32_scratch_len(), 1024 + 3);
        let one = Architecture::new(&[784, 32, 10]).unwrap();
        assert_eq!((one.int8_activation_bytes(), one.int8_group_bytes(), one.f32_scratch_len()), (32, 392, 32));
        assert_eq!(one.int8_input_bytes(), 0, "784 pixels are read in place");
        let table = Architecture::new(&[30, 16, 3]).unwrap();
        assert_eq!(
            (table.int8_input_bytes(), table.int8_group_bytes(), table.int8_scratch_bytes()),
            (32, 16, 16 + 16 + 32)
        );
        let odd = Architecture::new(&[784, 33, 10]).unwrap();
        assert_eq!(odd.int8_activation_bytes(), 36);
    }
}
