//! The training loop: a run made ready (`Session::prepare`), then epochs over one
//! [`TrainState`] (each: train, validate, keep, checkpoint), then the model it ends with.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use infer_core::arch::Architecture;

use crate::checkpoint::{self, CheckpointError};
use crate::data::split::stratified_holdout;
use crate::data::{Dataset, Split};
use crate::format;
use crate::history::EpochRecord;
use crate::layout::{Layout, silhouette_keys};
use crate::model::{DropoutSeed, Mlp, Soft, Workspace, batch_loss_correct};
use crate::prune::{self, Masks};
use crate::qat::{self, Rounded, WeightBits};
use crate::recipe::{Distill, Recipe};
use crate::scaling::Standardizer;
use crate::state::TrainState;

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
    /// The training or test examples do not have the data's input width.
    #[error("the data says {expected} inputs per example, a split has {found}")]
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
    #[error("--val-split {asked} holds out all {examples} training {noun}: leave some to train on")]
    Split {
        /// Examples asked for.
        asked: usize,
        /// Training examples there are.
        examples: usize,
        /// What they are: "images" or "examples".
        noun: &'static str,
    },
    /// The teacher to distill from cannot be read or does not fit the data.
    #[error("--distill {path}: {why}")]
    Teacher {
        /// Its file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The checkpoint to continue from cannot be read, written or used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The observer asked training to stop ([`Observer::stop`]): the epoch in progress was
    /// dropped, and the checkpoint (if any) holds the `epochs` done before it.
    #[error("stopped after {epochs} epochs")]
    Stopped {
        /// Epochs done and saved.
        epochs: usize,
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
    /// Training continues from a checkpoint after `epochs` epochs (`finished`: all done).
    fn resumed(&mut self, _epochs: usize, _finished: bool) {}
    /// Whether training should stop now (the user asked, by a signal): asked before every
    /// step. Training then ends with [`FitError::Stopped`], the epoch in progress dropped.
    fn stop(&mut self) -> bool {
        false
    }
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
    let w = split.width;
    let mut loss = 0.0;
    let mut correct = 0;
    let mut predictions = Vec::with_capacity(split.len());
    for start in (0..split.len()).step_by(CHUNK) {
        let rows = CHUNK.min(split.len() - start);
        model.forward(&split.values[start * w..(start + rows) * w], rows, ws, None);
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
    /// last, unless the best on them ([`Trained::top_epoch`]) was [`crate::keep::clearly_better`]
    /// (`None`: the study's way, the last epoch's).
    pub best_epoch: Option<usize>,
    /// The epoch with the highest validation accuracy (then the lowest loss) on the
    /// held-out images (`None` without them).
    pub top_epoch: Option<usize>,
    /// The fraction of each pruned layer's blocks of [`prune::BLOCK`] inputs cut, input
    /// side first (empty without pruning).
    pub sparsity: Vec<f64>,
}

/// Trains a model with `recipe` on `data`, validating after every epoch (see [`fit_with`]).
pub fn fit(recipe: &Recipe, data: &Dataset, observer: &mut dyn Observer) -> Result<Trained, FitError> {
    fit_with(recipe, data, observer, None)
}

/// Trains a model with `recipe` on `data`'s training split and evaluates it on its test
/// split.
///
/// Validation after every epoch runs on `recipe.val_split` training images held out
/// (stratified), and the last epoch's weights are kept unless the best one on them is
/// clearly better ([`crate::keep`]); with `val_split` 0 it runs on `test`, as the study did,
/// and the last epoch's weights are kept.
///
/// With `checkpoint`, the state after every epoch is written there, and a run whose
/// checkpoint is already there continues from it: the result has the same bits as a run
/// never interrupted.
///
/// Inside, an image's pixels are laid out in [`crate::layout::patch_order`] (the first
/// layer's weight rows with them), and a table's features are standardized
/// ([`crate::scaling`]); the returned model is in the data's order and takes its raw values,
/// and its test evaluation is computed on it.
pub fn fit_with(
    recipe: &Recipe,
    data: &Dataset,
    observer: &mut dyn Observer,
    checkpoint: Option<&Path>,
) -> Result<Trained, FitError> {
    let (mut session, start) = Session::prepare(recipe, data)?;
    let recipe_json = serde_json::to_string(recipe).expect("a recipe serializes");
    let images = session.train.len() as u64;
    let mut state = match checkpoint.map(checkpoint::read).transpose()?.flatten() {
        Some(saved) => {
            let path = checkpoint.expect("read from it");
            saved.check(path, &recipe_json, &start, session.held_out(), recipe.epochs)?;
            observer.resumed(saved.state.epoch, saved.state.finished);
            saved.state
        }
        None => start,
    };
    let mut writer = checkpoint.map(checkpoint::Writer::new);
    let (seconds_before, started) = (state.seconds, Instant::now());
    while !state.finished && state.epoch < recipe.epochs {
        if let Err(e) = session.epoch(&mut state, observer) {
            // Stopped on request: the checkpoint being written is finished, and said so.
            if let (FitError::Stopped { .. }, Some(w)) = (&e, writer.as_mut()) {
                w.finish()?;
            }
            return Err(e);
        }
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        if let Some(w) = writer.as_mut() {
            w.save(&recipe_json, images, &state)?;
        }
    }
    if let Some(w) = writer.as_mut() {
        w.finish()?;
    }
    session.finish(state, seconds_before + started.elapsed().as_secs_f64())
}

/// Checks `recipe` against `data` as [`fit`] does before its first step, without laying
/// anything out: the network's widths, the examples' width, the hyperparameters and the
/// validation split. The network's architecture.
pub fn check(recipe: &Recipe, data: &Dataset) -> Result<Architecture, FitError> {
    let (network, schema) = (&recipe.network, &data.schema);
    let arch = network
        .architecture(schema.inputs, schema.classes())
        .map_err(|error| FitError::Network { hidden: network.hidden.clone(), error })?;
    if let Some(split) = [&data.train, &data.test].into_iter().find(|s| s.width != schema.inputs) {
        return Err(FitError::Inputs { expected: schema.inputs, found: split.width });
    }
    recipe.check().map_err(FitError::Recipe)?;
    recipe.check_data(schema).map_err(FitError::Recipe)?;
    if recipe.val_split >= data.train.len() {
        return Err(FitError::Split { asked: recipe.val_split, examples: data.train.len(), noun: schema.noun() });
    }
    Ok(arch)
}

/// A run made ready: its training images laid out, its validation images, and the buffers
/// its steps reuse.
struct Session<'a> {
    recipe: &'a Recipe,
    /// The examples trained on (all of the training split, or those not held out).
    train: std::borrow::Cow<'a, Split>,
    /// `train`'s pixels laid out for the first layer, in example order (images).
    train_pixels: Vec<u8>,
    /// `train`'s features standardized, in example order (tables).
    train_values: Vec<f32>,
    /// The standardization of a table's features, folded into the model at the end.
    standardizer: Option<Standardizer>,
    /// A sort key per training example: each batch is ordered by it.
    similar: Vec<u32>,
    /// The validation images, laid out and sorted like a batch (held out, or the test set).
    validation: Split,
    /// The test set, evaluated once at the end.
    test: &'a Split,
    layout: Layout,
    /// Images per step, and steps per epoch.
    batch: usize,
    steps: usize,
    ws: Workspace,
    eval_ws: Workspace,
    /// The model distilled from, laid out like the network, its weight in the target and the
    /// temperature.
    teacher: Option<(Mlp, f32, f32)>,
    teacher_ws: Workspace,
    /// One batch: its images as the network reads them, their pixels (augmentation's
    /// scratch), their labels.
    x: Vec<f32>,
    pixels: Vec<u8>,
    y: Vec<u8>,
    /// An int4 run's unrounded hidden weights while a step or a validation uses rounded ones.
    rounded: Rounded,
}

impl<'a> Session<'a> {
    /// Checks the recipe against the data, holds out the validation split, lays out the
    /// examples, and initializes the network: the session and the run's first state.
    fn prepare(recipe: &'a Recipe, data: &'a Dataset) -> Result<(Session<'a>, TrainState), FitError> {
        let arch = check(recipe, data)?;
        let (network, schema) = (&recipe.network, &data.schema);
        let (train, test) = (&data.train, &data.test);
        let (train, val_source) = match recipe.val_split {
            0 => (std::borrow::Cow::Borrowed(train), std::borrow::Cow::Borrowed(test)),
            n => {
                let (kept, held) = stratified_holdout(&train.labels, n, recipe.seed);
                (std::borrow::Cow::Owned(rows_at(train, &kept)), std::borrow::Cow::Owned(rows_at(train, &held)))
            }
        };
        let mut rng = ChaCha8Rng::seed_from_u64(recipe.seed);
        let mut model = Mlp::new(&arch, network.activation, &mut rng);
        if network.batch_norm {
            model = model.with_norms();
        }
        let layout = Layout::for_data(schema);
        layout.into_layout(&mut model);
        let teacher = recipe.distill.as_ref().map(|d| teacher(d, schema, &layout)).transpose()?;
        // A table's features are standardized with the training examples' statistics.
        let standardizer = (!schema.bytes).then(|| Standardizer::fit(&train.values, schema.inputs));
        // Training examples keep their order (batches pick them by index); validation runs
        // on a copy sorted like a batch, whose per-example predictions are not kept.
        let all = |n: usize| (0..n as u32).collect::<Vec<u32>>();
        let mut val_order = all(val_source.len());
        let keys = silhouette_keys(&val_source);
        val_order.sort_by_key(|&i| keys[i as usize]);
        let validation = match &standardizer {
            None => {
                let labels = val_order.iter().map(|&i| val_source.labels[i as usize]).collect();
                Split::bytes(layout.pixels(&val_source, &val_order), labels, schema.inputs)
            }
            Some(s) => {
                let rows = val_source.select(&val_order);
                Split::real(s.apply(&rows.values), rows.labels, schema.inputs)
            }
        };
        let (train_pixels, train_values) = match &standardizer {
            None => (layout.pixels(&train, &all(train.len())), Vec::new()),
            Some(s) => (Vec::new(), s.apply(&train.values)),
        };
        // A batch larger than the training set is the training set (and allocates no more).
        let batch = recipe.batch_size.clamp(1, train.len().max(1));
        let masks = if recipe.prune.is_some() { prune::uncut(&model) } else { Masks::new() };
        let start = TrainState { masks, ..TrainState::start(model, recipe.optimizer.slots(), rng, train.len()) };
        let session = Session {
            recipe,
            steps: train.len().div_ceil(batch),
            similar: silhouette_keys(&train),
            train,
            train_pixels,
            train_values,
            standardizer,
            validation,
            test,
            layout,
            batch,
            ws: Workspace::default(),
            eval_ws: Workspace::default(),
            teacher,
            teacher_ws: Workspace::default(),
            x: vec![0.0; batch * schema.inputs],
            pixels: vec![0; batch * schema.inputs],
            y: vec![0; batch],
            rounded: Rounded::default(),
        };
        Ok((session, start))
    }

    /// Steps in the whole run.
    fn total_steps(&self) -> usize {
        self.steps * self.recipe.epochs
    }

    /// The first step an int4 run trains on rounded weights ([`crate::qat`]): where its
    /// pruning reaches the final sparsity, else [`qat::QAT_BEGIN`] of the run; `None` for int8.
    fn rounded_from(&self) -> Option<usize> {
        let total = self.total_steps();
        let begin = match self.recipe.prune {
            Some(p) => p.steps(total).1,
            None => (f64::from(qat::QAT_BEGIN) * total as f64).round() as usize,
        };
        (self.recipe.quant == WeightBits::Int4).then_some(begin)
    }

    /// Images held out for validation (0: the test set validates, the study's way).
    fn held_out(&self) -> usize {
        if self.recipe.val_split > 0 { self.validation.len() } else { 0 }
    }

    /// One epoch: every training image once, in batches, then validation and the choice of
    /// the weights to keep.
    fn epoch(&mut self, state: &mut TrainState, observer: &mut dyn Observer) -> Result<(), FitError> {
        let (recipe, epoch) = (self.recipe, state.epoch + 1);
        let t0 = Instant::now();
        observer.epoch_start(epoch, recipe.epochs, self.steps);
        state.order.shuffle(&mut state.rng);
        for batch in state.order.chunks_mut(self.batch) {
            batch.sort_by_key(|&i| self.similar[i as usize]);
        }
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let order = std::mem::take(&mut state.order);
        for (step, idx) in order.chunks(self.batch).enumerate() {
            if observer.stop() {
                return Err(FitError::Stopped { epochs: state.epoch });
            }
            let (loss, right) = self.step(state, epoch, step, idx)?;
            loss_sum += loss;
            correct += right;
            seen += idx.len();
            observer.step(step + 1, loss_sum / seen as f64, correct as f64 / seen as f64);
        }
        state.order = order;
        let diverged = |loss: f64| Diverged { epoch, step: self.steps, loss, lr: recipe.lr };
        if !state.model.is_finite() {
            return Err(diverged(f64::NAN).into());
        }
        observer.validating();
        // Once an int4 run trains on rounded weights, they are what is validated and kept.
        let rounded = self.rounded_from().is_some_and(|t| epoch * self.steps > t);
        if rounded {
            self.rounded.round(&mut state.model);
        }
        let eval = evaluate(&state.model, &self.validation, &mut self.eval_ws);
        // Finite weights can still give an infinite loss (logits past f32's exp range):
        // that is divergence too, and no model is saved from it.
        if !eval.loss.is_finite() {
            return Err(diverged(eval.loss).into());
        }
        let record = EpochRecord {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            val_loss: eval.loss,
            val_accuracy: eval.accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        // A pruned run chooses among the epochs that end at its final sparsity, an int4 run
        // among those on rounded weights.
        let pruned = recipe.prune.is_none_or(|p| p.reached(epoch * self.steps, self.total_steps()));
        if recipe.val_split > 0 && pruned && (rounded || self.rounded_from().is_none()) {
            let labels = &self.validation.labels;
            state.selection.observe(&record, &state.history, &state.model, eval.predictions, labels);
        }
        if rounded {
            self.rounded.restore(&mut state.model);
        }
        observer.epoch_end(&record);
        state.history.push(record);
        state.epoch = epoch;
        state.finished =
            epoch == recipe.epochs || recipe.early_stopping.is_some_and(|p| state.selection.since_best >= p);
        Ok(())
    }

    /// Step `step` of epoch `epoch` on the images `idx`: forward, loss, backward and the
    /// optimizer's update. Returns the batch's summed loss and its correct predictions.
    fn step(
        &mut self,
        state: &mut TrainState,
        epoch: usize,
        step: usize,
        idx: &[u32],
    ) -> Result<(f64, usize), Diverged> {
        let recipe = self.recipe;
        let (rows, w) = (idx.len(), self.layout.width());
        let t = (epoch - 1) * self.steps + step;
        let total = self.total_steps();
        if let Some(p) = recipe.prune
            && p.updates_at(t, total)
        {
            prune::update(&mut state.masks, &state.model, p.sparsity_at(t, total), self.layout.order());
            prune::apply(&state.masks, &mut state.model, self.layout.order());
        }
        let rounded = self.rounded_from().is_some_and(|from| t >= from);
        let x = &mut self.x[..rows * w];
        let (train, laid_out, values) = (&*self.train, &self.train_pixels, &self.train_values);
        let scratch = &mut self.pixels[..rows * w];
        self.layout.gather(x, scratch, idx, train, laid_out, values, recipe.augment, recipe.seed, t);
        for (label, &i) in self.y.iter_mut().zip(idx) {
            *label = train.labels[i as usize];
        }
        let dropout = recipe.network.dropout;
        let seed = DropoutSeed { seed: recipe.seed, step: t as u64 };
        let model = &mut state.model;
        if rounded {
            self.rounded.round(model);
        }
        model.forward(x, rows, &mut self.ws, Some((dropout, seed)));
        let classes = model.classes();
        let probs = &self.ws.probs[..rows * classes];
        let (loss, correct) = batch_loss_correct(probs, classes, &self.y[..rows]);
        let batch_mean = loss / rows as f64;
        if !batch_mean.is_finite() || probs.iter().any(|p| !p.is_finite()) {
            return Err(Diverged { epoch, step: step + 1, loss: batch_mean, lr: recipe.lr });
        }
        let lr = recipe.schedule.lr(recipe.lr, t, self.steps * recipe.epochs, self.steps);
        let update = recipe.optimizer.step(lr, t as u64 + 1);
        let labels = &self.y[..rows];
        let mut soft = Soft { smoothing: recipe.label_smoothing, teacher: None };
        if let Some((teacher, weight, temperature)) = &self.teacher {
            teacher.forward(x, rows, &mut self.teacher_ws, None);
            soft.teacher = Some((&self.teacher_ws.probs[..rows * classes], *weight, *temperature));
        }
        model.backward(x, labels, &mut self.ws, dropout > 0.0, soft, &mut state.opt, update);
        if rounded {
            self.rounded.apply_step(model);
        }
        prune::apply(&state.masks, model, self.layout.order());
        Ok((loss, correct))
    }

    /// The model a finished run ends with: the weights kept, norms folded in, in image
    /// order, evaluated on the test set.
    fn finish(mut self, state: TrainState, train_seconds: f64) -> Result<Trained, FitError> {
        let epochs = state.history.len();
        let sparsity = prune::sparsity(&state.masks);
        let mut kept = state.selection.kept(state.model, epochs);
        // An int4 run ends on rounded weights (the epoch kept may be the last one, unrounded).
        if self.recipe.quant == WeightBits::Int4 {
            let hidden = kept.model.layers.len().saturating_sub(1);
            for layer in &mut kept.model.layers[..hidden] {
                qat::round_to_int4(&mut layer.w, layer.outputs);
            }
        }
        // What is exported: a plain stack of dense layers, any norms folded in, in the data's
        // order, taking its raw values.
        let mut model = kept.model.into_folded();
        self.layout.into_image_order(&mut model);
        if let Some(s) = &self.standardizer {
            s.fold(&mut model);
        }
        let test = evaluate(&model, self.test, &mut self.eval_ws);
        if !test.loss.is_finite() {
            return Err(Diverged { epoch: epochs, step: self.steps, loss: test.loss, lr: self.recipe.lr }.into());
        }
        Ok(Trained {
            recipe: self.recipe.clone(),
            model,
            history: state.history,
            test,
            train_seconds,
            best_epoch: kept.epoch,
            top_epoch: kept.top,
            sparsity,
        })
    }
}

/// The teacher of `d`, read and checked against the data of `schema`, its first layer's rows
/// moved into `layout` like the network's.
fn teacher(d: &Distill, schema: &crate::data::Schema, layout: &Layout) -> Result<(Mlp, f32, f32), FitError> {
    let fail = |why: String| FitError::Teacher { path: d.teacher.display().to_string(), why };
    if !schema.bytes {
        // A table's model takes raw features; training sees them standardized.
        return Err(fail("distillation is for images; this data is a table of features".into()));
    }
    let mut model = format::load_f32(&d.teacher).map_err(|e| fail(e.to_string()))?;
    if !model.norms.is_empty() || model.layers[0].inputs != schema.inputs || model.classes() != schema.classes() {
        return Err(fail(format!(
            "a model of {} inputs and {} classes, not of this data's {} and {}",
            model.layers[0].inputs,
            model.classes(),
            schema.inputs,
            schema.classes()
        )));
    }
    layout.into_layout(&mut model);
    Ok((model, d.weight, d.temperature))
}

/// The examples of `split` at `indices`, in that order, as training reads a split it does
/// not evaluate: 8-bit pixels (images) or the features (tables), and labels. The f32 values
/// of images are left empty; for the 55,000 images a split keeps to train on they would be
/// 172 MB that nothing reads.
fn rows_at(split: &Split, indices: &[u32]) -> Split {
    if split.pixels.is_empty() {
        return split.select(indices);
    }
    let w = split.width;
    let mut pixels = Vec::with_capacity(indices.len() * w);
    for &i in indices {
        pixels.extend_from_slice(&split.pixels[i as usize * w..][..w]);
    }
    let labels = indices.iter().map(|&i| split.labels[i as usize]).collect();
    Split { pixels, values: Vec::new(), labels, width: w }
}
