//! Gradual magnitude pruning (Zhu & Gupta, 2017, "To prune, or not to prune") of the hidden
//! layers' weights, in blocks the int8 kernels can skip.
//!
//! A block is [`BLOCK`] consecutive inputs of one output unit: the inputs an int8 kernel
//! reads as one 4-byte group (the Cortex-M4's `SMLAD` pairs, the x86 kernels' dot products
//! of four), in the order of the exported model's inputs (an image's pixels row by row; the
//! trainer's own row order for the first layer is mapped back). Every layer but the output
//! layer is pruned, each to the same sparsity: the fraction of its blocks whose weights are
//! all zero.
//!
//! The sparsity rises over the run as `s(t) = s_f · (1 - (1 - (t - t₀)/(t₁ - t₀))³)` from
//! step `t₀` to `t₁`, its mask updated every [`Prune::every`] steps: the blocks of smallest
//! sum of squared weights are cut, and a cut block stays cut. After every optimizer step
//! the cut blocks' weights are set to zero again; the steps after `t₁` fine-tune the blocks
//! kept. Everything here is computed in a fixed order on one thread, so a run has the same
//! bits at any thread count, and the masks are part of the run's state (a resumed run
//! continues with them).

use crate::model::Mlp;

/// Inputs of one output unit in a block.
pub const BLOCK: usize = 4;

/// What `--prune` asks for.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prune {
    /// The fraction of each pruned layer's blocks cut at the end, in (0, 1).
    pub sparsity: f32,
    /// The fraction of the run's steps before the first cut.
    pub begin: f32,
    /// The fraction of the run's steps at which `sparsity` is reached; the rest fine-tunes.
    pub end: f32,
    /// Steps between two updates of the masks.
    pub every: usize,
}

impl Prune {
    /// Pruning to `sparsity` from 5% to 60% of the run, the masks updated every 50 steps.
    pub fn to(sparsity: f32) -> Prune {
        Prune { sparsity, begin: 0.05, end: 0.6, every: 50 }
    }

    /// Why the settings cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(self.sparsity > 0.0 && self.sparsity < 1.0) {
            return Err(format!(
                "--prune {} is not a fraction of the weights to cut: give one above 0 and below 1 (0.9 cuts 90%)",
                self.sparsity
            ));
        }
        if !(0.0 <= self.begin && self.begin < self.end && self.end <= 1.0) || self.every == 0 {
            return Err(format!(
                "pruning from {} to {} of the run every {} steps: need 0 <= begin < end <= 1 and steps > 0",
                self.begin, self.end, self.every
            ));
        }
        Ok(())
    }

    /// The first and last steps of the schedule in a run of `total` steps (`t₀ < t₁` when
    /// the run has at least two steps).
    pub fn steps(&self, total: usize) -> (usize, usize) {
        let at = |f: f32| ((f64::from(f) * total as f64).round() as usize).min(total.saturating_sub(1));
        let (t0, t1) = (at(self.begin), at(self.end));
        (t0, t1.max(t0))
    }

    /// The sparsity the schedule asks for at step `t` (0-based) of `total`: 0 before `t₀`,
    /// `s_f` from `t₁`.
    pub fn sparsity_at(&self, t: usize, total: usize) -> f64 {
        let (t0, t1) = self.steps(total);
        let s = f64::from(self.sparsity);
        if t < t0 {
            0.0
        } else if t >= t1 {
            s
        } else {
            let left = 1.0 - (t - t0) as f64 / (t1 - t0) as f64;
            s * (1.0 - left * left * left)
        }
    }

    /// Whether the masks are updated before step `t` of `total`.
    pub fn updates_at(&self, t: usize, total: usize) -> bool {
        let (t0, t1) = self.steps(total);
        (t0..=t1).contains(&t) && ((t - t0).is_multiple_of(self.every) || t == t1)
    }

    /// Whether a run of `total` steps has reached its final sparsity once `done` steps are
    /// done.
    pub fn reached(&self, done: usize, total: usize) -> bool {
        done > self.steps(total).1
    }
}

/// The cut blocks of every pruned layer: `cut[l][g * outputs + j]` for block `g` (inputs
/// `BLOCK·g ..`, in the exported model's order) of output `j` of layer `l`.
pub type Masks = Vec<Vec<bool>>;

/// Blocks of a layer of `inputs` inputs, per output.
pub fn groups(inputs: usize) -> usize {
    inputs.div_ceil(BLOCK)
}

/// No block cut, for every layer of `model` but the last.
pub fn uncut(model: &Mlp) -> Masks {
    let pruned = model.layers.len().saturating_sub(1);
    model.layers[..pruned].iter().map(|l| vec![false; groups(l.inputs) * l.outputs]).collect()
}

/// The block of each weight row of layer `l`: `first[r]` is the exported input of the first
/// layer's row `r`; later layers keep their order.
fn block_of(l: usize, row: usize, first: &[u16]) -> usize {
    if l == 0 { first[row] as usize / BLOCK } else { row / BLOCK }
}

/// Cuts, in each pruned layer of `model`, the blocks of smallest sum of squared weights
/// until `sparsity` of its blocks are cut (rounded to the nearest block); blocks already
/// cut stay cut. Ties go to the lower block index.
pub fn update(masks: &mut Masks, model: &Mlp, sparsity: f64, first: &[u16]) {
    for (l, (cut, layer)) in masks.iter_mut().zip(&model.layers).enumerate() {
        let n = layer.outputs;
        let mut score = vec![0.0f64; cut.len()];
        for (r, row) in layer.w.chunks_exact(n).enumerate() {
            let g = block_of(l, r, first);
            for (j, &w) in row.iter().enumerate() {
                score[g * n + j] += f64::from(w) * f64::from(w);
            }
        }
        let want = ((sparsity * cut.len() as f64).round() as usize).min(cut.len());
        let already = cut.iter().filter(|&&c| c).count();
        if want <= already {
            continue;
        }
        let mut order: Vec<u32> = (0..cut.len() as u32).filter(|&b| !cut[b as usize]).collect();
        order.sort_by(|&a, &b| score[a as usize].total_cmp(&score[b as usize]).then(a.cmp(&b)));
        for &b in &order[..want - already] {
            cut[b as usize] = true;
        }
    }
}

/// Sets the weights of every cut block of `model` to zero.
pub fn apply(masks: &Masks, model: &mut Mlp, first: &[u16]) {
    for (l, (cut, layer)) in masks.iter().zip(&mut model.layers).enumerate() {
        let n = layer.outputs;
        for (r, row) in layer.w.chunks_exact_mut(n).enumerate() {
            let cut = &cut[block_of(l, r, first) * n..][..n];
            for (w, &c) in row.iter_mut().zip(cut) {
                if c {
                    *w = 0.0;
                }
            }
        }
    }
}

/// The fraction of each pruned layer's blocks that are cut.
pub fn sparsity(masks: &Masks) -> Vec<f64> {
    masks.iter().map(|cut| cut.iter().filter(|&&c| c).count() as f64 / cut.len().max(1) as f64).collect()
}
