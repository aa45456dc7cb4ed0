//! A run of `trainer fit`, from its plan to its sealed folder: each model trained (or
//! continued from its checkpoint), its files and its int8 export written; then the summary,
//! the figures and, last, the manifest. And `trainer export` of one saved model.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use runio::fsutil;

use crate::data::Dataset;
use crate::model::{Mlp, Workspace};
use crate::qat::WeightBits;
use crate::quant::{self, Int8Export};
use crate::recipe::Recipe;
use crate::report::{self, ModelSummary, RunContext, Summary};
use crate::rundir::{self, Plan};
use crate::train::{self, Observer};

/// What a run tells its user as it goes; the command line draws bars and prints lines,
/// tests stay quiet.
pub trait Progress {
    /// The observer of the epochs of the model `name`, about to train.
    fn model(&mut self, name: &str) -> Box<dyn Observer + '_>;
    /// A line of news (a model's results, what the run does next).
    fn say(&mut self, line: &str);
}

/// Trains every model of `plan` on `ds` into the run folder `out` (each continues from its
/// checkpoint there, if any), writes their files, the summary and the figures, removes the
/// checkpoints and seals the folder with its manifest. `started`: when the run began (the
/// summary gives its wall time).
pub fn fit(out: &Path, plan: &Plan, ds: &Dataset, started: Instant, progress: &mut dyn Progress) -> Result<()> {
    if ds.schema.image.is_some() {
        let samples = ds.train.head(25);
        let csv = report::samples_csv(&samples.pixels, &samples.labels, samples.width)?;
        fsutil::write_atomic(&out.join("samples.csv"), &csv).context("writing samples.csv")?;
    }
    let mut models = Vec::new();
    let names: Vec<&str> = plan.recipes.iter().map(|r| r.name.as_str()).collect();
    for (i, recipe) in plan.recipes.iter().enumerate() {
        let model = fit_model(out, recipe, ds, progress).map_err(|mut e| {
            if let Some(stopped) = e.downcast_mut::<Stopped>() {
                stopped.finished = names[..i].iter().map(|n| n.to_string()).collect();
                stopped.waiting = names[i + 1..].iter().map(|n| n.to_string()).collect();
            }
            e
        })?;
        models.push(model);
    }
    let context = RunContext {
        threads: rayon::current_num_threads(),
        isa: crate::kernels::simd::path().to_string(),
        total_seconds: started.elapsed().as_secs_f64(),
        data_dir: ds.origin.clone(),
        run_id: Some(plan.run_id.clone()),
    };
    report::write_summary_json(out, &Summary { models, data: ds.schema.clone(), context })?;
    progress.say("\nDrawing figures and the report...");
    report::render(out)?;
    rundir::remove_checkpoints(out, plan)?;
    // Last: the manifest that ties every file to this run.
    runio::rundir::seal(out, &plan.run_id, &names)
}

/// A run that stopped because [`Observer::stop`] said so: where it stands. Its folder can be
/// continued with `trainer fit --resume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Models trained in full, their files written.
    pub finished: Vec<String>,
    /// The model training when the run stopped.
    pub model: String,
    /// Its epochs done and saved in its checkpoint, and its epochs in all.
    pub epochs: usize,
    pub of: usize,
    /// Models not started.
    pub waiting: Vec<String>,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |names: &[String]| names.join(", ");
        if !self.finished.is_empty() {
            write!(f, "{} trained in full; ", list(&self.finished))?;
        }
        match self.epochs {
            0 => write!(f, "{} stopped in its first epoch (nothing to keep)", self.model)?,
            n => write!(f, "{} stopped after epoch {n} of {}, which its checkpoint holds", self.model, self.of)?,
        }
        if !self.waiting.is_empty() {
            write!(f, "; {} not started", list(&self.waiting))?;
        }
        Ok(())
    }
}

impl std::error::Error for Stopped {}

/// Trains the model of `recipe` into its folder of `out` and exports it to int8: its summary.
fn fit_model(out: &Path, recipe: &Recipe, ds: &Dataset, progress: &mut dyn Progress) -> Result<ModelSummary> {
    let name = recipe.name.as_str();
    let classes = ds.schema.classes();
    progress.say(&format!(
        "\n{name}: {}\n{name}: {}",
        recipe.network.describe(classes),
        recipe.describe(ds.schema.noun())
    ));
    let dir = out.join(name);
    let checkpoint = dir.join(rundir::CHECKPOINT);
    let trained = train::fit_with(recipe, ds, &mut *progress.model(name), Some(&checkpoint)).map_err(|e| match e {
        train::FitError::Stopped { epochs } => {
            let (model, of) = (name.to_string(), recipe.epochs);
            anyhow::Error::new(Stopped { finished: Vec::new(), model, epochs, of, waiting: Vec::new() })
        }
        e => anyhow!("{name}: {e}"),
    })?;
    report::write_model_dir(&dir, &trained, &ds.test.labels, &ds.schema.class_names)?;
    if let Some(kept) = trained.best_epoch {
        let r = &trained.history[kept - 1];
        progress.say(&format!(
            "{name}: kept epoch {kept} of {}: val accuracy {:.2}%, val loss {:.4} ({})",
            trained.history.len(),
            100.0 * r.val_accuracy,
            r.val_loss,
            report::kept_why(kept, trained.top_epoch, trained.history.len(), ds.schema.noun())
        ));
    }
    if !trained.sparsity.is_empty() {
        progress.say(&report::sparsity_line(name, &trained));
    }
    let (test, seconds) = (&trained.test, trained.train_seconds);
    progress.say(&format!(
        "{name}: test accuracy {:.2}%, test loss {:.4}, {seconds:.1} s",
        100.0 * test.accuracy,
        test.loss
    ));
    let export =
        quant::export_as(&trained.model, ds, trained.recipe.quant).map_err(|e| anyhow!("{name}: int8 export: {e}"))?;
    report::write_int8(&dir, name, &export, &ds.test.labels)?;
    progress.say(&report::int8_line(name, &export, test.accuracy));
    let mut summary = ModelSummary::of(&trained, &ds.schema);
    summary.int8_test_accuracy = Some(export.accuracy);
    summary.int8_model_bytes = Some(export.bytes.len());
    Ok(summary)
}

/// An f32 model exported to int8 by [`export`].
pub struct Exported {
    /// The int8 model, its predictions and accuracy.
    pub int8: Int8Export,
    /// Test accuracy of the f32 model.
    pub f32_accuracy: f64,
    /// Where the integer reference's predictions were written.
    pub predictions: std::path::PathBuf,
}

/// Quantizes `model` (calibrated on `ds`'s training images; hidden weights `bits` wide) into
/// the file `out`, with the
/// integer reference's test-set predictions beside it, and records both in the manifest of
/// the run that holds them, if any.
pub fn export(model: &Mlp, out: &Path, ds: &Dataset, bits: WeightBits) -> Result<Exported> {
    let int8 = quant::export_as(model, ds, bits).map_err(|e| anyhow!("int8 export: {e}"))?;
    let f32_accuracy = train::evaluate(model, &ds.test, &mut Workspace::default()).accuracy;
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let predictions = dir.join("predictions_int8.csv");
    let csv = report::predictions_csv(&ds.test.labels, &int8.predictions)?;
    // Both or neither: a model without its reference predictions could not be checked.
    let _held = runio::rundir::hold_run_of(out)?;
    fsutil::write_atomic_all(&[(out, &int8.bytes), (&predictions, &csv)])
        .with_context(|| format!("writing {} and {}", out.display(), predictions.display()))?;
    runio::rundir::record_files(&[out, &predictions])?;
    Ok(Exported { int8, f32_accuracy, predictions })
}
