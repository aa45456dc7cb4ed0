//! The C API (`infer-c`) from C on the host: `libfmlp.a` built as a user builds it, a C
//! program (`infer-c/tests/api_test.c`) compiled with the system `cc` under AddressSanitizer
//! and UBSan, linked with the library and with the C files `trainer export --c-header`
//! wrote for a table model. It calls every function with every kind of hostile argument and
//! checks that the C side predicts what the trainer predicted: every test image (int8 and
//! f32 models of Fashion-MNIST) and every test row of a table.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{data_dir, sensors, write};

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
}

fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {}\n{text}", out.status);
    text
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `libfmlp.a` for the host, built as README says, in a target folder of its own.
fn static_library() -> PathBuf {
    let target = root().join("infer-c/target");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--release", "--locked", "--manifest-path"]).arg(root().join("infer-c/Cargo.toml"));
    // The test's own build settings are not the library's.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        cargo.env_remove(var);
    }
    run(cargo.env("CARGO_TARGET_DIR", &target), "building libfmlp.a");
    target.join("release/libfmlp.a")
}

/// The predicted classes of a run's `predictions*.csv`, one byte each.
fn classes(csv: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(csv).unwrap();
    text.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse().unwrap()).collect()
}

#[test]
fn the_c_api_agrees_with_the_trainer_and_refuses_hostile_arguments_under_sanitizers() {
    let lib = static_library();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // A model of images: int8 and f32, and the trainer's predictions of both.
    let data = data_dir();
    let images_run = dir.join("images");
    run(
        trainer()
            .args(["fit", "--hidden", "32", "--epochs", "1", "--limit", "2000", "--data-dir", &data])
            .arg("--out")
            .arg(&images_run),
        "training on images",
    );
    let model = images_run.join("relu-32");
    let test = trainer::data::load(Some(Path::new(&data))).unwrap().test;
    std::fs::write(dir.join("images.bin"), &test.pixels).unwrap();
    std::fs::write(dir.join("int8.classes"), classes(&model.join("predictions_int8.csv"))).unwrap();
    std::fs::write(dir.join("f32.classes"), classes(&model.join("predictions.csv"))).unwrap();

    // A table, its test rows given, and its int8 model written as C.
    let table = sensors(300, 11);
    let lines: Vec<&str> = table.lines().collect();
    let (header, rows) = (lines[0], &lines[1..]);
    let train = format!("{header}\n{}\n", rows[..240].join("\n"));
    let test_rows = &rows[240..];
    let train_csv = write(dir, "train.csv", &train);
    let test_csv = write(dir, "test.csv", &format!("{header}\n{}\n", test_rows.join("\n")));
    let table_run = dir.join("table");
    run(
        trainer()
            .args(["fit", "--data"])
            .arg(&train_csv)
            .arg("--test-data")
            .arg(&test_csv)
            .args(["--label-column", "activity", "--hidden", "8", "--epochs", "40", "--out"])
            .arg(&table_run),
        "training on the table",
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(table_run.join("summary.json")).unwrap()).unwrap();
    let name = summary["models"][0]["name"].as_str().unwrap();
    let table_model = table_run.join(name);
    let exported = run(
        trainer().arg("export").arg(table_model.join(format!("{name}.int8.fmlp"))).args([
            "--c-header",
            "--c-name",
            "table",
        ]),
        "export --c-header",
    );
    assert!(exported.contains("table_model.h"), "{exported}");
    // The features of the test rows, in column order without the label (the second column).
    let mut features = Vec::new();
    for row in test_rows {
        for (i, value) in row.split(',').enumerate().filter(|&(i, _)| i != 1) {
            let x: f32 = value.parse().unwrap_or_else(|_| panic!("column {i} of {row}"));
            features.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(dir.join("features.bin"), features).unwrap();
    std::fs::write(dir.join("table.classes"), classes(&table_model.join("predictions_int8.csv"))).unwrap();

    let program = dir.join("api_test");
    let include = root().join("infer-c/include");
    run(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
            .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"])
            .arg("-I")
            .arg(&include)
            .arg("-I")
            .arg(&table_model)
            .arg(root().join("infer-c/tests/api_test.c"))
            .arg(table_model.join("table_model.c"))
            .arg(&lib)
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&program),
        "compiling api_test.c under ASan and UBSan",
    );
    let said = run(
        Command::new(&program)
            .arg(model.join("relu-32.int8.fmlp"))
            .arg(model.join("relu-32.f32.fmlp"))
            .args(["images.bin", "int8.classes", "f32.classes", "features.bin", "table.classes"].map(|f| dir.join(f)))
            .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
            .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
        "api_test",
    );
    assert!(said.contains("10000 of 10000 images agree with the trainer's integer reference"), "{said}");
    assert!(said.contains("60 of 60 rows agree"), "{said}");
    assert!(said.contains("checks passed"), "{said}");
    println!("{said}");
}
