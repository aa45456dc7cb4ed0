//! `firmware-sim check`: infer-core on the host, the way firmware runs it, against the
//! trainer's predictions.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use dataset::Split;
use dataset::cli::{DataArgs, data_of_model};
use infer_core::arch::{Architecture, MAX_WIDTH};
use infer_core::int8net::{INT8_SCRATCH_MAX, Kernel};
use infer_core::{Activation, Int8Model, Int8Scratch, Model, Scratch};

/// What `check` was asked to do.
pub struct Args {
    pub model: PathBuf,
    pub data: DataArgs,
    /// Seed of a --test-split split.
    pub seed: u64,
    pub predictions: Option<PathBuf>,
    pub no_agreement: bool,
    pub min_agreement: Option<f64>,
    /// Threads of the batched pass.
    pub threads: usize,
    pub json: bool,
}

/// Reads `index,true,predicted` rows: indices in order from 0, classes below `classes`.
fn read_predictions(path: &Path, classes: usize) -> Result<Vec<u8>> {
    // 10,000 rows of at most 18 bytes, and then some.
    let bytes = runio::fsutil::read_bounded(path, 1 << 20).with_context(|| format!("reading {}", path.display()))?;
    let mut r = csv::Reader::from_reader(&bytes[..]);
    r.records()
        .enumerate()
        .map(|(i, rec)| {
            let rec = rec?;
            let field = |k: usize, name: &str| rec.get(k).with_context(|| format!("row {}: no column `{name}`", i + 1));
            let index: usize = field(0, "index")?.parse().with_context(|| format!("row {}: bad index", i + 1))?;
            anyhow::ensure!(index == i, "row {}: index {index}, expected {i}", i + 1);
            let class: u8 = field(2, "predicted")?.parse().with_context(|| format!("row {}: bad class", i + 1))?;
            anyhow::ensure!(usize::from(class) < classes, "row {}: class {class} is not one of the {classes}", i + 1);
            Ok(class)
        })
        .collect::<Result<_>>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// `--min-agreement`: a fraction in 0..=1.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is not a fraction in 0..=1")),
        Err(e) => Err(e.to_string()),
    }
}

/// What `check` found: printed as JSON (these keys, alphabetical) or as text ([`Display`]).
#[derive(serde::Serialize)]
pub struct Report {
    accuracy: f64,
    agreement: Option<f64>,
    architecture: String,
    disagreements: Option<usize>,
    first_disagreements: Vec<usize>,
    images: usize,
    /// Images a second of the batched pass over the test set, the best of a few passes (int8;
    /// none for f32).
    images_per_s: Option<f64>,
    /// The int8 kernel both passes ran, chosen when the program ran (none for f32).
    kernel: Option<&'static str>,
    latency_us: f64,
    macs_per_image: usize,
    min_agreement: f64,
    model: String,
    model_bytes: usize,
    per_class_accuracy: Vec<f64>,
    quantization: &'static str,
    scratch_bytes: usize,
    /// Threads of the batched pass.
    threads: usize,
    /// Only in the text.
    #[serde(skip)]
    activation: Activation,
    /// The trainer's predictions compared with (none with `--no-agreement`).
    #[serde(skip)]
    predictions: Option<PathBuf>,
    /// The classes' names, from the model file or the data.
    #[serde(skip)]
    class_names: Vec<String>,
    /// What the test set holds: "images", or "examples" of a table.
    #[serde(skip)]
    noun: &'static str,
}

impl Report {
    /// Whether agreement reached `--min-agreement` (or was not checked).
    fn ok(&self) -> bool {
        self.agreement.is_none_or(|a| a >= self.min_agreement)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arch = &self.architecture;
        writeln!(f, "model          {} ({arch}, {:?}, {})", self.model, self.activation, self.quantization)?;
        writeln!(f, "{:15}{}", self.noun, self.images)?;
        writeln!(f, "accuracy       {:.2}%", 100.0 * self.accuracy)?;
        match (&self.predictions, self.agreement, self.disagreements) {
            (Some(path), Some(agreement), Some(n)) => {
                let first = &self.first_disagreements[..n.min(5)];
                let first = if first.is_empty() { String::new() } else { format!(", first: {first:?}") };
                let path = path.display();
                writeln!(f, "agreement      {:.2}% with {path} ({n} differ{first})", 100.0 * agreement)?
            }
            _ => writeln!(f, "agreement      not checked (--no-agreement)")?,
        }
        writeln!(f, "flash (model)  {} bytes", self.model_bytes)?;
        writeln!(f, "RAM (scratch)  {} bytes", self.scratch_bytes)?;
        let one = self.noun.trim_end_matches('s');
        writeln!(f, "work           {} multiply-accumulates per {one} (dense)", self.macs_per_image)?;
        writeln!(f, "latency        {:.2} us per {one} (host, 1 thread, one at a time)", self.latency_us)?;
        if let (Some(rate), Some(kernel)) = (self.images_per_s, self.kernel) {
            let threads = match self.threads {
                1 => "1 thread".to_string(),
                n => format!("{n} threads"),
            };
            writeln!(f, "throughput     {rate:.0} {} per second (batched, {threads})", self.noun)?;
            writeln!(f, "kernel         {kernel}")?;
        }
        for (name, accuracy) in self.class_names.iter().zip(&self.per_class_accuracy) {
            writeln!(f, "  {name:12} {:6.2}%", 100.0 * accuracy)?;
        }
        Ok(())
    }
}

/// Runs the check; `Ok(false)` when agreement is below the threshold.
pub fn run(args: Args) -> Result<bool> {
    let file = crate::blob::read_aligned(&args.model)?;
    let blob = crate::blob::for_host(file);
    let net = Model::from_bytes(blob).map_err(|e| anyhow::anyhow!("{}: {e}", args.model.display()))?;
    let arch = net.architecture();
    let data = data_of_model(&args.model, &args.data, args.seed)?.open()?;
    let schema = &data.schema;
    anyhow::ensure!(
        arch.inputs() == schema.inputs && arch.classes() == schema.classes(),
        "{}: a {arch} network, not one for {} ({} inputs, {} classes); pass the data it was trained on with --data",
        args.model.display(),
        schema.name,
        schema.inputs,
        schema.classes()
    );
    let test = data.test;
    // A model of a run must be the one the run wrote.
    runio::manifest::verify_file(&args.model)?;
    let (quant, default_preds, default_min) = match net {
        Model::F32(_) => ("f32", "predictions.csv", 0.999),
        Model::Int8(_) => ("int8", "predictions_int8.csv", 1.0),
    };
    let pred_path = args.predictions.clone().unwrap_or_else(|| args.model.with_file_name(default_preds));
    let trainer = (!args.no_agreement).then(|| trainer_predictions(&pred_path, arch, &test)).transpose()?;
    let kernel = infer_host::kernel().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let (outputs, scratch_bytes) = classify(net, kernel, &test)?;
    let latency_us = started.elapsed().as_secs_f64() * 1e6 / test.len().max(1) as f64;
    let images_per_s = match net {
        Model::Int8(net) => Some(batched(&net, kernel, &test, &outputs, args.threads)?),
        Model::F32(_) => None,
    };
    let report = Report {
        accuracy: outputs.iter().zip(&test.labels).filter(|(p, t)| p == t).count() as f64 / test.len() as f64,
        agreement: None,
        architecture: arch.to_string(),
        disagreements: None,
        first_disagreements: Vec::new(),
        images: test.len(),
        images_per_s,
        kernel: matches!(net, Model::Int8(_)).then(|| kernel.name()),
        latency_us,
        macs_per_image: arch.macs(),
        min_agreement: args.min_agreement.unwrap_or(default_min),
        model: args.model.display().to_string(),
        model_bytes: file.len(),
        per_class_accuracy: per_class(&outputs, &test.labels, arch.classes()),
        quantization: quant,
        scratch_bytes,
        threads: args.threads,
        activation: net.activation(),
        predictions: None,
        class_names: match net.extras().has_class_names() {
            true => net.extras().class_names().map(String::from).collect(),
            false => schema.class_names.clone(),
        },
        noun: schema.noun(),
    };
    let report = match trainer {
        Some(theirs) => compare(report, &outputs, &theirs, pred_path),
        None => report,
    };
    let ok = report.ok();
    if args.json {
        runio::out::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        if !ok {
            runio::note!(
                "agreement {:.4} is below --min-agreement {}",
                report.agreement.unwrap_or(0.0),
                report.min_agreement
            );
        }
        runio::out::emit(&report.to_string())?;
    }
    Ok(ok)
}

/// The trainer's predictions at `path`, checked against their run's manifest and the test
/// set.
fn trainer_predictions(path: &Path, arch: Architecture, test: &Split) -> Result<Vec<u8>> {
    // Files of a run must be the ones the run wrote: a model beside predictions of another
    // run (a folder that mixes runs) would compare the wrong things.
    runio::manifest::verify_file(path)?;
    anyhow::ensure!(
        path.is_file(),
        "no trainer predictions at {}: pass --predictions CSV, or --no-agreement to measure accuracy alone",
        path.display()
    );
    let predictions = read_predictions(path, arch.classes())?;
    anyhow::ensure!(
        predictions.len() == test.len(),
        "{} has {} predictions, the test set {} images",
        path.display(),
        predictions.len(),
        test.len()
    );
    Ok(predictions)
}

/// `net`'s class for every example of `test`, one at a time from one scratch buffer large
/// enough for any model, as firmware has; and the bytes of it the model needs. An f32 model
/// reads the values; an int8 model (on `kernel`) its bytes, or the raw features through its
/// input quantizer.
fn classify(net: Model<'_>, kernel: Kernel, test: &Split) -> Result<(Vec<u8>, usize)> {
    let mut outputs = vec![0u8; test.len()];
    let w = test.width;
    let needed = match net {
        Model::F32(net) => {
            let mut scratch = Scratch::<{ 2 * MAX_WIDTH }>::for_model(&net)?;
            let mut logits = vec![0f32; net.architecture().classes()];
            for (out, example) in outputs.iter_mut().zip(test.values.chunks_exact(w)) {
                *out = net.predict(example, &mut scratch, &mut logits)? as u8;
            }
            4 * net.scratch_len()
        }
        Model::Int8(net) => {
            let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::for_model(&net)?;
            let mut scores = vec![0i32; net.architecture().classes()];
            if net.extras().has_input_quantizer() {
                let mut bytes = vec![0u8; w];
                for (out, example) in outputs.iter_mut().zip(test.values.chunks_exact(w)) {
                    *out = match kernel == Kernel::detected() {
                        true => net.predict_features(example, &mut scratch, &mut scores)?,
                        false => {
                            net.quantize_features(example, &mut bytes)?;
                            net.predict_with(kernel, &bytes, &mut scratch, &mut scores)?
                        }
                    } as u8;
                }
            } else {
                for (out, example) in outputs.iter_mut().zip(int8_bytes(test)?.chunks_exact(w)) {
                    *out = net.predict_with(kernel, example, &mut scratch, &mut scores)? as u8;
                }
            }
            net.scratch_bytes()
        }
    };
    Ok((outputs, needed))
}

/// The test set's bytes, for an int8 model without an input quantizer.
fn int8_bytes(test: &Split) -> Result<&[u8]> {
    anyhow::ensure!(!test.pixels.is_empty(), "the int8 model takes bytes; the data is real-valued features");
    Ok(&test.pixels)
}

/// Images a second of the batched pass ([`infer_host::classify`]) over `test` on `threads`
/// threads, the fastest of a few passes; an error if it classifies any image otherwise than the one-at-a-time pass did
/// (`alone`), which would be a bug in a kernel.
fn batched(net: &Int8Model<'_>, kernel: Kernel, test: &Split, alone: &[u8], threads: usize) -> Result<f64> {
    let quantized;
    let bytes = match net.extras().has_input_quantizer() {
        true => {
            quantized = infer_host::quantize_rows(net, &test.values)?;
            &quantized[..]
        }
        false => int8_bytes(test)?,
    };
    let (mut scores, mut classes) = (vec![0i32; test.len() * net.architecture().classes()], vec![0u16; test.len()]);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("starting worker threads")?;
    // The best of at least three passes and a third of a second: the first pays for the
    // threads' start, the pages of the outputs and cold caches, which a service running
    // batches pays once.
    let (mut seconds, mut passes, started) = (f64::INFINITY, 0, Instant::now());
    while passes < 3 || started.elapsed().as_secs_f64() < 0.3 {
        let pass = Instant::now();
        pool.install(|| infer_host::classify(net, kernel, bytes, &mut scores, &mut classes))?;
        seconds = seconds.min(pass.elapsed().as_secs_f64());
        passes += 1;
    }
    if let Some(i) = classes.iter().zip(alone).position(|(&b, &a)| b != u16::from(a)) {
        anyhow::bail!(
            "the batched pass classified test example {i} as {}, the one-at-a-time pass as {}",
            classes[i],
            alone[i]
        );
    }
    Ok(test.len() as f64 / seconds.max(1e-9))
}

/// The fraction of each of `classes` classes' examples classified right.
fn per_class(outputs: &[u8], labels: &[u8], classes: usize) -> Vec<f64> {
    let mut per_class = vec![(0usize, 0usize); classes];
    for (&p, &t) in outputs.iter().zip(labels) {
        per_class[t as usize].1 += 1;
        per_class[t as usize].0 += usize::from(p == t);
    }
    per_class.iter().map(|(c, n)| *c as f64 / (*n).max(1) as f64).collect()
}

/// `report` with its agreement with the trainer's predictions `theirs` (read from `path`).
fn compare(report: Report, ours: &[u8], theirs: &[u8], path: PathBuf) -> Report {
    let differing: Vec<usize> = (0..ours.len()).filter(|&i| theirs[i] != ours[i]).collect();
    Report {
        agreement: Some(1.0 - differing.len() as f64 / ours.len() as f64),
        disagreements: Some(differing.len()),
        first_disagreements: differing.into_iter().take(10).collect(),
        predictions: Some(path),
        ..report
    }
}
