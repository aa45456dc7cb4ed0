//! What a run leaves behind: per-model CSVs and model files, and the summaries.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use runio::fsutil::write_atomic;

use crate::data::Schema;
use crate::figures;
use crate::history::EpochRecord;
use crate::quant::Int8Export;
use crate::recipe::{ModelKind, Recipe};
use crate::train::Trained;

/// Test accuracy the study reported for each of its models, in 0..1.
pub fn study_accuracy(kind: ModelKind) -> f64 {
    match kind {
        ModelKind::Sigmoid => 0.6783,
        ModelKind::Relu => 0.8278,
        ModelKind::Dropout => 0.7933,
    }
}

/// A confusion matrix: counts of (true class, predicted class), rows = true class.
pub type Confusion = Vec<Vec<u32>>;

/// The `classes` x `classes` counts, rows = true class, columns = predicted class.
pub fn confusion(labels: &[u8], predictions: &[u8], classes: usize) -> Confusion {
    let mut m = vec![vec![0u32; classes]; classes];
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
pub fn confusion_csv(m: &[Vec<u32>], names: &[String]) -> Result<Vec<u8>> {
    csv_bytes(|w| {
        let mut head = vec!["true \\ predicted".to_string()];
        head.extend(names.iter().cloned());
        w.write_record(&head)?;
        for (i, row) in m.iter().enumerate() {
            let mut rec = vec![names[i].clone()];
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    pub recipe: Recipe,
    /// Test accuracy the study reported for this model, 0..1 (its presets only).
    pub study_test_accuracy: Option<f64>,
    /// Layer widths, input first.
    #[serde(default)]
    pub architecture: String,
    /// Test accuracy of the int8 export (integer reference), 0..1.
    #[serde(default)]
    pub int8_test_accuracy: Option<f64>,
    /// Bytes of the int8 model file.
    #[serde(default)]
    pub int8_model_bytes: Option<usize>,
    /// The epoch whose weights were kept, chosen on held-out training images: the last,
    /// unless `top_epoch` was clearly better on them (absent when the test set was the
    /// validation set, the study's way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// The epoch with the highest accuracy on the held-out images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_epoch: Option<usize>,
    /// Accuracy of the kept weights on the held-out validation images, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Loss of the kept weights on the held-out validation images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// The fraction of each pruned layer's blocks of 4 inputs cut, input side first (absent
    /// without pruning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sparsity: Vec<f64>,
}

impl ModelSummary {
    /// The summary of a model trained on data of `schema`.
    pub fn of(t: &Trained, schema: &Schema) -> ModelSummary {
        ModelSummary {
            name: t.recipe.name.clone(),
            epochs: t.history.len(),
            test_accuracy: t.test.accuracy,
            test_loss: t.test.loss,
            train_seconds: t.train_seconds,
            recipe: t.recipe.clone(),
            study_test_accuracy: t
                .recipe
                .preset()
                .filter(|_| t.recipe.is_study() && schema.is_fashion_mnist())
                .map(study_accuracy),
            architecture: t.model.architecture().map(|a| a.to_string()).unwrap_or_default(),
            int8_test_accuracy: None,
            int8_model_bytes: None,
            best_epoch: t.best_epoch,
            top_epoch: t.top_epoch,
            val_accuracy: t.best_epoch.map(|e| t.history[e - 1].val_accuracy),
            val_loss: t.best_epoch.map(|e| t.history[e - 1].val_loss),
            sparsity: t.sparsity.clone(),
        }
    }
}

/// What pruning left of a model: the blocks cut per layer and the weights that are not zero.
pub fn sparsity_line(name: &str, t: &Trained) -> String {
    let layers: Vec<String> =
        t.sparsity.iter().enumerate().map(|(l, s)| format!("layer {} {:.1}%", l + 1, 100.0 * s)).collect();
    let (nonzero, all) =
        t.model.layers.iter().fold((0, 0), |(n, a), l| (n + l.w.iter().filter(|&&w| w != 0.0).count(), a + l.w.len()));
    format!(
        "{name}: pruned blocks of 4 inputs: {}; {nonzero} of {all} weights are not zero ({:.1}%)",
        layers.join(", "),
        100.0 * nonzero as f64 / all.max(1) as f64
    )
}

/// Writes a model's folder: history, confusion matrix (classes named `names`), predictions
/// and the f32 model.
pub fn write_model_dir(dir: &Path, t: &Trained, test_labels: &[u8], names: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join("history.csv"), &history_csv(&t.history)?)?;
    let m = confusion(test_labels, &t.test.predictions, names.len());
    write_atomic(&dir.join("confusion.csv"), &confusion_csv(&m, names)?)?;
    write_atomic(&dir.join("predictions.csv"), &predictions_csv(test_labels, &t.test.predictions)?)?;
    let name = format!("{}.f32.fmlp", t.recipe.name);
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

/// `summary.json`: every model's summary, the data and the run's context.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// One entry per model, in training order.
    pub models: Vec<ModelSummary>,
    /// What the data was (Fashion-MNIST in summaries of earlier versions).
    #[serde(default = "crate::data::fashion::schema")]
    pub data: Schema,
    /// The run.
    #[serde(flatten)]
    pub context: RunContext,
}

/// Writes `summary.json` for the models of a run.
pub fn write_summary_json(out: &Path, summary: &Summary) -> Result<()> {
    write_atomic(&out.join("summary.json"), serde_json::to_string_pretty(summary)?.as_bytes())?;
    Ok(())
}

/// `samples.csv`: label and pixels (`width` each) of each image of the samples figure, so
/// that the report can be rebuilt without the dataset.
pub fn samples_csv(pixels: &[u8], labels: &[u8], width: usize) -> Result<Vec<u8>> {
    csv_bytes(|w| {
        for (label, img) in labels.iter().zip(pixels.chunks_exact(width)) {
            let mut rec = vec![label.to_string()];
            rec.extend(img.iter().map(|p| p.to_string()));
            w.write_record(&rec)?;
        }
        Ok(())
    })
}

/// Bounds on what `trainer report` reads: far more than a run writes (10,000 epochs of
/// history, 25 sample images), far less than could hurt.
const MAX_SUMMARY_BYTES: u64 = 1 << 20;
const MAX_CSV_BYTES: u64 = 4 << 20;
/// Largest figure embedded in `report.html`: the trainer's are a few hundred KB (a 256-class
/// confusion matrix a few MB).
const MAX_FIGURE_BYTES: u64 = 64 << 20;

/// A run's file, refused unread when larger than `max` bytes.
fn read_run_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    runio::fsutil::read_bounded(path, max).with_context(|| format!("reading {}", path.display()))
}

fn read_csv_rows(path: &Path, headers: bool) -> Result<Vec<Vec<String>>> {
    let bytes = read_run_file(path, MAX_CSV_BYTES)?;
    let mut r = csv::ReaderBuilder::new().has_headers(headers).from_reader(&bytes[..]);
    r.records()
        .map(|rec| Ok(rec?.iter().map(String::from).collect()))
        .collect::<Result<_>>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// Whether `name` can be a model's folder and file name inside a run: one path component
/// of letters, digits, `.`, `_` and `-`, not `.`-first (so not `..` or hidden), at most 100
/// bytes. Names the trainer gives (`relu`, `relu-128-64-dropout0.2`) always are.
pub fn is_model_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Reads a `history.csv`.
pub fn read_history(path: &Path) -> Result<Vec<EpochRecord>> {
    let bytes = read_run_file(path, MAX_CSV_BYTES)?;
    let mut r = csv::Reader::from_reader(&bytes[..]);
    r.deserialize().collect::<Result<_, _>>().with_context(|| format!("parsing {}", path.display()))
}

/// Reads a `confusion.csv` of `classes` classes.
pub fn read_confusion(path: &Path, classes: usize) -> Result<Confusion> {
    let rows = read_csv_rows(path, true)?;
    let at = |t: usize| format!("{}: row {}", path.display(), t + 1);
    anyhow::ensure!(rows.len() == classes, "{}: {} rows, expected {classes}", path.display(), rows.len());
    let mut m = vec![vec![0u32; classes]; classes];
    for (t, row) in rows.iter().enumerate() {
        anyhow::ensure!(row.len() == classes + 1, "{} has {} fields, expected {}", at(t), row.len(), classes + 1);
        for p in 0..classes {
            m[t][p] = row[p + 1].parse().with_context(|| at(t))?;
        }
    }
    Ok(m)
}

/// Reads a `samples.csv` of images of `width` pixels and `classes` classes: (pixels, labels).
pub fn read_samples(path: &Path, width: usize, classes: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let rows = read_csv_rows(path, false)?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (i, row) in rows.iter().enumerate() {
        anyhow::ensure!(row.len() == 1 + width, "{}: row {} has {} fields", path.display(), i + 1, row.len());
        let parsed: Result<Vec<u8>, _> = row.iter().map(|v| v.parse::<u8>()).collect();
        let parsed = parsed.with_context(|| format!("{}: row {}", path.display(), i + 1))?;
        let label = parsed[0];
        anyhow::ensure!(
            usize::from(label) < classes,
            "{}: row {}: label {label} is not a class",
            path.display(),
            i + 1
        );
        labels.push(label);
        pixels.extend(&parsed[1..]);
    }
    Ok((pixels, labels))
}

/// Precision and recall of each class from a confusion matrix (rows = true class).
pub fn precision_recall(m: &[Vec<u32>]) -> Vec<(f64, f64)> {
    (0..m.len())
        .map(|c| {
            let predicted: u32 = m.iter().map(|row| row[c]).sum();
            let actual: u32 = m[c].iter().sum();
            let hit = f64::from(m[c][c]);
            (hit / f64::from(predicted.max(1)), hit / f64::from(actual.max(1)))
        })
        .collect()
}

/// The `n` largest off-diagonal cells: (true class, predicted class, count).
pub fn most_confused(m: &[Vec<u32>], n: usize) -> Vec<(usize, usize, u32)> {
    let classes = m.len();
    let mut cells: Vec<(usize, usize, u32)> = (0..classes)
        .flat_map(|t| (0..classes).map(move |p| (t, p)))
        .filter(|(t, p)| t != p)
        .map(|(t, p)| (t, p, m[t][p]))
        .collect();
    cells.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    cells.truncate(n);
    cells
}

/// A saved run, read back: what the figures and the report are made of.
#[derive(Debug, Clone)]
pub struct Run {
    /// `summary.json`.
    pub summary: Summary,
    /// Per model (in the summary's order): history and confusion matrix.
    pub models: Vec<(Vec<EpochRecord>, Confusion)>,
    /// `samples.csv`, when present.
    pub samples: Option<(Vec<u8>, Vec<u8>)>,
}

impl Run {
    /// Reads a run folder written by `trainer fit`.
    pub fn read(dir: &Path) -> Result<Run> {
        let path = dir.join("summary.json");
        let text = runio::fsutil::read_bounded(&path, MAX_SUMMARY_BYTES).with_context(|| {
            format!("reading {} (is {} a folder written by `trainer fit`?)", path.display(), dir.display())
        })?;
        let summary: Summary = serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        for m in &summary.models {
            anyhow::ensure!(
                is_model_name(&m.name),
                "{}: model name {:?} is not a folder of the run (1 to 100 letters, digits, '.', '_' or '-', not starting with '.')",
                path.display(),
                m.name
            );
        }
        let classes = summary.data.classes();
        let models = summary
            .models
            .iter()
            .map(|m| {
                let d = dir.join(&m.name);
                Ok((read_history(&d.join("history.csv"))?, read_confusion(&d.join("confusion.csv"), classes)?))
            })
            .collect::<Result<_>>()?;
        // Images only: a table has no samples figure.
        let samples_path = dir.join("samples.csv");
        let samples = match (summary.data.image, samples_path.is_file()) {
            (Some(_), true) => Some(read_samples(&samples_path, summary.data.inputs, classes)?),
            _ => None,
        };
        Ok(Run { summary, models, samples })
    }
}

/// Draws every figure and writes `summary.md` and `report.html` of the run in `dir`, from
/// its saved files alone.
pub fn render(dir: &Path) -> Result<()> {
    draw(dir, &Run::read(dir)?).map(|_| ())
}

/// `trainer report`: checks that the run's files are all the run's (`manifest.json`), then
/// redraws every figure and rewrites both reports, and records the new files in the
/// manifest. A folder of an earlier version, without a run id or manifest, is redrawn
/// unchecked.
pub fn rebuild(dir: &Path) -> Result<()> {
    let _held = runio::rundir::hold(dir)?;
    let run = Run::read(dir)?;
    runio::rundir::verify(dir, run.summary.context.run_id.as_deref())?;
    let written = draw(dir, &run)?;
    runio::rundir::record(dir, &written)
}

/// Draws every figure and writes both reports of `run` into `dir`; returns the files.
fn draw(dir: &Path, run: &Run) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let data = &run.summary.data;
    if let (Some((pixels, labels)), Some(shape)) = (&run.samples, data.image) {
        figures::samples(&dir.join("samples.png"), &data.name, pixels, labels, shape, &data.class_names)?;
        written.push(dir.join("samples.png"));
    }
    for (m, (history, confusion)) in run.summary.models.iter().zip(&run.models) {
        let d = dir.join(&m.name);
        figures::curves(&d, &m.name, history)?;
        figures::confusion(&d.join("confusion.png"), &m.name, confusion, &data.class_names)?;
        written.extend(["curves.png", "curves.svg", "confusion.png"].map(|f| d.join(f)));
    }
    let curves: Vec<(&str, &[EpochRecord])> =
        run.summary.models.iter().zip(&run.models).map(|(m, (h, _))| (m.name.as_str(), h.as_slice())).collect();
    figures::val_accuracy(dir, &curves)?;
    write_atomic(&dir.join("summary.md"), summary_markdown(run).as_bytes())?;
    write_atomic(&dir.join("report.html"), report_html(dir, run)?.as_bytes())?;
    written.extend(["val_accuracy.png", "val_accuracy.svg", "summary.md", "report.html"].map(|f| dir.join(f)));
    Ok(written)
}

/// Facts about the run that are not per model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunContext {
    /// Rayon threads used.
    pub threads: usize,
    /// Instruction set the kernels were compiled for.
    pub isa: String,
    /// Wall time of the whole run.
    pub total_seconds: f64,
    /// Where the data came from.
    pub data_dir: String,
    /// The run's id, also in its `manifest.json` (absent in runs of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// A piece of the report, rendered to Markdown and to HTML alike.
enum Block {
    Heading(u8, String),
    Para(String),
    Bullets(Vec<String>),
    Table(Vec<String>, Vec<Vec<String>>),
    /// A figure: path relative to the run folder, and a caption.
    Figure(String, String),
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn blocks(run: &Run) -> Vec<Block> {
    let models = &run.summary.models;
    let mut out = vec![Block::Heading(1, title(run)), intro(run)];
    out.push(Block::Heading(2, "Models and results".into()));
    out.push(results_table(models, &run.summary.data));
    out.push(Block::Heading(2, "Conclusions".into()));
    out.push(Block::Bullets(conclusions(models)));
    out.push(Block::Heading(2, "Figures".into()));
    if run.samples.is_some() {
        out.push(Block::Figure("samples.png".into(), "The first 25 training images and their classes.".into()));
    }
    out.push(Block::Figure("val_accuracy.png".into(), "Validation accuracy of every model, epoch by epoch.".into()));
    for (m, (_, confusion)) in models.iter().zip(&run.models) {
        out.extend(model_blocks(m, confusion, &run.summary.data));
    }
    out
}

/// `Fashion-MNIST MLPs: report`: the report's title, naming the data.
fn title(run: &Run) -> String {
    format!("{} MLPs: report", inert(&run.summary.data.name))
}

/// What was trained, how it was validated, on what machine and data.
fn intro(run: &Run) -> Block {
    let models = &run.summary.models;
    let ctx = &run.summary.context;
    let nets: Vec<String> = models.iter().map(|m| format!("{} ({})", m.name, arch_of(m, &run.summary.data))).collect();
    let held_out: Vec<&str> = models.iter().filter(|m| m.recipe.val_split > 0).map(|m| m.name.as_str()).collect();
    let examples = run.summary.data.noun();
    let validation = match (held_out.len(), models.len()) {
        (0, _) => "the test set as validation (the study's way: choices made while watching it leak it into the model)"
            .to_string(),
        (h, n) if h == n => format!(
            "validation on training {examples} held out for it (stratified by class), the weights of the last \
             epoch kept unless an earlier one was clearly better on them, and the test set used once, at the end"
        ),
        _ => format!(
            "validation on held-out training {examples} for {} (the test set used once, at the end), on the test \
             set for the others (the study's way)",
            held_out.join(", ")
        ),
    };
    Block::Para(format!(
        "{} trained on categorical cross-entropy, Glorot-uniform initialization, {validation}: \
         {}. {} threads, kernels compiled for {}, {:.1} s in all. Data: `{}`.",
        match models.len() {
            1 => "One multilayer perceptron".to_string(),
            n => format!("{n} multilayer perceptrons"),
        },
        nets.join(", "),
        ctx.threads,
        inert(&ctx.isa),
        ctx.total_seconds,
        inert(&ctx.data_dir)
    ))
}

/// One row per model: its recipe, validation, test and int8 figures, and against the
/// study's where a model is one of the study's.
fn results_table(models: &[ModelSummary], data: &Schema) -> Block {
    let study = models.iter().any(|m| m.study_test_accuracy.is_some());
    let rows = models
        .iter()
        .map(|m| {
            let int8 = match m.int8_test_accuracy {
                Some(a) => format!("{} ({:+.2} pp)", pct(a), 100.0 * (a - m.test_accuracy)),
                None => "-".into(),
            };
            let validation = match (m.val_accuracy, m.best_epoch) {
                (Some(a), Some(e)) => format!("{} (epoch {e} kept)", pct(a)),
                _ => "test set".into(),
            };
            let mut row = vec![
                m.name.clone(),
                m.recipe.network.describe(data.classes()),
                m.epochs.to_string(),
                m.recipe.optimizer.describe(m.recipe.lr),
                m.recipe.batch_size.to_string(),
                validation,
                pct(m.test_accuracy),
            ];
            if study {
                row.extend(match m.study_test_accuracy {
                    Some(a) => [pct(a), format!("{:+.2} pp", 100.0 * (m.test_accuracy - a))],
                    None => ["-".into(), "-".into()],
                });
            }
            row.extend([format!("{:.4}", m.test_loss), int8, format!("{:.1} s", m.train_seconds)]);
            row
        })
        .collect();
    let mut head = vec!["model", "layers", "epochs", "optimizer", "batch", "validation accuracy", "test accuracy"];
    if study {
        head.extend(["study", "difference"]);
    }
    head.extend(["test loss", "int8 accuracy", "train time"]);
    Block::Table(head.into_iter().map(String::from).collect(), rows)
}

/// A model's section: its recipe, figures, precision and recall, most confused classes.
fn model_blocks(m: &ModelSummary, confusion: &[Vec<u32>], data: &Schema) -> Vec<Block> {
    let names = &data.class_names;
    let kept = match (m.best_epoch, m.val_accuracy, m.val_loss) {
        (Some(e), Some(a), Some(l)) => format!(
            " {} epochs ran; {} Its weights are the model's (validation accuracy {}, loss {l:.4}).",
            m.epochs,
            kept_why(e, m.top_epoch, m.epochs, data.noun()),
            pct(a)
        ),
        _ => String::new(),
    };
    let pr = precision_recall(confusion);
    let rows = names
        .iter()
        .zip(pr)
        .zip(confusion.iter().map(|r| r.iter().sum::<u32>()))
        .map(|((name, (p, r)), n)| vec![inert(name), pct(p), pct(r), n.to_string()])
        .collect();
    let mut confused: Vec<String> = most_confused(confusion, 5)
        .into_iter()
        .filter(|&(_, _, c)| c > 0)
        .map(|(t, p, c)| format!("{} taken for {}: {} times", inert(&names[t]), inert(&names[p]), c))
        .collect();
    if confused.is_empty() {
        confused.push(format!("none: every test {} was classified right", data.noun().trim_end_matches('s')));
    }
    let test_count = format!("test {}", data.noun());
    vec![
        Block::Heading(2, format!("Model: {}", m.name)),
        Block::Para(format!(
            "{} ({}). Recipe: {}.{kept} Test accuracy {}, test loss {:.4}.",
            m.recipe.network.describe(data.classes()),
            arch_of(m, data),
            m.recipe.describe(data.noun()),
            pct(m.test_accuracy),
            m.test_loss
        )),
        Block::Figure(format!("{}/curves.png", m.name), format!("{}: accuracy and loss per epoch.", m.name)),
        Block::Figure(format!("{}/confusion.png", m.name), format!("{}: confusion matrix on the test set.", m.name)),
        Block::Heading(3, format!("{}: precision and recall per class", m.name)),
        Block::Table(vec!["class".into(), "precision".into(), "recall".into(), test_count], rows),
        Block::Heading(3, format!("{}: most confused classes", m.name)),
        Block::Bullets(confused),
    ]
}

/// Free text from `summary.json` (a path, an instruction-set name), made inert for both
/// reports: characters that Markdown or HTML would act on become look-alikes that do not.
fn inert(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => '‹',
            '>' => '›',
            '`' => '\'',
            '*' => '∗',
            '|' => '¦',
            '[' => '(',
            ']' => ')',
            '&' => '+',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// `784-512-256-10`: from the summary, or from the recipe for summaries of earlier versions.
fn arch_of(m: &ModelSummary, data: &Schema) -> String {
    if !m.architecture.is_empty() {
        return inert(&m.architecture);
    }
    let arch = m.recipe.network.architecture(data.inputs, data.classes());
    arch.map(|a| a.to_string()).unwrap_or_else(|e| format!("(invalid: {e})"))
}

fn conclusions(models: &[ModelSummary]) -> Vec<String> {
    let mut s = Vec::new();
    if let Some(best) = models.iter().max_by(|a, b| a.test_accuracy.total_cmp(&b.test_accuracy)) {
        s.push(format!("Best test accuracy: **{}** at {}.", best.name, pct(best.test_accuracy)));
    }
    // The study's comparisons, between its presets only.
    let find = |k: ModelKind| models.iter().find(|m| m.recipe.is_study() && m.recipe.preset() == Some(k));
    if let (Some(sig), Some(relu)) = (find(ModelKind::Sigmoid), find(ModelKind::Relu)) {
        s.push(format!(
            "ReLU vs sigmoid: {:+.2} percentage points in {} vs {} epochs. With plain SGD at lr 0.01 the \
             sigmoid network learns slowly (its gradients shrink through saturating units).",
            100.0 * (relu.test_accuracy - sig.test_accuracy),
            relu.epochs,
            sig.epochs
        ));
    }
    if let (Some(relu), Some(drop)) = (find(ModelKind::Relu), find(ModelKind::Dropout)) {
        let d = 100.0 * (drop.test_accuracy - relu.test_accuracy);
        let verdict = if d > 0.0 {
            "Dropout helped at this training length."
        } else {
            "Dropout did not help at this training length: with only 15 epochs of SGD the ReLU network is \
             still under-fitting, so regularizing it costs accuracy. The study called dropout optimal while its \
             own table had ReLU ahead; the measured numbers here say the same as its table."
        };
        s.push(format!("Dropout vs ReLU: {d:+.2} percentage points. {verdict}"));
    }
    let int8: Vec<String> = models
        .iter()
        .filter_map(|m| m.int8_test_accuracy.map(|a| format!("{} {:+.2} pp", m.name, 100.0 * (a - m.test_accuracy))))
        .collect();
    if !int8.is_empty() {
        s.push(format!(
            "int8 export (per-channel int8 weights, 8-bit activations, integer-only inference) vs f32: {}.",
            int8.join(", ")
        ));
    }
    s
}

/// `summary.md`: the report in Markdown, figures linked by relative path.
pub fn summary_markdown(run: &Run) -> String {
    let mut s = String::new();
    for block in blocks(run) {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "{} {text}\n", "#".repeat(level as usize));
            }
            Block::Para(text) => {
                let _ = writeln!(s, "{text}\n");
            }
            Block::Bullets(items) => {
                for item in items {
                    let _ = writeln!(s, "- {item}");
                }
                s.push('\n');
            }
            Block::Table(head, rows) => {
                let _ = writeln!(s, "| {} |", head.join(" | "));
                let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
                for row in rows {
                    let _ = writeln!(s, "| {} |", row.join(" | "));
                }
                s.push('\n');
            }
            Block::Figure(path, caption) => {
                let _ = writeln!(s, "![{caption}]({path})\n");
            }
        }
    }
    s
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Escapes text and turns Markdown's `**bold**` and `` `code` `` into HTML.
fn html_inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in html_escape(text).split("**").enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<strong>{part}</strong>");
        } else {
            for (j, p) in part.split('`').enumerate() {
                if j % 2 == 1 {
                    let _ = write!(out, "<code>{p}</code>");
                } else {
                    out.push_str(p);
                }
            }
        }
    }
    out
}

/// `report.html`: the same report, self-contained (figures embedded as data URIs).
pub fn report_html(dir: &Path, run: &Run) -> Result<String> {
    use base64::Engine as _;
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    s.push_str(&html_escape(&title(run)));
    s.push_str(
        "</title><style>\
         body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}\
         td:first-child,th:first-child,td:nth-child(2){text-align:left}th{background:#f3f6fa}\
         figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}\
         code{background:#f3f3f3;padding:0 .2em}</style></head><body>\n",
    );
    for block in blocks(run) {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", html_inline(&text));
            }
            Block::Para(text) => {
                let _ = writeln!(s, "<p>{}</p>", html_inline(&text));
            }
            Block::Bullets(items) => {
                s.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(s, "<li>{}</li>", html_inline(&item));
                }
                s.push_str("</ul>\n");
            }
            Block::Table(head, rows) => {
                s.push_str("<table><tr>");
                for h in head {
                    let _ = write!(s, "<th>{}</th>", html_escape(&h));
                }
                s.push_str("</tr>\n");
                for row in rows {
                    s.push_str("<tr>");
                    for cell in row {
                        let _ = write!(s, "<td>{}</td>", html_inline(&cell));
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</table>\n");
            }
            Block::Figure(path, caption) => {
                let file = dir.join(&path);
                let bytes = runio::fsutil::read_bounded(&file, MAX_FIGURE_BYTES)
                    .with_context(|| format!("reading {}", file.display()))?;
                let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                let _ = writeln!(
                    s,
                    "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{data}\"><figcaption>{0}</figcaption></figure>",
                    html_escape(&caption)
                );
            }
        }
    }
    s.push_str("</body></html>\n");
    Ok(s)
}

/// `NAME: int8 export B bytes (inference RAM R bytes), test accuracy A% (+D pp vs f32)`.
pub fn int8_line(name: &str, export: &Int8Export, f32_accuracy: f64) -> String {
    let ram = export.model.architecture().map(|a| a.int8_scratch_bytes()).unwrap_or(0);
    let int4 = if export.model.layers.iter().any(|l| l.int4) { ", int4 hidden weights" } else { "" };
    format!(
        "{name}: int8 export {} bytes{int4} (inference RAM {ram} bytes), test accuracy {:.2}% ({:+.2} pp vs f32)",
        export.bytes.len(),
        100.0 * export.accuracy,
        100.0 * (export.accuracy - f32_accuracy)
    )
}

/// Why epoch `kept` of `epochs` is the model, `top` being the best on validation, on held-out
/// `examples` (`images`).
pub fn kept_why(kept: usize, top: Option<usize>, epochs: usize, examples: &str) -> String {
    match top {
        Some(t) if t == kept && kept == epochs => {
            format!("epoch {kept}, the last, was the best on the held-out {examples}.")
        }
        Some(t) if t == kept => format!("epoch {kept} was clearly better on the held-out {examples} than the last."),
        Some(t) => format!(
            "epoch {kept}, the last, was kept: epoch {t} scored higher on the held-out {examples}, but not by more than chance."
        ),
        // Summaries written before the top epoch was recorded kept the best epoch.
        None => format!("epoch {kept} was best on the held-out {examples}."),
    }
}
