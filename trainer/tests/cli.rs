//! The `trainer` binary as a user runs it.

use std::process::Command;

mod common;

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
}

/// `trainer fit ARGS --data-dir DATA --out OUT` on the real dataset (found as the tool finds
/// it), which must succeed; returns what it printed on stderr.
fn fit_ok(args: &[&str], out: &std::path::Path) -> String {
    let data = common::data_dir();
    let run = trainer().arg("fit").args(args).args(["--data-dir", &data]).arg("--out").arg(out).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    stderr
}

#[test]
fn fit_writes_every_output_on_the_real_dataset() {
    let out = tempfile::tempdir().unwrap();
    let stderr = fit_ok(&["--model", "relu", "--model", "sigmoid", "--epochs", "1", "--limit", "3000"], out.path());
    assert!(stderr.contains("val_accuracy"), "Keras-like epoch line: {stderr}");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    let models = summary["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for m in models {
        assert_eq!(m["epochs"], 1);
        // The summary's figures are the files': accuracy from the predictions, time from
        // the history (training includes its one epoch and more).
        let dir = out.path().join(m["name"].as_str().unwrap());
        let predictions = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
        let right = predictions.lines().skip(1).filter(|l| l.split(',').nth(1) == l.split(',').nth(2)).count();
        assert_eq!(m["test_accuracy"].as_f64().unwrap(), right as f64 / 10_000.0, "{m}");
        let history = std::fs::read_to_string(dir.join("history.csv")).unwrap();
        let epoch: Vec<f64> = history.lines().nth(1).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
        assert!(m["train_seconds"].as_f64().unwrap() >= epoch[5], "{m}: {history}");
        let loss = m["test_loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{m}");
    }
    assert!(std::fs::read_to_string(out.path().join("summary.md")).unwrap().contains("| relu |"));
    for figure in ["samples.png", "val_accuracy.png", "report.html", "relu/curves.png", "sigmoid/confusion.png"] {
        assert!(out.path().join(figure).is_file(), "{figure} missing");
    }
    for name in ["relu", "sigmoid"] {
        let dir = out.path().join(name);
        let history = std::fs::read_to_string(dir.join("history.csv")).unwrap();
        assert!(history.starts_with("epoch,loss,accuracy,val_loss,val_accuracy,seconds\n1,"), "{history}");
        let confusion = std::fs::read_to_string(dir.join("confusion.csv")).unwrap();
        let lines: Vec<&str> = confusion.lines().collect();
        assert_eq!(lines.len(), 11);
        assert!(lines[1].starts_with("T-shirt/top,") && lines[10].starts_with("Ankle boot,"));
        let total: u32 = lines[1..].iter().flat_map(|l| l.split(',').skip(1)).map(|c| c.parse::<u32>().unwrap()).sum();
        assert_eq!(total, 10_000);
        let predictions = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
        assert_eq!(predictions.lines().count(), 10_001);
        let model = trainer::format::load_f32(&dir.join(format!("{name}.f32.fmlp"))).unwrap();
        assert!(model.is_finite());
        let int8 = std::fs::read(dir.join(format!("{name}.int8.fmlp"))).unwrap();
        assert!(matches!(infer_core::Model::from_bytes(&int8), Ok(infer_core::Model::Int8(_))));
        let predictions = std::fs::read_to_string(dir.join("predictions_int8.csv")).unwrap();
        assert_eq!(predictions.lines().count(), 10_001);
    }
    for m in models {
        let int8 = m["int8_test_accuracy"].as_f64().unwrap();
        assert!((int8 - m["test_accuracy"].as_f64().unwrap()).abs() < 0.05, "{m}");
    }
}

#[test]
fn fit_hidden_trains_a_network_of_that_shape_and_names_it_so() {
    let out = tempfile::tempdir().unwrap();
    let args = ["--hidden", "32,16", "--dropout", "0.1", "--epochs", "1", "--limit", "2000"];
    let stderr = fit_ok(&args, out.path());
    assert!(
        stderr.contains("Dense(32, relu) > Dropout(0.1) > Dense(16, relu) > Dropout(0.1) > Dense(10, softmax)"),
        "{stderr}"
    );
    assert!(stderr.contains("inference RAM 440 bytes"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    let m = &summary["models"][0];
    assert_eq!(m["name"], "relu-32-16-dropout0.1");
    assert_eq!(m["architecture"], "784-32-16-10");
    assert_eq!(m["recipe"]["network"]["hidden"], serde_json::json!([32, 16]));
    assert!(m["study_test_accuracy"].is_null(), "{m}");
    let dir = out.path().join("relu-32-16-dropout0.1");
    let int8 = std::fs::read(dir.join("relu-32-16-dropout0.1.int8.fmlp")).unwrap();
    let model = infer_core::Int8Model::from_bytes(&int8).unwrap();
    assert_eq!(model.architecture().to_string(), "784-32-16-10");
    let f32 = trainer::format::load_f32(&dir.join("relu-32-16-dropout0.1.f32.fmlp")).unwrap();
    assert_eq!(f32.widths(), [784, 32, 16, 10]);
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(md.contains("One multilayer perceptron") && md.contains("(784-32-16-10)"), "{md}");
}

#[test]
fn networks_the_format_cannot_hold_are_refused_before_any_work() {
    let cases: [(&[&str], &str); 19] = [
        (&["--hidden", "32", "--flash", "32apples"], "is not a size in bytes"),
        (&["--hidden", "32", "--flash", "32K", "--prune", "0.5"], "cannot be used with"),
        (&["--hidden", "2000"], "width 2000 of layer 1"),
        (&["--hidden", "8,8,8,8,8"], "5 hidden layers; a network has 1 to 4"),
        (&["--hidden", "0"], "width 0 of layer 1"),
        (&["--hidden", "32", "--dropout", "1"], "--dropout must be in [0, 1)"),
        (&["--activation", "sigmoid", "--model", "relu"], "--hidden"),
        (&["--hidden", "32", "--model", "relu"], "cannot be used with"),
        (&["--model", "relu", "--early-stopping", "3"], "--val-split"),
        (&["--model", "relu", "--optimizer", "adamw", "--momentum", "0.9"], "are for --optimizer sgd"),
        (&["--model", "relu", "--nesterov"], "--nesterov needs --momentum"),
        (&["--model", "relu", "--label-smoothing", "1"], "label smoothing must be in [0, 1)"),
        (&["--model", "relu", "--warmup-epochs", "2"], "--warmup-epochs is for --schedule cosine"),
        (&["--model", "relu", "--optimizer", "adam", "--weight-decay=-1"], "weight decay must be"),
        (&["--model", "relu", "--shift", "28"], "28 is not in 0..=27"),
        (&["--resume", "/nonexistent", "--epochs", "3"], "cannot be used with"),
        (&["--resume", "/nonexistent"], "no such folder"),
        (&["--resume", "/tmp", "--all"], "cannot be used with"),
        (&[], "say what to train"),
    ];
    for (args, needle) in cases {
        let run = trainer().arg("fit").args(args).args(["--data-dir", "/nonexistent"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("Fashion-MNIST not found"), "{args:?}: checked before the data: {stderr}");
    }
}

#[test]
fn the_best_preset_on_a_limited_set_holds_out_a_thirtieth_and_reports_validation_apart() {
    let out = tempfile::tempdir().unwrap();
    let stderr = fit_ok(&["--preset", "best", "--hidden", "16", "--epochs", "2", "--limit", "1200"], out.path());
    assert!(stderr.contains("validation on 40 held-out training images"), "{stderr}");
    assert!(stderr.contains("kept epoch"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    let m = &summary["models"][0];
    assert_eq!(m["name"], "relu-16-best");
    assert_eq!(m["recipe"]["val_split"], 40);
    assert_eq!(m["recipe"]["optimizer"]["name"], "adamw");
    assert_eq!(m["recipe"]["schedule"]["name"], "cosine");
    assert_eq!(m["recipe"]["augment"]["flip"], true, "the preset mirrors half the images");
    assert_eq!(m["recipe"]["network"]["batch_norm"], true, "the preset trains with batch norm");
    assert!(stderr.contains("Dense(16) > BatchNorm > Activation(relu)"), "{stderr}");
    assert!(m["best_epoch"].as_u64().is_some_and(|e| (1..=2).contains(&e)), "{m}");
    assert!(m["val_accuracy"].as_f64().is_some(), "{m}");
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(md.contains("kept)") && md.contains("held-out"), "{md}");

    let out = tempfile::tempdir().unwrap();
    fit_ok(&["--preset", "best", "--hidden", "16", "--epochs", "1", "--limit", "1200", "--no-flip"], out.path());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["models"][0]["recipe"]["augment"]["flip"], false, "--no-flip turns the preset's flips off");

    let out = tempfile::tempdir().unwrap();
    fit_ok(&["--preset", "best", "--hidden", "16", "--epochs", "1", "--limit", "1200", "--no-batch-norm"], out.path());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["models"][0]["recipe"]["network"]["batch_norm"], false, "--no-batch-norm turns it off");

    // The study's recipe with a norm: named for it, and exported as a plain network.
    let out = tempfile::tempdir().unwrap();
    fit_ok(&["--hidden", "16", "--batch-norm", "--epochs", "1", "--limit", "1200"], out.path());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["models"][0]["name"], "relu-16-bn");
    assert_eq!(summary["models"][0]["recipe"]["network"]["batch_norm"], true);
    let model = trainer::format::load_f32(&out.path().join("relu-16-bn/relu-16-bn.f32.fmlp")).unwrap();
    assert_eq!(model.widths(), [784, 16, 10]);
}

#[test]
fn missing_data_dir_fails_with_instructions() {
    let empty = tempfile::tempdir().unwrap();
    let run = trainer()
        .args(["fit", "--all", "--data-dir"])
        .arg(empty.path())
        .arg("--out")
        .arg(empty.path().join("o"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("Fashion-MNIST not found") && stderr.contains("apt-get install dataset-fashion-mnist"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let run = trainer().args(["fit", "--model", "relu", "--lr=0"]).output().unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--lr must be a positive number"));
    let run = trainer().args(["fit"]).output().unwrap();
    assert!(!run.status.success(), "fit needs --all or --model");
}

#[test]
fn a_flash_budget_prunes_to_fit_and_refuses_what_cannot_fit_before_any_work() {
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let stderr = fit_ok(&["--hidden", "256,128", "--flash", "32K", "--epochs", "1", "--limit", "1000"], &run);
    assert!(
        stderr
            .contains("--flash 32768: hidden layers pruned to 90.0% (the file with int8 weights at most 32671 bytes; with --quant int4, 83.3%)"),
        "{stderr}"
    );
    let file = std::fs::read(run.join("relu-256-128/relu-256-128.int8.fmlp")).unwrap();
    assert!(file.len() <= 32 * 1024 && file.len() > 28 * 1024, "{} bytes", file.len());
    // Int4 weights: pruned less, to the same budget, a version-5 file.
    let int4 = out.path().join("int4");
    let args = ["--hidden", "256,128", "--flash", "32K", "--quant", "int4", "--epochs", "1", "--limit", "1000"];
    let stderr = fit_ok(&args, &int4);
    let said = "--flash 32768: hidden layers pruned to 83.3% (the file with int4 hidden weights at most 32739 bytes)";
    assert!(stderr.contains(said) && stderr.contains("int4 hidden weights (inference RAM"), "{stderr}");
    let file = std::fs::read(int4.join("relu-256-128/relu-256-128.int8.fmlp")).unwrap();
    assert!(file.len() <= 32739 && file.len() > 28 * 1024 && file[4] == 5, "{} bytes", file.len());
    // Dense where the dense file fits.
    let stderr =
        fit_ok(&["--hidden", "16", "--flash", "32K", "--epochs", "1", "--limit", "1000"], &out.path().join("d"));
    assert!(stderr.contains("the dense file fits with int8 weights"), "{stderr}");
    // Too small for the network even pruned: refused, nothing written.
    let data = common::data_dir();
    let refused = out.path().join("refused");
    let fit = trainer()
        .args(["fit", "--hidden", "512,256", "--flash", "8K", "--data-dir", &data])
        .arg("--out")
        .arg(&refused)
        .output();
    let fit = fit.unwrap();
    let stderr = String::from_utf8_lossy(&fit.stderr);
    assert!(
        !fit.status.success() && stderr.contains("does not fit 8192 bytes") && stderr.contains("--hidden"),
        "{stderr}"
    );
    assert!(!refused.exists(), "nothing written");
}
