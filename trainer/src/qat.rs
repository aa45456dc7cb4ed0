//! Int4 weights (`--quant int4`): their grid, and quantization-aware training for them.
//!
//! Every layer but the output layer stores its weights as int4: per output unit, a step
//! `max |w| / 7` and the weights rounded onto `-7..=7` steps (the export writes them as the
//! int8 weights `16q`, [`infer_core::int8net`]'s int4 layers). The output layer stays int8:
//! a tenth of a percent of the weights of the networks here, and its errors go straight into
//! the scores.
//!
//! Rounding a trained model's weights to 15 levels costs about a point of accuracy on
//! Fashion-MNIST (measured on `--preset best` models: 0.4 to 1.5 points), more than the
//! int8 export's hundredths. So a run with int4 weights trains the last part of its steps
//! on them (straight-through estimation, Courbariaux et al. 2015; Jacob et al. 2018): each
//! step's forward and backward pass use the weights rounded onto their grid, and the
//! step's change is added to the unrounded weights, which the optimizer keeps. Validation
//! in that part also uses the rounded weights, and the model a run keeps is rounded, so
//! its f32 accuracy is the int4 model's (up to the activations' int8 rounding).
//!
//! Per-unit steps commute with what the export folds into the weights afterwards: batch
//! norm scales each unit's weights by one factor, and the rows' order in the first layer
//! is a permutation. (Standardizing real-valued features scales the first layer's rows;
//! there the export's grid differs a little from the one trained on.)

use crate::model::Mlp;

/// How a model's hidden layers store their weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightBits {
    /// Int8, per-unit scales (every layer).
    #[default]
    Int8,
    /// Int4, per-unit scales (the hidden layers; the output layer int8).
    Int4,
}

impl WeightBits {
    /// Whether the recipe keeps the default (left out of its JSON, so that runs from before
    /// this field resume).
    pub fn is_int8(&self) -> bool {
        *self == WeightBits::Int8
    }
}

/// Largest int4 step count a weight is rounded to (symmetric: `-7..=7`).
pub const INT4_LEVELS: f64 = 7.0;

/// The fraction of a run's steps after which an int4 run trains on rounded weights, when it
/// does not prune (a pruned run starts when its pruning ends).
pub const QAT_BEGIN: f32 = 0.6;

/// Each output unit's int4 step for the weights `w` ((inputs, outputs) row-major):
/// `max |w| / 7`, 1 for a unit whose weights are all zero.
pub fn int4_steps(w: &[f32], outputs: usize) -> Vec<f64> {
    let mut step = vec![0.0f64; outputs];
    for row in w.chunks_exact(outputs) {
        for (s, &w) in step.iter_mut().zip(row) {
            *s = s.max(f64::from(w).abs());
        }
    }
    for s in step.iter_mut() {
        *s = if *s > 0.0 { *s / INT4_LEVELS } else { 1.0 };
    }
    step
}

/// The int4 value of weight `w` of a unit with step `step`.
pub fn int4_of(w: f32, step: f64) -> i8 {
    (f64::from(w) / step).round().clamp(-INT4_LEVELS, INT4_LEVELS) as i8
}

/// `w` ((inputs, outputs) row-major) rounded onto its units' int4 grids, in place.
pub fn round_to_int4(w: &mut [f32], outputs: usize) {
    let step = int4_steps(w, outputs);
    for row in w.chunks_exact_mut(outputs) {
        for (w, &s) in row.iter_mut().zip(&step) {
            *w = (f64::from(int4_of(*w, s)) * s) as f32;
        }
    }
}

/// The weights of the hidden layers while a step runs on their rounded copies.
#[derive(Debug, Default)]
pub struct Rounded {
    /// Per hidden layer: the unrounded weights, and the rounded ones the step started from.
    saved: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Rounded {
    /// Rounds `model`'s hidden layers' weights onto their int4 grids, keeping the unrounded
    /// ones to [`Rounded::restore`] or [`Rounded::apply_step`] to.
    pub fn round(&mut self, model: &mut Mlp) {
        let hidden = model.layers.len().saturating_sub(1);
        self.saved.resize_with(hidden, Default::default);
        for (layer, (plain, rounded)) in model.layers.iter_mut().zip(&mut self.saved) {
            plain.clone_from(&layer.w);
            round_to_int4(&mut layer.w, layer.outputs);
            rounded.clone_from(&layer.w);
        }
    }

    /// The unrounded weights back, plus whatever changed the rounded ones since
    /// [`Rounded::round`] (an optimizer step on them).
    pub fn apply_step(&mut self, model: &mut Mlp) {
        for (layer, (plain, rounded)) in model.layers.iter_mut().zip(&self.saved) {
            for ((w, &p), &r) in layer.w.iter_mut().zip(plain).zip(rounded) {
                *w = p + (*w - r);
            }
        }
    }

    /// The unrounded weights back, unchanged.
    pub fn restore(&mut self, model: &mut Mlp) {
        for (layer, (plain, _)) in model.layers.iter_mut().zip(&self.saved) {
            layer.w.clone_from(plain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unit_rounds_to_fifteen_levels_of_its_own_step() {
        // Two units: the first's largest weight is 0.7 (step 0.1), the second's 14 (step 2).
        let mut w = vec![0.7, -14.0, 0.04, 3.1, -0.26, 0.0];
        round_to_int4(&mut w, 2);
        let expected = [0.7, -14.0, 0.0, 4.0, -0.3, 0.0];
        assert!(w.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6), "{w:?}");
        assert_eq!(int4_steps(&[0.0, 0.0], 1), vec![1.0]);
        assert_eq!(int4_of(-0.7, 0.1), -7);
        // Rounding is idempotent: what was rounded stays.
        let again = w.clone();
        round_to_int4(&mut w, 2);
        assert_eq!(w, again);
    }
}
