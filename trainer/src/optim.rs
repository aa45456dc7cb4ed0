//! Optimizers and learning-rate schedules.
//!
//! An [`Optimizer`] is part of a recipe; at each step it becomes a [`Step`]: the update rule
//! with that step's coefficients (learning rate from the [`Schedule`], Adam's bias
//! corrections). [`update`] applies a `Step` to one parameter, or to a vector of them: the
//! weight-gradient product calls it in its epilogue, as each tile of the gradient is
//! computed, so an optimizer costs no pass over the weights of its own; the biases call it
//! through [`step_slice`]. Optimizer state (momentum, Adam's moments) lives beside the
//! parameters in [`OptState`], in the same layout.

use std::ops::{Add, Div, Mul, Sub};

use crate::kernels::lanes::{self, LANES};
use crate::kernels::simd::Vector;
use crate::kernels::{self, ParamUpdate};

/// The update rule of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Optimizer {
    /// Stochastic gradient descent, with momentum (PyTorch's form: `v = μ·v + g`,
    /// `w -= lr·v`) or Nesterov momentum (`w -= lr·(g + μ·v)`) when `momentum > 0`.
    /// `weight_decay` is L2: `g += wd·w` before the step.
    Sgd {
        /// μ, 0 for plain SGD.
        momentum: f32,
        /// Nesterov's look-ahead form.
        nesterov: bool,
        /// L2 coefficient.
        weight_decay: f32,
    },
    /// Adam (Kingma & Ba) as PyTorch computes it; `weight_decay` is L2 (`g += wd·w`).
    Adam {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 coefficient.
        weight_decay: f32,
    },
    /// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, `w *= 1 - lr·wd`
    /// before the Adam step, as PyTorch computes it.
    AdamW {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
        /// Decoupled decay coefficient.
        weight_decay: f32,
    },
}

impl Default for Optimizer {
    /// Plain SGD, the study's.
    fn default() -> Optimizer {
        Optimizer::Sgd { momentum: 0.0, nesterov: false, weight_decay: 0.0 }
    }
}

impl Optimizer {
    /// Adam with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8) and this L2 coefficient.
    pub fn adam(weight_decay: f32) -> Optimizer {
        Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay }
    }

    /// AdamW with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8) and this decay.
    pub fn adamw(weight_decay: f32) -> Optimizer {
        Optimizer::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay }
    }

    /// State arrays per parameter: 0 (plain SGD), 1 (momentum) or 2 (Adam's moments), as
    /// every step of it uses.
    pub fn slots(&self) -> usize {
        self.step(1.0, 1).slots()
    }

    /// The rule of step `t` (1-based, counted over the whole run) at learning rate `lr`.
    pub fn step(&self, lr: f32, t: u64) -> Step {
        match *self {
            Optimizer::Sgd { momentum, weight_decay, .. } if momentum == 0.0 && weight_decay == 0.0 => Step::Sgd { lr },
            Optimizer::Sgd { momentum, nesterov, weight_decay } => {
                Step::Momentum { lr, momentum, nesterov: nesterov && momentum > 0.0, weight_decay }
            }
            Optimizer::Adam { beta1, beta2, eps, weight_decay } => {
                Step::adam(lr, beta1, beta2, eps, weight_decay, 0.0, t)
            }
            Optimizer::AdamW { beta1, beta2, eps, weight_decay } => {
                Step::adam(lr, beta1, beta2, eps, 0.0, weight_decay, t)
            }
        }
    }

    /// Checks the coefficients: a message naming the bad one.
    pub fn check(&self) -> Result<(), String> {
        let unit = |name: &str, v: f32| match (0.0..1.0).contains(&v) {
            true => Ok(()),
            false => Err(format!("{name} must be in [0, 1), got {v}")),
        };
        let non_negative = |name: &str, v: f32| match v.is_finite() && v >= 0.0 {
            true => Ok(()),
            false => Err(format!("{name} must be a finite number >= 0, got {v}")),
        };
        match *self {
            Optimizer::Sgd { momentum, weight_decay, .. } => {
                unit("momentum", momentum)?;
                non_negative("weight decay", weight_decay)
            }
            Optimizer::Adam { beta1, beta2, eps, weight_decay }
            | Optimizer::AdamW { beta1, beta2, eps, weight_decay } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                non_negative("weight decay", weight_decay)?;
                match eps.is_finite() && eps > 0.0 {
                    true => Ok(()),
                    false => Err(format!("eps must be a positive number, got {eps}")),
                }
            }
        }
    }

    /// `SGD lr 0.01`, `SGD momentum 0.9 (Nesterov) lr 0.05, weight decay 0.0005`,
    /// `AdamW lr 0.001, weight decay 0.0001`.
    pub fn describe(&self, lr: f32) -> String {
        let wd = |wd: f32| if wd > 0.0 { format!(", weight decay {wd}") } else { String::new() };
        match *self {
            Optimizer::Sgd { momentum, nesterov, weight_decay } => {
                let m = match (momentum > 0.0, nesterov) {
                    (false, _) => String::new(),
                    (true, false) => format!(" momentum {momentum}"),
                    (true, true) => format!(" Nesterov momentum {momentum}"),
                };
                format!("SGD{m} lr {lr}{}", wd(weight_decay))
            }
            Optimizer::Adam { weight_decay, .. } => format!("Adam lr {lr}{}", wd(weight_decay)),
            Optimizer::AdamW { weight_decay, .. } => format!("AdamW lr {lr}{}", wd(weight_decay)),
        }
    }
}

/// One step's update rule with its coefficients, applied by [`update`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// `w -= lr·g`
    Sgd {
        /// Learning rate.
        lr: f32,
    },
    /// `g += wd·w; v = μ·v + g; w -= lr·(Nesterov ? g + μ·v : v)` (`w -= lr·g` for μ = 0,
    /// without state)
    Momentum {
        /// Learning rate.
        lr: f32,
        /// μ.
        momentum: f32,
        /// Nesterov's form.
        nesterov: bool,
        /// L2 coefficient.
        weight_decay: f32,
    },
    /// `g += l2·w; w *= decay; m += (1-β1)(g - m); v = β2·v + (1-β2)·g²;
    /// w -= step_size · m / (√v · inv_sqrt_bc2 + ε)`
    Adam {
        /// 1 - β1.
        one_minus_beta1: f32,
        /// β2.
        beta2: f32,
        /// 1 - β2.
        one_minus_beta2: f32,
        /// ε.
        eps: f32,
        /// L2 coefficient (Adam).
        l2: f32,
        /// `1 - lr·wd` (AdamW), 1 otherwise.
        decay: f32,
        /// `lr / (1 - β1^t)`.
        step_size: f32,
        /// `1 / √(1 - β2^t)`.
        inv_sqrt_bc2: f32,
    },
}

impl Step {
    fn adam(lr: f32, beta1: f32, beta2: f32, eps: f32, l2: f32, decoupled: f32, t: u64) -> Step {
        let t = t.max(1) as i32;
        let bc1 = 1.0 - f64::from(beta1).powi(t);
        let bc2 = 1.0 - f64::from(beta2).powi(t);
        Step::Adam {
            one_minus_beta1: 1.0 - beta1,
            beta2,
            one_minus_beta2: 1.0 - beta2,
            eps,
            l2,
            decay: 1.0 - lr * decoupled,
            step_size: (f64::from(lr) / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
        }
    }

    /// State arrays per parameter that the rule reads and writes.
    pub fn slots(&self) -> usize {
        match self {
            Step::Sgd { .. } => 0,
            Step::Momentum { momentum, .. } => usize::from(*momentum > 0.0),
            Step::Adam { .. } => 2,
        }
    }
}

impl ParamUpdate for Step {
    #[inline(always)]
    fn slots(&self) -> usize {
        Step::slots(self)
    }
    #[inline(always)]
    fn descent(&self) -> Option<f32> {
        match *self {
            Step::Sgd { lr } => Some(lr),
            _ => None,
        }
    }
    #[inline(always)]
    fn apply<W: Vector>(&self, g: W, w: W, s1: W, s2: W) -> (W, W, W) {
        update(*self, g, w, s1, s2)
    }
}

/// Arithmetic the update rule needs, for a vector of lanes and for one float, rounded alike.
pub trait Lane: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> {
    /// Every lane `x`.
    fn splat_like(self, x: f32) -> Self;
    /// `a·b + c`, rounded as the path's vectors round it.
    fn fma(a: Self, b: Self, c: Self) -> Self;
    /// Square root, correctly rounded.
    fn root(self) -> Self;
    /// 0 where the value is subnormal, else the value.
    fn flush(self) -> Self;
}

impl<W: Vector> Lane for W {
    #[inline(always)]
    fn splat_like(self, x: f32) -> W {
        Vector::splat_like(self, x)
    }
    #[inline(always)]
    fn fma(a: W, b: W, c: W) -> W {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn root(self) -> W {
        self.sqrt()
    }
    #[inline(always)]
    fn flush(self) -> W {
        self.abs().simd_lt(self.splat_like(f32::MIN_POSITIVE)).select(self.splat_like(0.0), self)
    }
}

impl Lane for f32 {
    #[inline(always)]
    fn splat_like(self, x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        lanes::mul_add(a, b, c)
    }
    #[inline(always)]
    fn root(self) -> f32 {
        self.sqrt()
    }
    #[inline(always)]
    fn flush(self) -> f32 {
        if self.abs() < f32::MIN_POSITIVE { 0.0 } else { self }
    }
}

/// One parameter `w` (or a vector of them) with gradient `g` and state `s1`, `s2` after
/// `step`: returns the new `(w, s1, s2)`. Slots a rule does not use come back unchanged.
///
/// State that decays below f32's normal range is set to 0. A moment that only decays (a
/// pixel that is rarely nonzero) would otherwise sink into subnormal numbers, on which x86
/// cores take a microcode assist per operation: with AdamW an epoch took 1.4x as long by
/// its 6th epoch. A subnormal moment is below 1.2e-38, so its contribution to a step is
/// nothing anyway.
#[inline(always)]
pub fn update<L: Lane>(step: Step, g: L, w: L, s1: L, s2: L) -> (L, L, L) {
    match step {
        Step::Sgd { lr } => (L::fma(g, g.splat_like(-lr), w), s1, s2),
        Step::Momentum { lr, momentum, nesterov, weight_decay } => {
            let g = if weight_decay != 0.0 { L::fma(w, g.splat_like(weight_decay), g) } else { g };
            if momentum == 0.0 {
                return (L::fma(g, g.splat_like(-lr), w), s1, s2);
            }
            let v = L::fma(s1, g.splat_like(momentum), g).flush();
            let d = if nesterov { L::fma(v, g.splat_like(momentum), g) } else { v };
            (L::fma(d, g.splat_like(-lr), w), v, s2)
        }
        Step::Adam { one_minus_beta1, beta2, one_minus_beta2, eps, l2, decay, step_size, inv_sqrt_bc2 } => {
            let g = if l2 != 0.0 { L::fma(w, g.splat_like(l2), g) } else { g };
            let w = if decay != 1.0 { w * g.splat_like(decay) } else { w };
            let m = L::fma(g - s1, g.splat_like(one_minus_beta1), s1).flush();
            let v = L::fma(g * g, g.splat_like(one_minus_beta2), s2 * g.splat_like(beta2)).flush();
            let denom = L::fma(v.root(), g.splat_like(inv_sqrt_bc2), g.splat_like(eps));
            (L::fma(m / denom, g.splat_like(-step_size), w), m, v)
        }
    }
}

/// `step` over whole slices: parameters `w`, gradients `g`, state `s1` and `s2` (each
/// empty where the rule has no such slot, else as long as `w`).
///
/// Whole vectors only, the tail through a zero-padded copy, on the path the product's
/// epilogue runs: an element gets the same bits as there.
pub fn step_slice(step: Step, w: &mut [f32], g: &[f32], s1: &mut [f32], s2: &mut [f32]) {
    assert_eq!(w.len(), g.len());
    let slots = step.slots();
    assert!(s1.len() == if slots >= 1 { w.len() } else { 0 }, "first state slot");
    assert!(s2.len() == if slots >= 2 { w.len() } else { 0 }, "second state slot");
    if let Step::Sgd { lr } = step {
        // The study's step, exactly as before optimizers existed.
        return kernels::sgd_step(w, g, lr);
    }
    kernels::simd::dispatch(StepSlice { step, w, g, s1, s2 });
}

/// [`step_slice`]'s arguments, run on a path.
struct StepSlice<'s> {
    step: Step,
    w: &'s mut [f32],
    g: &'s [f32],
    s1: &'s mut [f32],
    s2: &'s mut [f32],
}

impl kernels::simd::Job for StepSlice<'_> {
    type Out = ();

    #[inline(always)]
    fn run<I: kernels::simd::Isa>(self, isa: I) {
        let StepSlice { step, w, g, s1, s2 } = self;
        let slots = step.slots();
        isa.run(
            #[inline(always)]
            || {
                let n = w.len();
                let zero = [0.0f32; LANES];
                let mut i = 0;
                while i < n {
                    let len = LANES.min(n - i);
                    // Whole vectors from the arrays; the tail through padded copies.
                    let mut buf = [[0.0f32; LANES]; 4];
                    let (gv, wv, av, bv) = if len == LANES {
                        let a = if slots >= 1 { isa.load(&s1[i..]) } else { isa.load(&zero) };
                        let b = if slots >= 2 { isa.load(&s2[i..]) } else { isa.load(&zero) };
                        (isa.load(&g[i..]), isa.load(&w[i..]), a, b)
                    } else {
                        buf[0][..len].copy_from_slice(&g[i..]);
                        buf[1][..len].copy_from_slice(&w[i..]);
                        if slots >= 1 {
                            buf[2][..len].copy_from_slice(&s1[i..]);
                        }
                        if slots >= 2 {
                            buf[3][..len].copy_from_slice(&s2[i..]);
                        }
                        (isa.load(&buf[0]), isa.load(&buf[1]), isa.load(&buf[2]), isa.load(&buf[3]))
                    };
                    let (nw, na, nb) = update(step, gv, wv, av, bv);
                    if len == LANES {
                        isa.store(&mut w[i..], nw);
                        if slots >= 1 {
                            isa.store(&mut s1[i..], na);
                        }
                        if slots >= 2 {
                            isa.store(&mut s2[i..], nb);
                        }
                    } else {
                        isa.store(&mut buf[1], nw);
                        isa.store(&mut buf[2], na);
                        isa.store(&mut buf[3], nb);
                        w[i..].copy_from_slice(&buf[1][..len]);
                        if slots >= 1 {
                            s1[i..].copy_from_slice(&buf[2][..len]);
                        }
                        if slots >= 2 {
                            s2[i..].copy_from_slice(&buf[3][..len]);
                        }
                    }
                    i += len;
                }
            },
        )
    }
}

/// Optimizer state of one layer: up to two arrays beside the weights and two beside the
/// biases, in the same layouts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerState {
    /// Per slot, one value per weight.
    pub w: Vec<Vec<f32>>,
    /// Per slot, one value per bias.
    pub b: Vec<Vec<f32>>,
}

/// Optimizer state of a model, zero at the start of training.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptState {
    /// Per layer, input side first.
    pub layers: Vec<LayerState>,
    /// Per batch norm: γ's slots in `w`, β's in `b`.
    #[serde(default)]
    pub norms: Vec<LayerState>,
}

impl OptState {
    /// Zeroed state for `slots` arrays per parameter of layers with these (weights, biases).
    pub fn new(slots: usize, sizes: impl IntoIterator<Item = (usize, usize)>) -> OptState {
        OptState { layers: zeroed(slots, sizes), norms: Vec::new() }
    }

    /// Zeroed state for `slots` arrays per parameter of layers with these (weights, biases)
    /// and of norms with these widths (γ's slots in `w`, β's in `b`).
    pub fn with_norms(
        slots: usize,
        layers: impl IntoIterator<Item = (usize, usize)>,
        norms: impl IntoIterator<Item = usize>,
    ) -> OptState {
        OptState { layers: zeroed(slots, layers), norms: zeroed(slots, norms.into_iter().map(|w| (w, w))) }
    }
}

fn zeroed(slots: usize, sizes: impl IntoIterator<Item = (usize, usize)>) -> Vec<LayerState> {
    let zeros = |(w, b): (usize, usize)| LayerState { w: vec![vec![0.0; w]; slots], b: vec![vec![0.0; b]; slots] };
    sizes.into_iter().map(zeros).collect()
}

impl OptState {
    /// Whether `other` has as many arrays of the same lengths.
    pub fn same_shape(&self, other: &OptState) -> bool {
        let same = |a: &[LayerState], b: &[LayerState]| {
            let lens = |v: &[Vec<f32>]| v.iter().map(Vec::len).collect::<Vec<_>>();
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| lens(&a.w) == lens(&b.w) && lens(&a.b) == lens(&b.b))
        };
        same(&self.layers, &other.layers) && same(&self.norms, &other.norms)
    }
}

/// The two state slices of one parameter array (empty where a rule has fewer slots).
pub type Slots<'a> = (&'a mut [f32], &'a mut [f32]);

/// The state slices of a layer's weights and of its biases (empty where there is no state,
/// or fewer slots).
pub fn layer_slots(state: Option<&mut LayerState>) -> (Slots<'_>, Slots<'_>) {
    match state {
        Some(s) => (slots_mut(&mut s.w), slots_mut(&mut s.b)),
        None => ((&mut [], &mut []), (&mut [], &mut [])),
    }
}

/// Two mutable state slices from a slot list (empty slices where it has fewer slots).
pub fn slots_mut(v: &mut [Vec<f32>]) -> (&mut [f32], &mut [f32]) {
    match v {
        [] => (&mut [], &mut []),
        [a] => (a.as_mut_slice(), &mut []),
        [a, b, ..] => (a.as_mut_slice(), b.as_mut_slice()),
    }
}

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// The base rate times `gamma` after every `every` epochs.
    Step {
        /// Epochs between drops.
        every: usize,
        /// Factor of each drop.
        gamma: f32,
    },
    /// A linear warm-up from `lr / warmup` to `lr` over the first `warmup` steps, then half a
    /// cosine wave down to 0 at the last step of the run.
    Cosine {
        /// Warm-up steps.
        warmup: usize,
    },
}

impl Schedule {
    /// The learning rate of step `t` (0-based) of a run of `total` steps with `steps_per_epoch`.
    pub fn lr(&self, base: f32, t: usize, total: usize, steps_per_epoch: usize) -> f32 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => {
                let drops = (t / steps_per_epoch.max(1) / every.max(1)) as i32;
                (f64::from(base) * f64::from(gamma).powi(drops)) as f32
            }
            Schedule::Cosine { warmup } => {
                if t < warmup {
                    return (f64::from(base) * (t + 1) as f64 / warmup as f64) as f32;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((t - warmup) as f64 / span).min(1.0);
                (f64::from(base) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
            }
        }
    }

    /// `constant`, `step x0.1 every 10 epochs`, `cosine, 469 warm-up steps`.
    pub fn describe(&self) -> String {
        match *self {
            Schedule::Constant => "constant".into(),
            Schedule::Step { every, gamma } => format!("step x{gamma} every {every} epochs"),
            Schedule::Cosine { warmup: 0 } => "cosine".into(),
            Schedule::Cosine { warmup } => format!("cosine, {warmup} warm-up steps"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_linearly_then_decays_to_zero() {
        let s = Schedule::Cosine { warmup: 4 };
        let lrs: Vec<f32> = (0..14).map(|t| s.lr(1.0, t, 14, 7)).collect();
        assert_eq!(&lrs[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert_eq!(lrs[4], 1.0, "the peak is the first step after warm-up");
        assert!((lrs[9] - 0.5).abs() < 1e-6, "half way down at the middle of the decay: {}", lrs[9]);
        assert!(lrs.windows(2).skip(4).all(|w| w[1] < w[0]), "falls every step after the peak: {lrs:?}");
        assert!(lrs[13] > 0.0 && lrs[13] < 0.03, "last step near zero: {}", lrs[13]);
        assert_eq!(Schedule::Cosine { warmup: 0 }.lr(0.1, 0, 100, 10), 0.1);
    }

    #[test]
    fn step_schedule_drops_every_n_epochs() {
        let s = Schedule::Step { every: 2, gamma: 0.5 };
        let per_epoch: Vec<f32> = (0..6).map(|e| s.lr(0.8, e * 10 + 3, 60, 10)).collect();
        assert_eq!(per_epoch, [0.8, 0.8, 0.4, 0.4, 0.2, 0.2]);
        assert_eq!(Schedule::Constant.lr(0.3, 59, 60, 10), 0.3);
    }
}
