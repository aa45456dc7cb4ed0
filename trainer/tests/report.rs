//! `trainer report`: figures and report rebuilt from a small saved run, no dataset needed.

use std::path::Path;
use std::process::Command;

use trainer::history::EpochRecord;
use trainer::recipe::{ModelKind, Recipe};
use trainer::report::{self, ModelSummary, RunContext, Summary};

fn write(path: &Path, bytes: &[u8]) {
    runio::fsutil::write_atomic(path, bytes).unwrap();
}

/// A run of two models of three epochs each, with a confusion matrix that has one clear
/// most-confused pair (Shirt taken for T-shirt/top).
fn saved_run(dir: &Path) {
    let mut models = Vec::new();
    for (i, kind) in [ModelKind::Relu, ModelKind::Sigmoid].into_iter().enumerate() {
        let name = kind.name();
        let history: Vec<EpochRecord> = (1..=3)
            .map(|e| {
                let e64 = e as f64;
                EpochRecord {
                    epoch: e,
                    loss: 1.0 / e64,
                    accuracy: 0.5 + 0.1 * e64,
                    val_loss: 1.1 / e64,
                    val_accuracy: 0.45 + 0.1 * e64 - 0.02 * i as f64,
                    seconds: 1.0,
                }
            })
            .collect();
        let mut m = vec![vec![0u32; 10]; 10];
        for (c, row) in m.iter_mut().enumerate() {
            row[c] = 900;
            row[(c + 1) % 10] = 100;
        }
        m[6][0] = 300;
        let held_out = i == 1;
        let d = dir.join(name);
        write(&d.join("history.csv"), &report::history_csv(&history).unwrap());
        let names = trainer::data::fashion::schema().class_names;
        write(&d.join("confusion.csv"), &report::confusion_csv(&m, &names).unwrap());
        models.push(ModelSummary {
            name: name.to_string(),
            epochs: 3,
            test_accuracy: 0.8 - 0.1 * i as f64,
            test_loss: 0.5,
            train_seconds: 3.0,
            recipe: Recipe { epochs: 3, val_split: if held_out { 5000 } else { 0 }, ..Recipe::seed(kind) },
            study_test_accuracy: (!held_out).then(|| report::study_accuracy(kind)),
            architecture: "784-512-256-10".into(),
            int8_test_accuracy: Some(0.79 - 0.1 * i as f64),
            int8_model_bytes: Some(538_186),
            // The second model validated on held-out images and kept its second epoch, the
            // best on them and clearly better than the last.
            best_epoch: held_out.then_some(2),
            top_epoch: held_out.then_some(2),
            val_accuracy: held_out.then_some(0.7125),
            val_loss: held_out.then_some(0.61),
            sparsity: Vec::new(),
        });
    }
    let labels: Vec<u8> = (0..25).map(|i| (i % 10) as u8).collect();
    let pixels: Vec<u8> = (0..25 * 784).map(|k| if (k % 784) / 28 % 7 < 4 { (k % 251) as u8 } else { 0 }).collect();
    write(&dir.join("samples.csv"), &report::samples_csv(&pixels, &labels, 784).unwrap());
    let context =
        RunContext { threads: 2, isa: "test".into(), total_seconds: 6.0, data_dir: "nowhere".into(), run_id: None };
    let data = trainer::data::fashion::schema();
    report::write_summary_json(dir, &Summary { models, data, context }).unwrap();
}

/// Decodes a PNG and checks its size and that it has drawing on it, not a blank page.
fn check_png(path: &Path, size: (u32, u32)) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    assert_eq!(img.dimensions(), size, "{}", path.display());
    let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let share = inked as f64 / (size.0 * size.1) as f64;
    assert!(share > 0.01, "{}: only {:.2}% of pixels drawn", path.display(), 100.0 * share);
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
    assert!(dark > 500, "{}: no text or lines ({dark} dark pixels)", path.display());
}

#[test]
fn report_rebuilds_figures_and_report_from_saved_files() {
    let dir = tempfile::tempdir().unwrap();
    saved_run(dir.path());
    let run = Command::new(env!("CARGO_BIN_EXE_trainer")).arg("report").arg(dir.path()).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let d = dir.path();
    check_png(&d.join("samples.png"), (760, 840));
    check_png(&d.join("val_accuracy.png"), (1000, 620));
    for name in ["relu", "sigmoid"] {
        check_png(&d.join(name).join("curves.png"), (1400, 560));
        check_png(&d.join(name).join("confusion.png"), (1000, 1000));
        let svg = std::fs::read_to_string(d.join(name).join("curves.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("validation"), "{name}/curves.svg");
    }

    let md = std::fs::read_to_string(d.join("summary.md")).unwrap();
    assert!(md.contains("| relu | Dense(512, relu)"), "{md}");
    assert!(md.contains("![The first 25 training images"), "{md}");
    assert!(md.contains("relu/confusion.png"));
    assert!(md.contains("Shirt taken for T-shirt/top: 300 times"), "{md}");
    // Precision of T-shirt/top: 900 right out of 900 + 100 (Ankle boot) + 300 (Shirt).
    assert!(md.contains("| T-shirt/top | 69.23% | 90.00% | 1000 |"), "{md}");
    // The sigmoid model held images out: another recipe than the study's, so it is not
    // compared with the study, and its validation and test figures are shown apart.
    assert!(!md.contains("ReLU vs sigmoid"), "{md}");
    assert!(
        md.contains("71.25% (epoch 2 kept)")
            && md.contains("epoch 2 was clearly better on the held-out images than the last"),
        "{md}"
    );
    assert!(md.contains("validation on held-out training images for sigmoid"), "{md}");
    assert!(md.contains("| test set |"), "the study's model validated on the test set: {md}");

    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 2 + 2 * 2);
    assert!(!html.contains("src=\"relu/"), "report.html must not link to files");
    assert!(html.contains("<strong>relu</strong>"));
    assert!(md.contains("2 multilayer perceptrons") && md.contains("relu (784-512-256-10)"), "{md}");
}

#[test]
fn report_describes_the_network_that_was_trained() {
    let dir = tempfile::tempdir().unwrap();
    saved_run(dir.path());
    // Rewrite the run as one custom network, named as `fit --hidden 128,64` names it.
    let path = dir.path().join("summary.json");
    let mut summary: Summary = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    summary.models.truncate(1);
    let m = &mut summary.models[0];
    m.recipe.network.hidden = vec![128, 64];
    m.recipe.name = m.recipe.network.name();
    m.name = m.recipe.name.clone();
    m.architecture = "784-128-64-10".into();
    m.study_test_accuracy = None;
    std::fs::rename(dir.path().join("relu"), dir.path().join("relu-128-64")).unwrap();
    report::write_summary_json(dir.path(), &summary).unwrap();
    report::render(dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("One multilayer perceptron") && md.contains("relu-128-64 (784-128-64-10)"), "{md}");
    assert!(md.contains("| relu-128-64 | Dense(128, relu) > Dense(64, relu) > Dense(10, softmax) |"), "{md}");
    assert!(!md.contains("784-512-256-10") && !md.contains("Three"), "{md}");
}

#[test]
fn summaries_of_earlier_versions_still_render() {
    let dir = tempfile::tempdir().unwrap();
    saved_run(dir.path());
    // summary.json as version 0.1 wrote it: a study recipe by `kind`, no architecture.
    let old = r#"{"models": [{"name": "relu", "epochs": 3, "test_accuracy": 0.8, "test_loss": 0.5,
        "train_seconds": 3.0, "recipe": {"kind": "relu", "epochs": 3, "lr": 0.01, "batch_size": 500, "seed": 42},
        "study_test_accuracy": 0.8278, "int8_test_accuracy": 0.79, "int8_model_bytes": 538186}],
        "threads": 2, "isa": "test", "total_seconds": 6.0, "data_dir": "nowhere"}"#;
    std::fs::write(dir.path().join("summary.json"), old).unwrap();
    let run = report::Run::read(dir.path()).unwrap();
    assert_eq!(run.summary.models[0].recipe, Recipe { epochs: 3, ..Recipe::seed(ModelKind::Relu) });
    report::render(dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("relu (784-512-256-10)"), "{md}");
}

#[test]
fn report_on_a_folder_without_a_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_trainer")).arg("report").arg(dir.path()).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("summary.json") && stderr.contains("trainer fit"), "{stderr}");
}
