//! The f32 forward pass: a plain, portable reference that reads weights in place, and the
//! f32 payload's writer.

use crate::arch::Architecture;
use crate::buffers::{check_buffers, fits, layer_io};
use crate::error::{Error, Param};
use crate::format::{self, Activation, Extras, HEADER_BYTES, Header, Quant};
use crate::layout::F32Layout;

/// Values of [`Scratch`] the study's 784-512-256-10 network needs (768).
pub const F32_SCRATCH_LEN: usize = Architecture::FMNIST.f32_scratch_len();

/// Working memory of an f32 forward pass: room for `N` hidden activations.
///
/// A model needs [`F32Model::scratch_len`] values (for the study's network, the default
/// `N`, 768: both hidden layers at once); see [`Architecture::f32_scratch_len`].
#[derive(Clone)]
pub struct Scratch<const N: usize = F32_SCRATCH_LEN> {
    h: [f32; N],
}

/// Bytes of RAM one default [`Scratch`] takes.
pub const SCRATCH_BYTES: usize = core::mem::size_of::<Scratch>();

impl Scratch {
    /// Zeroed buffers for the study's network.
    pub const fn new() -> Scratch {
        Scratch::zeroed()
    }
}

impl<const N: usize> Scratch<N> {
    /// Zeroed buffers of `N` values.
    pub const fn zeroed() -> Scratch<N> {
        Scratch { h: [0.0; N] }
    }

    /// Zeroed buffers, or an error if `model` needs more than `N` values.
    pub fn for_model(model: &F32Model<'_>) -> Result<Scratch<N>, Error> {
        fits(model.scratch_len(), N)?;
        Ok(Scratch::zeroed())
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// The parameters of one dense layer, for [`encode`].
#[derive(Debug, Clone, Copy)]
pub struct F32Layer<'p> {
    /// Weights, (inputs, outputs) row-major.
    pub weights: &'p [f32],
    /// One bias per output.
    pub biases: &'p [f32],
}

/// Encodes an f32 model file with `extras` (class names; an f32 model has no input
/// quantizer) into `out` (at least [`Header::file_len`] bytes); returns the bytes used.
/// Every value must be finite, and every slice the length `architecture` gives.
pub fn encode(
    architecture: &Architecture,
    activation: Activation,
    layers: &[F32Layer<'_>],
    extras: &Extras<'_>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let header = Header::new(*architecture, activation, Quant::F32).with_extras(extras);
    let layout = F32Layout::new(architecture);
    if layers.len() != architecture.layers() {
        return Err(Error::LayerCount { expected: architecture.layers(), found: layers.len() });
    }
    for (l, layer) in layers.iter().enumerate() {
        let (i, o) = architecture.layer(l);
        for (what, values, expected) in [(Param::Weights, layer.weights, i * o), (Param::Biases, layer.biases, o)] {
            if values.len() != expected {
                return Err(Error::ParameterCount { layer: l, what, expected, found: values.len() });
            }
            if !values.iter().all(|v| v.is_finite()) {
                return Err(Error::NonFinite { layer: l });
            }
        }
    }
    let len = header.file_len();
    let found = out.len();
    let file = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len, found })?;
    let payload = &mut file[HEADER_BYTES..HEADER_BYTES + layout.len()];
    for (l, layer) in layers.iter().enumerate() {
        for (span, values) in [(layout.weights(l), layer.weights), (layout.biases(l), layer.biases)] {
            for (b, v) in payload[span.range()].chunks_exact_mut(4).zip(values) {
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    format::seal(&header, extras, file)
}

/// An f32 model whose parameters stay in the borrowed bytes (flash on a microcontroller).
#[derive(Debug, Clone, Copy)]
pub struct F32Model<'a> {
    architecture: Architecture,
    activation: Activation,
    layout: F32Layout,
    payload: &'a [u8],
    extras: Extras<'a>,
}

impl<'a> F32Model<'a> {
    /// Validates a model file (see [`format::read`]) holding f32 parameters, all finite.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<F32Model<'a>, Error> {
        F32Model::from_file(format::read(bytes)?)
    }

    /// An f32 model from a file [`format::read`] validated.
    pub fn from_file(file: format::ModelFile<'a>) -> Result<F32Model<'a>, Error> {
        let header = file.header();
        if header.quant() != Quant::F32 {
            return Err(Error::WrongQuantization { expected: Quant::F32, found: header.quant() });
        }
        let architecture = header.architecture();
        let layout = F32Layout::new(&architecture);
        let payload = file.payload();
        if payload.len() != layout.len() {
            return Err(Error::PayloadSize { expected: layout.len(), found: payload.len() });
        }
        let extras = *file.extras();
        let model = F32Model { architecture, activation: header.activation(), layout, payload, extras };
        for l in 0..architecture.layers() {
            if !model.weights(l).chain(model.biases(l)).all(f32::is_finite) {
                return Err(Error::NonFinite { layer: l });
            }
        }
        Ok(model)
    }

    /// Layer widths.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The file's class names (none in files without them).
    pub fn extras(&self) -> &Extras<'a> {
        &self.extras
    }

    /// Hidden-layer activation of this model.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The validated payload (see [`F32Layout`]).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Where each layer's parameters lie in the payload.
    pub fn layout(&self) -> &F32Layout {
        &self.layout
    }

    /// Dense layer `l`'s weights, (inputs, outputs) row-major (empty past the last layer).
    pub fn weights(&self, l: usize) -> impl Iterator<Item = f32> + 'a {
        self.values(l, true)
    }

    /// Dense layer `l`'s biases (empty past the last layer).
    pub fn biases(&self, l: usize) -> impl Iterator<Item = f32> + 'a {
        self.values(l, false)
    }

    fn values(&self, l: usize, weights: bool) -> impl Iterator<Item = f32> + 'a {
        let span = match (l < self.layout.layers(), weights) {
            (false, _) => 0..0,
            (true, true) => self.layout.weights(l).range(),
            (true, false) => self.layout.biases(l).range(),
        };
        self.payload[span].chunks_exact(4).map(f32_at)
    }

    /// Values of [`Scratch`] a forward pass needs.
    pub fn scratch_len(&self) -> usize {
        self.architecture.f32_scratch_len()
    }

    /// Classifies one input (pixels scaled to 0..1, row-major), writing the logits
    /// (pre-softmax scores) to `logits[..classes]`; returns the class with the largest.
    ///
    /// Errors, and writes nothing, when `image` is not the model's input width, `logits`
    /// is shorter than its classes, or `scratch` is too small.
    pub fn predict<const N: usize>(
        &self,
        image: &[f32],
        scratch: &mut Scratch<N>,
        logits: &mut [f32],
    ) -> Result<usize, Error> {
        self.predict_in(image, &mut scratch.h, logits)
    }

    /// [`F32Model::predict`] with scratch memory the caller owns as a slice (from C, or
    /// sized at run time) of at least [`F32Model::scratch_len`] values.
    pub fn predict_in(&self, image: &[f32], scratch: &mut [f32], logits: &mut [f32]) -> Result<usize, Error> {
        let arch = &self.architecture;
        let logits = check_buffers(arch, image.len(), logits, self.scratch_len(), scratch.len())?;
        let buf = &mut scratch[..arch.f32_scratch_len()];
        for l in 0..arch.layers() {
            let (k, n) = arch.layer(l);
            if l + 1 == arch.layers() {
                let x = if l == 0 { image } else { layer_io(buf, l, k, 0).0 };
                self.dense(l, x, logits);
            } else if l == 0 {
                let out = &mut buf[..n];
                self.dense(l, image, out);
                self.activate(out);
            } else {
                let (x, out) = layer_io(buf, l, k, n);
                self.dense(l, x, out);
                self.activate(out);
            }
        }
        Ok(argmax(logits))
    }

    /// `out = x · W + b` for layer `l`, W of shape (x.len(), out.len()) row-major.
    fn dense(&self, l: usize, x: &[f32], out: &mut [f32]) {
        let n = out.len();
        for (o, b) in out.iter_mut().zip(self.biases(l)) {
            *o = b;
        }
        let weights = &self.payload[self.layout.weights(l).range()];
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

/// Index of the largest score; the first one on ties, 0 for NaN-only or empty input.
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}
