//! Recipes: what to train and how. [`Recipe::seed`] is the study's, [`Recipe::best`] the best
//! this trainer knows, and [`resolve`] turns a preset and the options that change parts of
//! it into the recipes of a run, checked before any data is read.

use infer_core::Activation;

use crate::augment::Augment;
use crate::data::Schema;
use crate::model::Network;
use crate::optim::{Optimizer, Schedule};
use crate::prune::Prune;
use crate::qat::WeightBits;

/// Training images of Fashion-MNIST, which the presets' warm-up is counted in.
pub const STUDY_TRAIN_IMAGES: usize = 60_000;

/// The three models of the study, as presets of [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Dense 512 sigmoid, Dense 256 sigmoid, Dense 10 softmax.
    Sigmoid,
    /// Dense 512 ReLU, Dense 256 ReLU, Dense 10 softmax.
    Relu,
    /// The ReLU model with Dropout(0.5) after each hidden layer.
    Dropout,
}

impl ModelKind {
    /// All three, in the study's order.
    pub const ALL: [ModelKind; 3] = [ModelKind::Sigmoid, ModelKind::Relu, ModelKind::Dropout];

    /// Short lowercase name, used for folders and files.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Sigmoid => "sigmoid",
            ModelKind::Relu => "relu",
            ModelKind::Dropout => "dropout",
        }
    }

    /// The network: 784-512-256-10 with this preset's activation and dropout.
    pub fn network(self) -> Network {
        let (activation, dropout) = match self {
            ModelKind::Sigmoid => (Activation::Sigmoid, 0.0),
            ModelKind::Relu => (Activation::Relu, 0.0),
            ModelKind::Dropout => (Activation::Relu, 0.5),
        };
        Network { hidden: vec![512, 256], activation, dropout, batch_norm: false }
    }
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
    /// Pruning of the hidden layers' weights in blocks (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<Prune>,
    /// Distillation from a trained model (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<Distill>,
    /// The hidden layers' weights in the model file: int8, or int4 (trained on for the last
    /// part of the run, [`crate::qat`]). Left out of the recipe's JSON for int8, so that
    /// runs from before this field resume.
    #[serde(default, skip_serializing_if = "WeightBits::is_int8")]
    pub quant: WeightBits,
}

/// Distillation (Hinton et al., 2015): the target of each training image mixes its label's
/// with a trained teacher's probabilities for the same (augmented) image, both softened by a
/// temperature.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Distill {
    /// The teacher: an f32 model file of this data's inputs and classes.
    pub teacher: std::path::PathBuf,
    /// The teacher's weight in the target, in (0, 1].
    pub weight: f32,
    /// The temperature `T` of the teacher's part, at least 1: the student learns the
    /// teacher's `softmax(z / T)` with its own, the gradient scaled by `T²` (1: the plain
    /// probabilities). Left out of the recipe's JSON at 1, so that a run started before
    /// this field existed has the same recipe and resumes.
    #[serde(default = "Distill::plain", skip_serializing_if = "Distill::is_plain")]
    pub temperature: f32,
}

impl Distill {
    /// Temperature 1.
    fn plain() -> f32 {
        1.0
    }

    fn is_plain(t: &f32) -> bool {
        *t == 1.0
    }
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
            prune: None,
            distill: None,
            quant: WeightBits::Int8,
        }
    }

    /// The best recipe this trainer knows for `network`: a batch norm before each hidden
    /// activation (folded into the dense layers at the end), AdamW (lr 0.002, weight decay
    /// 1e-4), cosine schedule with one epoch of warm-up, batch 256, 45 epochs, label
    /// smoothing 0.1, half the training images mirrored left to right; 2,000 training
    /// images held out for validation, the last epoch's weights kept unless an earlier
    /// epoch is [`clearly_better`](crate::keep::clearly_better) on them. Chosen on the validation split only (see README).
    pub fn best(name: &str, network: Network) -> Recipe {
        const BATCH: usize = 256;
        Recipe {
            name: name.to_string(),
            network: Network { batch_norm: true, ..network },
            epochs: 45,
            lr: 0.002,
            batch_size: BATCH,
            seed: 42,
            optimizer: Optimizer::adamw(1e-4),
            schedule: Schedule::Cosine { warmup: warmup_steps(1.0, STUDY_TRAIN_IMAGES - BEST_VAL_SPLIT, BATCH) },
            label_smoothing: 0.1,
            augment: Augment { shift: 0, flip: true },
            val_split: BEST_VAL_SPLIT,
            early_stopping: None,
            prune: None,
            distill: None,
            quant: WeightBits::Int8,
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
        if let Some(prune) = &self.prune {
            prune.check()?;
        }
        if let Some(d) = &self.distill
            && !(d.weight > 0.0 && d.weight <= 1.0)
        {
            return Err(format!("--distill-weight {} is not a weight: give one above 0 and at most 1", d.weight));
        }
        if let Some(d) = &self.distill
            && !(1.0..=100.0).contains(&d.temperature)
        {
            return Err(format!(
                "--distill-temperature {}: give one from 1 to 100 (Hinton et al.: 2 to 20)",
                d.temperature
            ));
        }
        Ok(())
    }

    /// Checks what depends on the data: augmentation is for images, and a shift must leave
    /// some of the image in.
    pub fn check_data(&self, schema: &Schema) -> Result<(), String> {
        match schema.image {
            None if !self.augment.is_none() => Err(format!(
                "augmentation (--shift, --flip) moves and mirrors images; {} is a table of features",
                schema.name
            )),
            Some([rows, cols]) if usize::from(self.augment.shift) >= rows.min(cols) => Err(format!(
                "a shift of {} px moves the whole image out ({} images are {rows}x{cols})",
                self.augment.shift, schema.name
            )),
            _ => Ok(()),
        }
    }

    /// `AdamW lr 0.001, weight decay 0.0001 | cosine, 430 warm-up steps | batch 128 |
    /// label smoothing 0.1 | 30 epochs`, the recipe on one line; `examples`: what the data's
    /// examples are called (`images`).
    pub fn describe(&self, examples: &str) -> String {
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
        parts.push(self.validation_description(examples));
        parts.push(format!("seed {}", self.seed));
        parts.join(", ")
    }

    /// What it validates on: `the test set as validation` or `5000 held-out training images`.
    pub fn validation_description(&self, examples: &str) -> String {
        match self.val_split {
            0 => "the test set as validation (the study's way)".into(),
            n => format!("validation on {n} held-out training {examples}, test set used once at the end"),
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

/// Steps in `epochs` (fractions allowed) of `images` training images at `batch` per step:
/// the warm-up of a cosine schedule.
pub fn warmup_steps(epochs: f32, images: usize, batch: usize) -> usize {
    let steps = images.div_ceil(batch.max(1)).max(1);
    (f64::from(epochs) * steps as f64).round() as usize
}

/// A recipe the options describe cannot be trained: what is wrong, in the options' words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RecipeError(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, RecipeError> {
    Err(RecipeError(why.into()))
}

/// The recipe the other options start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The study's ([`Recipe::seed`]).
    Seed,
    /// The best this trainer knows ([`Recipe::best`]).
    Best,
}

/// Which networks a run trains.
#[derive(Debug, Clone, PartialEq)]
pub enum Models {
    /// Models of the study (784-512-256-10), in this order.
    Study(Vec<ModelKind>),
    /// A network of the user's: its hidden widths, input side first.
    Hidden(Vec<usize>),
    /// Nothing named: the preset's own network (`--preset best` alone).
    Preset,
}

/// The update rules an option can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Stochastic gradient descent.
    Sgd,
    /// Adam with PyTorch's defaults.
    Adam,
    /// AdamW with PyTorch's defaults.
    AdamW,
}

/// The schedules an option can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// [`Schedule::Constant`].
    Constant,
    /// [`Schedule::Step`].
    Step,
    /// [`Schedule::Cosine`].
    Cosine,
}

/// Parts of a preset the options change; `None` (or `false`) keeps the preset's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Hidden activation of a [`Models::Hidden`] network (ReLU when `None`).
    pub activation: Option<Activation>,
    /// Dropout after each hidden layer of a [`Models::Hidden`] network (none when `None`).
    pub dropout: Option<f32>,
    /// Passes over the training set.
    pub epochs: Option<usize>,
    /// Base learning rate.
    pub lr: Option<f32>,
    /// Update rule (its coefficients from the options below, else the defaults).
    pub optimizer: Option<OptimizerKind>,
    /// SGD momentum.
    pub momentum: Option<f32>,
    /// Nesterov's form of SGD momentum.
    pub nesterov: bool,
    /// Weight decay.
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule.
    pub schedule: Option<ScheduleKind>,
    /// Warm-up of the cosine schedule, in epochs.
    pub warmup_epochs: Option<f32>,
    /// Step schedule: epochs between drops.
    pub step_every: Option<usize>,
    /// Step schedule: factor of each drop.
    pub step_gamma: Option<f32>,
    /// Label smoothing.
    pub label_smoothing: Option<f32>,
    /// Largest shift of a training image, in pixels.
    pub shift: Option<u8>,
    /// Mirrored training images on (`Some(true)`) or off.
    pub flip: Option<bool>,
    /// Batch norm on (`Some(true)`) or off.
    pub batch_norm: Option<bool>,
    /// Training images held out for validation.
    pub val_split: Option<usize>,
    /// Early-stopping patience, in epochs.
    pub early_stopping: Option<usize>,
    /// The fraction of the hidden layers' weight blocks to prune.
    pub prune: Option<f32>,
    /// A teacher model to distill from, and its weight.
    pub distill: Option<Distill>,
    /// The hidden layers' weights: int8 or int4.
    pub quant: Option<WeightBits>,
    /// Images per step.
    pub batch_size: Option<usize>,
    /// The run's seed.
    pub seed: Option<u64>,
}

/// What a recipe takes from the data: how many examples it trains on (after `--limit`),
/// and whether they are images (augmentation moves and mirrors images only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFacts {
    /// Training examples.
    pub examples: usize,
    /// Whether they are images.
    pub images: bool,
}

impl DataFacts {
    /// Fashion-MNIST's: 60,000 training images.
    pub const STUDY: DataFacts = DataFacts { examples: STUDY_TRAIN_IMAGES, images: true };
}

/// What a run is asked to train: a preset, the networks, and the options that change the
/// preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The recipe the options start from.
    pub preset: Preset,
    /// The networks.
    pub models: Models,
    /// What the options change.
    pub overrides: Overrides,
}

/// The recipes of a run on data of `facts`, one per network, each the preset's with the
/// options applied and checked ([`Recipe::check`]): an error names the option that is
/// wrong. (With [`DataFacts::STUDY`] before the data is read, it checks the options alone.)
pub fn resolve(request: &Request, facts: &DataFacts) -> Result<Vec<Recipe>, RecipeError> {
    let bases = bases(request, facts)?;
    if let Some(lr) = request.overrides.lr
        && !(lr.is_finite() && lr > 0.0)
    {
        return refuse(format!("--lr must be a positive number, got {lr}"));
    }
    let o = &request.overrides;
    if !facts.images && (o.flip == Some(true) || o.shift.is_some_and(|s| s > 0)) {
        return refuse("--flip and --shift move and mirror images; this data is a table of features");
    }
    bases.into_iter().map(|base| apply(base, request, facts)).collect()
}

/// The preset's recipe for each network asked for on data of `facts`, before the options.
fn bases(request: &Request, facts: &DataFacts) -> Result<Vec<Recipe>, RecipeError> {
    let (preset, o) = (request.preset, &request.overrides);
    if !matches!(request.models, Models::Hidden(_)) && (o.activation.is_some() || o.dropout.is_some()) {
        return refuse(
            "--activation and --dropout shape a network given with --hidden; the study's models (--model, --all) have their own",
        );
    }
    let of_network = |name: &str, network: Network| match preset {
        Preset::Seed => Recipe { name: name.to_string(), network, ..Recipe::seed(ModelKind::Relu) },
        Preset::Best => Recipe::best(name, network),
    };
    let study = |kind: ModelKind| match preset {
        Preset::Seed => Recipe::seed(kind),
        Preset::Best => Recipe::best(&format!("{}-best", kind.name()), kind.network()),
    };
    Ok(match &request.models {
        Models::Hidden(widths) => {
            // A table's network of the best preset drops a tenth (a few hundred rows
            // overfit without it); images' none unless asked.
            let table_dropout = if preset == Preset::Best && !facts.images { TABLE_DROPOUT } else { 0.0 };
            let dropout = o.dropout.unwrap_or(table_dropout);
            if !(0.0..1.0).contains(&dropout) {
                return refuse(format!("--dropout must be in [0, 1), got {dropout}"));
            }
            let activation = o.activation.unwrap_or(Activation::Relu);
            let network = Network { hidden: widths.clone(), activation, dropout, batch_norm: false };
            if let Err(e) = network.check_hidden() {
                return refuse(format!("--hidden {widths:?}: {e}"));
            }
            let name = match preset {
                // (The best preset's name stands for its batch norm.)
                Preset::Seed => Network { batch_norm: o.batch_norm == Some(true), ..network.clone() }.name(),
                Preset::Best => format!("{}-best", network.name()),
            };
            vec![of_network(&name, network)]
        }
        Models::Study(kinds) => kinds.iter().map(|&k| study(k)).collect(),
        Models::Preset if preset == Preset::Seed => {
            return refuse(
                "say what to train: --all (the study's three models), --model NAME, --hidden W1,W2,.. or --preset best",
            );
        }
        Models::Preset => {
            // --preset best alone: the network of the PyTorch recipe it is measured against.
            let network =
                Network { hidden: vec![512, 256], activation: Activation::Relu, dropout: 0.2, batch_norm: false };
            vec![of_network("best", network)]
        }
    })
}

/// `base` with the request's options applied for data of `facts`, checked.
fn apply(base: Recipe, request: &Request, facts: &DataFacts) -> Result<Recipe, RecipeError> {
    let o = &request.overrides;
    // The preset's split is at most a thirtieth of the training set (Fashion-MNIST's
    // 60,000 images give 2,000; fewer examples, with --limit or other data, fewer).
    let preset_split = if base.val_split > 0 { base.val_split.min(facts.examples / 30) } else { 0 };
    let val_split = o.val_split.unwrap_or(preset_split);
    let trained = facts.examples.saturating_sub(val_split);
    let (batch, epochs) = match request.preset {
        Preset::Best => best_for(trained, base.batch_size, base.epochs),
        Preset::Seed => (base.batch_size, base.epochs),
    };
    let batch_size = o.batch_size.unwrap_or(batch);
    let schedule = match (o.schedule, base.schedule) {
        (None, Schedule::Cosine { .. }) | (Some(ScheduleKind::Cosine), _) => {
            // Warm-up in epochs of the training set this recipe will see.
            let images = trained;
            let default = if request.preset == Preset::Best { 1.0 } else { 0.0 };
            let epochs = o.warmup_epochs.unwrap_or(default);
            if !(epochs.is_finite() && epochs >= 0.0) {
                return refuse(format!("--warmup-epochs must be a number >= 0, got {epochs}"));
            }
            Schedule::Cosine { warmup: warmup_steps(epochs, images, batch_size) }
        }
        (Some(ScheduleKind::Step), _) | (None, Schedule::Step { .. }) => {
            Schedule::Step { every: o.step_every.unwrap_or(10), gamma: o.step_gamma.unwrap_or(0.1) }
        }
        (Some(ScheduleKind::Constant), _) | (None, Schedule::Constant) => Schedule::Constant,
    };
    let recipe = Recipe {
        epochs: o.epochs.unwrap_or(epochs),
        lr: o.lr.unwrap_or(base.lr),
        batch_size,
        seed: o.seed.unwrap_or(base.seed),
        optimizer: optimizer(o, base.optimizer)?,
        schedule,
        label_smoothing: o.label_smoothing.unwrap_or(base.label_smoothing),
        // A table's columns are not moved or mirrored, whatever the preset does to images.
        augment: match facts.images {
            true => Augment { shift: o.shift.unwrap_or(base.augment.shift), flip: o.flip.unwrap_or(base.augment.flip) },
            false => Augment::default(),
        },
        val_split,
        early_stopping: o.early_stopping.or(base.early_stopping),
        prune: o.prune.map(Prune::to).or(base.prune),
        distill: o.distill.clone().or(base.distill.clone()),
        quant: o.quant.unwrap_or(base.quant),
        // Batch norm of the best preset is for images: a table's features are standardized
        // by the model already, and its small batches (16 rows) give noisy statistics.
        network: Network {
            batch_norm: o.batch_norm.unwrap_or(base.network.batch_norm && facts.images),
            ..base.network.clone()
        },
        ..base
    };
    if !matches!(recipe.schedule, Schedule::Cosine { .. }) && o.warmup_epochs.is_some() {
        return refuse("--warmup-epochs is for --schedule cosine");
    }
    if !matches!(recipe.schedule, Schedule::Step { .. }) && (o.step_every.is_some() || o.step_gamma.is_some()) {
        return refuse("--step-every and --step-gamma are for --schedule step");
    }
    recipe.check().map_err(RecipeError)?;
    Ok(recipe)
}

/// Steps a best-preset run takes at the least, whatever the size of its data.
pub const BEST_MIN_STEPS: usize = 2_000;
/// Steps an epoch of the best preset takes at the least, while batches hold 16 examples or more.
const BEST_MIN_STEPS_PER_EPOCH: usize = 20;
/// Fewest examples in a best-preset batch.
const BEST_MIN_BATCH: usize = 16;
/// Dropout of a network of the best preset for a table of features, unless --dropout says.
pub const TABLE_DROPOUT: f32 = 0.1;

/// The best preset's batch size and epochs for `examples` training examples, from its
/// own (`batch`, `epochs`), tuned on Fashion-MNIST's 58,000: they stay on as many. On less
/// data (a table of a few hundred rows) batches shrink to a power of two that gives an epoch
/// 20 steps (16 examples at the least), and epochs grow until the run takes 2,000 steps;
/// otherwise 45 epochs of a small table would be 45 steps, far from trained.
pub fn best_for(examples: usize, batch: usize, epochs: usize) -> (usize, usize) {
    let fits = (examples / BEST_MIN_STEPS_PER_EPOCH).max(1);
    let batch = batch.min(1 << fits.ilog2()).max(BEST_MIN_BATCH);
    let steps_per_epoch = examples.div_ceil(batch).max(1);
    (batch, epochs.max(BEST_MIN_STEPS.div_ceil(steps_per_epoch)))
}

/// The optimizer the options ask for, from the preset's.
fn optimizer(o: &Overrides, base: Optimizer) -> Result<Optimizer, RecipeError> {
    let base_wd = match base {
        Optimizer::Sgd { weight_decay, .. }
        | Optimizer::Adam { weight_decay, .. }
        | Optimizer::AdamW { weight_decay, .. } => weight_decay,
    };
    let chosen = match o.optimizer {
        None => base,
        Some(OptimizerKind::Sgd) => Optimizer::Sgd { momentum: 0.0, nesterov: false, weight_decay: base_wd },
        Some(OptimizerKind::Adam) => Optimizer::adam(base_wd),
        Some(OptimizerKind::AdamW) => Optimizer::adamw(base_wd),
    };
    let sgd = matches!(chosen, Optimizer::Sgd { .. });
    if !sgd && (o.momentum.is_some() || o.nesterov) {
        return refuse("--momentum and --nesterov are for --optimizer sgd (Adam has its own moments)");
    }
    if o.nesterov && o.momentum.is_none_or(|m| m == 0.0) {
        return refuse("--nesterov needs --momentum above 0 (for example --momentum 0.9)");
    }
    let weight_decay = |wd: f32| o.weight_decay.unwrap_or(wd);
    Ok(match chosen {
        Optimizer::Sgd { momentum, nesterov, weight_decay: wd } => Optimizer::Sgd {
            momentum: o.momentum.unwrap_or(momentum),
            nesterov: o.nesterov || nesterov,
            weight_decay: weight_decay(wd),
        },
        Optimizer::Adam { beta1, beta2, eps, weight_decay: wd } => {
            Optimizer::Adam { beta1, beta2, eps, weight_decay: weight_decay(wd) }
        }
        Optimizer::AdamW { beta1, beta2, eps, weight_decay: wd } => {
            Optimizer::AdamW { beta1, beta2, eps, weight_decay: weight_decay(wd) }
        }
    })
}
