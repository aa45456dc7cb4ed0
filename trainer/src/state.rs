//! A run's state between epochs: all it needs to go on, and all a checkpoint saves.

use rand_chacha::ChaCha8Rng;

use crate::history::EpochRecord;
use crate::keep::Selection;
use crate::model::Mlp;
use crate::optim::OptState;
use crate::prune::Masks;

/// Everything that changes as a run trains. A run continued from a saved one ends with the
/// same bits as one never interrupted. (Its fields are in the order of the checkpoint's
/// payload, which postcard writes without names.)
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Epochs done.
    pub epoch: usize,
    /// Training ended (last epoch, or early stopping).
    pub finished: bool,
    /// Parameters after `epoch`, in training's pixel order (norms not folded).
    pub model: Mlp,
    /// Optimizer state.
    pub opt: OptState,
    /// The generator that shuffles the images.
    pub rng: ChaCha8Rng,
    /// The order the images were visited in during `epoch` (the next shuffle starts from it).
    pub order: Vec<u32>,
    /// One record per epoch done.
    pub history: Vec<EpochRecord>,
    /// The best epoch on the validation split so far.
    pub selection: Selection,
    /// Training wall time so far.
    pub seconds: f64,
    /// The blocks pruning has cut, per pruned layer (empty without pruning).
    pub masks: Masks,
}

/// Why a saved state cannot continue a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// Its network or optimizer state has another shape.
    Network,
    /// It contradicts itself, or the run's data (a damaged file that passed its checksum).
    Inconsistent(&'static str),
}

impl TrainState {
    /// A run's state before its first epoch: `model` freshly initialized from `rng`, zeroed
    /// optimizer state of `slots` arrays per parameter, `images` training images in order.
    pub fn start(model: Mlp, slots: usize, rng: ChaCha8Rng, images: usize) -> TrainState {
        TrainState {
            epoch: 0,
            finished: false,
            opt: model.opt_state(slots),
            model,
            rng,
            order: (0..images as u32).collect(),
            history: Vec::new(),
            selection: Selection::default(),
            seconds: 0.0,
            masks: Masks::new(),
        }
    }

    /// Checks that this state, read from a file, can continue the run that starts from
    /// `start`, of `epochs` epochs validated on `validation` held-out images (0: the test
    /// set). Nothing in it can then index out of bounds.
    pub fn continues(&self, start: &TrainState, validation: usize, epochs: usize) -> Result<(), Unfit> {
        let same_network = start.model.same_shape(&self.model)
            && start.opt.same_shape(&self.opt)
            && self.selection.best.as_ref().is_none_or(|(_, m)| start.model.same_shape(m));
        if !same_network {
            return Err(Unfit::Network);
        }
        let images = start.order.len();
        let mut seen = vec![false; images];
        let permutation = self.order.len() == images
            && self.order.iter().all(|&i| seen.get_mut(i as usize).is_some_and(|s| !std::mem::replace(s, true)));
        if !permutation {
            return Err(Unfit::Inconsistent("the image order is not a permutation of the training images"));
        }
        let s = &self.selection;
        if self.epoch > epochs
            || self.history.len() != self.epoch
            || s.best.as_ref().is_some_and(|(e, _)| *e == 0 || *e > self.epoch)
        {
            return Err(Unfit::Inconsistent("its epoch counts disagree"));
        }
        let predictions = if s.best.is_some() { validation } else { 0 };
        if s.best_predictions.len() != predictions || (s.keep_best && s.best.is_none()) {
            return Err(Unfit::Inconsistent("its validation predictions do not fit the held-out images"));
        }
        if self.masks.iter().map(Vec::len).ne(start.masks.iter().map(Vec::len)) {
            return Err(Unfit::Inconsistent("its pruning masks do not fit the network"));
        }
        Ok(())
    }
}
