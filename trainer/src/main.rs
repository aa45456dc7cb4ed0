//! `trainer`: trains Fashion-MNIST MLPs (the study's, or any stack of dense layers) and
//! writes their results and model files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runio::out::emit;

use trainer::data::cli::{DataArgs, data_of_model};
use trainer::data::{self, DataSpec, Dataset, Source};
use trainer::history::EpochRecord;
use trainer::recipe::{
    self, DataFacts, Distill, ModelKind, Models, OptimizerKind, Overrides, Preset, Request, ScheduleKind,
};
use trainer::report;
use trainer::rundir::{self, Plan};
use trainer::train::Observer;

#[global_allocator]
static ALLOCATOR: trainer::alloc::CacheAligned = trainer::alloc::CacheAligned;

/// Train small MLPs on Fashion-MNIST with SIMD + multithreaded kernels, and export them
/// for microcontrollers.
///
/// Quick start: `trainer fit --all` trains the study's three models (sigmoid, ReLU,
/// ReLU + dropout) with its recipe and writes history, confusion matrices, predictions,
/// model files and a summary to runs/<timestamp>/. `trainer fit --hidden 128,64` trains a
/// network of your own shape, for example one that fits a small microcontroller.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Train one or more models.
    ///
    /// Either the study's models (--all, or --model) or a network of your own (--hidden),
    /// with the study's recipe (--preset seed) or the best one this trainer knows (--preset
    /// best), and any part of the recipe changed by the options under "Recipe". Every model
    /// is exported to int8 too; its size and RAM are printed. A checkpoint is written after
    /// every epoch, and --resume finishes a run that was killed.
    ///
    /// The data is Fashion-MNIST unless --data names other data (see "Data"): a folder of
    /// IDX files, a CSV table or a NumPy .npz archive. Features of a table are standardized
    /// with the training rows' statistics, folded into the model, so firmware feeds it raw
    /// values.
    ///
    /// Examples:
    ///   trainer fit --all                            # the study, reproduced
    ///   trainer fit --preset best                    # 784-512-256-10, ~91% test in under a minute
    ///   trainer fit --preset best --hidden 128,64    # the best recipe for a network of your own
    ///   trainer fit --model relu --epochs 5 --lr 0.05 --out runs/relu-fast
    ///   trainer fit --model dropout --seed 7 --threads 1
    ///   trainer fit --hidden 128,64                  # 784-128-64-10 ReLU, about 110 KB in int8
    ///   trainer fit --hidden 256,128 --optimizer sgd --momentum 0.9 --nesterov --val-split 5000 --early-stopping 5
    ///   trainer fit --resume runs/20261129-101500    # continue after a crash, same bits
    ///   trainer fit --data train.csv --test-data test.csv --hidden 64,32   # a table, last column the label
    ///   trainer fit --data sensors.csv --label-column activity --test-split 0.2 --hidden 32
    ///   trainer fit --data ~/mnist --hidden 128,64   # a folder of IDX files (MNIST, KMNIST, ..)
    ///   trainer fit --data arrays.npz --hidden 64    # x_train, y_train, x_test, y_test
    #[command(verbatim_doc_comment)]
    Fit(FitArgs),
    /// Quantize a trained f32 model for infer-core (`fit` does this for every model it trains).
    ///
    /// Calibrates activation ranges on the first 5,000 training images, writes the int8 model
    /// file and, beside it, predictions_int8.csv: the integer reference's class for every test
    /// image, which `firmware-sim check` compares with infer-core's.
    ///
    /// Examples:
    ///   trainer export runs/20261124-101500/relu/relu.f32.fmlp --quant int8
    ///   trainer export runs/20261124-101500/relu/relu.int8.fmlp --c-header   # relu_model.c and .h
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Redraw every figure and rewrite summary.md and report.html of a run from its saved
    /// CSV and JSON files (no training, no dataset needed).
    ///
    /// Example:
    ///   trainer report runs/20261124-101500
    #[command(verbatim_doc_comment)]
    Report {
        /// A folder written by `trainer fit`.
        run_dir: PathBuf,
    },
    /// Find, check or download the dataset.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportQuant {
    /// int8 weights (per output channel), 8-bit activations, integer-only inference.
    Int8,
    /// int4 weights in the hidden layers (two a byte), the rest as int8. Rounds a model
    /// trained in f32 (about a point of accuracy lost on Fashion-MNIST); a model trained
    /// with `fit --quant int4` is on its int4 grid already and loses nothing more.
    Int4,
}

#[derive(Args)]
struct ExportArgs {
    /// An f32 model file written by `trainer fit` (`*.f32.fmlp`); with --c-header, an int8
    /// one (`*.int8.fmlp`) is written as C without quantizing again.
    model: PathBuf,
    /// Quantization scheme.
    #[arg(long, value_enum, default_value = "int8")]
    quant: ExportQuant,
    /// Output file (default: the model's path with `.f32.fmlp` replaced by `.int8.fmlp`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also write the int8 model as C beside it, for infer-c's fmlp.h: NAME_model.c (the
    /// file as a 64-byte-aligned const uint8_t array, class names, input quantizer) and
    /// NAME_model.h (its size, input width, classes, scratch bytes). NAME: the model's.
    #[arg(long)]
    c_header: bool,
    /// The NAME of the C files and symbols (default: the model file's name, as a C identifier).
    #[arg(long, value_name = "NAME", requires = "c_header")]
    c_name: Option<String>,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download the four files from the official location into the user cache and verify them.
    ///
    /// Set FASHION_MNIST_URL to use a mirror.
    Fetch {
        /// Where to put the files (default: the user cache).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Say where the dataset is found, and verify every file.
    Check(DataArgs),
}

/// Most epochs `fit` takes.
const MAX_EPOCHS: i64 = 10_000;
/// Largest batch: the whole training set.
const MAX_BATCH: i64 = 60_000;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PresetArg {
    /// The study's recipe: SGD lr 0.01, batch 500, 20 epochs (sigmoid) / 15 (ReLU, dropout),
    /// the test set as validation, the last epoch's weights.
    Seed,
    /// The best model the network can be: batch norm before each hidden activation (folded
    /// into the dense layers at the end), AdamW lr 0.002, weight decay 1e-4, cosine
    /// schedule with 1 epoch of warm-up, batch 256, label smoothing 0.1, flips, 45 epochs,
    /// 2,000 training images held out for validation (the last epoch kept unless an earlier
    /// one is clearly better on them). Alone it trains 784-512-256-10 ReLU with dropout 0.2
    /// (see README for its accuracy and time). On less data it scales: a thirtieth held out,
    /// batches of a twentieth (16 at the least, a power of two) and at least 2,000 steps.
    /// A table of features is neither flipped nor shifted and has no batch norm; a --hidden
    /// network for it drops 0.1 unless --dropout says.
    Best,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OptimizerArg {
    /// Stochastic gradient descent (with --momentum, --nesterov, --weight-decay as L2).
    Sgd,
    /// Adam, PyTorch's defaults (betas 0.9, 0.999, eps 1e-8); --weight-decay as L2.
    Adam,
    /// AdamW: Adam with decoupled weight decay (--weight-decay).
    Adamw,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QuantArg {
    /// Int8 weights, one scale per unit.
    Int8,
    /// Int4 weights in the hidden layers (two a byte: half the flash), one scale per unit;
    /// the output layer int8. The last 40% of the steps (of a pruned run, those after the
    /// pruning) train on the rounded weights, so that little accuracy is lost.
    Int4,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScheduleArg {
    /// The same learning rate throughout.
    Constant,
    /// Multiplied by --step-gamma every --step-every epochs.
    Step,
    /// Linear warm-up over --warmup-epochs, then a cosine down to 0 at the last step.
    Cosine,
}

/// A model of the study.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StudyModel {
    /// Dense 512 sigmoid, Dense 256 sigmoid, Dense 10 softmax.
    Sigmoid,
    /// Dense 512 ReLU, Dense 256 ReLU, Dense 10 softmax.
    Relu,
    /// The ReLU model with Dropout(0.5) after each hidden layer.
    Dropout,
}

/// Hidden-layer activation of a network given with --hidden.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ActivationArg {
    /// max(x, 0)
    Relu,
    /// 1 / (1 + e^-x)
    Sigmoid,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("recipe").multiple(true)))]
struct FitArgs {
    /// Train all three models of the study.
    #[arg(long, conflicts_with_all = ["model", "hidden"])]
    all: bool,
    /// A model of the study to train (784-512-256-10); repeat for several.
    #[arg(long, value_enum, conflicts_with = "hidden")]
    model: Vec<StudyModel>,
    /// Finish a run that was interrupted (killed, out of power): every model continues from
    /// its last checkpoint, written after each epoch, and ends with the same bits as if the
    /// run had never stopped. Takes no recipe options (the run's own, in RUN_DIR/run.json,
    /// are used).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["all", "model", "hidden", "out", "overwrite", "limit", "recipe"])]
    resume: Option<PathBuf>,
    /// Train a network of your own: hidden-layer widths, input side first, comma-separated
    /// (1 to 4 layers of 1 to 1024 units). Input 784 pixels, output 10 classes.
    #[arg(long, value_delimiter = ',', value_name = "W1,W2,..")]
    hidden: Vec<usize>,
    /// Hidden-layer activation of the --hidden network [default: relu].
    #[arg(long, group = "recipe", value_enum)]
    activation: Option<ActivationArg>,
    /// Dropout rate after each hidden layer of the --hidden network, in [0, 1) [default: 0].
    #[arg(long, group = "recipe", value_name = "RATE")]
    dropout: Option<f32>,
    /// Recipe the other options start from [default: seed on Fashion-MNIST, best on any
    /// other data].
    #[arg(long, group = "recipe", value_enum)]
    preset: Option<PresetArg>,
    /// Epochs, 1 to 10,000 (default: the preset's, 20 for sigmoid and 15 for the others and
    /// for --hidden; 45 for best). With --early-stopping, the most epochs.
    #[arg(long, group = "recipe", value_parser = clap::value_parser!(u32).range(1..=MAX_EPOCHS))]
    epochs: Option<u32>,
    /// Learning rate (the schedule's peak), a positive number [seed: 0.01, best: 0.002].
    #[arg(long, group = "recipe")]
    lr: Option<f32>,
    /// Update rule [seed: sgd, best: adamw].
    #[arg(long, group = "recipe", value_enum, help_heading = "Recipe")]
    optimizer: Option<OptimizerArg>,
    /// SGD momentum in [0, 1) [default: 0].
    #[arg(long, group = "recipe", value_name = "MU", help_heading = "Recipe")]
    momentum: Option<f32>,
    /// Nesterov momentum (with --optimizer sgd and --momentum).
    #[arg(long, group = "recipe", help_heading = "Recipe")]
    nesterov: bool,
    /// Weight decay: L2 for sgd and adam, decoupled for adamw [seed: 0, best: 0.0001].
    #[arg(long, group = "recipe", value_name = "WD", help_heading = "Recipe")]
    weight_decay: Option<f32>,
    /// Learning-rate schedule, applied every step [seed: constant, best: cosine].
    #[arg(long, group = "recipe", value_enum, help_heading = "Recipe")]
    schedule: Option<ScheduleArg>,
    /// Warm-up of the cosine schedule, in epochs (fractions allowed) [best: 1].
    #[arg(long, group = "recipe", value_name = "EPOCHS", help_heading = "Recipe")]
    warmup_epochs: Option<f32>,
    /// Step schedule: epochs between drops [default: 10].
    #[arg(long, group = "recipe", value_name = "EPOCHS", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Recipe")]
    step_every: Option<u32>,
    /// Step schedule: factor of each drop [default: 0.1].
    #[arg(long, group = "recipe", value_name = "FACTOR", help_heading = "Recipe")]
    step_gamma: Option<f32>,
    /// Label smoothing in [0, 1) [seed: 0, best: 0.1].
    #[arg(long, group = "recipe", value_name = "S", help_heading = "Recipe")]
    label_smoothing: Option<f32>,
    /// Augmentation: shift each training image by up to N pixels along each axis, 0 to 27
    /// [default: 0].
    #[arg(long, group = "recipe", value_name = "PX", value_parser = clap::value_parser!(u8).range(0..=27), help_heading = "Recipe")]
    shift: Option<u8>,
    /// Augmentation: mirror half of the training images left to right [seed: off, best: on].
    #[arg(long, group = "recipe", overrides_with = "no_flip", help_heading = "Recipe")]
    flip: bool,
    /// No mirrored training images (turns the best preset's flips off).
    #[arg(long, group = "recipe", overrides_with = "flip", help_heading = "Recipe")]
    no_flip: bool,
    /// Batch norm between each hidden layer's product and its activation in training,
    /// folded into the dense layers when training ends: the exported network has the same
    /// shape, size and speed [seed: off, best: on].
    #[arg(long, group = "recipe", overrides_with = "no_batch_norm", help_heading = "Recipe")]
    batch_norm: bool,
    /// No batch norm (turns the best preset's off).
    #[arg(long, group = "recipe", overrides_with = "batch_norm", help_heading = "Recipe")]
    no_batch_norm: bool,
    /// Hold N training images out for validation (stratified by class, chosen by the
    /// seed); the last epoch's weights are kept unless the best epoch on them is clearly
    /// better (McNemar's test on the held-out images), and the test set is used once, at the
    /// end. 0: the test set as validation, the study's way [seed: 0, best: 2000, or a thirtieth
    /// of --limit].
    #[arg(long, group = "recipe", value_name = "N", help_heading = "Recipe")]
    val_split: Option<u32>,
    /// Stop after PATIENCE epochs without a better validation accuracy (needs a
    /// validation split).
    #[arg(long, group = "recipe", value_name = "PATIENCE", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Recipe")]
    early_stopping: Option<u32>,
    /// Prune the hidden layers to SPARSITY (0.9: 90% of their weights set to zero), in
    /// blocks of 4 consecutive inputs of one unit (the int8 kernels' 4-byte groups):
    /// gradual magnitude pruning from 5% to 60% of the run, the rest fine-tuning what is
    /// kept. The output layer stays dense. The sparsity reached is reported per layer.
    #[arg(long, group = "recipe", value_name = "SPARSITY", help_heading = "Recipe")]
    prune: Option<f32>,
    /// Fit the int8 model file in BYTES of flash (32768, 32K, 1.5M): the hidden layers are
    /// pruned (as --prune) to the lowest sparsity at which the file fits, and the run says
    /// which; a network that cannot fit is refused before training (choose narrower
    /// --hidden layers). Without pruning when the dense file fits.
    #[arg(long, group = "recipe", value_name = "BYTES", conflicts_with = "prune", value_parser = parse_flash, help_heading = "Recipe")]
    flash: Option<usize>,
    /// Distill from TEACHER, an f32 model file of a run on the same data (for example
    /// runs/X/best/best.f32.fmlp): each training image's target mixes its label with the
    /// teacher's probabilities for it (see --distill-weight). Images only.
    #[arg(long, group = "recipe", value_name = "TEACHER", help_heading = "Recipe")]
    distill: Option<PathBuf>,
    /// The teacher's weight in the target with --distill, above 0 and at most 1 [default: 0.5].
    #[arg(long, value_name = "W", requires = "distill", help_heading = "Recipe")]
    distill_weight: Option<f32>,
    /// The temperature T of --distill, 1 to 100: the student matches the teacher's
    /// softmax(logits / T) with its own (the gradient scaled by T²), which shows it how the
    /// teacher ranks the wrong classes [default: 1].
    #[arg(long, value_name = "T", requires = "distill", help_heading = "Recipe")]
    distill_temperature: Option<f32>,
    /// The weights of the hidden layers in the model file [default: int8]. With --flash,
    /// int4 fits a budget with less pruning (a kept block of four weights takes 3 bytes
    /// rather than 5).
    #[arg(long, group = "recipe", value_enum, help_heading = "Recipe")]
    quant: Option<QuantArg>,
    /// Images per step, 1 to 60,000 (the training set) [seed: 500, best: 256].
    #[arg(long, group = "recipe", value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH))]
    batch_size: Option<u32>,
    /// Seed for initialization, shuffling, dropout, augmentation and the validation split;
    /// same seed, same bits, whatever the thread count [default: 42].
    #[arg(long, group = "recipe")]
    seed: Option<u64>,
    /// Output folder (default: runs/<timestamp>). A folder that holds a run is refused
    /// unless --overwrite.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace the run in --out: its files are removed before any new one is written.
    #[arg(long)]
    overwrite: bool,
    /// Worker threads, 1 to 4 per CPU (default: RAYON_NUM_THREADS if set, else one per CPU).
    /// Each is pinned to its own CPU when there are no more threads than CPUs (taskset
    /// chooses which CPUs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Train on only the first N training images (quick experiments; N >= 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
    #[command(flatten)]
    data: DataArgs,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fit(args) => fit(args),
        Command::Export(args) => export(args),
        Command::Report { run_dir } => report::rebuild(&run_dir)
            .map(|()| runio::note!("Rewrote the figures, summary.md and report.html in {}", run_dir.display())),
        Command::Data(DataCommand::Fetch { dir }) => fetch(dir.unwrap_or_else(data::cache_dir)).map(|_| ()),
        Command::Data(DataCommand::Check(args)) => check(&args),
    };
    if let Err(e) = result {
        runio::note!("error: {e:#}");
        std::process::exit(1);
    }
}

fn fetch(dir: PathBuf) -> Result<PathBuf> {
    let base = data::base_url();
    runio::note!("Downloading Fashion-MNIST from {base} into {}", dir.display());
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg:26} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut current = String::new();
    data::fetch(&dir, &base, |name, done, total| {
        if current != name {
            current = name.to_string();
            bar.set_message(name.to_string());
            bar.set_position(0);
        }
        bar.set_length(total.unwrap_or(done));
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    runio::note!("Fashion-MNIST is in {} (checksums verified)", dir.display());
    Ok(dir)
}

fn check(args: &DataArgs) -> Result<()> {
    let spec = args.spec(DEFAULT_SEED)?;
    let ds = spec.open()?;
    let schema = &ds.schema;
    let shape = match schema.image {
        Some([r, c]) => format!("{r}x{c} images"),
        None => format!("{} features", schema.inputs),
    };
    let verified = if spec.is_fashion_mnist() { ", checksums of all four files verified" } else { "" };
    let line = format!(
        "{}: {} from {}: {} training and {} test examples of {shape}, {} classes ({}){verified}",
        schema.name,
        if schema.bytes { "bytes" } else { "real values" },
        ds.origin,
        ds.train.len(),
        ds.test.len(),
        schema.classes(),
        schema.class_names.join(", ")
    );
    emit(&(line + "\n"))
}

/// The seed of a test split when no --seed says otherwise: the recipes' default.
const DEFAULT_SEED: u64 = 42;

/// Reads the data; Fashion-MNIST by name is fetched into the cache when it is nowhere and
/// no folder was named.
fn open(spec: &DataSpec) -> Result<Dataset> {
    let Source::FashionMnist { dir: None } = &spec.source else { return Ok(spec.open()?) };
    match data::locate(None) {
        Ok(dir) => Ok(data::load_dir(&dir)?),
        Err(not_found) => {
            runio::note!("{not_found}\n\nTrying to download it now...");
            let dir = fetch(data::cache_dir()).map_err(|e| anyhow::anyhow!("{not_found}\n\n{e:#}"))?;
            Ok(data::load_dir(&dir)?)
        }
    }
}

/// Progress on the terminal: a bar per epoch, lines on stderr.
struct Terminal;

impl trainer::run::Progress for Terminal {
    fn model(&mut self, name: &str) -> Box<dyn Observer + '_> {
        Box::new(Bars { bar: None, name: name.to_string(), epochs: 0 })
    }

    fn say(&mut self, line: &str) {
        runio::note!("{line}");
    }
}

/// Stops training between steps once SIGINT or SIGTERM came ([`runio::stop`]).
fn stop_asked(bar: Option<&ProgressBar>) -> bool {
    let asked = runio::stop::requested().is_some();
    if let (true, Some(bar)) = (asked, bar) {
        bar.abandon();
    }
    asked
}

struct Bars {
    bar: Option<ProgressBar>,
    name: String,
    /// Epochs of the run (a line for each of up to 100; for more, about 50 lines).
    epochs: usize,
}

/// Epochs a run prints a line for each of; a longer run (a small table trains for
/// hundreds) prints every n-th, so that about 50 lines show its course.
const EPOCH_LINES: usize = 100;

impl Observer for Bars {
    fn stop(&mut self) -> bool {
        stop_asked(self.bar.as_ref())
    }

    fn resumed(&mut self, epochs: usize, finished: bool) {
        match finished {
            true => runio::note!("{}: trained in full before the interruption ({epochs} epochs)", self.name),
            false => runio::note!("{}: continuing from the checkpoint after epoch {epochs}", self.name),
        }
    }

    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template("{prefix} {pos:>3}/{len} [{bar:30}] {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} epoch {epoch}/{epochs}", self.name));
        self.epochs = epochs;
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
    }

    fn step(&mut self, step: usize, loss: f64, accuracy: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!("loss: {loss:.4} - accuracy: {accuracy:.4}"));
        }
    }

    fn validating(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_message("validating");
        }
    }

    fn epoch_end(&mut self, r: &EpochRecord) {
        if let Some(bar) = self.bar.take() {
            let steps = bar.length().unwrap_or(0);
            bar.finish_and_clear();
            let every = if self.epochs <= EPOCH_LINES { 1 } else { self.epochs.div_ceil(EPOCH_LINES / 2) };
            if !r.epoch.is_multiple_of(every) && r.epoch != 1 && r.epoch != self.epochs {
                return;
            }
            runio::note!(
                "{} epoch {:>2}: {steps}/{steps} - {:.2}s - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
                self.name,
                r.epoch,
                r.seconds,
                r.loss,
                r.accuracy,
                r.val_loss,
                r.val_accuracy
            );
        }
    }
}

/// Whether `b` names the existing file `a` (through links and `..` too); `b` may not exist.
fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = std::fs::canonicalize(p) {
            return Some(c);
        }
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
    };
    matches!((resolve(a), resolve(b)), (Some(x), Some(y)) if x == y)
}

fn export(args: ExportArgs) -> Result<()> {
    trainer::threads::start_pool(thread_count(None)?).context("starting worker threads")?;
    // A model of a run must be the one the run wrote.
    runio::manifest::verify_file(&args.model)?;
    let bytes = runio::fsutil::read_bounded(&args.model, infer_core::format::MAX_FILE_BYTES as u64)
        .with_context(|| format!("reading {}", args.model.display()))?;
    // Read once: an int8 model is only written as C; an f32 one is quantized.
    let model = match infer_core::Model::from_bytes(&bytes) {
        Ok(infer_core::Model::Int8(_)) => {
            anyhow::ensure!(
                args.c_header,
                "{} is an int8 model already: pass --c-header to write it as C, or give the f32 model to quantize",
                args.model.display()
            );
            return write_c(&args.model, &bytes, args.c_name.as_deref());
        }
        Ok(infer_core::Model::F32(model)) => trainer::format::mlp_of(&model),
        Err(error) => Err(trainer::format::ModelFileError::Invalid { path: args.model.clone(), error })?,
    };
    let out = args.out.unwrap_or_else(|| {
        let name = args.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stem = name.strip_suffix(".f32.fmlp").or_else(|| name.strip_suffix(".fmlp")).unwrap_or(&name);
        args.model.with_file_name(format!("{stem}.int8.fmlp"))
    });
    if same_file(&args.model, &out) {
        bail!("--out {} is the input model; the int8 export would replace it: name another file", out.display());
    }
    let ds = open(&data_of_model(&args.model, &args.data, DEFAULT_SEED)?)?;
    // A run's model calibrates on the training examples its run used, as `fit` did.
    let limit = if args.data.given() { None } else { dataset::source::limit_of_run(&args.model)? };
    let ds = limited(ds, limit);
    let bits = match args.quant {
        ExportQuant::Int8 => trainer::qat::WeightBits::Int8,
        ExportQuant::Int4 => trainer::qat::WeightBits::Int4,
    };
    let done = trainer::run::export(&model, &out, &ds, bits)?;
    runio::note!("{}", report::int8_line(&out.display().to_string(), &done.int8, done.f32_accuracy));
    let (f32_accuracy, predictions) = (done.f32_accuracy, done.predictions.display());
    runio::note!("f32 test accuracy {:.2}%; wrote {} and {predictions}", 100.0 * f32_accuracy, out.display());
    if args.c_header {
        write_c(&out, &done.int8.bytes, args.c_name.as_deref())?;
    }
    Ok(())
}

/// Writes the int8 model file `bytes` (at `model`) as C beside it: NAME_model.h and
/// NAME_model.c, both or neither, recorded in the manifest of the run that holds them.
fn write_c(model: &Path, bytes: &[u8], name: Option<&str>) -> Result<()> {
    let file = model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file.strip_suffix(".int8.fmlp").or_else(|| file.strip_suffix(".fmlp")).unwrap_or(&file);
    let id = trainer::c_export::identifier(name.unwrap_or(stem));
    let (h, c) = (model.with_file_name(format!("{id}_model.h")), model.with_file_name(format!("{id}_model.c")));
    let header_name = format!("{id}_model.h");
    let files =
        trainer::c_export::c_model(bytes, &id, &header_name, &file).with_context(|| format!("{}", model.display()))?;
    let _held = runio::rundir::hold_run_of(model)?;
    runio::fsutil::write_atomic_all(&[(&h, files.header.as_bytes()), (&c, files.source.as_bytes())])
        .with_context(|| format!("writing {} and {}", h.display(), c.display()))?;
    runio::rundir::record_files(&[&h, &c])?;
    runio::note!(
        "Wrote {} and {} (symbols {id}_*): compile the .c, include the .h beside infer-c's fmlp.h",
        h.display(),
        c.display()
    );
    Ok(())
}

/// What `fit` was asked to train, as the recipe module takes it; `study_data`: whether the
/// data is Fashion-MNIST, whose default preset is the study's.
fn request(args: &FitArgs, study_data: bool) -> Request {
    let models = if !args.hidden.is_empty() {
        Models::Hidden(args.hidden.clone())
    } else if args.all {
        Models::Study(ModelKind::ALL.to_vec())
    } else if !args.model.is_empty() {
        let kind = |m: &StudyModel| match m {
            StudyModel::Sigmoid => ModelKind::Sigmoid,
            StudyModel::Relu => ModelKind::Relu,
            StudyModel::Dropout => ModelKind::Dropout,
        };
        Models::Study(args.model.iter().map(kind).collect())
    } else {
        Models::Preset
    };
    let on_off = |on: bool, off: bool| match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let overrides = Overrides {
        activation: args.activation.map(|a| match a {
            ActivationArg::Relu => infer_core::Activation::Relu,
            ActivationArg::Sigmoid => infer_core::Activation::Sigmoid,
        }),
        dropout: args.dropout,
        epochs: args.epochs.map(|e| e as usize),
        lr: args.lr,
        optimizer: args.optimizer.map(|o| match o {
            OptimizerArg::Sgd => OptimizerKind::Sgd,
            OptimizerArg::Adam => OptimizerKind::Adam,
            OptimizerArg::Adamw => OptimizerKind::AdamW,
        }),
        momentum: args.momentum,
        nesterov: args.nesterov,
        weight_decay: args.weight_decay,
        schedule: args.schedule.map(|s| match s {
            ScheduleArg::Constant => ScheduleKind::Constant,
            ScheduleArg::Step => ScheduleKind::Step,
            ScheduleArg::Cosine => ScheduleKind::Cosine,
        }),
        warmup_epochs: args.warmup_epochs,
        step_every: args.step_every.map(|e| e as usize),
        step_gamma: args.step_gamma,
        label_smoothing: args.label_smoothing,
        shift: args.shift,
        flip: on_off(args.flip, args.no_flip),
        batch_norm: on_off(args.batch_norm, args.no_batch_norm),
        val_split: args.val_split.map(|n| n as usize),
        early_stopping: args.early_stopping.map(|p| p as usize),
        prune: args.prune,
        distill: args.distill.clone().map(|teacher| Distill {
            teacher,
            weight: args.distill_weight.unwrap_or(0.5),
            temperature: args.distill_temperature.unwrap_or(1.0),
        }),
        quant: args.quant.map(|q| match q {
            QuantArg::Int8 => trainer::qat::WeightBits::Int8,
            QuantArg::Int4 => trainer::qat::WeightBits::Int4,
        }),
        batch_size: args.batch_size.map(|b| b as usize),
        seed: args.seed,
    };
    let preset = match args.preset {
        Some(PresetArg::Seed) => Preset::Seed,
        Some(PresetArg::Best) => Preset::Best,
        None if study_data => Preset::Seed,
        None => Preset::Best,
    };
    Request { preset, models, overrides }
}

/// `--flash`'s value: a byte count with an optional K or M.
fn parse_flash(text: &str) -> Result<usize, String> {
    trainer::budget::parse_bytes(text)
}

/// The recipes of `request` on `ds`, each pruned to fit `flash` bytes if given.
fn recipes_for(
    request: &Request,
    ds: &trainer::data::Dataset,
    flash: Option<usize>,
) -> Result<Vec<trainer::recipe::Recipe>> {
    let facts = DataFacts { examples: ds.train.len(), images: ds.schema.image.is_some() };
    let mut recipes = recipe::resolve(request, &facts)?;
    if let Some(budget) = flash {
        for recipe in &mut recipes {
            fit_flash(recipe, ds, budget)?;
        }
    }
    Ok(recipes)
}

/// Prunes `recipe`'s hidden layers to the lowest sparsity at which its int8 file for `ds`
/// fits `budget` bytes (none if the dense file fits), and says what it chose.
fn fit_flash(recipe: &mut trainer::recipe::Recipe, ds: &trainer::data::Dataset, budget: usize) -> Result<()> {
    let mut widths = vec![ds.train.width];
    widths.extend(&recipe.network.hidden);
    widths.push(ds.schema.classes());
    let arch = infer_core::arch::Architecture::new(&widths)?;
    let names: String = ds.schema.class_names.iter().map(|n| format!("{n}\n")).collect();
    let quantizer = vec![0u8; if ds.schema.bytes { 0 } else { 8 * ds.train.width }];
    let extras = infer_core::format::Extras::new(names.as_bytes(), &quantizer);
    let activation = recipe.network.activation;
    let bits = recipe.quant;
    let sparsity = trainer::budget::sparsity_for(&arch, activation, &extras, budget, bits)
        .map_err(|e| anyhow::anyhow!("{}: --flash {budget}: {e}", recipe.name))?;
    let s = sparsity.unwrap_or(0.0);
    let bytes = trainer::budget::int8_file_bytes(&arch, activation, &extras, s, bits);
    let weights = if bits == trainer::qat::WeightBits::Int4 { "int4 hidden weights" } else { "int8 weights" };
    match sparsity {
        None => runio::note!(
            "{}: --flash {budget}: the dense file fits with {weights} ({bytes} bytes); no pruning",
            recipe.name
        ),
        Some(s) => {
            // Int4 weights fit the budget with less pruning: say how much less.
            let int4 = match bits {
                trainer::qat::WeightBits::Int8 => {
                    trainer::budget::sparsity_for(&arch, activation, &extras, budget, trainer::qat::WeightBits::Int4)
                        .ok()
                        .map(|s4| format!("; with --quant int4, {:.1}%", 100.0 * s4.unwrap_or(0.0)))
                }
                trainer::qat::WeightBits::Int4 => None,
            };
            runio::note!(
                "{}: --flash {budget}: hidden layers pruned to {:.1}% (the file with {weights} at most {bytes} bytes{})",
                recipe.name,
                100.0 * s,
                int4.unwrap_or_default()
            );
            recipe.prune = Some(trainer::prune::Prune::to(s as f32));
        }
    }
    Ok(())
}

fn fit(mut args: FitArgs) -> Result<()> {
    let threads = thread_count(args.threads)?;
    absolute_teacher(&mut args.distill)?;
    // From here SIGINT and SIGTERM stop the run between steps, resumable.
    runio::stop::install().context("setting up SIGINT and SIGTERM handling")?;
    let spec = match args.resume {
        None => Some(args.data.spec(args.seed.unwrap_or(DEFAULT_SEED))?),
        Some(_) => None,
    };
    let request = spec.as_ref().map(|spec| request(&args, spec.is_fashion_mnist()));
    if let Some(request) = &request {
        // The options are checked before any data is read.
        recipe::resolve(request, &DataFacts::STUDY)?;
    }
    trainer::threads::start_pool(threads).context("starting worker threads")?;
    let started = Instant::now();
    let (out, plan, ds, _held) = match (&args.resume, request.zip(spec)) {
        (Some(dir), _) => {
            let (plan, held) = rundir::resumable(dir)?;
            runio::note!("Resuming run {} in {}", plan.run_id, dir.display());
            // The run's data; --data-dir says where Fashion-MNIST is now.
            let spec = match (&plan.data, &args.data.data_dir) {
                (Some(spec), None) => spec.clone(),
                (Some(spec), Some(_)) if !spec.is_fashion_mnist() => spec.clone(),
                _ => DataSpec::fashion_mnist(args.data.data_dir.as_deref().or(plan.data_dir.as_deref())),
            };
            let ds = limited(open(&spec)?, plan.limit);
            (dir.clone(), plan, ds, held)
        }
        (None, Some((request, spec))) => {
            let ds = limited(open(&spec)?, args.limit);
            let recipes = recipes_for(&request, &ds, args.flash)?;
            // What training would refuse is refused before the folder is touched.
            for recipe in &recipes {
                trainer::train::check(recipe, &ds).map_err(|e| anyhow::anyhow!("{}: {e}", recipe.name))?;
            }
            let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
            let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&stamp));
            let (limit, data_dir) = (args.limit, args.data.data_dir.clone());
            let run_id = runio::manifest::new_run_id(&stamp);
            let plan = Plan { run_id, recipes, limit, data_dir, data: Some(spec) };
            // Encoded before the folder is touched: a plan that cannot be written leaves nothing.
            plan.encode()?;
            if let Some(signal) = runio::stop::requested() {
                runio::note!("Stopped by {} before the run began: nothing was written.", signal.name());
                std::process::exit(signal.exit_code());
            }
            let held = runio::rundir::prepare(&out, args.overwrite)?;
            rundir::write_plan(&out, &plan)?;
            (out, plan, ds, held)
        }
        (None, None) => unreachable!("a request without --resume"),
    };
    let kind = if ds.schema.image.is_some() { "images" } else { "examples" };
    runio::note!(
        "{} from {}: {} training, {} test {kind}. Kernels: {}, {} threads. Output: {}",
        ds.schema.name,
        ds.origin,
        ds.train.len(),
        ds.test.len(),
        trainer::kernels::simd::path(),
        rayon::current_num_threads(),
        out.display()
    );
    if let Err(e) = trainer::run::fit(&out, &plan, &ds, started, &mut Terminal) {
        let Some(stopped) = e.downcast_ref::<trainer::run::Stopped>() else { return Err(e) };
        let signal = runio::stop::requested().expect("a run stops only on a signal");
        runio::note!(
            "\nStopped by {}: {stopped}.\nContinue the run with: trainer fit --resume {}",
            signal.name(),
            runio::out::shell_word(&out)
        );
        drop(_held);
        std::process::exit(signal.exit_code());
    }
    runio::note!("Results in {}: open report.html (or summary.md) for the figures and conclusions.", out.display());
    Ok(())
}

/// Makes `--distill`'s path absolute: the recipe keeps it, and a resumed run finds it from
/// anywhere.
fn absolute_teacher(teacher: &mut Option<PathBuf>) -> Result<()> {
    if let Some(path) = teacher {
        *path = std::fs::canonicalize(&*path)
            .with_context(|| format!("--distill {}: the teacher's model file", path.display()))?;
    }
    Ok(())
}

/// The worker threads `--threads` (`option`) or RAYON_NUM_THREADS asks for, checked, after
/// checking the f32 path FMLP_F32_PATH names (the commands that start threads run kernels).
fn thread_count(option: Option<u32>) -> Result<usize> {
    trainer::kernels::simd::Path::from_env().map_err(anyhow::Error::msg)?;
    trainer::threads::count_here(option).map_err(anyhow::Error::msg)
}

/// `ds` with only the first `limit` training examples, if limited.
fn limited(mut ds: Dataset, limit: Option<u32>) -> Dataset {
    if let Some(n) = limit {
        ds.train = ds.train.head(n as usize);
    }
    ds
}
