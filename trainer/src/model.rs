//! Multilayer perceptrons of any stack of dense layers: the network description, the
//! parameters, and the forward and backward passes over the kernels.

use std::borrow::Cow;

use infer_core::Activation;
use infer_core::arch::Architecture;
use rand::RngExt;
use rand::distr::Uniform;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::hash::{hash32, mix};
use crate::kernels::lanes::LANES;
use crate::kernels::simd::{self, Isa, Job, Vector};
use crate::kernels::{self, Act, Epilogue, MatRef};
use crate::norm::{self, BatchStats, Norm};
use crate::optim::{self, OptState, Step};

/// What to train: the data's inputs in, dense hidden layers of these widths with one
/// activation (after a batch norm when `batch_norm`), dropout after each hidden layer, the
/// data's classes out (softmax). The input and output widths come from the data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Network {
    /// Hidden widths, input side first: 1 to 4 layers of 1 to 1024 units.
    pub hidden: Vec<usize>,
    /// Hidden-layer activation.
    pub activation: Activation,
    /// Fraction of hidden units dropped in training (inverted dropout), 0 for none.
    pub dropout: f32,
    /// A batch norm between each hidden layer's product and its activation, in training;
    /// folded into the dense layers when training ends (see [`crate::norm`]).
    #[serde(default)]
    pub batch_norm: bool,
}

impl Network {
    /// The layer widths for data of `inputs` and `classes`, checked against what the model
    /// format holds.
    pub fn architecture(&self, inputs: usize, classes: usize) -> Result<Architecture, infer_core::Error> {
        let widths: Vec<usize> = std::iter::once(inputs).chain(self.hidden.iter().copied()).chain([classes]).collect();
        Architecture::new(&widths)
    }

    /// Checks the hidden widths against what the model format holds, whatever the data.
    pub fn check_hidden(&self) -> Result<(), infer_core::Error> {
        // The narrowest data there can be: the hidden layers are what is checked.
        self.architecture(1, 1).map(|_| ())
    }

    /// `relu`, `sigmoid` (lowercase).
    pub fn activation_name(&self) -> &'static str {
        match self.activation {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// A folder name for it: `relu-128-64`, `sigmoid-32`, `relu-256-128-bn-dropout0.2`.
    pub fn name(&self) -> String {
        let mut name = self.activation_name().to_string();
        for w in &self.hidden {
            name.push_str(&format!("-{w}"));
        }
        if self.batch_norm {
            name.push_str("-bn");
        }
        if self.dropout > 0.0 {
            name.push_str(&format!("-dropout{}", self.dropout));
        }
        name
    }

    /// The layers as Keras's summary lists them, for `classes` outputs:
    /// `Dense(512, relu) > Dropout(0.5) > Dense(256, relu) > Dropout(0.5) > Dense(10, softmax)`,
    /// `Dense(512) > BatchNorm > Activation(relu) > ...` with batch norm.
    pub fn describe(&self, classes: usize) -> String {
        let act = self.activation_name();
        let mut parts = Vec::new();
        for w in &self.hidden {
            match self.batch_norm {
                true => parts.push(format!("Dense({w}) > BatchNorm > Activation({act})")),
                false => parts.push(format!("Dense({w}, {act})")),
            }
            if self.dropout > 0.0 {
                parts.push(format!("Dropout({})", self.dropout));
            }
        }
        parts.push(format!("Dense({classes}, softmax)"));
        parts.join(" > ")
    }
}

/// The widths of a stack of layers given as (inputs, outputs), input first.
pub fn stack_widths(layers: impl IntoIterator<Item = (usize, usize)>) -> Vec<usize> {
    let mut widths = Vec::new();
    for (i, o) in layers {
        if widths.is_empty() {
            widths.push(i);
        }
        widths.push(o);
    }
    widths
}

/// One fully connected layer: `y = x · w + b`, `w` of shape (inputs, outputs) row-major.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dense {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Weights, (inputs, outputs) row-major.
    pub w: Vec<f32>,
    /// Biases, one per output.
    pub b: Vec<f32>,
}

impl Dense {
    /// Glorot-uniform weights (Keras's default initializer) and zero biases.
    pub fn glorot(inputs: usize, outputs: usize, rng: &mut ChaCha8Rng) -> Dense {
        let limit = (6.0 / (inputs + outputs) as f64).sqrt() as f32;
        let dist = Uniform::new_inclusive(-limit, limit).expect("finite Glorot limit");
        let w = (0..inputs * outputs).map(|_| rng.sample(dist)).collect();
        Dense { inputs, outputs, w, b: vec![0.0; outputs] }
    }
}

/// The network's parameters: dense layers, input side first, the hidden activation, and
/// the batch norms of a network that trains with them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mlp {
    /// Hidden-layer activation.
    pub activation: Activation,
    /// Dense layers, input side first; the last one gives the logits.
    pub layers: Vec<Dense>,
    /// One batch norm per hidden layer, between its product and its activation (a layer
    /// with a norm has no bias of its own: its `b` stays 0); empty for none. A model with
    /// norms is a model in training: [`Mlp::forward`] normalizes with the batch's
    /// statistics, and [`Mlp::folded`] is the plain network to evaluate and export.
    #[serde(default)]
    pub norms: Vec<Norm>,
}

impl Mlp {
    /// A freshly initialized network of shape `arch`, as Keras builds it (layer by layer,
    /// input side first, from one generator).
    pub fn new(arch: &Architecture, activation: Activation, rng: &mut ChaCha8Rng) -> Mlp {
        let layers = (0..arch.layers())
            .map(|l| {
                let (i, o) = arch.layer(l);
                Dense::glorot(i, o, rng)
            })
            .collect();
        Mlp { activation, layers, norms: Vec::new() }
    }

    /// The same model with a fresh batch norm before each hidden activation.
    pub fn with_norms(mut self) -> Mlp {
        let hidden = self.layers.len().saturating_sub(1);
        self.norms = self.layers[..hidden].iter().map(|l| Norm::new(l.outputs)).collect();
        self
    }

    /// The network as it runs at inference: each norm, with its running statistics,
    /// multiplied into the dense layer before it ([`Norm::fold`]). A plain stack of dense
    /// layers, what the model files hold.
    pub fn folded(&self) -> Mlp {
        self.clone().into_folded()
    }

    /// [`Mlp::folded`], in place.
    pub fn into_folded(mut self) -> Mlp {
        for (layer, norm) in self.layers.iter_mut().zip(&self.norms) {
            norm.fold(&mut layer.w, &mut layer.b);
        }
        self.norms.clear();
        self
    }

    /// This model if it has no norms, else [`Mlp::folded`].
    pub fn plain(&self) -> Cow<'_, Mlp> {
        match self.norms.is_empty() {
            true => Cow::Borrowed(self),
            false => Cow::Owned(self.folded()),
        }
    }

    /// The layer widths, input first.
    pub fn widths(&self) -> Vec<usize> {
        stack_widths(self.layers.iter().map(|l| (l.inputs, l.outputs)))
    }

    /// The layer widths as the model format checks them.
    pub fn architecture(&self) -> Result<Architecture, infer_core::Error> {
        Architecture::new(&self.widths())
    }

    /// Output width (0 for a model without layers).
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Every parameter in file order: W1, b1, W2, b2, ...
    pub fn params(&self) -> impl Iterator<Item = f32> + '_ {
        self.layers.iter().flat_map(|l| l.w.iter().chain(&l.b)).copied()
    }

    /// Zeroed optimizer state of `slots` arrays per parameter, its norms' γ and β included.
    pub fn opt_state(&self, slots: usize) -> OptState {
        let layers = self.layers.iter().map(|l| (l.w.len(), l.b.len()));
        OptState::with_norms(slots, layers, self.norms.iter().map(Norm::width))
    }

    /// Whether `other` (read from a file, say) has this model's layers, norms and parameter
    /// counts, each layer's parameters as many as its widths say.
    pub fn same_shape(&self, other: &Mlp) -> bool {
        let widths = |m: &Mlp| m.layers.iter().map(|l| (l.inputs, l.outputs)).collect::<Vec<_>>();
        widths(other) == widths(self)
            && other.layers.iter().all(|l| l.w.len() == l.inputs * l.outputs && l.b.len() == l.outputs)
            && other.norms.len() == self.norms.len()
            && other.norms.iter().zip(&self.norms).all(|(a, b)| a.has_width(b.width()))
    }

    /// True when no parameter (norms included) is NaN or infinite.
    pub fn is_finite(&self) -> bool {
        self.params().all(f32::is_finite) && self.norms.iter().all(Norm::is_finite)
    }
}

/// Buffers of one batch's forward and backward pass, reused across steps and sized for
/// the model they last served.
#[derive(Debug, Default)]
pub struct Workspace {
    rows: usize,
    /// Hidden activations before dropout, per hidden layer.
    h: Vec<Vec<f32>>,
    /// Hidden activations after dropout (what the next layer reads); empty without dropout.
    a: Vec<Vec<f32>>,
    /// Dropout multipliers: 0 or 1 / (1 - rate).
    mask: Vec<Vec<f32>>,
    /// Softmax output.
    pub probs: Vec<f32>,
    /// Gradients of the loss with respect to each layer's pre-activations.
    dz: Vec<Vec<f32>>,
    /// Bias gradients (weight gradients are applied inside their product, never stored).
    grad_b: Vec<Vec<f32>>,
    /// Per norm: its input (the dense layer's products), the batch's statistics, and the
    /// gradients of γ and β.
    z: Vec<Vec<f32>>,
    stats: Vec<BatchStats>,
    grad_gamma: Vec<Vec<f32>>,
    grad_beta: Vec<Vec<f32>>,
}

impl Workspace {
    fn ensure(&mut self, model: &Mlp, rows: usize, dropout: bool) {
        let layers = model.layers.len();
        let hidden = layers.saturating_sub(1);
        self.rows = rows;
        for v in [&mut self.h, &mut self.a, &mut self.mask] {
            v.resize_with(hidden, Vec::new);
        }
        self.dz.resize_with(layers, Vec::new);
        self.grad_b.resize_with(layers, Vec::new);
        for (l, layer) in model.layers[..hidden].iter().enumerate() {
            self.h[l].resize(rows * layer.outputs, 0.0);
            if dropout {
                self.a[l].resize(rows * layer.outputs, 0.0);
                self.mask[l].resize(rows * layer.outputs, 0.0);
            }
        }
        let norms = model.norms.len();
        self.z.resize_with(norms, Vec::new);
        self.stats.resize_with(norms, BatchStats::default);
        self.grad_gamma.resize_with(norms, Vec::new);
        self.grad_beta.resize_with(norms, Vec::new);
        for (l, norm) in model.norms.iter().enumerate() {
            self.z[l].resize(rows * norm.width(), 0.0);
            self.grad_gamma[l].resize(norm.width(), 0.0);
            self.grad_beta[l].resize(norm.width(), 0.0);
        }
        self.probs.resize(rows * model.classes(), 0.0);
    }
}

/// Per-batch dropout randomness: a key per (layer, row), so masks do not depend on how
/// rows are spread over threads.
#[derive(Debug, Clone, Copy)]
pub struct DropoutSeed {
    /// Base seed of the run.
    pub seed: u64,
    /// Global step counter (epoch * steps + step).
    pub step: u64,
}

/// Inverted dropout of one hidden layer: `mask` gets 0 or `1 / (1 - rate)` per unit and
/// `a = h * mask`.
///
/// Each row's key comes from (seed, step, layer, row), so masks do not depend on how rows
/// are spread over threads. Within a row, unit `j` draws the counter-based hash
/// `hash32(hash32(key_lo + j) ^ key_hi)`: no generator state, so the loop runs on vector
/// lanes (ChaCha8 streams took 17% of a dropout epoch).
fn dropout_rows(h: &[f32], a: &mut [f32], mask: &mut [f32], width: usize, rate: f32, seed: DropoutSeed, layer: u64) {
    let keep = 1.0 - rate;
    let scale = 1.0 / keep;
    // keep < 1, so the threshold fits in 32 bits; P(draw < threshold) = keep.
    let threshold = (f64::from(keep) * 4_294_967_296.0) as u32;
    let rows = a.par_chunks_mut(width).zip(mask.par_chunks_mut(width)).zip(h.par_chunks(width));
    rows.enumerate().for_each(|(row, ((a, m), h))| {
        let key = mix(mix(mix(seed.seed) ^ seed.step) ^ (layer << 32 | row as u64));
        let (lo, hi) = (key as u32, (key >> 32) as u32);
        for (j, ((a, m), &h)) in a.iter_mut().zip(m.iter_mut()).zip(h).enumerate() {
            let draw = hash32(hash32(lo.wrapping_add(j as u32)) ^ hi);
            *m = if draw < threshold { scale } else { 0.0 };
            *a = h * *m;
        }
    });
}

/// Elements per parallel task of [`activation_grad`].
const ZIP_CHUNK: usize = 8 * 1024;

/// `LANES` values of `s` from `at`, zeros past its end (all zeros from an empty `s`).
#[inline(always)]
fn lanes_at<I: Isa>(isa: I, s: &[f32], at: usize) -> I::V {
    if at + LANES <= s.len() {
        return isa.load(&s[at..]);
    }
    let mut v = [0.0f32; LANES];
    let rest = s.get(at..).unwrap_or_default();
    v[..rest.len()].copy_from_slice(rest);
    isa.load(&v)
}

/// `out[i] = f(out[i], x[i], y[i])` on `isa`'s vectors, in parallel; `y` may be empty (its
/// lanes are then zeros). The last partial vector is computed on zero-padded copies, which
/// gives each element the bits a whole vector would (the operations are per lane).
fn zip_inplace<I: Isa>(isa: I, out: &mut [f32], x: &[f32], y: &[f32], f: impl Fn(I::V, I::V, I::V) -> I::V + Sync) {
    assert!(out.len() == x.len() && (y.is_empty() || y.len() == out.len()));
    out.par_chunks_mut(ZIP_CHUNK).enumerate().for_each(|(c, o)| {
        isa.run(
            #[inline(always)]
            || {
                let range = c * ZIP_CHUNK..c * ZIP_CHUNK + o.len();
                let (x, y) = (&x[range.clone()], if y.is_empty() { y } else { &y[range] });
                for at in (0..o.len()).step_by(LANES) {
                    let yv = if y.is_empty() { isa.splat(0.0) } else { lanes_at(isa, y, at) };
                    let v = f(lanes_at(isa, o, at), lanes_at(isa, x, at), yv);
                    if at + LANES <= o.len() {
                        isa.store(&mut o[at..], v);
                    } else {
                        let mut all = [0.0f32; LANES];
                        isa.store(&mut all, v);
                        let n = o.len() - at;
                        o[at..].copy_from_slice(&all[..n]);
                    }
                }
            },
        )
    });
}

/// What the output layer is trained towards besides the labels.
#[derive(Debug, Clone, Copy, Default)]
pub struct Soft<'a> {
    /// Label smoothing `s`: the label's target is `(1 - s)·onehot + s / classes`.
    pub smoothing: f32,
    /// A teacher's probabilities for the batch, (rows, classes), their weight `α` and the
    /// temperature `T` (distillation, Hinton et al. 2015): the gradient of the logits is
    /// `(1 - α)·(p - label's target) + α·T·(p_T - t_T)`, `p_T` and `t_T` the student's and
    /// the teacher's probabilities at temperature `T` (`softmax(z / T)`, which is `p^(1/T)`
    /// normalized). At `T = 1` that is `p - ((1 - α)·label's target + α·t)`.
    pub teacher: Option<(&'a [f32], f32, f32)>,
}

/// `dz *= act'(h)` where `h = act(z)` is the stored activation, after `dz *= mask` when
/// the layer had dropout (one pass over the three arrays), on the vector path
/// [`simd::dispatch`] chooses.
fn activation_grad(dz: &mut [f32], h: &[f32], mask: Option<&[f32]>, activation: Activation) {
    simd::dispatch(ActivationGrad { dz, h, mask, activation });
}

/// [`activation_grad`]'s work, on one vector path.
struct ActivationGrad<'a> {
    dz: &'a mut [f32],
    h: &'a [f32],
    mask: Option<&'a [f32]>,
    activation: Activation,
}

impl Job for ActivationGrad<'_> {
    type Out = ();
    fn run<I: Isa>(self, isa: I) {
        let ActivationGrad { dz, h, mask, activation } = self;
        // The vectors are made inside the closures, which run inside `isa.run`.
        let zero = move || isa.splat(0.0);
        let one = move || isa.splat(1.0);
        match (activation, mask) {
            (Activation::Relu, None) => zip_inplace(
                isa,
                dz,
                h,
                &[],
                #[inline(always)]
                |d, h, _| h.simd_gt(zero()).select(d, zero()),
            ),
            (Activation::Relu, Some(mask)) => zip_inplace(
                isa,
                dz,
                h,
                mask,
                #[inline(always)]
                |d, h, m| h.simd_gt(zero()).select(d * m, zero()),
            ),
            (Activation::Sigmoid, None) => zip_inplace(
                isa,
                dz,
                h,
                &[],
                #[inline(always)]
                |d, h, _| d * h * (one() - h),
            ),
            (Activation::Sigmoid, Some(mask)) => zip_inplace(
                isa,
                dz,
                h,
                mask,
                #[inline(always)]
                |d, h, m| d * m * h * (one() - h),
            ),
        }
    }
}

/// `out = x · W + b` for `rows` inputs.
fn dense(layer: &Dense, x: &[f32], rows: usize, out: &mut [f32]) {
    let (k, n) = (layer.inputs, layer.outputs);
    kernels::gemm(rows, n, k, MatRef::row_major(x, k), MatRef::row_major(&layer.w, n), out, Epilogue::Bias(&layer.b));
}

/// Row-wise softmax of logits in place.
fn softmax_rows(z: &mut [f32], width: usize) {
    z.par_chunks_mut(width * 64).for_each(|block| {
        for row in block.chunks_exact_mut(width) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
    });
}

/// Keras clips probabilities to [1e-7, 1 - 1e-7] before taking the log.
pub const EPSILON: f32 = 1e-7;

/// Sum of cross-entropy and count of correct argmax predictions over a batch: `probs` is
/// (labels.len(), classes) row-major.
pub fn batch_loss_correct(probs: &[f32], classes: usize, labels: &[u8]) -> (f64, usize) {
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (row, &y) in probs.chunks_exact(classes).zip(labels) {
        let p = row[y as usize].clamp(EPSILON, 1.0 - EPSILON);
        loss -= f64::from(p.ln());
        if infer_core::f32net::argmax(row) == y as usize {
            correct += 1;
        }
    }
    (loss, correct)
}

impl Mlp {
    /// Forward pass of `rows` inputs (`x`: (rows, inputs) row-major) into `ws.probs`
    /// ((rows, classes) row-major).
    ///
    /// With `dropout = Some((rate, seed))` hidden units are dropped as in training. Norms
    /// normalize with this batch's statistics, as in training: to evaluate a model with
    /// norms, run its [`Mlp::folded`] form (as [`crate::train::evaluate`] does).
    pub fn forward(&self, x: &[f32], rows: usize, ws: &mut Workspace, dropout: Option<(f32, DropoutSeed)>) {
        let dropout = dropout.filter(|&(rate, _)| rate > 0.0);
        ws.ensure(self, rows, dropout.is_some());
        let Some((last, hidden)) = self.layers.split_last() else { return };
        for (l, layer) in hidden.iter().enumerate() {
            let (h_done, h) = ws.h.split_at_mut(l);
            let (a_done, a) = ws.a.split_at_mut(l);
            let (_, mask) = ws.mask.split_at_mut(l);
            let input = match l {
                0 => x,
                _ if dropout.is_some() => &a_done[l - 1][..rows * layer.inputs],
                _ => &h_done[l - 1][..rows * layer.inputs],
            };
            let dropout = dropout.map(|(r, s)| (r, s, l as u64));
            let norm = self.norms.get(l).map(|norm| (norm, &mut ws.z[l][..], &mut ws.stats[l]));
            self.hidden(layer, input, rows, (&mut h[0], &mut a[0], &mut mask[0]), norm, dropout);
        }
        let input = match hidden.len() {
            0 => x,
            n if dropout.is_some() => &ws.a[n - 1][..rows * last.inputs],
            n => &ws.h[n - 1][..rows * last.inputs],
        };
        let out = &mut ws.probs[..rows * last.outputs];
        dense(last, input, rows, out);
        softmax_rows(out, last.outputs);
    }

    /// One hidden layer: `h = act(x·W + b)`, or `h = act(norm(x·W))` with the batch's
    /// statistics (`z` gets `x·W`, `stats` the statistics), then dropout into `a` when
    /// training with it.
    fn hidden(
        &self,
        layer: &Dense,
        x: &[f32],
        rows: usize,
        (h, a, mask): (&mut [f32], &mut [f32], &mut [f32]),
        norm: Option<(&Norm, &mut [f32], &mut BatchStats)>,
        dropout: Option<(f32, DropoutSeed, u64)>,
    ) {
        let n = layer.outputs;
        let h = &mut h[..rows * n];
        let act = match self.activation {
            Activation::Relu => Act::Relu,
            Activation::Sigmoid => Act::Sigmoid,
        };
        let (k, w) = (layer.inputs, MatRef::row_major(&layer.w, n));
        match norm {
            None => kernels::gemm(rows, n, k, MatRef::row_major(x, k), w, h, Epilogue::BiasAct(&layer.b, act)),
            Some((norm, z, stats)) => {
                let z = &mut z[..rows * n];
                kernels::gemm(rows, n, k, MatRef::row_major(x, k), w, z, Epilogue::Store);
                norm::forward(z, h, n, norm, act, stats);
            }
        }
        if let Some((rate, seed, index)) = dropout {
            dropout_rows(h, &mut a[..rows * n], &mut mask[..rows * n], n, rate, seed, index);
        }
    }

    /// Backward pass after [`Mlp::forward`] and a plain SGD step with learning rate `lr`.
    pub fn backward_sgd(&mut self, x: &[f32], labels: &[u8], ws: &mut Workspace, dropout: bool, lr: f32) {
        self.backward(x, labels, ws, dropout, Soft::default(), &mut OptState::default(), Step::Sgd { lr });
    }

    /// Backward pass after [`Mlp::forward`] and an optimizer step, `state` being the
    /// optimizer's ([`Mlp::opt_state`] with `step`'s slots). Norms also move their
    /// running statistics towards the batch's.
    ///
    /// The loss is the batch mean of categorical cross-entropy against the targets `y` of
    /// `soft` (the labels smoothed, mixed with a teacher's probabilities: [`Soft`]), so
    /// `dL/dz = (p - y) / rows` for the last layer; the layers are then walked from the output
    /// back to the input.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &mut self,
        x: &[f32],
        labels: &[u8],
        ws: &mut Workspace,
        dropout: bool,
        soft: Soft<'_>,
        state: &mut OptState,
        step: Step,
    ) {
        let rows = ws.rows;
        let layers = self.layers.len();
        if step.slots() > 0 {
            assert_eq!(state.layers.len(), layers, "optimizer state for every layer");
            assert_eq!(state.norms.len(), self.norms.len(), "optimizer state for every norm");
        }
        for (norm, stats) in self.norms.iter_mut().zip(&ws.stats) {
            norm.track(stats, rows);
        }
        output_gradient(&mut ws.dz[layers - 1], &ws.probs, self.classes(), labels, soft, rows);
        for l in (0..layers).rev() {
            if l > 0 {
                self.backward_into(l, ws, dropout, state, step);
            }
            self.step_layer(l, x, ws, dropout, state, step);
        }
    }

    /// The gradient with respect to hidden layer `l - 1`'s pre-activations from layer `l`'s:
    /// `dz · Wᵀ`, (rows, n) · (n, k), with W before this step's update, then back through
    /// dropout, the activation and the norm (whose γ and β take their step).
    fn backward_into(&mut self, l: usize, ws: &mut Workspace, dropout: bool, state: &mut OptState, step: Step) {
        let (rows, k, n) = (ws.rows, self.layers[l].inputs, self.layers[l].outputs);
        let (lower, upper) = ws.dz.split_at_mut(l);
        let dprev = &mut lower[l - 1];
        dprev.resize(rows * k, 0.0);
        let (dz, w) = (MatRef::row_major(&upper[0], n), MatRef::row_major(&self.layers[l].w, n).t());
        kernels::gemm(rows, k, n, dz, w, dprev, Epilogue::Store);
        let mask = dropout.then(|| &ws.mask[l - 1][..rows * k]);
        activation_grad(dprev, &ws.h[l - 1][..rows * k], mask, self.activation);
        if let Some(norm) = self.norms.get_mut(l - 1) {
            let (dgamma, dbeta) = (&mut ws.grad_gamma[l - 1], &mut ws.grad_beta[l - 1]);
            let stats = &ws.stats[l - 1];
            norm::backward(dprev, &ws.z[l - 1][..rows * k], k, &norm.gamma, stats, dgamma, dbeta);
            let (sg, sb) = optim::layer_slots(state.norms.get_mut(l - 1));
            optim::step_slice(step, &mut norm.gamma, dgamma, sg.0, sg.1);
            optim::step_slice(step, &mut norm.beta, dbeta, sb.0, sb.1);
        }
    }

    /// Layer `l`'s step: its weights with the gradient inputᵀ · dz, (k, rows) · (rows, n),
    /// applied by the product's epilogue, then its biases.
    fn step_layer(&mut self, l: usize, x: &[f32], ws: &mut Workspace, dropout: bool, state: &mut OptState, step: Step) {
        let (rows, k, n) = (ws.rows, self.layers[l].inputs, self.layers[l].outputs);
        let input: &[f32] = match l {
            0 => x,
            _ if dropout => &ws.a[l - 1][..rows * k],
            _ => &ws.h[l - 1][..rows * k],
        };
        let layer = &mut self.layers[l];
        let (sw, sb) = optim::layer_slots(state.layers.get_mut(l));
        let (a, b) = (MatRef::row_major(input, k).t(), MatRef::row_major(&ws.dz[l], n));
        kernels::gemm_update(k, n, rows, a, b, &mut layer.w, [sw.0, sw.1], step);
        if l >= self.norms.len() {
            // (A layer with a norm after it has no bias: the batch mean cancels it.)
            let gb = &mut ws.grad_b[l];
            gb.resize(n, 0.0);
            kernels::column_sums(&ws.dz[l][..rows * n], gb);
            optim::step_slice(step, &mut layer.b, gb, sb.0, sb.1);
        }
    }
}

/// `dz = (p - y) / rows` of the last layer into `top`: `probs` the softmax output, `y` the
/// labels smoothed by `smoothing` (`(1 - s)·onehot + s / classes`).
fn output_gradient(top: &mut Vec<f32>, probs: &[f32], classes: usize, labels: &[u8], soft: Soft<'_>, rows: usize) {
    let inv = 1.0 / rows as f32;
    top.clear();
    top.extend_from_slice(&probs[..rows * classes]);
    let smoothing = soft.smoothing;
    let off = smoothing / classes as f32;
    if let Some((teacher, alpha, temperature)) = soft.teacher {
        assert_eq!(teacher.len(), rows * classes, "the teacher's probabilities for the batch");
        let hard = |c: usize, y: u8| if c == y as usize { 1.0 - smoothing + off } else { off };
        let rows = top.chunks_exact_mut(classes).zip(teacher.chunks_exact(classes)).zip(labels);
        if temperature == 1.0 {
            for ((row, t), &y) in rows {
                for (c, (v, &t)) in row.iter_mut().zip(t).enumerate() {
                    *v = (*v - ((1.0 - alpha) * hard(c, y) + alpha * t)) * inv;
                }
            }
            return;
        }
        let mut soft = vec![0f32; 2 * classes];
        for ((row, t), &y) in rows {
            let (p_t, t_t) = soft.split_at_mut(classes);
            soften(row, temperature, p_t);
            soften(t, temperature, t_t);
            for (c, v) in row.iter_mut().enumerate() {
                *v = ((1.0 - alpha) * (*v - hard(c, y)) + alpha * temperature * (p_t[c] - t_t[c])) * inv;
            }
        }
        return;
    }
    for (row, &y) in top.chunks_exact_mut(classes).zip(labels) {
        if smoothing > 0.0 {
            row.iter_mut().for_each(|v| *v -= off);
            row[y as usize] -= 1.0 - smoothing;
        } else {
            row[y as usize] -= 1.0;
        }
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `out = softmax(z / T)` from `p = softmax(z)`: `p^(1/T)` normalized (in f64: a
/// probability of 1e-30 at T = 4 is about 3e-8).
fn soften(p: &[f32], temperature: f32, out: &mut [f32]) {
    let power = 1.0 / f64::from(temperature);
    let total: f64 = p.iter().map(|&p| f64::from(p).powf(power)).sum();
    for (o, &p) in out.iter_mut().zip(p) {
        *o = (f64::from(p).powf(power) / total) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masks(rate: f32, step: u64, layer: u64) -> (Vec<f32>, Vec<f32>) {
        let (rows, width) = (500, 512);
        let h: Vec<f32> = (0..rows * width).map(|i| (i % 7) as f32 - 3.0).collect();
        let (mut a, mut mask) = (vec![f32::NAN; h.len()], vec![f32::NAN; h.len()]);
        dropout_rows(&h, &mut a, &mut mask, width, rate, DropoutSeed { seed: 42, step }, layer);
        for ((a, m), h) in a.iter().zip(&mask).zip(&h) {
            assert_eq!(*a, h * m);
        }
        (a, mask)
    }

    #[test]
    fn dropout_keeps_the_expected_fraction_of_every_unit_and_scales_it() {
        for rate in [0.5f32, 0.2] {
            let (_, mask) = masks(rate, 3, 0);
            let scale = 1.0 / (1.0 - rate);
            assert!(mask.iter().all(|&m| m == 0.0 || m == scale), "mask values are 0 or {scale}");
            let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / mask.len() as f64;
            assert!((kept - f64::from(1.0 - rate)).abs() < 0.005, "rate {rate}: kept {kept}");
            // Every unit (column) and every row is kept at about the same rate: 500 or 512
            // draws, 6 standard deviations.
            let width = 512;
            let sd = (f64::from(rate * (1.0 - rate)) / 500.0).sqrt();
            for j in 0..width {
                let col = mask.iter().skip(j).step_by(width).filter(|&&m| m != 0.0).count() as f64 / 500.0;
                assert!((col - f64::from(1.0 - rate)).abs() < 6.0 * sd, "rate {rate}: unit {j} kept {col}");
            }
            for (r, row) in mask.chunks(width).enumerate() {
                let kept = row.iter().filter(|&&m| m != 0.0).count() as f64 / width as f64;
                assert!((kept - f64::from(1.0 - rate)).abs() < 6.0 * sd, "rate {rate}: row {r} kept {kept}");
            }
        }
    }

    #[test]
    fn dropout_masks_change_with_step_layer_and_row_but_not_otherwise() {
        let (_, base) = masks(0.5, 3, 0);
        assert_eq!(masks(0.5, 3, 0).1, base, "same key, same mask");
        for (what, other) in [("step", masks(0.5, 4, 0).1), ("layer", masks(0.5, 3, 1).1)] {
            let same = base.iter().zip(&other).filter(|(a, b)| a == b).count() as f64 / base.len() as f64;
            assert!((same - 0.5).abs() < 0.01, "another {what}: {same} of the units agree");
        }
        let same = base[..512].iter().zip(&base[512..1024]).filter(|(a, b)| a == b).count();
        assert!((200..312).contains(&same), "rows 0 and 1 agree on {same} of 512 units");
        // Neighbouring units are independent too.
        let pairs = base.windows(2).filter(|w| w[0] == w[1]).count() as f64 / (base.len() - 1) as f64;
        assert!((pairs - 0.5).abs() < 0.01, "neighbours agree on {pairs} of the units");
    }

    /// `dz·act'(h)` (after `dz·mask`) element by element in plain f32: the same operations
    /// in the same order as the vectors, so the same bits.
    fn activation_grad_scalar(dz: &[f32], h: &[f32], mask: Option<&[f32]>, activation: Activation) -> Vec<f32> {
        let m = |i: usize| mask.map_or(1.0, |m| m[i]);
        let g = |i: usize, d: f32, h: f32| match (activation, mask) {
            (Activation::Relu, None) => {
                if h > 0.0 {
                    d
                } else {
                    0.0
                }
            }
            (Activation::Relu, Some(_)) => {
                if h > 0.0 {
                    d * m(i)
                } else {
                    0.0
                }
            }
            (Activation::Sigmoid, None) => d * h * (1.0 - h),
            (Activation::Sigmoid, Some(_)) => d * m(i) * h * (1.0 - h),
        };
        dz.iter().zip(h).enumerate().map(|(i, (&d, &h))| g(i, d, h)).collect()
    }

    fn grad_on<I: Isa>(isa: I, dz: &[f32], h: &[f32], mask: Option<&[f32]>, activation: Activation) -> Vec<f32> {
        let mut dz = dz.to_vec();
        ActivationGrad { dz: &mut dz, h, mask, activation }.run(isa);
        dz
    }

    #[test]
    fn activation_gradients_have_the_scalar_bits_on_every_path() {
        // Lengths of whole vectors and not, of one parallel task and of several.
        for len in [1, 8, 13, ZIP_CHUNK, 2 * ZIP_CHUNK + 5] {
            let dz: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let h: Vec<f32> = (0..len).map(|i| ((i * 53 % 97) as f32 - 30.0) / 97.0).collect();
            let mask: Vec<f32> = (0..len).map(|i| if i % 3 == 0 { 0.0 } else { 2.0 }).collect();
            for activation in [Activation::Relu, Activation::Sigmoid] {
                for mask in [None, Some(&mask[..])] {
                    let want = activation_grad_scalar(&dz, &h, mask, activation);
                    let mut got = vec![dz.clone()];
                    activation_grad(&mut got[0], &h, mask, activation);
                    got.push(grad_on(simd::Baseline, &dz, &h, mask, activation));
                    #[cfg(target_arch = "x86_64")]
                    if let Some(t) = simd::Avx2Fma::detect() {
                        got.push(grad_on(t, &dz, &h, mask, activation));
                    }
                    for (p, got) in got.iter().enumerate() {
                        let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "path {p}, {activation:?}, mask {}, length {len}", mask.is_some());
                    }
                }
            }
        }
    }

    #[test]
    fn a_teacher_mixes_into_the_target_and_weight_0_is_the_labels_alone() {
        let (rows, classes) = (3, 4);
        let probs: Vec<f32> = (0..rows * classes).map(|i| (i % 5 + 1) as f32 / 15.0).collect();
        let teacher: Vec<f32> = (0..rows * classes).map(|i| ((i * 7) % 4) as f32 / 6.0).collect();
        let labels = [2u8, 0, 3];
        for smoothing in [0.0, 0.1] {
            let (mut plain, mut none) = (Vec::new(), Vec::new());
            output_gradient(&mut plain, &probs, classes, &labels, Soft { smoothing, teacher: None }, rows);
            output_gradient(
                &mut none,
                &probs,
                classes,
                &labels,
                Soft { smoothing, teacher: Some((&teacher, 0.0, 1.0)) },
                rows,
            );
            for (a, b) in plain.iter().zip(&none) {
                assert!((a - b).abs() < 1e-7, "weight 0: the labels' gradient");
            }
            let mut all = Vec::new();
            output_gradient(
                &mut all,
                &probs,
                classes,
                &labels,
                Soft { smoothing, teacher: Some((&teacher, 1.0, 1.0)) },
                rows,
            );
            for (i, g) in all.iter().enumerate() {
                assert!((g - (probs[i] - teacher[i]) / rows as f32).abs() < 1e-7, "weight 1: the teacher's alone");
            }
        }
    }

    #[test]
    fn a_temperature_matches_the_softened_softmaxes_of_the_logits() {
        let (rows, classes, temperature) = (2, 5, 3.0f32);
        let logits: Vec<f32> = (0..rows * classes).map(|i| ((i * 7) % 11) as f32 - 4.0).collect();
        let teacher_logits: Vec<f32> = (0..rows * classes).map(|i| ((i * 3) % 5) as f32 * 2.5 - 3.0).collect();
        let softmax = |z: &[f32], t: f32| -> Vec<f32> {
            z.chunks_exact(classes)
                .flat_map(|r| {
                    let e: Vec<f64> = r.iter().map(|&v| (f64::from(v) / f64::from(t)).exp()).collect();
                    let s: f64 = e.iter().sum();
                    e.into_iter().map(move |v| (v / s) as f32)
                })
                .collect()
        };
        let (probs, teacher) = (softmax(&logits, 1.0), softmax(&teacher_logits, 1.0));
        let (p_t, t_t) = (softmax(&logits, temperature), softmax(&teacher_logits, temperature));
        let labels = [1u8, 4];
        for alpha in [1.0f32, 0.25] {
            let mut g = Vec::new();
            let soft = Soft { smoothing: 0.0, teacher: Some((&teacher, alpha, temperature)) };
            output_gradient(&mut g, &probs, classes, &labels, soft, rows);
            for (i, g) in g.iter().enumerate() {
                let hard = if i % classes == labels[i / classes] as usize { 1.0 } else { 0.0 };
                let want = ((1.0 - alpha) * (probs[i] - hard) + alpha * temperature * (p_t[i] - t_t[i])) / rows as f32;
                assert!((g - want).abs() < 1e-6, "alpha {alpha}, element {i}: {g} against {want}");
            }
        }
    }
}
