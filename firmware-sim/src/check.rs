//! `firmware-sim check`: infer-core on the host, the way firmware runs it, against the
//! trainer's predictions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use dataset::{self as data, CLASS_NAMES, CLASSES, PIXELS};
use infer_core::arch::MAX_WIDTH;
use infer_core::int8net::INT8_SCRATCH_MAX;
use infer_core::{Int8Scratch, Model, Scratch};

/// What `check` was asked to do.
pub struct Args {
    pub model: PathBuf,
    pub data: Option<PathBuf>,
    pub predictions: Option<PathBuf>,
    pub no_agreement: bool,
    pub min_agreement: Option<f64>,
    pub json: bool,
}

/// Reads `index,true,predicted` rows: indices in order from 0, classes below `classes`.
fn read_predictions(path: &Path, classes: usize) -> Result<Vec<u8>> {
    // 10,000 rows of at most 18 bytes, and then some.
    let bytes = dataset::fsutil::read_bounded(path, 1 << 20).with_context(|| format!("reading {}", path.display()))?;
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

/// Runs the check; `Ok(false)` when agreement is below the threshold.
pub fn run(args: Args) -> Result<bool> {
    let Args { model, data, predictions, no_agreement, min_agreement, json } = args;
    let blob = crate::read_aligned(&model)?;
    let net = Model::from_bytes(blob).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
    let arch = net.architecture();
    anyhow::ensure!(
        arch.inputs() == PIXELS && arch.classes() == CLASSES,
        "{}: a {arch} network, not one for Fashion-MNIST ({PIXELS} pixels in, {CLASSES} classes out)",
        model.display()
    );
    let test = data::load(data.as_deref())?.test;
    let (quant, default_preds, default_min, scratch_bytes) = match net {
        Model::F32(m) => ("f32", "predictions.csv", 0.999, 4 * m.scratch_len()),
        Model::Int8(m) => ("int8", "predictions_int8.csv", 1.0, m.scratch_bytes()),
    };
    let min_agreement = min_agreement.unwrap_or(default_min);

    let pred_path = predictions.unwrap_or_else(|| model.with_file_name(default_preds));
    // Files of a run must be the ones the run wrote: a model beside predictions of another
    // run (a folder that mixes runs) would compare the wrong things.
    for file in std::iter::once(&model).chain((!no_agreement).then_some(&pred_path)) {
        dataset::manifest::verify_file(file)?;
    }
    let trainer_preds = match (no_agreement, pred_path.is_file()) {
        (true, _) => None,
        (false, true) => Some(read_predictions(&pred_path, arch.classes())?),
        (false, false) => anyhow::bail!(
            "no trainer predictions at {}: pass --predictions CSV, or --no-agreement to measure accuracy alone",
            pred_path.display()
        ),
    };
    if let Some(p) = &trainer_preds {
        anyhow::ensure!(
            p.len() == test.len(),
            "{} has {} predictions, the test set {} images",
            pred_path.display(),
            p.len(),
            test.len()
        );
    }

    let mut outputs = vec![0u8; test.len()];
    let started = Instant::now();
    // One scratch buffer, as firmware has, large enough for any model.
    match net {
        Model::F32(net) => {
            let mut scratch = Scratch::<{ 2 * MAX_WIDTH }>::for_model(&net)?;
            let mut logits = [0f32; CLASSES];
            for (out, image) in outputs.iter_mut().zip(test.images.chunks_exact(PIXELS)) {
                *out = net.predict(image, &mut scratch, &mut logits)? as u8;
            }
        }
        Model::Int8(net) => {
            let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::for_model(&net)?;
            let mut scores = [0i32; CLASSES];
            for (out, image) in outputs.iter_mut().zip(test.pixels.chunks_exact(PIXELS)) {
                *out = net.predict(image, &mut scratch, &mut scores)? as u8;
            }
        }
    }
    let latency_us = started.elapsed().as_secs_f64() * 1e6 / test.len().max(1) as f64;

    let correct = outputs.iter().zip(&test.labels).filter(|(p, t)| p == t).count();
    let accuracy = correct as f64 / test.len() as f64;
    let mut per_class = [(0usize, 0usize); 10];
    for (&p, &t) in outputs.iter().zip(&test.labels) {
        per_class[t as usize].1 += 1;
        per_class[t as usize].0 += usize::from(p == t);
    }
    let differing: Vec<usize> = match &trainer_preds {
        Some(tp) => (0..test.len()).filter(|&i| tp[i] != outputs[i]).collect(),
        None => Vec::new(),
    };
    let agreement = 1.0 - differing.len() as f64 / test.len() as f64;
    let ok = trainer_preds.is_none() || agreement >= min_agreement;

    let mut out = String::new();
    if json {
        let obj = serde_json::json!({
            "model": model.display().to_string(),
            "images": test.len(),
            "accuracy": accuracy,
            "disagreements": trainer_preds.as_ref().map(|_| differing.len()),
            "first_disagreements": differing.iter().take(10).collect::<Vec<_>>(),
            "per_class_accuracy": per_class.iter().map(|(c, n)| *c as f64 / (*n).max(1) as f64).collect::<Vec<_>>(),
            "quantization": quant,
            "agreement": trainer_preds.as_ref().map(|_| agreement),
            "min_agreement": min_agreement,
            "model_bytes": blob.len(),
            "scratch_bytes": scratch_bytes,
            "latency_us": latency_us,
            "macs_per_image": arch.macs(),
            "architecture": arch.to_string(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&obj)?)?;
    } else {
        writeln!(out, "model          {} ({arch}, {:?}, {quant})", model.display(), net.activation())?;
        writeln!(out, "images         {}", test.len())?;
        writeln!(out, "accuracy       {:.2}%", 100.0 * accuracy)?;
        match &trainer_preds {
            Some(_) => writeln!(
                out,
                "agreement      {:.2}% with {} ({} differ{})",
                100.0 * agreement,
                pred_path.display(),
                differing.len(),
                if differing.is_empty() {
                    String::new()
                } else {
                    format!(", first: {:?}", &differing[..differing.len().min(5)])
                }
            )?,
            None => writeln!(out, "agreement      not checked (--no-agreement)")?,
        }
        writeln!(out, "flash (model)  {} bytes", blob.len())?;
        writeln!(out, "RAM (scratch)  {scratch_bytes} bytes")?;
        writeln!(out, "work           {} multiply-accumulates per image (dense)", arch.macs())?;
        writeln!(out, "latency        {latency_us:.2} us per image (host, 1 thread)")?;
        for (name, (c, n)) in CLASS_NAMES.iter().zip(per_class) {
            writeln!(out, "  {name:12} {:6.2}%", 100.0 * c as f64 / n.max(1) as f64)?;
        }
        if !ok {
            eprintln!("agreement {:.4} is below --min-agreement {min_agreement}", agreement);
        }
    }
    crate::emit(&out)?;
    Ok(ok)
}
