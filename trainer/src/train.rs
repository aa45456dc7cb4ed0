//! The training loop: mini-batch SGD with per-epoch reshuffling, Keras-style history.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::{PIXELS, Split};
use crate::model::{DropoutSeed, Mlp, ModelKind, Network, Workspace, batch_loss_correct};

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
/// [`Recipe::seed`] is the study's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "RecipeFile")]
pub struct Recipe {
    /// The model's name: its folder and file names.
    pub name: String,
    /// The layers to train.
    pub network: Network,
    /// Passes over the training set.
    pub epochs: usize,
    /// SGD learning rate.
    pub lr: f32,
    /// Images per step.
    pub batch_size: usize,
    /// Seed for initialization, shuffling and dropout.
    pub seed: u64,
}

impl Recipe {
    /// The study's recipe for `kind`: SGD lr 0.01, batch 500, 20 epochs (sigmoid) or 15.
    pub fn seed(kind: ModelKind) -> Recipe {
        let epochs = if kind == ModelKind::Sigmoid { 20 } else { 15 };
        Recipe { name: kind.name().to_string(), network: kind.network(), epochs, lr: 0.01, batch_size: 500, seed: 42 }
    }

    /// The study's preset this recipe's name and network are, if any.
    pub fn preset(&self) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.name() == self.name && k.network() == self.network)
    }
}

/// A recipe as `summary.json` holds it: this version's, or the study-only one of earlier
/// versions (`"kind": "relu"` instead of a name and a network).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum RecipeFile {
    Current { name: String, network: Network, epochs: usize, lr: f32, batch_size: usize, seed: u64 },
    Study { kind: ModelKind, epochs: usize, lr: f32, batch_size: usize, seed: u64 },
}

impl From<RecipeFile> for Recipe {
    fn from(r: RecipeFile) -> Recipe {
        match r {
            RecipeFile::Current { name, network, epochs, lr, batch_size, seed } => {
                Recipe { name, network, epochs, lr, batch_size, seed }
            }
            RecipeFile::Study { kind, epochs, lr, batch_size, seed } => {
                Recipe { epochs, lr, batch_size, seed, ..Recipe::seed(kind) }
            }
        }
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

/// Evaluates `model` on `split` in inference mode (no dropout).
pub fn evaluate(model: &Mlp, split: &Split, ws: &mut Workspace) -> Evaluation {
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
    /// Wall time of training, validation included.
    pub train_seconds: f64,
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

/// Trains a model with `recipe` on `train`, validating on `test` after every epoch.
///
/// Inside, pixels are laid out in [`patch_order`] (the first layer's weight rows with
/// them); the returned model is in image order, and its test evaluation is computed on it.
pub fn fit(recipe: &Recipe, train: &Split, test: &Split, observer: &mut dyn Observer) -> Result<Trained, FitError> {
    let network = &recipe.network;
    let arch = network.architecture().map_err(|error| FitError::Network { hidden: network.hidden.clone(), error })?;
    if arch.inputs() != PIXELS {
        return Err(FitError::Inputs { expected: arch.inputs(), found: PIXELS });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(recipe.seed);
    let mut model = Mlp::new(&arch, network.activation, &mut rng);
    let classes = arch.classes();
    let layout = patch_order();
    reorder_input_rows(&mut model, &layout, false);
    // Training images keep their order (batches pick them by index); validation runs
    // on a copy sorted like a batch, whose per-image predictions are not kept.
    let all = |n: usize| (0..n as u32).collect::<Vec<u32>>();
    let train_pixels = reorder_pixels(train, &all(train.len()), &layout);
    let mut val_images = all(test.len());
    let keys = silhouette_keys(test);
    val_images.sort_by_key(|&i| keys[i as usize]);
    let val_labels = val_images.iter().map(|&i| test.labels[i as usize]).collect();
    let validation = Split::new(reorder_pixels(test, &val_images, &layout), val_labels);
    let dropout = network.dropout;
    // A batch larger than the training set is the training set (and allocates no more).
    let bs = recipe.batch_size.clamp(1, train.len().max(1));
    let steps = train.len().div_ceil(bs);
    let mut order: Vec<u32> = (0..train.len() as u32).collect();
    let similar = silhouette_keys(train);
    let mut ws = Workspace::default();
    let mut eval_ws = Workspace::default();
    let mut x = vec![0.0f32; bs * PIXELS];
    let mut y = vec![0u8; bs];
    let mut history = Vec::new();
    let started = Instant::now();
    for epoch in 1..=recipe.epochs {
        let t0 = Instant::now();
        observer.epoch_start(epoch, recipe.epochs, steps);
        order.shuffle(&mut rng);
        for batch in order.chunks_mut(bs) {
            batch.sort_by_key(|&i| similar[i as usize]);
        }
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (step, idx) in order.chunks(bs).enumerate() {
            let rows = idx.len();
            // Gather the batch on every thread (serial, it left one core idle), from the
            // 8-bit pixels: a quarter of the bytes to fetch from scattered images, and the
            // same division by 255 as `Split::images`, so the same values.
            x[..rows * PIXELS].par_chunks_mut(PIXELS).zip(idx.par_iter()).with_min_len(50).for_each(|(dst, &i)| {
                let i = i as usize;
                for (d, &p) in dst.iter_mut().zip(&train_pixels[i * PIXELS..(i + 1) * PIXELS]) {
                    *d = f32::from(p) / 255.0;
                }
            });
            for (label, &i) in y.iter_mut().zip(idx) {
                *label = train.labels[i as usize];
            }
            let seed = DropoutSeed { seed: recipe.seed, step: ((epoch - 1) * steps + step) as u64 };
            model.forward(&x[..rows * PIXELS], rows, &mut ws, Some((dropout, seed)));
            let probs = &ws.probs[..rows * classes];
            let (loss, c) = batch_loss_correct(probs, classes, &y[..rows]);
            let batch_mean = loss / rows as f64;
            if !batch_mean.is_finite() || probs.iter().any(|p| !p.is_finite()) {
                return Err(Diverged { epoch, step: step + 1, loss: batch_mean, lr: recipe.lr }.into());
            }
            model.backward_sgd(&x[..rows * PIXELS], &y[..rows], &mut ws, dropout > 0.0, recipe.lr);
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
        observer.epoch_end(&record);
        history.push(record);
    }
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
        train_seconds: started.elapsed().as_secs_f64(),
    })
}
