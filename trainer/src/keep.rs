//! Which epoch's weights a run with a validation split keeps: the last, unless the best on
//! the held-out images is [`clearly_better`] than it.

use crate::history::EpochRecord;
use crate::model::Mlp;

/// Whether predictions `a` beat predictions `b` on the same images, whose classes are
/// `labels`, by more than chance. Only the images exactly one of them gets right tell them
/// apart: `a` must get `a_only - b_only > 2·sqrt(a_only + b_only)` more of them, twice the
/// spread of that difference when both are equally good (McNemar's test, about 2%
/// one-sided).
///
/// It decides which epoch a run with a validation split keeps: late epochs of a schedule
/// that ends near 0 differ by a tenth of a point, less than a few thousand images can tell, and the
/// highest of fifty noisy figures is as often luck as a better model.
pub fn clearly_better(a: &[u8], b: &[u8], labels: &[u8]) -> bool {
    assert!(a.len() == labels.len() && b.len() == labels.len(), "predictions for every image");
    let (mut a_only, mut b_only) = (0u32, 0u32);
    for ((&pa, &pb), &y) in a.iter().zip(b).zip(labels) {
        match (pa == y, pb == y) {
            (true, false) => a_only += 1,
            (false, true) => b_only += 1,
            _ => {}
        }
    }
    f64::from(a_only) - f64::from(b_only) > 2.0 * f64::from(a_only + b_only).sqrt()
}

/// The best epoch on the held-out images so far, and whether it is clearly better than the
/// last: what a run needs to choose its weights when it ends (and a checkpoint carries).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// Epoch and parameters of the best epoch on the validation split so far.
    pub best: Option<(usize, Mlp)>,
    /// That epoch's prediction for each validation image (empty without `best`).
    pub best_predictions: Vec<u8>,
    /// Whether the best epoch is clearly better than the last on validation (its weights
    /// are then the model's, the last's otherwise).
    pub keep_best: bool,
    /// Epochs since the best one.
    pub since_best: usize,
}

/// The weights a run ends with, and why.
#[derive(Debug)]
pub struct Kept {
    /// The parameters kept.
    pub model: Mlp,
    /// The epoch whose weights they are (`None`: the study's way, the last epoch's).
    pub epoch: Option<usize>,
    /// The best epoch on the held-out images (`None` without them).
    pub top: Option<usize>,
}

impl Selection {
    /// Takes in epoch `record` of `model`, whose predictions of the held-out images (of
    /// classes `labels`) are `predictions`; `history` holds the epochs before it.
    pub fn observe(
        &mut self,
        record: &EpochRecord,
        history: &[EpochRecord],
        model: &Mlp,
        predictions: Vec<u8>,
        labels: &[u8],
    ) {
        if self.best.as_ref().is_none_or(|(b, _)| record.better_than(&history[*b - 1])) {
            self.best = Some((record.epoch, model.clone()));
            self.best_predictions = predictions;
            self.since_best = 0;
            self.keep_best = false;
        } else {
            self.since_best += 1;
            // Should training end here: the best epoch's weights, or this one's?
            self.keep_best = clearly_better(&self.best_predictions, &predictions, labels);
        }
    }

    /// The weights to keep of a run whose last epoch, the `epochs`-th, left `last`.
    pub fn kept(self, last: Mlp, epochs: usize) -> Kept {
        let top = self.best.as_ref().map(|(e, _)| *e);
        match self.best {
            Some((e, best)) if self.keep_best => Kept { model: best, epoch: Some(e), top },
            Some(_) => Kept { model: last, epoch: Some(epochs), top },
            None => Kept { model: last, epoch: None, top },
        }
    }
}
