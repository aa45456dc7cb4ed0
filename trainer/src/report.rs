//! What a run leaves behind: per-model CSVs and model files, and the summaries.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::data::CLASS_NAMES;
use crate::fsutil::write_atomic;
use crate::quant::Int8Export;
use crate::train::{EpochRecord, Trained};

/// Test accuracy the study reported for each model, in 0..1.
pub fn study_accuracy(name: &str) -> Option<f64> {
    match name {
        "sigmoid" => Some(0.6783),
        "relu" => Some(0.8278),
        "dropout" => Some(0.7933),
        _ => None,
    }
}

/// 10x10 counts, rows = true class, columns = predicted class.
pub fn confusion(labels: &[u8], predictions: &[u8]) -> [[u32; 10]; 10] {
    let mut m = [[0u32; 10]; 10];
    for (&t, &p) in labels.iter().zip(predictions) {
        m[t as usize][p as usize] += 1;
    }
    m
}

fn csv_bytes(write: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write(&mut w)?;
    w.into_inner().context("flushing CSV")
}

/// `history.csv`: epoch, loss, accuracy, val_loss, val_accuracy, seconds.
pub fn history_csv(history: &[EpochRecord]) -> Result<Vec<u8>> {
    csv_bytes(|w| history.iter().try_for_each(|r| w.serialize(r)))
}

/// `confusion.csv`: a header of predicted class names, one row per true class.
pub fn confusion_csv(m: &[[u32; 10]; 10]) -> Result<Vec<u8>> {
    csv_bytes(|w| {
        let mut head = vec!["true \\ predicted".to_string()];
        head.extend(CLASS_NAMES.iter().map(|s| s.to_string()));
        w.write_record(&head)?;
        for (i, row) in m.iter().enumerate() {
            let mut rec = vec![CLASS_NAMES[i].to_string()];
            rec.extend(row.iter().map(|c| c.to_string()));
            w.write_record(&rec)?;
        }
        Ok(())
    })
}

/// `predictions.csv`: index, true, predicted (class indices).
pub fn predictions_csv(labels: &[u8], predictions: &[u8]) -> Result<Vec<u8>> {
    csv_bytes(|w| {
        w.write_record(["index", "true", "predicted"])?;
        for (i, (t, p)) in labels.iter().zip(predictions).enumerate() {
            w.write_record([i.to_string(), t.to_string(), p.to_string()])?;
        }
        Ok(())
    })
}

/// The per-model entry of `summary.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    /// Model name.
    pub name: String,
    /// Epochs trained.
    pub epochs: usize,
    /// Final test accuracy, 0..1.
    pub test_accuracy: f64,
    /// Final test loss.
    pub test_loss: f64,
    /// Wall time of training, validation included.
    pub train_seconds: f64,
    /// The recipe.
    pub recipe: crate::train::Recipe,
    /// Test accuracy the study reported, 0..1.
    pub study_test_accuracy: Option<f64>,
    /// Test accuracy of the int8 export (integer reference), 0..1.
    pub int8_test_accuracy: Option<f64>,
    /// Bytes of the int8 model file.
    pub int8_model_bytes: Option<usize>,
}

impl ModelSummary {
    /// The summary of a trained model.
    pub fn of(t: &Trained) -> ModelSummary {
        let name = t.recipe.kind.name();
        ModelSummary {
            name: name.to_string(),
            epochs: t.history.len(),
            test_accuracy: t.test.accuracy,
            test_loss: t.test.loss,
            train_seconds: t.train_seconds,
            recipe: t.recipe,
            study_test_accuracy: study_accuracy(name),
            int8_test_accuracy: None,
            int8_model_bytes: None,
        }
    }
}

/// Writes a model's folder: history, confusion matrix, predictions and the f32 model.
pub fn write_model_dir(dir: &Path, t: &Trained, test_labels: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join("history.csv"), &history_csv(&t.history)?)?;
    let m = confusion(test_labels, &t.test.predictions);
    write_atomic(&dir.join("confusion.csv"), &confusion_csv(&m)?)?;
    write_atomic(&dir.join("predictions.csv"), &predictions_csv(test_labels, &t.test.predictions)?)?;
    let name = format!("{}.f32.fmlp", t.recipe.kind.name());
    crate::format::save_f32(&t.model, &dir.join(name))?;
    Ok(())
}

/// Writes a model's int8 export: `<name>.int8.fmlp` and `predictions_int8.csv`, the integer
/// reference's test-set predictions that the firmware must reproduce.
pub fn write_int8(dir: &Path, name: &str, export: &Int8Export, test_labels: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join(format!("{name}.int8.fmlp")), &export.bytes)?;
    write_atomic(&dir.join("predictions_int8.csv"), &predictions_csv(test_labels, &export.predictions)?)?;
    Ok(())
}

/// Writes `summary.json` and `summary.md` for the models of a run.
pub fn write_summaries(out: &Path, models: &[ModelSummary], context: &RunContext) -> Result<()> {
    let json = serde_json::json!({
        "models": models,
        "threads": context.threads,
        "isa": context.isa,
        "total_seconds": context.total_seconds,
        "data_dir": context.data_dir,
    });
    write_atomic(&out.join("summary.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    write_atomic(&out.join("summary.md"), summary_markdown(models, context).as_bytes())?;
    Ok(())
}

/// Facts about the run that are not per model.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Rayon threads used.
    pub threads: usize,
    /// Instruction set the kernels were compiled for.
    pub isa: &'static str,
    /// Wall time of the whole run.
    pub total_seconds: f64,
    /// Where the data came from.
    pub data_dir: String,
}

/// The study's report table with measured numbers, and conclusions drawn from them.
pub fn summary_markdown(models: &[ModelSummary], ctx: &RunContext) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Fashion-MNIST MLPs: summary\n");
    let _ = writeln!(
        s,
        "SGD (no momentum), categorical cross-entropy, Glorot-uniform initialization, test set as validation. \
         {} threads, kernels compiled for {}, {:.1} s in all. Data: `{}`.\n",
        ctx.threads, ctx.isa, ctx.total_seconds, ctx.data_dir
    );
    let _ = writeln!(
        s,
        "| model | layers | epochs | lr | batch | test accuracy | study | difference | test loss | train time |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in models {
        let kind = m.recipe.kind;
        let (study, diff) = match m.study_test_accuracy {
            Some(a) => (format!("{:.2}%", 100.0 * a), format!("{:+.2} pp", 100.0 * (m.test_accuracy - a))),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2}% | {} | {} | {:.4} | {:.1} s |",
            m.name,
            kind.describe(),
            m.epochs,
            m.recipe.lr,
            m.recipe.batch_size,
            100.0 * m.test_accuracy,
            study,
            diff,
            m.test_loss,
            m.train_seconds
        );
    }
    let _ = writeln!(s, "\n## Conclusions\n");
    if let Some(best) = models.iter().max_by(|a, b| a.test_accuracy.total_cmp(&b.test_accuracy)) {
        let _ = writeln!(s, "- Best test accuracy: **{}** at {:.2}%.", best.name, 100.0 * best.test_accuracy);
    }
    let find = |n: &str| models.iter().find(|m| m.name == n);
    if let (Some(sig), Some(relu)) = (find("sigmoid"), find("relu")) {
        let _ = writeln!(
            s,
            "- ReLU vs sigmoid: {:+.2} percentage points in {} vs {} epochs. With plain SGD at lr 0.01 the \
             sigmoid network learns slowly (its gradients shrink through saturating units).",
            100.0 * (relu.test_accuracy - sig.test_accuracy),
            relu.epochs,
            sig.epochs
        );
    }
    if let (Some(relu), Some(drop)) = (find("relu"), find("dropout")) {
        let d = 100.0 * (drop.test_accuracy - relu.test_accuracy);
        let verdict = if d > 0.0 {
            "Dropout helped at this training length."
        } else {
            "Dropout did not help at this training length: with only 15 epochs of SGD the ReLU network is \
             still under-fitting, so regularizing it costs accuracy. The study called dropout optimal while its \
             own table had ReLU ahead; the measured numbers here say the same as its table."
        };
        let _ = writeln!(s, "- Dropout vs ReLU: {d:+.2} percentage points. {verdict}");
    }
    s
}
