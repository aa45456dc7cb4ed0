//! The training loop: mini-batch SGD with per-epoch reshuffling, Keras-style history.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::augment::{self, Augment, SIDE};
use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::data::{PIXELS, Split};
use crate::model::{DropoutSeed, Mlp, ModelKind, Network, Workspace, batch_loss_correct};
use crate::optim::{OptState, Optimizer, Schedule};

/// Starts rayon's global pool as `trainer` runs it: `threads` threads (one per core when
/// `None`), the calling thread being one of them, each pinned to its own CPU.
///
/// The parallel steps of a batch (two dozen) then start from a thread of the pool instead
/// of being handed to it and waited for: 5-8% off an epoch.
///
/// Pinning: when the pool has no more threads than the process may use CPUs (see
/// `taskset`), thread `i` runs only on the `i`-th of them. Unpinned, Linux on this 2-CPU
/// VM often woke the second thread on the first one's CPU and left it there for tens of
/// milliseconds while the other CPU idled; every task then ran on one CPU, and products
/// took as long as on one thread. Fails if the global pool is already running.
pub fn start_thread_pool(threads: Option<usize>) -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).use_current_thread().build_global()?;
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    if (2..=cpus.len()).contains(&rayon::current_num_threads()) {
        // Where pinning is not supported the threads stay where the scheduler puts them.
        rayon::broadcast(|ctx| core_affinity::set_for_current(cpus[ctx.index()]));
    }
    Ok(())
}

/// What to train and how: the network and the hyperparameters of one run.
/// [`Recipe::seed`] is the study's, [`Recipe::best`] the best this trainer knows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(remote = "Self")]
pub struct Recipe {
    /// The model's name: its folder and file names.
    pub name: String,
    /// The layers to train.
    pub network: Network,
    /// Passes over the training set (at most, with early stopping).
    pub epochs: usize,
    /// Base learning rate (the schedule's peak).
    pub lr: f32,
    /// Images per step.
    pub batch_size: usize,
    /// Seed for initialization, shuffling, dropout, augmentation and the validation split.
    pub seed: u64,
    /// Update rule.
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Learning rate over the run, step by step.
    #[serde(default)]
    pub schedule: Schedule,
    /// Label smoothing: the target is `(1 - s)·onehot + s / classes`.
    #[serde(default)]
    pub label_smoothing: f32,
    /// Random shifts and flips of training images.
    #[serde(default)]
    pub augment: Augment,
    /// Training images held out for validation (stratified, chosen by the seed); 0 for the
    /// study's way, the test set as validation and the last epoch's weights.
    #[serde(default)]
    pub val_split: usize,
    /// Stop after this many epochs without a better validation accuracy (needs `val_split`).
    #[serde(default)]
    pub early_stopping: Option<usize>,
}

impl Recipe {
    /// The study's recipe for `kind`: SGD lr 0.01, batch 500, 20 epochs (sigmoid) or 15,
    /// the test set as validation.
    pub fn seed(kind: ModelKind) -> Recipe {
        let epochs = if kind == ModelKind::Sigmoid { 20 } else { 15 };
        Recipe {
            name: kind.name().to_string(),
            network: kind.network(),
            epochs,
            lr: 0.01,
            batch_size: 500,
            seed: 42,
            optimizer: Optimizer::default(),
            schedule: Schedule::Constant,
            label_smoothing: 0.0,
            augment: Augment::default(),
            val_split: 0,
            early_stopping: None,
        }
    }

    /// The best recipe this trainer knows for `network`: a batch norm before each hidden
    /// activation (folded into the dense layers at the end), AdamW (lr 0.002, weight decay
    /// 1e-4), cosine schedule with one epoch of warm-up, batch 256, 45 epochs, label
    /// smoothing 0.1, half the training images mirrored left to right; 2,000 training
    /// images held out for validation, the last epoch's weights kept unless an earlier
    /// epoch is [`clearly_better`] on them. Chosen on the validation split only (see README).
    pub fn best(name: &str, network: Network) -> Recipe {
        const BATCH: usize = 256;
        let steps_per_epoch = (60_000 - BEST_VAL_SPLIT).div_ceil(BATCH);
        Recipe {
            name: name.to_string(),
            network: Network { batch_norm: true, ..network },
            epochs: 45,
            lr: 0.002,
            batch_size: BATCH,
            seed: 42,
            optimizer: Optimizer::adamw(1e-4),
            schedule: Schedule::Cosine { warmup: steps_per_epoch },
            label_smoothing: 0.1,
            augment: Augment { shift: 0, flip: true },
            val_split: BEST_VAL_SPLIT,
            early_stopping: None,
        }
    }

    /// The study's preset this recipe's name and network are, if any.
    pub fn preset(&self) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.name() == self.name && k.network() == self.network)
    }

    /// Whether this is the study's recipe for one of its models (its figures compare).
    pub fn is_study(&self) -> bool {
        self.preset().is_some_and(|k| *self == Recipe { epochs: self.epochs, ..Recipe::seed(k) })
    }

    /// Checks what the network does not: the optimizer's coefficients, smoothing, early
    /// stopping. A message naming what is wrong.
    pub fn check(&self) -> Result<(), String> {
        self.optimizer.check()?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("the learning rate must be a positive number, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!("label smoothing must be in [0, 1), got {}", self.label_smoothing));
        }
        if let Schedule::Step { every, gamma } = self.schedule
            && (every == 0 || !(gamma.is_finite() && gamma > 0.0))
        {
            return Err(format!("a step schedule needs epochs >= 1 and a positive factor, got {every} and {gamma}"));
        }
        if self.early_stopping.is_some() && self.val_split == 0 {
            return Err("early stopping chooses weights on validation data: hold some out with --val-split N \
                 (stopping on the test set would leak it into the model)"
                .into());
        }
        if self.early_stopping == Some(0) {
            return Err("early stopping needs a patience of at least 1 epoch".into());
        }
        if usize::from(self.augment.shift) >= crate::augment::SIDE {
            return Err(format!("a shift of {} px moves the whole image out", self.augment.shift));
        }
        Ok(())
    }

    /// `AdamW lr 0.001, weight decay 0.0001 | cosine, 430 warm-up steps | batch 128 |
    /// label smoothing 0.1 | 30 epochs`, the recipe on one line.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.optimizer.describe(self.lr)];
        if self.schedule != Schedule::Constant {
            parts.push(format!("{} schedule", self.schedule.describe()));
        }
        parts.push(format!("batch {}", self.batch_size));
        if self.label_smoothing > 0.0 {
            parts.push(format!("label smoothing {}", self.label_smoothing));
        }
        if !self.augment.is_none() {
            parts.push(format!("augmentation: {}", self.augment.describe()));
        }
        let epochs = match self.early_stopping {
            Some(p) => format!("up to {} epochs (early stopping, patience {p})", self.epochs),
            None => format!("{} epochs", self.epochs),
        };
        parts.push(epochs);
        parts.push(self.validation_description());
        parts.push(format!("seed {}", self.seed));
        parts.join(", ")
    }

    /// What it validates on: `the test set as validation` or `5000 held-out training images`.
    pub fn validation_description(&self) -> String {
        match self.val_split {
            0 => "the test set as validation (the study's way)".into(),
            n => format!("validation on {n} held-out training images, test set used once at the end"),
        }
    }
}

/// Training images the best recipe holds out for validation: enough to check the run and
/// to tell a clearly better epoch, few enough to leave 58,000 to train on (3,000 fewer cost
/// a third of a point of validation accuracy; see README).
pub const BEST_VAL_SPLIT: usize = 2_000;

impl serde::Serialize for Recipe {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Recipe::serialize(self, serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Recipe {
    /// This version's recipe (fields added since default to the study's), or the study-only
    /// one of earlier versions (`"kind": "relu"` instead of a name and a network).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Recipe, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum File {
            Current(#[serde(deserialize_with = "Recipe::deserialize")] Recipe),
            Study { kind: ModelKind, epochs: usize, lr: f32, batch_size: usize, seed: u64 },
        }
        Ok(match File::deserialize(deserializer)? {
            File::Current(recipe) => recipe,
            File::Study { kind, epochs, lr, batch_size, seed } => {
                Recipe { epochs, lr, batch_size, seed, ..Recipe::seed(kind) }
            }
        })
    }
}

/// One row of the history, as Keras reports an epoch.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with dropout active).
    pub loss: f64,
    /// Training accuracy over the epoch's batches.
    pub accuracy: f64,
    /// Loss on the validation (test) set after the epoch.
    pub val_loss: f64,
    /// Accuracy on the validation (test) set after the epoch.
    pub val_accuracy: f64,
    /// Wall time of the epoch, including validation.
    pub seconds: f64,
}

/// Training diverged.
#[derive(Debug, thiserror::Error)]
#[error(
    "training diverged: the loss became {loss} at epoch {epoch}, step {step}; \
     lower the learning rate (now {lr}) or check the input data"
)]
pub struct Diverged {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based step within the epoch.
    pub step: usize,
    /// The non-finite loss.
    pub loss: f64,
    /// The learning rate in use.
    pub lr: f32,
}

/// Why [`fit`] stopped without a model.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// The loss or a parameter became NaN or infinite.
    #[error(transparent)]
    Diverged(#[from] Diverged),
    /// The network cannot be built or exported (too many layers, a width out of range).
    #[error("network {hidden:?}: {error}")]
    Network {
        /// The hidden widths asked for.
        hidden: Vec<usize>,
        /// What is wrong with them.
        error: infer_core::Error,
    },
    /// The training and test images do not have the network's input width.
    #[error("the network takes {expected} inputs, the images have {found} pixels")]
    Inputs {
        /// The network's input width.
        expected: usize,
        /// Pixels per image.
        found: usize,
    },
    /// A hyperparameter is out of range, or the options do not go together.
    #[error("recipe: {0}")]
    Recipe(String),
    /// The validation split leaves nothing to train on.
    #[error("--val-split {asked} holds out all {images} training images: leave some to train on")]
    Split {
        /// Images asked for.
        asked: usize,
        /// Training images there are.
        images: usize,
    },
    /// The checkpoint to continue from cannot be read, written or used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Receives progress while training runs; the CLI draws bars, tests stay quiet.
pub trait Observer {
    /// An epoch of `steps` steps begins.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A step finished with these running means.
    fn step(&mut self, _step: usize, _loss: f64, _accuracy: f64) {}
    /// Validation is running.
    fn validating(&mut self) {}
    /// The epoch finished.
    fn epoch_end(&mut self, _record: &EpochRecord) {}
    /// Training continues from a checkpoint after `epochs` epochs (`finished`: all done).
    fn resumed(&mut self, _epochs: usize, _finished: bool) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Loss, accuracy and predicted classes of a model over a split.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Mean categorical cross-entropy.
    pub loss: f64,
    /// Fraction correct, 0..1.
    pub accuracy: f64,
    /// Predicted class per image.
    pub predictions: Vec<u8>,
}

/// Evaluates `model` on `split` in inference mode (no dropout; norms folded in with their
/// running statistics).
pub fn evaluate(model: &Mlp, split: &Split, ws: &mut Workspace) -> Evaluation {
    let model = &*model.plain();
    const CHUNK: usize = 1000;
    let mut loss = 0.0;
    let mut correct = 0;
    let mut predictions = Vec::with_capacity(split.len());
    for start in (0..split.len()).step_by(CHUNK) {
        let rows = CHUNK.min(split.len() - start);
        model.forward(&split.images[start * PIXELS..(start + rows) * PIXELS], rows, ws, None);
        let labels = &split.labels[start..start + rows];
        let classes = model.classes();
        let (l, c) = batch_loss_correct(&ws.probs[..rows * classes], classes, labels);
        loss += l;
        correct += c;
        let probs = ws.probs[..rows * classes].chunks_exact(classes);
        predictions.extend(probs.map(|r| infer_core::f32net::argmax(r) as u8));
    }
    let n = split.len().max(1) as f64;
    Evaluation { loss: loss / n, accuracy: correct as f64 / n, predictions }
}

/// A trained model and how it got there.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The recipe it was trained with.
    pub recipe: Recipe,
    /// Final parameters.
    pub model: Mlp,
    /// One record per epoch.
    pub history: Vec<EpochRecord>,
    /// Final evaluation on the test set.
    pub test: Evaluation,
    /// Wall time of training, validation included (over every session of a resumed run).
    pub train_seconds: f64,
    /// The epoch whose weights were kept, chosen on the held-out validation images: the
    /// last, unless the best on them ([`Trained::top_epoch`]) was [`clearly_better`]
    /// (`None`: the study's way, the last epoch's).
    pub best_epoch: Option<usize>,
    /// The epoch with the highest validation accuracy (then the lowest loss) on the
    /// held-out images (`None` without them).
    pub top_epoch: Option<usize>,
}

/// A sort key per image that puts images with similar backgrounds next to each other:
/// the class, then the count of zero pixels.
///
/// Each batch is ordered by it (the batch holds the same images, so the gradient is the
/// same sum, in another order). The first layer's product then finds more pixels that are
/// zero in all twelve images of a micro-tile, and skips them: 27% of the steps instead of
/// 10% in random order.
fn silhouette_keys(split: &Split) -> Vec<u16> {
    split
        .pixels
        .par_chunks(PIXELS)
        .zip(split.labels.par_iter())
        .map(|(img, &label)| u16::from(label) << 10 | img.iter().filter(|&&p| p == 0).count() as u16)
        .collect()
}

/// The order in which training lays out an image's pixels: 3x4 patches, row by row of
/// patches, then the last image row. Returns the image pixel at each position.
///
/// The weight gradient of the first layer is `Xᵀ·dZ`, whose micro-tiles are twelve
/// consecutive pixels of this order; a patch of background is all zero, and the product
/// skips it: 32% of the (pixel tile, image) steps, against 20% for twelve pixels of a row.
pub fn patch_order() -> [u16; PIXELS] {
    const SIDE: usize = 28;
    let mut order = [0u16; PIXELS];
    let mut at = 0;
    for r0 in (0..SIDE - 1).step_by(3) {
        for c0 in (0..SIDE).step_by(4) {
            for r in r0..r0 + 3 {
                for c in c0..c0 + 4 {
                    order[at] = (r * SIDE + c) as u16;
                    at += 1;
                }
            }
        }
    }
    for p in (SIDE - 1) * SIDE..PIXELS {
        order[at] = p as u16;
        at += 1;
    }
    order
}

/// The 8-bit pixels of `split`'s images, in `images` order, each laid out in `layout`.
fn reorder_pixels(split: &Split, images: &[u32], layout: &[u16; PIXELS]) -> Vec<u8> {
    let mut pixels = vec![0u8; images.len() * PIXELS];
    pixels.par_chunks_mut(PIXELS).zip(images.par_iter()).for_each(|(dst, &i)| {
        let img = &split.pixels[i as usize * PIXELS..][..PIXELS];
        for (d, &p) in dst.iter_mut().zip(layout) {
            *d = img[p as usize];
        }
    });
    pixels
}

/// Moves the first layer's weight rows between image order and `order`: row `j` of the
/// result is row `order[j]` of `w` (`back = false`), or the reverse.
fn reorder_input_rows(model: &mut Mlp, order: &[u16; PIXELS], back: bool) {
    let layer = &mut model.layers[0];
    let n = layer.outputs;
    let mut w = vec![0.0f32; layer.w.len()];
    for (j, &p) in order.iter().enumerate() {
        let (dst, src) = if back { (p as usize, j) } else { (j, p as usize) };
        w[dst * n..(dst + 1) * n].copy_from_slice(&layer.w[src * n..(src + 1) * n]);
    }
    layer.w = w;
}

/// Trains a model with `recipe` on `train`, validating after every epoch (see [`fit_with`]).
pub fn fit(recipe: &Recipe, train: &Split, test: &Split, observer: &mut dyn Observer) -> Result<Trained, FitError> {
    fit_with(recipe, train, test, observer, None)
}

/// Which is better on validation: higher accuracy, then lower loss.
fn better(a: &EpochRecord, b: &EpochRecord) -> bool {
    a.val_accuracy > b.val_accuracy || (a.val_accuracy == b.val_accuracy && a.val_loss < b.val_loss)
}

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

/// Trains a model with `recipe` on `train` and evaluates it on `test`.
///
/// Validation after every epoch runs on `recipe.val_split` training images held out
/// (stratified), and the weights of the best epoch on them are kept; with `val_split` 0 it
/// runs on `test`, as the study did, and the last epoch's weights are kept.
///
/// With `checkpoint`, the state after every epoch is written there, and a run whose
/// checkpoint is already there continues from it: the result has the same bits as a run
/// never interrupted.
///
/// Inside, pixels are laid out in [`patch_order`] (the first layer's weight rows with
/// them); the returned model is in image order, and its test evaluation is computed on it.
pub fn fit_with(
    recipe: &Recipe,
    train: &Split,
    test: &Split,
    observer: &mut dyn Observer,
    checkpoint: Option<&std::path::Path>,
) -> Result<Trained, FitError> {
    let network = &recipe.network;
    let arch = network.architecture().map_err(|error| FitError::Network { hidden: network.hidden.clone(), error })?;
    if arch.inputs() != PIXELS {
        return Err(FitError::Inputs { expected: arch.inputs(), found: PIXELS });
    }
    recipe.check().map_err(FitError::Recipe)?;
    if recipe.val_split >= train.len() {
        return Err(FitError::Split { asked: recipe.val_split, images: train.len() });
    }
    let held_out;
    let (train, val_source) = match recipe.val_split {
        0 => (train, test),
        n => {
            let (kept, held) = augment::stratified_holdout(&train.labels, n, recipe.seed);
            held_out = (pixels_at(train, &kept), pixels_at(train, &held));
            (&held_out.0, &held_out.1)
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(recipe.seed);
    let mut model = Mlp::new(&arch, network.activation, &mut rng);
    if network.batch_norm {
        model = model.with_norms();
    }
    let classes = arch.classes();
    let layout = patch_order();
    reorder_input_rows(&mut model, &layout, false);
    // Training images keep their order (batches pick them by index); validation runs
    // on a copy sorted like a batch, whose per-image predictions are not kept.
    let all = |n: usize| (0..n as u32).collect::<Vec<u32>>();
    let train_pixels = reorder_pixels(train, &all(train.len()), &layout);
    let mirrored = mirrored_layout(&layout);
    let mut val_images = all(val_source.len());
    let keys = silhouette_keys(val_source);
    val_images.sort_by_key(|&i| keys[i as usize]);
    let val_labels = val_images.iter().map(|&i| val_source.labels[i as usize]).collect();
    let validation = Split::new(reorder_pixels(val_source, &val_images, &layout), val_labels);
    let dropout = network.dropout;
    // A batch larger than the training set is the training set (and allocates no more).
    let bs = recipe.batch_size.clamp(1, train.len().max(1));
    let steps = train.len().div_ceil(bs);
    let total_steps = steps * recipe.epochs;
    let mut order: Vec<u32> = (0..train.len() as u32).collect();
    let similar = silhouette_keys(train);
    let slots = recipe.optimizer.slots();
    let mut state = OptState::for_model(slots, &model);
    let mut ws = Workspace::default();
    let mut eval_ws = Workspace::default();
    let mut x = vec![0.0f32; bs * PIXELS];
    let mut y = vec![0u8; bs];
    let mut history = Vec::new();
    let mut best: Option<(usize, Mlp)> = None;
    let mut best_predictions = Vec::new();
    let mut keep_best = false;
    let mut since_best = 0;
    let mut finished = false;
    let mut seconds_before = 0.0;
    let recipe_json = serde_json::to_string(recipe).expect("a recipe serializes");
    let mut writer = checkpoint.map(checkpoint::Writer::new);
    if let Some(path) = checkpoint
        && let Some(c) = checkpoint::read(path)?
    {
        let run = checkpoint::Run {
            recipe: &recipe_json,
            images: train.len(),
            validation: if recipe.val_split > 0 { validation.len() } else { 0 },
            epochs: recipe.epochs,
            model: &model,
            slots,
        };
        c.check(path, &run)?;
        (model, state, rng, order, history, since_best, finished, seconds_before) =
            (c.model, c.state, c.rng, c.order, c.history, c.since_best, c.finished, c.seconds);
        (best, best_predictions, keep_best) = (c.best, c.best_predictions, c.keep_best);
        observer.resumed(history.len(), finished);
    }
    let started = Instant::now();
    let mut pixels = vec![0u8; bs * PIXELS];
    let first = history.len() + 1;
    for epoch in first..=recipe.epochs {
        if finished {
            break;
        }
        let t0 = Instant::now();
        observer.epoch_start(epoch, recipe.epochs, steps);
        order.shuffle(&mut rng);
        for batch in order.chunks_mut(bs) {
            batch.sort_by_key(|&i| similar[i as usize]);
        }
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (step, idx) in order.chunks(bs).enumerate() {
            let rows = idx.len();
            let t = (epoch - 1) * steps + step;
            gather(
                &mut x[..rows * PIXELS],
                &mut pixels[..rows * PIXELS],
                idx,
                train,
                &train_pixels,
                (&layout, &mirrored),
                recipe,
                t,
            );
            for (label, &i) in y.iter_mut().zip(idx) {
                *label = train.labels[i as usize];
            }
            let seed = DropoutSeed { seed: recipe.seed, step: t as u64 };
            model.forward(&x[..rows * PIXELS], rows, &mut ws, Some((dropout, seed)));
            let probs = &ws.probs[..rows * classes];
            let (loss, c) = batch_loss_correct(probs, classes, &y[..rows]);
            let batch_mean = loss / rows as f64;
            if !batch_mean.is_finite() || probs.iter().any(|p| !p.is_finite()) {
                return Err(Diverged { epoch, step: step + 1, loss: batch_mean, lr: recipe.lr }.into());
            }
            let lr = recipe.schedule.lr(recipe.lr, t, total_steps, steps);
            let update = recipe.optimizer.step(lr, t as u64 + 1);
            let smoothing = recipe.label_smoothing;
            model.backward(&x[..rows * PIXELS], &y[..rows], &mut ws, dropout > 0.0, smoothing, &mut state, update);
            loss_sum += loss;
            correct += c;
            seen += rows;
            observer.step(step + 1, loss_sum / seen as f64, correct as f64 / seen as f64);
        }
        if !model.is_finite() {
            return Err(Diverged { epoch, step: steps, loss: f64::NAN, lr: recipe.lr }.into());
        }
        observer.validating();
        let eval = evaluate(&model, &validation, &mut eval_ws);
        // Finite weights can still give an infinite loss (logits past f32's exp range):
        // that is divergence too, and no model is saved from it.
        if !eval.loss.is_finite() {
            return Err(Diverged { epoch, step: steps, loss: eval.loss, lr: recipe.lr }.into());
        }
        let record = EpochRecord {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            val_loss: eval.loss,
            val_accuracy: eval.accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if recipe.val_split > 0 {
            if best.as_ref().is_none_or(|(b, _)| better(&record, &history[*b - 1])) {
                best = Some((epoch, model.clone()));
                best_predictions = eval.predictions;
                since_best = 0;
                keep_best = false;
            } else {
                since_best += 1;
                // Should training end here: the best epoch's weights, or this one's?
                keep_best = clearly_better(&best_predictions, &eval.predictions, &validation.labels);
            }
        }
        observer.epoch_end(&record);
        history.push(record);
        finished = epoch == recipe.epochs || recipe.early_stopping.is_some_and(|p| since_best >= p);
        if let Some(w) = writer.as_mut() {
            w.save(&Checkpoint {
                recipe: recipe_json.clone(),
                train_images: train.len() as u64,
                epoch,
                finished,
                model: model.clone(),
                state: state.clone(),
                rng: rng.clone(),
                order: order.clone(),
                history: history.clone(),
                best: best.clone(),
                best_predictions: best_predictions.clone(),
                keep_best,
                since_best,
                seconds: seconds_before + started.elapsed().as_secs_f64(),
            })?;
        }
    }
    if let Some(w) = writer.as_mut() {
        w.finish()?;
    }
    let top_epoch = best.as_ref().map(|(e, _)| *e);
    let best_epoch = match best {
        Some((e, kept)) if keep_best => {
            model = kept;
            Some(e)
        }
        Some(_) => Some(history.len()),
        None => None,
    };
    // What is exported: a plain stack of dense layers, any norms folded in.
    let mut model = model.into_folded();
    reorder_input_rows(&mut model, &layout, true);
    let test_eval = evaluate(&model, test, &mut eval_ws);
    if !test_eval.loss.is_finite() {
        let epoch = history.len();
        return Err(Diverged { epoch, step: steps, loss: test_eval.loss, lr: recipe.lr }.into());
    }
    Ok(Trained {
        recipe: recipe.clone(),
        model,
        history,
        test: test_eval,
        train_seconds: seconds_before + started.elapsed().as_secs_f64(),
        best_epoch,
        top_epoch,
    })
}

/// The images of `split` at `indices`, in that order, as training reads a split it does not
/// evaluate: 8-bit pixels and labels. The f32 `images` are left empty; for the 55,000 images
/// a split keeps to train on they would be 172 MB that nothing reads.
fn pixels_at(split: &Split, indices: &[u32]) -> Split {
    let mut pixels = Vec::with_capacity(indices.len() * PIXELS);
    for &i in indices {
        pixels.extend_from_slice(&split.pixels[i as usize * PIXELS..][..PIXELS]);
    }
    let labels = indices.iter().map(|&i| split.labels[i as usize]).collect();
    Split { pixels, images: Vec::new(), labels }
}

/// Where in `layout` each pixel of the mirror image is: position `j` of a mirrored image
/// laid out in `layout` holds position `mirrored[j]` of the image laid out in `layout`.
fn mirrored_layout(layout: &[u16; PIXELS]) -> [u16; PIXELS] {
    let mut at = [0u16; PIXELS];
    for (j, &p) in layout.iter().enumerate() {
        at[p as usize] = j as u16;
    }
    layout.map(|p| {
        let (r, c) = (p as usize / SIDE, p as usize % SIDE);
        at[r * SIDE + SIDE - 1 - c]
    })
}

/// The batch of images `idx` into `x` ((rows, 784), training's pixel layout, /255).
///
/// On every thread (serial, it left one core idle), from 8-bit pixels: a quarter of the
/// bytes to fetch from scattered images, and the same division by 255 as `Split::images`,
/// so the same values. With augmentation, each image is transformed first (into `scratch`,
/// in image order), by the transform drawn for it at global step `t`; a mirror alone is
/// read straight from the laid-out pixels through `layouts.1` ([`mirrored_layout`]).
#[allow(clippy::too_many_arguments)]
fn gather(
    x: &mut [f32],
    scratch: &mut [u8],
    idx: &[u32],
    train: &Split,
    train_pixels: &[u8],
    layouts: (&[u16; PIXELS], &[u16; PIXELS]),
    recipe: &Recipe,
    t: usize,
) {
    let (layout, mirrored) = layouts;
    let rows = x.par_chunks_mut(PIXELS).zip(scratch.par_chunks_mut(PIXELS)).zip(idx.par_iter()).with_min_len(50);
    let augment = recipe.augment;
    if augment.shift == 0 {
        // No transform, or a mirror alone: straight from the laid-out pixels.
        rows.for_each(|((dst, _), &i)| {
            let src = &train_pixels[i as usize * PIXELS..][..PIXELS];
            if augment.flip && augment.draw(recipe.seed, t as u64, i).flip {
                for (d, &j) in dst.iter_mut().zip(mirrored) {
                    *d = f32::from(src[j as usize]) / 255.0;
                }
            } else {
                for (d, &p) in dst.iter_mut().zip(src) {
                    *d = f32::from(p) / 255.0;
                }
            }
        });
        return;
    }
    rows.for_each(|((dst, moved), &i)| {
        let transform = augment.draw(recipe.seed, t as u64, i);
        transform.apply(&train.pixels[i as usize * PIXELS..][..PIXELS], moved, SIDE);
        for (d, &p) in dst.iter_mut().zip(layout) {
            *d = f32::from(moved[p as usize]) / 255.0;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::Transform;

    #[test]
    fn a_mirror_read_through_the_mirrored_layout_is_the_mirrored_image_laid_out() {
        let image: Vec<u8> = (0..PIXELS).map(|p| (p * 7 % 251) as u8).collect();
        let layout = patch_order();
        let laid_out: Vec<u8> = layout.iter().map(|&p| image[p as usize]).collect();
        let mut flipped = vec![0u8; PIXELS];
        Transform { dx: 0, dy: 0, flip: true }.apply(&image, &mut flipped, SIDE);
        let expected: Vec<u8> = layout.iter().map(|&p| flipped[p as usize]).collect();
        let read: Vec<u8> = mirrored_layout(&layout).iter().map(|&j| laid_out[j as usize]).collect();
        assert_eq!(read, expected);
    }
}
