//! `firmware-sim check` exit codes: agreement below the threshold, and a corrupt model.

use std::process::Command;

use rand::SeedableRng;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
}

#[test]
fn low_agreement_exits_2_and_corrupt_model_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let model = trainer::model::Mlp::new(
        &infer_core::arch::Architecture::FMNIST,
        infer_core::Activation::Relu,
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(5),
    );
    let path = dir.path().join("m.f32.fmlp");
    trainer::format::save_f32(&model, &path).unwrap();

    // Predictions that cannot all match: class i % 10 for image i.
    let mut csv = String::from("index,true,predicted\n");
    for i in 0..10_000 {
        csv.push_str(&format!("{i},0,{}\n", i % 10));
    }
    std::fs::write(dir.path().join("predictions.csv"), csv).unwrap();
    let run = sim().args(["check", "--json", "--model"]).arg(&path).output().unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["images"], 10_000);
    assert!(report["disagreements"].as_u64().unwrap() > 1000);
    assert_eq!(report["scratch_bytes"], 3072);

    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let run = sim().args(["check", "--model"]).arg(&path).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("corrupt"));
}

/// The int8 export of an untrained ReLU model of `widths` (quantized on the real data).
fn untrained_export(ds: &trainer::data::Dataset, widths: &[usize], seed: u64) -> trainer::quant::Int8Export {
    let arch = infer_core::arch::Architecture::new(widths).unwrap();
    let model = trainer::model::Mlp::new(
        &arch,
        infer_core::Activation::Relu,
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
    );
    trainer::quant::export_int8(&model, ds).unwrap()
}

#[test]
fn int8_model_agrees_exactly_with_the_trainer_reference() {
    let ds = trainer::data::load(None).expect("the real dataset (apt-get install dataset-fashion-mnist)");
    let export = untrained_export(&ds, &[784, 512, 256, 10], 9);
    let dir = tempfile::tempdir().unwrap();
    trainer::report::write_int8(dir.path(), "m", &export, &ds.test.labels).unwrap();
    let path = dir.path().join("m.int8.fmlp");
    let run = sim().args(["check", "--json", "--model"]).arg(&path).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["quantization"], "int8");
    assert_eq!(report["disagreements"], 0);
    assert_eq!(report["min_agreement"], 1.0);
    assert!((report["accuracy"].as_f64().unwrap() - export.accuracy).abs() < 1e-12);
    assert!(report["scratch_bytes"].as_u64().unwrap() < 2048);
    assert!(report["model_bytes"].as_u64().unwrap() < 540_000);
    // As the binary does: ask for AMX's tiles first, so that this process's kernels are its.
    infer_host::request_amx();
    assert_eq!(report["kernel"], infer_core::int8net::Kernel::detected().name());
    assert!(report["images_per_s"].as_f64().unwrap() > 0.0, "{report}");

    // Every kernel the CPU runs, on 1 and 3 threads, agrees on every image (the batched pass
    // is held to the one-at-a-time one inside `check` as well); a kernel it lacks is refused.
    for kernel in infer_core::int8net::Kernel::ALL {
        let name = infer_host::short_name(kernel);
        for threads in ["1", "3"] {
            let run = sim()
                .env(infer_host::KERNEL_ENV, name)
                .args(["check", "--json", "--threads", threads, "--model"])
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            if !kernel.runs() {
                assert!(!run.status.success() && stderr.contains("lacks the"), "{name}: {stderr}");
                continue;
            }
            assert!(run.status.success(), "{name}: {stderr}");
            let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!((&report["kernel"], &report["disagreements"]), (&kernel.name().into(), &0.into()), "{report}");
        }
    }

    // One changed prediction in the reference is one disagreement, and exit status 2.
    let csv = dir.path().join("predictions_int8.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let last: Vec<&str> = lines[10_000].split(',').collect();
    let flipped = (last[2].parse::<u8>().unwrap() + 1) % 10;
    lines[10_000] = format!("{},{},{flipped}", last[0], last[1]);
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let run = sim().args(["check", "--json", "--model"]).arg(&path).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["disagreements"], 1);
    assert_eq!(report["first_disagreements"][0], 9_999);
}

/// An int4 model (pruned to 80%, int4 hidden weights) runs widened to int8 on the host
/// (`infer_host::host_bytes`): every kernel agrees with the trainer's integer reference on
/// every image, on 1 and 3 threads, and the report gives the file's own size.
#[test]
fn int4_model_agrees_exactly_with_the_trainer_reference_on_every_kernel() {
    let ds = trainer::data::load(None).expect("the real dataset (apt-get install dataset-fashion-mnist)");
    let arch = infer_core::arch::Architecture::new(&[784, 256, 128, 10]).unwrap();
    let mut model =
        trainer::model::Mlp::new(&arch, infer_core::Activation::Relu, &mut rand_chacha::ChaCha8Rng::seed_from_u64(10));
    let order: Vec<u16> = (0..784).collect();
    let mut masks = trainer::prune::uncut(&model);
    trainer::prune::update(&mut masks, &model, 0.8, &order);
    trainer::prune::apply(&masks, &mut model, &order);
    let export = trainer::quant::export_as(&model, &ds, trainer::qat::WeightBits::Int4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    trainer::report::write_int8(dir.path(), "m", &export, &ds.test.labels).unwrap();
    let path = dir.path().join("m.int8.fmlp");
    assert_eq!(std::fs::read(&path).unwrap()[4], 5, "format version 5");
    infer_host::request_amx();
    for kernel in infer_core::int8net::Kernel::ALL.into_iter().filter(|k| k.runs()) {
        for threads in ["1", "3"] {
            let run = sim()
                .env(infer_host::KERNEL_ENV, infer_host::short_name(kernel))
                .args(["check", "--json", "--threads", threads, "--model"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(run.status.success(), "{kernel}: {}", String::from_utf8_lossy(&run.stderr));
            let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!((&report["kernel"], &report["disagreements"]), (&kernel.name().into(), &0.into()), "{report}");
            assert_eq!(report["model_bytes"], export.bytes.len(), "{report}");
            assert!((report["accuracy"].as_f64().unwrap() - export.accuracy).abs() < 1e-12);
        }
    }
}

#[test]
fn check_refuses_a_missing_reference_a_nan_threshold_and_impossible_classes() {
    let ds = trainer::data::load(None).expect("the real dataset (apt-get install dataset-fashion-mnist)");
    let export = untrained_export(&ds, &[784, 16, 10], 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.int8.fmlp");
    std::fs::write(&path, &export.bytes).unwrap();

    // No predictions_int8.csv beside the model: an error, not "agreement not checked".
    let run = sim().args(["check", "--model"]).arg(&path).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("--no-agreement"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Asked for explicitly, accuracy alone is fine.
    let run = sim().args(["check", "--no-agreement", "--model"]).arg(&path).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    trainer::report::write_int8(dir.path(), "m", &export, &ds.test.labels).unwrap();
    for bad in ["NaN", "1.5", "-0.1"] {
        let run = sim().args(["check", &format!("--min-agreement={bad}"), "--model"]).arg(&path).output().unwrap();
        assert!(!run.status.success(), "--min-agreement {bad}");
        assert!(String::from_utf8_lossy(&run.stderr).contains("--min-agreement"), "{bad}");
    }

    // A predicted class of 200 is not a class of this model.
    let csv = dir.path().join("predictions_int8.csv");
    let mut lines: Vec<String> = std::fs::read_to_string(&csv).unwrap().lines().map(String::from).collect();
    let first: Vec<&str> = lines[1].split(',').collect();
    lines[1] = format!("{},{},200", first[0], first[1]);
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let run = sim().args(["check", "--model"]).arg(&path).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("class 200 is not one of the 10"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn check_refuses_files_of_a_run_that_are_not_the_ones_it_wrote() {
    let ds = trainer::data::load(None).expect("the real dataset (apt-get install dataset-fashion-mnist)");
    let export = |seed| untrained_export(&ds, &[784, 16, 10], seed);
    let run = tempfile::tempdir().unwrap();
    let dir = run.path().join("m");
    trainer::report::write_int8(&dir, "m", &export(1), &ds.test.labels).unwrap();
    runio::rundir::seal(run.path(), "run-1", &["m"]).unwrap();
    let path = dir.join("m.int8.fmlp");
    let ok = sim().args(["check", "--model"]).arg(&path).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    // Another run's predictions beside this run's model: refused, not "agreement 71%".
    let other = tempfile::tempdir().unwrap();
    trainer::report::write_int8(other.path(), "m", &export(2), &ds.test.labels).unwrap();
    std::fs::copy(other.path().join("predictions_int8.csv"), dir.join("predictions_int8.csv")).unwrap();
    let run_out = sim().args(["check", "--model"]).arg(&path).output().unwrap();
    assert_eq!(run_out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run_out.stderr);
    assert!(err.contains("is not the file run run-1 wrote"), "{err}");

    // The files of a run that did not finish (a plan, no manifest) are refused too.
    std::fs::copy(other.path().join("predictions_int8.csv"), dir.join("predictions_int8.csv")).unwrap();
    std::fs::remove_file(run.path().join("manifest.json")).unwrap();
    std::fs::write(run.path().join("run.json"), "{}").unwrap();
    let unfinished = sim().args(["check", "--model"]).arg(&path).output().unwrap();
    assert_eq!(unfinished.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unfinished.stderr);
    assert!(err.contains("did not finish") && err.contains("fit --resume"), "{err}");
}

/// A FIFO, a folder or a symlink loop as the model: an error that says what it is, at once
/// (`timeout` ends a command that would wait for a FIFO's writer, and the test fails).
#[test]
fn special_files_as_the_model_are_refused_for_what_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fifo = dir.join("m.int8.fmlp");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    std::fs::create_dir(dir.join("folder.int8.fmlp")).unwrap();
    std::os::unix::fs::symlink("b.int8.fmlp", dir.join("a.int8.fmlp")).unwrap();
    std::os::unix::fs::symlink("a.int8.fmlp", dir.join("b.int8.fmlp")).unwrap();
    let cases = [("m", "a FIFO (named pipe)"), ("folder", "a folder"), ("a", "symbolic links")];
    for (name, said) in cases {
        for command in ["check", "qemu"] {
            let run = Command::new("timeout")
                .args(["600", env!("CARGO_BIN_EXE_firmware-sim"), command, "--model"])
                .arg(dir.join(format!("{name}.int8.fmlp")))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(1), "{command} of {name}: {err}");
            assert!(err.contains(said), "{command} of {name}: {err}");
        }
    }
}

#[test]
fn a_reader_that_goes_away_is_not_a_crash() {
    let ds = trainer::data::load(None).expect("the real dataset (apt-get install dataset-fashion-mnist)");
    let export = untrained_export(&ds, &[784, 8, 10], 3);
    let dir = tempfile::tempdir().unwrap();
    trainer::report::write_int8(dir.path(), "m", &export, &ds.test.labels).unwrap();
    // `firmware-sim check | head -0`: stdout closed before the report is printed.
    let mut child = sim()
        .args(["check", "--model"])
        .arg(dir.path().join("m.int8.fmlp"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);
}
