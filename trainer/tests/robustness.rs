//! Bad input as a hostile user or a crash-prone machine gives it (issue 15): every case is
//! an error message and a non-zero exit, never a panic, an abort, a hang or silent success.

use std::path::Path;
use std::process::{Command, Output};

use rand::SeedableRng;

mod common;

use common::{Watched, data_dir, json, signalled, stderr};

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output().unwrap()
}

/// Fails unless `run` exited with an error (not a crash) whose message holds `needle`.
fn refused(run: &Output, needle: &str, what: &str) {
    let err = stderr(run);
    assert!(matches!(run.status.code(), Some(1 | 2)), "{what}: {:?}\n{err}", run.status);
    assert!(err.contains(needle), "{what}: {err}");
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{what}: {err}");
}

/// Address space a `trainer` that refuses its arguments runs in: a batch or a thread pool
/// sized by an absurd number before it is checked would not fit, and the allocation or
/// thread would fail instead of the check.
const SMALL_ADDRESS_SPACE: &str = "--as=1073741824";

#[test]
fn absurd_numbers_are_refused_before_any_allocation_or_thread() {
    let cases: [(&[&str], &str); 8] = [
        (&["--epochs", "9223372036854775807"], "is not in 1..=10000"),
        (&["--batch-size", "18446744073709551615"], "--batch-size"),
        (&["--epochs", "1000000000000"], "is not in 1..=10000"),
        (&["--batch-size", "1000000000"], "is not in 1..=60000"),
        (&["--batch-size", "4611686018427387904"], "is not in 1..=60000"),
        (&["--threads", "100000"], "per CPU"),
        (&["--epochs", "0"], "is not in 1..=10000"),
        (&["--limit", "0"], "--limit"),
    ];
    for (args, needle) in cases {
        // The data folder does not exist: an argument that got past the checks would
        // fail on it instead, and the test would see the wrong message.
        let mut all = vec![SMALL_ADDRESS_SPACE, "--", env!("CARGO_BIN_EXE_trainer")];
        all.extend(["fit", "--model", "relu", "--data-dir", "/nonexistent"]);
        all.extend_from_slice(args);
        let run = Command::new("prlimit").args(&all).output().expect("prlimit (util-linux) runs");
        refused(&run, needle, &format!("{args:?}"));
    }
}

#[test]
fn export_refuses_to_overwrite_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.f32.fmlp");
    let arch = infer_core::arch::Architecture::new(&[784, 8, 10]).unwrap();
    let model =
        trainer::model::Mlp::new(&arch, infer_core::Activation::Relu, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    trainer::format::save_f32(&model, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // The same file by another spelling, too.
    let other = dir.path().join(".").join("m.f32.fmlp");
    for out in [&path, &other] {
        let run =
            trainer(&["export", path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--data-dir", &data_dir()]);
        refused(&run, "is the input model", &out.display().to_string());
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "the input is untouched");
}

#[test]
fn divergence_leaves_no_models_and_says_where() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let run = trainer(&[
        "fit",
        "--model",
        "relu",
        "--lr",
        "1e9",
        "--limit",
        "1000",
        "--epochs",
        "1",
        "--data-dir",
        &data_dir(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    refused(&run, "training diverged", "lr 1e9");
    let err = stderr(&run);
    assert!(err.contains("epoch 1, step") && err.contains("lower the learning rate"), "{err}");
    assert!(!dir.join("summary.json").exists(), "no summary of a diverged run");
    assert!(!dir.join("relu").exists(), "no models of a diverged run");
}

#[test]
fn report_refuses_model_names_that_leave_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let outside = dir.path().join("outside");
    for name in ["..", "../outside", outside.to_str().unwrap(), ".hidden", "a/b", "<b>x</b>", "a|b"] {
        let summary = format!(
            r#"{{"models": [{{"name": {name:?}, "epochs": 1, "test_accuracy": 0.5, "test_loss": 1.0, "train_seconds": 1.0,
            "recipe": {{"kind": "relu", "epochs": 1, "lr": 0.01, "batch_size": 500, "seed": 42}},
            "study_test_accuracy": null}}], "threads": 1, "isa": "x", "total_seconds": 1.0, "data_dir": "d"}}"#
        );
        std::fs::write(run_dir.join("summary.json"), summary).unwrap();
        let run = trainer(&["report", run_dir.to_str().unwrap()]);
        refused(&run, "is not a folder of the run", name);
    }
    assert!(!outside.exists() && !dir.path().join("curves.png").exists(), "nothing written outside the run");
}

#[test]
fn report_draws_a_history_with_infinite_and_nan_values_and_refuses_huge_files() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    std::fs::create_dir_all(run_dir.join("relu")).unwrap();
    let summary = r#"{"models": [{"name": "relu", "epochs": 3, "test_accuracy": 0.5, "test_loss": 1.0, "train_seconds": 1.0,
        "recipe": {"kind": "relu", "epochs": 3, "lr": 0.01, "batch_size": 500, "seed": 42},
        "study_test_accuracy": null}], "threads": 1, "isa": "x", "total_seconds": 1.0, "data_dir": "d"}"#;
    std::fs::write(run_dir.join("summary.json"), summary).unwrap();
    // +inf with finite values below it (a range up to infinity: the old hang), then NaN,
    // -inf and a huge finite value.
    let history = "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n\
                   1,0.5,0.8,inf,0.7,1\n2,0.4,0.8,0.5,0.7,1\n3,0.3,0.9,0.4,0.75,1\n\
                   4,NaN,0.9,1e308,0.75,1\n5,-inf,0.9,0.4,NaN,1\n";
    std::fs::write(run_dir.join("relu/history.csv"), history).unwrap();
    let confusion =
        trainer::report::confusion_csv(&vec![vec![1; 10]; 10], &trainer::data::fashion::schema().class_names).unwrap();
    std::fs::write(run_dir.join("relu/confusion.csv"), confusion).unwrap();
    // It used to hang forever inside plotters.
    let mut report = Watched::spawn(Command::new(env!("CARGO_BIN_EXE_trainer")).arg("report").arg(run_dir));
    assert!(report.wait_for("Rewrote the figures"), "trainer report failed: {:?}", report.seen);
    assert!(report.finish().0.success());
    assert!(run_dir.join("relu/curves.png").is_file());

    // A history.csv of 5 MB cannot come from a run: refused unread.
    let huge =
        "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n".to_string() + &"1,0.5,0.8,0.5,0.7,1\n".repeat(300_000);
    std::fs::write(run_dir.join("relu/history.csv"), huge).unwrap();
    let run = trainer(&["report", run_dir.to_str().unwrap()]);
    refused(&run, "more than it can hold", "a 5 MB history");
}

#[test]
fn summary_text_cannot_inject_markup_into_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    std::fs::create_dir_all(run_dir.join("relu")).unwrap();
    let summary = r#"{"models": [{"name": "relu", "epochs": 1, "test_accuracy": 0.5, "test_loss": 1.0, "train_seconds": 1.0,
        "recipe": {"kind": "relu", "epochs": 1, "lr": 0.01, "batch_size": 500, "seed": 42}, "study_test_accuracy": null,
        "architecture": "<img src=x onerror=alert(1)>"}],
        "threads": 1, "isa": "<script>alert(1)</script>", "total_seconds": 1.0, "data_dir": "`x` | <b>y</b>"}"#;
    std::fs::write(run_dir.join("summary.json"), summary).unwrap();
    std::fs::write(
        run_dir.join("relu/history.csv"),
        "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n1,0.5,0.8,0.6,0.7,1\n",
    )
    .unwrap();
    std::fs::write(
        run_dir.join("relu/confusion.csv"),
        trainer::report::confusion_csv(&vec![vec![1; 10]; 10], &trainer::data::fashion::schema().class_names).unwrap(),
    )
    .unwrap();
    let run = trainer(&["report", run_dir.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    for file in ["summary.md", "report.html"] {
        let text = std::fs::read_to_string(run_dir.join(file)).unwrap();
        for markup in ["<script", "<img src=x", "<b>y", "`x`"] {
            assert!(!text.contains(markup), "{file} carries {markup}");
        }
    }
}

fn fit_into(out: &Path, extra: &[&str]) -> Output {
    let data = data_dir();
    let mut args = vec!["fit", "--epochs", "1", "--limit", "1500", "--data-dir", &data, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    trainer(&args)
}

#[test]
fn a_run_folder_holds_one_run_tied_by_its_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let first = fit_into(&out, &["--hidden", "16"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let manifest = json(&out.join("manifest.json"));
    let run_id = json(&out.join("summary.json"))["run_id"].as_str().unwrap().to_string();
    assert_eq!(manifest["run_id"], run_id.as_str());
    assert!(manifest["files"]["relu-16/relu-16.int8.fmlp"]["sha256"].is_string(), "{manifest}");

    // A second run into the same folder is refused, and changes nothing.
    let before = std::fs::read(out.join("relu-16/history.csv")).unwrap();
    refused(&fit_into(&out, &["--hidden", "8"]), "pass --overwrite", "a second run");
    assert_eq!(std::fs::read(out.join("relu-16/history.csv")).unwrap(), before);

    // `trainer report` checks every file against the manifest: a file from elsewhere is refused.
    let report = trainer(&["report", out.to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    std::fs::write(
        out.join("relu-16/history.csv"),
        "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n1,1,0.5,1,0.5,1\n",
    )
    .unwrap();
    refused(&trainer(&["report", out.to_str().unwrap()]), "is not the file run", "a changed history");
    std::fs::write(out.join("relu-16/history.csv"), &before).unwrap();
    // A model folder of another run beside this run's.
    std::fs::create_dir_all(out.join("relu-99")).unwrap();
    std::fs::write(out.join("relu-99/history.csv"), &before).unwrap();
    refused(&trainer(&["report", out.to_str().unwrap()]), "not a file of run", "a stale model folder");
    std::fs::remove_dir_all(out.join("relu-99")).unwrap();

    // --overwrite removes the previous run's files first (and a write a killed process
    // left half done), so no old model folder stays beside the new run's.
    std::fs::write(out.join(".summary.json.partial-Ab12Cd"), "half").unwrap();
    let second = fit_into(&out, &["--hidden", "8", "--overwrite"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(!out.join("relu-16").exists(), "the old model's folder is gone");
    assert!(!out.join(".summary.json.partial-Ab12Cd").exists());
    assert_ne!(json(&out.join("manifest.json"))["run_id"], run_id.as_str());

    // `trainer export` into the run records what it writes, so the run stays whole.
    let model = out.join("relu-8/relu-8.f32.fmlp");
    let again = out.join("relu-8/again.int8.fmlp");
    let export =
        trainer(&["export", model.to_str().unwrap(), "--out", again.to_str().unwrap(), "--data-dir", &data_dir()]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert!(json(&out.join("manifest.json"))["files"]["relu-8/again.int8.fmlp"].is_object());
    // It calibrates on the examples the run trained on (its --limit 1500), as `fit` did: the
    // same model, so the predictions beside it stay those of the run's int8 model too.
    let fitted = std::fs::read(out.join("relu-8/relu-8.int8.fmlp")).unwrap();
    assert!(std::fs::read(&again).unwrap() == fitted, "a re-export of the run's model is the run's export");
    let report = trainer(&["report", out.to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));

    // A folder with files that are not a run's is never emptied.
    let other = tmp.path().join("mine");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    refused(&fit_into(&other, &["--hidden", "8", "--overwrite"]), "not a run's", "a folder of other files");
    assert!(other.join("notes.txt").is_file());
}

#[test]
fn a_run_killed_midway_leaves_no_mix_of_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    assert!(fit_into(&out, &["--hidden", "16"]).status.success());
    // A longer second run, killed (SIGKILL) once it has begun training (the old run's files
    // are removed before; `samples.csv` is written first); one that finished before the kill
    // landed is run again.
    let data = data_dir();
    let mut landed = false;
    for _ in 0..3 {
        let mut second = Watched::spawn(
            Command::new(env!("CARGO_BIN_EXE_trainer"))
                .args(["fit", "--model", "relu", "--epochs", "20", "--limit", "6000", "--overwrite"])
                .args(["--data-dir", &data])
                .arg("--out")
                .arg(&out),
        );
        assert!(second.wait_for("relu epoch  1:"), "the second run never trained: {:?}", second.seen);
        assert!(out.join("samples.csv").exists() && !out.join("relu-16").exists());
        landed = signalled(&second.signal("KILL").0);
        if landed {
            break;
        }
    }
    assert!(landed, "three runs of 20 epochs finished before a kill sent after their first");
    // Nothing of the first run is left, and the unfinished one has no manifest or summary:
    // report refuses it, and no file of it passes for a finished run's.
    assert!(!out.join("relu-16").exists() && !out.join("manifest.json").exists() && !out.join("summary.json").exists());
    refused(&trainer(&["report", out.to_str().unwrap()]), "summary.json", "an unfinished run");
    // The next run into the folder needs --overwrite, and cleans it.
    refused(&fit_into(&out, &["--hidden", "8"]), "pass --overwrite", "after a kill");
    assert!(fit_into(&out, &["--hidden", "8", "--overwrite"]).status.success());
}
