//! The f32 forward pass: a plain, portable reference that reads weights in place.

use crate::arch::{HIDDEN1, HIDDEN2, INPUT, OUTPUT};
use crate::format::{self, Activation, Error, Quant};

/// Working memory of one forward pass: both hidden layers' activations.
#[derive(Clone)]
pub struct Scratch {
    h1: [f32; HIDDEN1],
    h2: [f32; HIDDEN2],
}

/// Bytes of RAM one [`Scratch`] takes.
pub const SCRATCH_BYTES: usize = core::mem::size_of::<Scratch>();

impl Scratch {
    /// Zeroed buffers.
    pub const fn new() -> Scratch {
        Scratch { h1: [0.0; HIDDEN1], h2: [0.0; HIDDEN2] }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// An f32 model whose parameters stay in the borrowed bytes (flash on a microcontroller).
#[derive(Debug, Clone, Copy)]
pub struct F32Model<'a> {
    activation: Activation,
    payload: &'a [u8],
}

/// Byte offsets of each layer's weights and biases in the payload.
const LAYER_SPANS: [(usize, usize, usize); 3] = {
    let w1 = 0;
    let b1 = w1 + 4 * INPUT * HIDDEN1;
    let w2 = b1 + 4 * HIDDEN1;
    let b2 = w2 + 4 * HIDDEN1 * HIDDEN2;
    let w3 = b2 + 4 * HIDDEN2;
    let b3 = w3 + 4 * HIDDEN2 * OUTPUT;
    [(w1, b1, INPUT), (w2, b2, HIDDEN1), (w3, b3, HIDDEN2)]
};

impl<'a> F32Model<'a> {
    /// Validates a model file (see [`format::read`]) holding f32 parameters, all finite.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<F32Model<'a>, Error> {
        F32Model::from_file(format::read(bytes)?)
    }

    /// An f32 model from a file [`format::read`] validated.
    pub fn from_file(file: format::ModelFile<'a>) -> Result<F32Model<'a>, Error> {
        if file.header.quant != Quant::F32 {
            return Err(Error::WrongQuantization);
        }
        if file.payload.chunks_exact(4).any(|c| !f32_at(c).is_finite()) {
            return Err(Error::NonFinite);
        }
        Ok(F32Model { activation: file.header.activation, payload: file.payload })
    }

    /// The validated payload: `W1, b1, W2, b2, W3, b3` as little-endian f32.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Hidden-layer activation of this model.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Classifies one image of pixels scaled to 0..1, row-major.
    ///
    /// Returns the predicted class and the ten logits (pre-softmax scores).
    pub fn predict(&self, image: &[f32; INPUT], scratch: &mut Scratch) -> (usize, [f32; OUTPUT]) {
        let mut logits = [0.0f32; OUTPUT];
        self.dense(0, image, &mut scratch.h1);
        self.activate(&mut scratch.h1);
        self.dense(1, &scratch.h1, &mut scratch.h2);
        self.activate(&mut scratch.h2);
        self.dense(2, &scratch.h2, &mut logits);
        (argmax(&logits), logits)
    }

    /// `out = x · W + b` for layer `layer`, W of shape (x.len(), out.len()) row-major.
    fn dense(&self, layer: usize, x: &[f32], out: &mut [f32]) {
        let (w_at, b_at, inputs) = LAYER_SPANS[layer];
        let n = out.len();
        let bias = &self.payload[b_at..b_at + 4 * n];
        for (o, b) in out.iter_mut().zip(bias.chunks_exact(4)) {
            *o = f32_at(b);
        }
        let weights = &self.payload[w_at..w_at + 4 * inputs * n];
        // Row by row so weights are read in storage order; zero inputs (dark pixels,
        // inactive ReLUs) cost nothing.
        for (&xi, row) in x.iter().zip(weights.chunks_exact(4 * n)) {
            if xi == 0.0 {
                continue;
            }
            for (o, w) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o += xi * f32_at(w);
            }
        }
    }

    fn activate(&self, h: &mut [f32]) {
        match self.activation {
            Activation::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Sigmoid => h.iter_mut().for_each(|v| *v = 1.0 / (1.0 + libm::expf(-*v))),
        }
    }
}

fn f32_at(bytes: &[u8]) -> f32 {
    f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Index of the largest score; the first one on ties, 0 for NaN-only input.
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}
