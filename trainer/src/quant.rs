//! int8 quantization of a trained [`Mlp`], its export in `infer_core`'s int8 format, and a
//! plain integer reference of the int8 forward pass.
//!
//! The scheme is defined in [`infer_core::int8net`]. Here the floating-point side: scales are
//! calibrated on training images, then every parameter becomes an integer. The reference
//! below ([`QuantModel::predict`]) is written from that definition alone, in the natural
//! `(inputs, outputs)` weight layout, so it checks `infer_core`'s kernels independently.
//!
//! [`export_int8`] also renumbers the hidden units ([`QuantModel::permute_hidden`]), which
//! changes no score: units that are zero on the same training images go into one group of
//! four, and the kernels skip a group whose four inputs are zero. For a trained ReLU model
//! the second layer then reads about a quarter fewer weights.

use infer_core::Activation;
use infer_core::arch::{Architecture, GROUP, SIGMOID_TABLE_BYTES};
use infer_core::int8net::{self, Int8Layer, MAX_MULTIPLIER_SHIFT, MAX_ROUNDING_SHIFT};

use rayon::prelude::*;

use crate::data::{Dataset, Split};
use crate::kernels::{self, Epilogue, MatRef};
use crate::model::{Dense, Mlp, stack_widths};
use crate::qat::{self, WeightBits};

/// A sigmoid pre-activation beyond this is 0 or 255 once the output is rounded to 8 bits
/// (255 / (1 + e^6.25) < 0.5), so the int8 pre-activation grid need not reach further.
const SIGMOID_SATURATION: f64 = 6.5;

/// One quantized dense layer.
#[derive(Debug, Clone, PartialEq)]
pub struct QLayer {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// int8 weights, (inputs, outputs) row-major like [`Dense::w`]: multiples of 16 for an
    /// int4 layer (its int4 values times 16).
    pub w: Vec<i8>,
    /// Whether the file stores the weights as int4.
    pub int4: bool,
    /// Bias per output, in units of the layer's 16-bit pre-activation grid.
    pub bias: Vec<i16>,
    /// Requantization multiplier per output, 0..=32767.
    pub mult: Vec<i16>,
    /// Rounding shift from the accumulator to the 16-bit grid.
    pub r: u8,
    /// Shift after the multiplier.
    pub s: u8,
    /// Zero point of the int8 pre-activation that indexes the sigmoid table (0 otherwise).
    pub zero_point: i8,
    /// Real value of one step of the layer's output (activation byte, sigmoid index or score).
    pub out_scale: f64,
}

/// A model quantized to int8 with [`quantize`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuantModel {
    /// Hidden-layer activation.
    pub activation: Activation,
    /// The dense layers, input side first.
    pub layers: Vec<QLayer>,
    /// `sigmoid(z)` as a byte for each int8 pre-activation (sigmoid models only; the same
    /// for every hidden layer, whose pre-activation grids are identical).
    pub table: Option<[u8; SIGMOID_TABLE_BYTES]>,
    /// For real-valued features, each input's quantizer: a gain and an offset
    /// ([`infer_core::format::quantize_input`]); `None` for bytes read as value / 255.
    pub input: Option<Vec<(f32, f32)>>,
    /// Class names, in label order, written into the model file (none when empty).
    pub class_names: Vec<String>,
}

/// Ranges seen on the calibration images.
struct Ranges {
    /// Largest activation of each hidden layer.
    max_act: Vec<f64>,
    /// Smallest and largest hidden pre-activation, over every hidden layer.
    z: (f64, f64),
    /// Largest |logit|.
    max_logit: f64,
    /// A sample of the hidden pre-activations (every layer's), for sigmoid models.
    z_sample: Vec<f32>,
}

fn calibrate(model: &Mlp, images: &[f32]) -> Ranges {
    let inputs = model.layers.first().map_or(1, |l| l.inputs);
    let rows = images.len() / inputs;
    let last = model.layers.len().saturating_sub(1);
    // The first layer reads the images in place; later ones the previous layer's output.
    let mut x = std::borrow::Cow::Borrowed(images);
    let mut r = Ranges {
        max_act: vec![0.0; last],
        z: (f64::INFINITY, f64::NEG_INFINITY),
        max_logit: 0.0,
        z_sample: Vec::new(),
    };
    for (l, layer) in model.layers.iter().enumerate() {
        let mut z = vec![0.0f32; rows * layer.outputs];
        kernels::gemm(
            rows,
            layer.outputs,
            layer.inputs,
            MatRef::row_major(&x, layer.inputs),
            MatRef::row_major(&layer.w, layer.outputs),
            &mut z,
            Epilogue::Bias(&layer.b),
        );
        if l == last {
            r.max_logit = z.iter().fold(0.0, |m, &v| m.max(f64::from(v).abs()));
            break;
        }
        if model.activation == Activation::Sigmoid {
            r.z_sample.extend(z.iter().step_by(7));
        }
        for v in z.iter_mut() {
            r.z = (r.z.0.min(f64::from(*v)), r.z.1.max(f64::from(*v)));
            *v = match model.activation {
                Activation::Relu => v.max(0.0),
                Activation::Sigmoid => 1.0 / (1.0 + (-*v).exp()),
            };
        }
        r.max_act[l] = z.iter().fold(0.0, |m, &v| m.max(f64::from(v)));
        x = std::borrow::Cow::Owned(z);
    }
    r
}

/// Per-channel symmetric int8 weights and their scales; for `int4`, on the int4 grid of
/// [`qat::int4_steps`] as the int8 weights `16q` (and scales a sixteenth of the int4 steps).
fn quantize_weights(layer: &Dense, int4: bool) -> (Vec<i8>, Vec<f64>) {
    let n = layer.outputs;
    if int4 {
        let step = qat::int4_steps(&layer.w, n);
        let w = layer.w.iter().enumerate().map(|(i, &w)| 16 * qat::int4_of(w, step[i % n]));
        return (w.collect(), step.iter().map(|s| s / 16.0).collect());
    }
    let mut scale = vec![0.0f64; n];
    for row in layer.w.chunks_exact(n) {
        for (s, &w) in scale.iter_mut().zip(row) {
            *s = s.max(f64::from(w).abs());
        }
    }
    for s in scale.iter_mut() {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let w = layer.w.iter().enumerate().map(|(i, &w)| (f64::from(w) / scale[i % n]).round().clamp(-127.0, 127.0) as i8);
    (w.collect(), scale)
}

/// Quantizes one layer whose input has step `in_scale`, so that pre-activations up to
/// `z_bound` in magnitude are represented and one output step is worth `out_scale`.
fn quantize_layer(layer: &Dense, in_scale: f64, z_bound: f64, out_scale: f64, zero_point: i8, int4: bool) -> QLayer {
    let (w, w_scale) = quantize_weights(layer, int4);
    // Smallest rounding shift whose 16-bit grid reaches z_bound and every bias in every channel.
    let fits = |r: u8| {
        w_scale.iter().zip(&layer.b).all(|(&sw, &b)| {
            let unit = f64::from(1u32 << r) * in_scale * sw;
            32767.0 * unit >= z_bound.max(f64::from(b).abs())
        })
    };
    let r = (0..=MAX_ROUNDING_SHIFT).find(|&r| fits(r)).unwrap_or(MAX_ROUNDING_SHIFT);
    let unit: Vec<f64> = w_scale.iter().map(|&sw| f64::from(1u32 << r) * in_scale * sw).collect();
    let bias = unit.iter().zip(&layer.b).map(|(&u, &b)| (f64::from(b) / u).round().clamp(-32768.0, 32767.0) as i16);
    // Largest multiplier shift that keeps every multiplier within 15 bits.
    let max_ratio = unit.iter().fold(0.0f64, |m, &u| m.max(u / out_scale));
    let s =
        (0..=MAX_MULTIPLIER_SHIFT).rev().find(|&s| (max_ratio * f64::from(1u32 << s)).round() <= 32767.0).unwrap_or(0);
    let mult = unit.iter().map(|&u| (u / out_scale * f64::from(1u32 << s)).round().min(32767.0) as i16);
    QLayer {
        inputs: layer.inputs,
        outputs: layer.outputs,
        w,
        int4,
        bias: bias.collect(),
        mult: mult.collect(),
        r,
        s,
        zero_point,
        out_scale,
    }
}

/// How a model's first layer reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Bytes read as value / 255 (pixels): the byte is the quantized input.
    Bytes,
    /// Real-valued features, which a quantizer per input makes bytes of.
    Real,
}

/// Each input's quantizer for real-valued `calibration` values ((rows, inputs) row-major):
/// the span of the values seen, in 255 steps, with an integer zero point. An input that
/// never varies, or that `first` (the first layer) does not read, gets gain 0 and offset 0:
/// its byte is always 0.
fn input_quantizers(first: &Dense, calibration: &[f32]) -> Vec<(f32, f32)> {
    let (k, n) = (first.inputs, first.outputs);
    (0..k)
        .map(|i| {
            let column = calibration.iter().skip(i).step_by(k).map(|&v| f64::from(v));
            let (lo, hi) = column.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
            let read = first.w[i * n..(i + 1) * n].iter().any(|&w| w != 0.0);
            // (No calibration rows: lo = +inf, hi = -inf.)
            if hi <= lo || !read {
                return (0.0, 0.0);
            }
            // Zero inside the span, so that a zero input is a whole step.
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let step = (hi - lo) / 255.0;
            let zero = (-lo / step).round().clamp(0.0, 255.0);
            ((1.0 / step) as f32, zero as f32)
        })
        .collect()
}

/// The first layer on quantized inputs: input `i`'s byte `q` stands for `(q - zero)·step`
/// (`step = 1 / gain`, `zero` the integer offset), so its weights become `step·w` and the
/// zero points move into the biases: `b - Σ_i zero·step·w[i][j]`.
fn on_bytes(first: &Dense, quantizers: &[(f32, f32)]) -> Dense {
    let n = first.outputs;
    let mut layer = first.clone();
    let mut shift = vec![0.0f64; n];
    for (i, row) in layer.w.chunks_exact_mut(n).enumerate() {
        let (gain, zero) = quantizers[i];
        let step = if gain != 0.0 { 1.0 / f64::from(gain) } else { 0.0 };
        for (j, w) in row.iter_mut().enumerate() {
            let scaled = f64::from(*w) * step;
            shift[j] += f64::from(zero) * scaled;
            *w = scaled as f32;
        }
    }
    for (b, s) in layer.b.iter_mut().zip(shift) {
        *b = (f64::from(*b) - s) as f32;
    }
    layer
}

/// Quantizes `model` (its norms folded in, if any), calibrating activation ranges on
/// `calibration` ((rows, inputs) row-major: images scaled to 0..1, or raw features; a few
/// thousand training examples are plenty).
pub fn quantize(model: &Mlp, calibration: &[f32], kind: InputKind) -> QuantModel {
    quantize_as(model, calibration, kind, WeightBits::Int8)
}

/// [`quantize`] with the hidden layers' weights as `bits` says (the output layer's int8).
pub fn quantize_as(model: &Mlp, calibration: &[f32], kind: InputKind, bits: WeightBits) -> QuantModel {
    let model = &*model.plain();
    let int4 = bits == WeightBits::Int4;
    let ranges = calibrate(model, calibration);
    let Some((last, hidden)) = model.layers.split_last() else {
        let activation = model.activation;
        return QuantModel { activation, layers: Vec::new(), table: None, input: None, class_names: Vec::new() };
    };
    // Real features go through their quantizers into bytes of step 1 for the first layer,
    // whose weights and biases take the quantizers in.
    let input = (kind == InputKind::Real).then(|| input_quantizers(&model.layers[0], calibration));
    let first = input.as_ref().map(|q| on_bytes(&model.layers[0], q));
    let layer = |l: usize| if l == 0 { first.as_ref().unwrap_or(&model.layers[0]) } else { &model.layers[l] };
    let input_scale = if input.is_some() { 1.0 } else { 1.0 / 255.0 };
    let (mut layers, out_scale, table) = match model.activation {
        Activation::Relu => {
            let mut in_scale = input_scale;
            let mut layers = Vec::with_capacity(model.layers.len());
            for (l, &max) in ranges.max_act.iter().enumerate().take(hidden.len()) {
                let out_scale = if max > 0.0 { max / 255.0 } else { 1.0 };
                layers.push(quantize_layer(layer(l), in_scale, 255.0 * out_scale, out_scale, 0, int4));
                in_scale = out_scale;
            }
            (layers, in_scale, None)
        }
        Activation::Sigmoid => {
            // One int8 grid for every hidden layer's pre-activations, so one table serves all.
            let lo = ranges.z.0.max(-SIGMOID_SATURATION);
            let hi = ranges.z.1.min(SIGMOID_SATURATION).max(lo + 1e-3);
            let (lo, hi) = sigmoid_grid(lo, hi, &ranges.z_sample);
            let (z_scale, zero_point, table) = sigmoid_table(lo, hi);
            let z_bound = lo.abs().max(hi.abs()) + z_scale;
            let sig_scale = 1.0 / 255.0;
            let layers = (0..hidden.len())
                .map(|l| {
                    let in_scale = if l == 0 { input_scale } else { sig_scale };
                    quantize_layer(layer(l), in_scale, z_bound, z_scale, zero_point, int4)
                })
                .collect();
            (layers, sig_scale, Some(table))
        }
    };
    // Scores: the 16-bit grid spans twice the largest calibration logit.
    let z_bound = 2.0 * ranges.max_logit.max(1e-3);
    layers.push(quantize_layer(last, out_scale, z_bound, z_bound / 32767.0, 0, false));
    QuantModel { activation: model.activation, layers, table, input, class_names: Vec::new() }
}

/// The step, zero point and table of an int8 pre-activation grid spanning `lo..=hi`.
fn sigmoid_table(lo: f64, hi: f64) -> (f64, i8, [u8; SIGMOID_TABLE_BYTES]) {
    let z_scale = (hi - lo) / 255.0;
    let zero_point = (-128.0 - lo / z_scale).round().clamp(-128.0, 127.0) as i8;
    let table = core::array::from_fn(|i| {
        let z = z_scale * (i as f64 - 128.0 - f64::from(zero_point));
        (255.0 / (1.0 + (-z).exp())).round() as u8
    });
    (z_scale, zero_point, table)
}

/// The span of the sigmoid grid: the calibration range `lo..=hi`, or a narrower one if
/// that gives activation bytes closer to the f32 sigmoid over the calibration
/// pre-activations `z` (mean squared error, clipping and rounding together).
///
/// Pre-activations far out are rare and the sigmoid is flat there, so clipping them costs
/// less than the coarser steps a wide grid takes near 0, where the sigmoid is steepest.
/// With the study's sigmoid model (grid -6.5..6.5 from the extremes) this took the int8
/// test accuracy from -0.23 to within 0.1 points of f32. Training images only: the test
/// set plays no part.
fn sigmoid_grid(lo: f64, hi: f64, z: &[f32]) -> (f64, f64) {
    if z.is_empty() {
        return (lo, hi);
    }
    let error = |f: f64| {
        let (lo, hi) = (lo * f, hi * f);
        let (z_scale, zero_point, table) = sigmoid_table(lo, hi);
        let zp = f64::from(zero_point);
        z.par_chunks(4096)
            .map(|c| {
                c.iter()
                    .map(|&v| {
                        let v = f64::from(v);
                        let q = ((v / z_scale).round() + zp).clamp(-128.0, 127.0);
                        let got = f64::from(table[(q + 128.0) as usize]) / 255.0;
                        let want = 1.0 / (1.0 + (-v).exp());
                        (got - want) * (got - want)
                    })
                    .sum::<f64>()
            })
            .sum::<f64>()
    };
    let best = (0..=20).map(|i| 1.0 - 0.025 * f64::from(i)).map(|f| (error(f), f)).min_by(|a, b| a.0.total_cmp(&b.0));
    let f = best.map_or(1.0, |(_, f)| f);
    (lo * f, hi * f)
}

/// Requantization as `infer_core::int8net` defines it, in 64-bit arithmetic.
fn requantize(acc: i64, layer: &QLayer, j: usize) -> i64 {
    let round = |shift: u8| if shift == 0 { 0 } else { 1i64 << (shift - 1) };
    let t = (((acc + round(layer.r)) >> layer.r) + i64::from(layer.bias[j])).clamp(-32768, 32767);
    (t * i64::from(layer.mult[j]) + round(layer.s)) >> layer.s
}

impl QuantModel {
    /// Classifies raw pixel bytes with plain integer arithmetic; returns the class (first
    /// largest score) and the scores.
    pub fn predict(&self, pixels: &[u8]) -> (usize, Vec<i32>) {
        let (_, scores) = self.forward(pixels);
        (infer_core::int8net::argmax_i32(&scores), scores)
    }

    /// The integer forward pass: every hidden layer's activation bytes, and the scores.
    pub fn forward(&self, pixels: &[u8]) -> (Vec<Vec<u8>>, Vec<i32>) {
        let mut hidden = Vec::with_capacity(self.layers.len().saturating_sub(1));
        let mut x = pixels.to_vec();
        for (l, layer) in self.layers.iter().enumerate() {
            // |acc| <= 1024 * 255 * 127 < 2^25: exact in i32.
            let mut acc = vec![0i32; layer.outputs];
            for (&xi, row) in x.iter().zip(layer.w.chunks_exact(layer.outputs)) {
                for (a, &w) in acc.iter_mut().zip(row) {
                    *a += i32::from(xi) * i32::from(w);
                }
            }
            let v = acc.iter().enumerate().map(|(j, &a)| requantize(i64::from(a), layer, j));
            if l + 1 == self.layers.len() {
                return (hidden, v.map(|v| v as i32).collect());
            }
            x = match &self.table {
                None => v.map(|v| v.clamp(0, 255) as u8).collect(),
                Some(t) => {
                    let zp = i64::from(layer.zero_point);
                    v.map(|v| t[((v + zp).clamp(-128, 127) + 128) as usize]).collect()
                }
            };
            hidden.push(x.clone());
        }
        (hidden, Vec::new())
    }

    /// The bytes real-valued `features` become through the input quantizers (`None` for a
    /// model that reads bytes).
    pub fn quantize_features(&self, features: &[f32]) -> Option<Vec<u8>> {
        let input = self.input.as_ref()?;
        Some(features.iter().zip(input).map(|(&x, &(g, o))| infer_core::format::quantize_input(x, g, o)).collect())
    }

    /// Predicted class of every example of `split` ([`QuantModel::predict`], in parallel):
    /// its bytes, or its features through the input quantizers.
    pub fn predict_all(&self, split: &Split) -> Vec<u8> {
        let bytes = |row: &[f32]| self.quantize_features(row).unwrap_or_default();
        match self.input {
            None => split.pixels.par_chunks_exact(split.width).map(|p| self.predict(p).0 as u8).collect(),
            Some(_) => split.values.par_chunks_exact(split.width).map(|r| self.predict(&bytes(r)).0 as u8).collect(),
        }
    }

    /// The bytes the first layer reads of `split`'s first `rows` examples, one after another.
    pub fn input_bytes(&self, split: &Split, rows: usize) -> Vec<u8> {
        let rows = rows.min(split.len());
        match self.input {
            None => split.pixels[..rows * split.width].to_vec(),
            Some(_) => split.values[..rows * split.width]
                .chunks_exact(split.width)
                .flat_map(|r| self.quantize_features(r).unwrap_or_default())
                .collect(),
        }
    }

    /// Scores times this approximate the f32 logits.
    pub fn score_scale(&self) -> f32 {
        self.layers.last().map_or(1.0, |l| l.out_scale as f32)
    }

    /// The layer widths, input first.
    pub fn architecture(&self) -> Result<Architecture, infer_core::Error> {
        Architecture::new(&stack_widths(self.layers.iter().map(|l| (l.inputs, l.outputs))))
    }

    /// The int8 model file, written by `infer_core`'s codec: each layer stored sparse (only
    /// its blocks of four weights that are not all zero) where that makes the file smaller,
    /// as for a pruned layer; dense otherwise.
    pub fn encode(&self) -> Result<Vec<u8>, infer_core::Error> {
        let arch = self.architecture()?;
        let mut layers: Vec<Int8Layer<'_>> = self
            .layers
            .iter()
            .map(|l| Int8Layer {
                weights: &l.w,
                biases: &l.bias,
                multipliers: &l.mult,
                rounding_shift: l.r,
                multiplier_shift: l.s,
                zero_point: l.zero_point,
                sparse: false,
                int4: l.int4,
            })
            .collect();
        let names: String = self.class_names.iter().map(|n| format!("{n}\n")).collect();
        let mut input = vec![0u8; 8 * self.input.as_ref().map_or(0, Vec::len)];
        if let Some(pairs) = &self.input {
            infer_core::format::Extras::input_bytes(pairs, &mut input)?;
        }
        let extras = infer_core::format::Extras::new(names.as_bytes(), &input);
        // Each layer sparse where that makes the file smaller (a layer's blocks are at most
        // 2^20).
        let kept: Vec<u32> = (0..arch.layers())
            .map(|l| {
                let (i, o) = arch.layer(l);
                layers[l].kept_blocks(i, o) as u32
            })
            .collect();
        let header = infer_core::format::Header::new(arch, self.activation, infer_core::format::Quant::Int8)
            .with_extras(&extras);
        let stored = header.smallest_storage(&kept);
        for (l, layer) in layers.iter_mut().enumerate() {
            layer.sparse = stored.kept(l).is_some();
        }
        let mut out = vec![0u8; int8net::encoded_len(&arch, self.activation, &layers, &extras)?];
        let table = self.table.as_ref();
        let len = int8net::encode(&arch, self.activation, &layers, self.score_scale(), table, &extras, &mut out)?;
        out.truncate(len);
        Ok(out)
    }

    /// The same model with its hidden units renumbered: unit `order[l][k]` of hidden layer
    /// `l` becomes unit `k`. Every integer of every unit moves with it, so every image gets
    /// the same scores, bit for bit.
    ///
    /// Panics unless there is one order per hidden layer and each is a permutation of its
    /// layer's units.
    pub fn permute_hidden(&self, order: &[Vec<usize>]) -> QuantModel {
        let hidden = self.layers.len().saturating_sub(1);
        assert_eq!(order.len(), hidden, "one order per hidden layer");
        let identity = |n: usize| (0..n).collect::<Vec<_>>();
        for (l, order) in order.iter().enumerate() {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert!(sorted == identity(self.layers[l].outputs), "hidden layer {l}: not a permutation of its units");
        }
        let mut out = self.clone();
        for (l, layer) in out.layers.iter_mut().enumerate() {
            let old = &self.layers[l];
            let rows = if l == 0 { identity(old.inputs) } else { order[l - 1].clone() };
            let cols = if l == hidden { identity(old.outputs) } else { order[l].clone() };
            let n = old.outputs;
            for (i, &ri) in rows.iter().enumerate() {
                for (j, &cj) in cols.iter().enumerate() {
                    layer.w[i * n + j] = old.w[ri * n + cj];
                }
            }
            layer.bias = cols.iter().map(|&j| old.bias[j]).collect();
            layer.mult = cols.iter().map(|&j| old.mult[j]).collect();
        }
        out
    }

    /// The order of the hidden units that [`group_hidden_units`] picks from this model's
    /// activations on `pixels` (raw bytes, one image after another); hidden layer `l` keeps
    /// its order where `fixed[l]` (the next layer was pruned in blocks of four consecutive
    /// units, which renumbering would break up).
    pub fn sparse_order(&self, pixels: &[u8], fixed: &[bool]) -> Vec<Vec<usize>> {
        let inputs = self.layers.first().map_or(1, |l| l.inputs);
        let hidden: Vec<Vec<Vec<u8>>> = pixels.par_chunks_exact(inputs).map(|p| self.forward(p).0).collect();
        let layers = self.layers.len().saturating_sub(1);
        let acts: Vec<Vec<u8>> =
            (0..layers).map(|l| hidden.iter().flat_map(|h| h[l].iter().copied()).collect()).collect();
        let units: Vec<usize> = self.layers[..layers].iter().map(|l| l.outputs).collect();
        let mut order = group_hidden_units(&acts, &units);
        for (l, order) in order.iter_mut().enumerate() {
            if fixed.get(l).copied().unwrap_or(false) {
                *order = (0..units[l]).collect();
            }
        }
        order
    }
}

/// Orders each hidden layer's units so that units that are zero on the same images share a
/// group of four: the int8 kernels skip a group of four inputs that are all zero, so the
/// more all-zero groups the next layer sees, the less of its weights it reads.
///
/// `hidden[l]` holds layer `l`'s activation bytes on calibration images, image after image,
/// `units[l]` per image. Greedy: a group starts from the unit that is active (non-zero) on
/// the fewest images, and grows, three times, by the unit that adds the fewest images to
/// those on which the group is active. Ties go to the lower unit number, so the order is
/// deterministic.
pub fn group_hidden_units(hidden: &[Vec<u8>], units: &[usize]) -> Vec<Vec<usize>> {
    (0..hidden.len())
        .map(|l| {
            let n = units[l];
            let images = hidden[l].len() / n;
            let words = images.div_ceil(64);
            // active[u]: bit k set when unit u is non-zero on image k.
            let mut active = vec![0u64; n * words];
            for (k, h) in hidden[l].chunks_exact(n).enumerate() {
                for (u, &v) in h.iter().enumerate() {
                    active[u * words + k / 64] |= u64::from(v != 0) << (k % 64);
                }
            }
            let bits = |u: usize| &active[u * words..(u + 1) * words];
            let ones = |w: &[u64]| w.iter().map(|w| w.count_ones()).sum::<u32>();
            let mut left: Vec<usize> = (0..n).collect();
            let mut order = Vec::with_capacity(n);
            while !left.is_empty() {
                let seed = *left.iter().min_by_key(|&&u| (ones(bits(u)), u)).expect("units left");
                left.retain(|&u| u != seed);
                order.push(seed);
                let mut union = bits(seed).to_vec();
                for _ in 1..GROUP {
                    let Some(&best) = left.iter().min_by_key(|&&u| {
                        (union.iter().zip(bits(u)).map(|(a, b)| (a | b).count_ones()).sum::<u32>(), u)
                    }) else {
                        break;
                    };
                    left.retain(|&u| u != best);
                    order.push(best);
                    union.iter_mut().zip(bits(best)).for_each(|(a, b)| *a |= b);
                }
            }
            order
        })
        .collect()
}

/// Whether `layer` was pruned ([`crate::prune`]): at least 1% of its blocks of four
/// consecutive inputs of one output are exactly zero, which training alone never makes.
fn pruned(layer: &Dense) -> bool {
    let (i, o) = (layer.inputs, layer.outputs);
    let zero = |g: usize, j: usize| (GROUP * g..i.min(GROUP * g + GROUP)).all(|r| layer.w[r * o + j] == 0.0);
    let blocks = i.div_ceil(GROUP) * o;
    let cut = (0..i.div_ceil(GROUP)).map(|g| (0..o).filter(|&j| zero(g, j)).count()).sum::<usize>();
    cut * 100 >= blocks
}

/// Training images used to calibrate activation ranges (the first ones of the split).
pub const CALIBRATION_IMAGES: usize = 5000;

/// Training images whose hidden activations choose the order of the hidden units
/// ([`QuantModel::sparse_order`]; the first ones of the split).
pub const ORDER_IMAGES: usize = 2000;

/// An int8 export of a trained model and how it scores on the test set.
#[derive(Debug, Clone)]
pub struct Int8Export {
    /// The quantized model.
    pub model: QuantModel,
    /// Its model file.
    pub bytes: Vec<u8>,
    /// The integer reference's class for each test image.
    pub predictions: Vec<u8>,
    /// Test accuracy of those predictions, 0..1.
    pub accuracy: f64,
}

/// Quantizes `model` (calibrated on the first [`CALIBRATION_IMAGES`] of `data`'s training
/// split), encodes it with the data's class names and classifies the test split with the
/// integer reference.
pub fn export_int8(model: &Mlp, data: &Dataset) -> Result<Int8Export, infer_core::Error> {
    export_as(model, data, WeightBits::Int8)
}

/// [`export_int8`] with the hidden layers' weights as `bits` says.
pub fn export_as(model: &Mlp, data: &Dataset, bits: WeightBits) -> Result<Int8Export, infer_core::Error> {
    let (train, test) = (&data.train, &data.test);
    let rows = CALIBRATION_IMAGES.min(train.len());
    let kind = if data.schema.bytes { InputKind::Bytes } else { InputKind::Real };
    let mut q = quantize_as(model, &train.values[..rows * train.width], kind, bits);
    q.class_names = data.schema.class_names.clone();
    let fixed: Vec<bool> = model.layers.iter().skip(1).map(pruned).collect();
    let q = q.permute_hidden(&q.sparse_order(&q.input_bytes(train, ORDER_IMAGES), &fixed));
    let bytes = q.encode()?;
    let predictions = q.predict_all(test);
    let correct = predictions.iter().zip(&test.labels).filter(|(p, y)| p == y).count();
    let accuracy = correct as f64 / test.len().max(1) as f64;
    Ok(Int8Export { model: q, bytes, predictions, accuracy })
}
