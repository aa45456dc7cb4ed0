//! `trainer` on a user's own tables, as a user runs it: a few hundred rows train with every
//! preset, a constant feature is no trouble, bad tables are refused with what to fix and
//! leave nothing behind, and the report speaks of the data it was given.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{sensors, write};

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
}

fn fit(args: &[&str], out: &Path) -> Output {
    trainer().arg("fit").args(args).arg("--out").arg(out).output().unwrap()
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_few_hundred_rows_train_with_every_preset_and_a_constant_feature() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(dir.path(), "sensors.csv", &sensors(300, 1));
    let data = table.to_str().unwrap();
    for preset in ["seed", "best"] {
        let out = dir.path().join(preset);
        let run = fit(&["--data", data, "--label-column", "activity", "--hidden", "16", "--preset", preset], &out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{preset}: {stderr}");
        let s = summary(&out);
        let m = &s["models"][0];
        assert_eq!(m["architecture"], "3-16-3", "{preset}: {m}");
        // 20% held out, stratified: 20 of each class's 100.
        assert_eq!(s["data"]["class_names"], serde_json::json!(["run", "still", "walk"]));
        let test_rows = std::fs::read_to_string(out.join(m["name"].as_str().unwrap()).join("predictions.csv")).unwrap();
        assert_eq!(test_rows.lines().count(), 1 + 60, "{preset}");
        let accuracy = m["test_accuracy"].as_f64().unwrap();
        let int8 = m["int8_test_accuracy"].as_f64().unwrap();
        assert!(accuracy.is_finite() && int8.is_finite(), "{preset}: {m}");
        if preset == "best" {
            // The classes are apart by three spreads of their noise: the best preset learns
            // them; its hold-out scales with the data (a thirtieth of 240 rows).
            assert!(accuracy >= 0.9, "{m}");
            assert_eq!(m["recipe"]["val_split"], 8, "{m}");
            assert_eq!(m["recipe"]["augment"], serde_json::json!({"shift": 0, "flip": false}), "{m}");
        }
        // No sample grid for a table; a 3x3 confusion matrix with the class names.
        assert!(!out.join("samples.png").exists());
        let confusion = std::fs::read_to_string(out.join(m["name"].as_str().unwrap()).join("confusion.csv")).unwrap();
        assert!(confusion.lines().next().unwrap().contains("run") && confusion.lines().count() == 4, "{confusion}");
        let report = std::fs::read_to_string(out.join("summary.md")).unwrap();
        assert!(report.contains("sensors.csv") && !report.contains("Fashion-MNIST"), "{report}");
    }
}

#[test]
fn the_default_preset_is_the_best_one_for_data_other_than_fashion_mnist() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(dir.path(), "sensors.csv", &sensors(150, 2));
    let out = dir.path().join("run");
    let run = fit(&["--data", table.to_str().unwrap(), "--label-column", "1", "--hidden", "8"], &out);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let m = &summary(&out)["models"][0];
    // Batches of 16 and at least 2,000 steps on 116 rows: 8 steps an epoch, 250 epochs.
    assert_eq!((m["recipe"]["batch_size"].as_u64(), m["epochs"].as_u64()), (Some(16), Some(250)), "{m}");
    assert_eq!(m["name"], "relu-8-dropout0.1-best", "{m}");
}

#[test]
fn bad_tables_are_refused_with_what_to_fix_and_leave_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let good = sensors(30, 3);
    let label = vec!["--label-column", "activity"];
    let cases: Vec<(&str, String, Vec<&str>, &str)> = vec![
        ("ragged.csv", good.replacen("3.7,walk,", "walk,", 1), label.clone(), "row 3: 3 fields, the header has 4"),
        (
            "nan.csv",
            good.replacen("3.7,still,", "NaN,still,", 1),
            label.clone(),
            "row 2: column \"battery\" holds \"NaN\"",
        ),
        ("empty.csv", good.replacen("3.7,walk,", ",walk,", 1), label.clone(), "row 3: column \"battery\" is empty"),
        ("one.csv", "x,label\n1,a\n2,a\n3,a\n".into(), vec![], "at least two classes"),
        ("good.csv", good.clone(), vec!["--label-column", "mood"], "no label column \"mood\""),
        ("good2.csv", good.clone(), vec!["--label-column", "activity", "--flip"], "a table of features"),
        ("good3.csv", good.clone(), vec!["--label-column", "activity", "--test-split", "1.5"], "--test-split"),
    ];
    for (name, text, extra, needle) in cases {
        let table = write(dir.path(), name, &text);
        let out = dir.path().join(format!("{name}.run"));
        let mut args = vec!["--data", table.to_str().unwrap(), "--hidden", "8"];
        args.extend(extra);
        let run = fit(&args, &out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(needle) && !stderr.contains("panicked"), "{name}: {stderr}");
        assert!(!out.exists(), "{name}: a failed run leaves no folder");
    }
    // A file that does not exist, and a source that is neither file nor folder.
    let run =
        fit(&["--data", dir.path().join("nowhere.csv").to_str().unwrap(), "--hidden", "8"], &dir.path().join("x"));
    assert_eq!(run.status.code(), Some(1));
}

#[test]
fn data_check_describes_a_table_without_training() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(dir.path(), "sensors.csv", &sensors(90, 4));
    let run =
        trainer().args(["data", "check", "--data"]).arg(&table).args(["--label-column", "activity"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        stdout.contains("72 training and 18 test examples of 3 features, 3 classes (run, still, walk)"),
        "{stdout}"
    );
}
