//! `firmware-sim qemu`: the Cortex-M firmware, Rust and C, on QEMU (M4F, and M0 for a small model)
//! predicts, bit for bit, what infer-core predicts on the host, within the flash and RAM
//! budgets.
//!
//! Needs the Cortex-M4 toolchain (`apt-get install -y rustc-web rust-web-src
//! gcc-arm-none-eabi qemu-system-arm`, which `.ci/run` does) and the real dataset; without
//! them these tests fail and say what to install.

use std::path::Path;
use std::process::Command;

use infer_core::Activation;
use rand::SeedableRng;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
}

/// An int8 export of an untrained model of `widths`: its scores exercise every kernel path
/// as well as a trained one's do, and it takes a second instead of a training run.
fn int8_model(dir: &Path, widths: &[usize], activation: Activation, seed: u64) -> std::path::PathBuf {
    let ds = trainer::data::load(None).expect("the real dataset (apt-get install dataset-fashion-mnist)");
    let arch = infer_core::arch::Architecture::new(widths).unwrap();
    let model = trainer::model::Mlp::new(&arch, activation, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let export = trainer::quant::export_int8(&model, &ds).unwrap();
    trainer::report::write_int8(dir, "m", &export, &ds.test.labels).unwrap();
    dir.join("m.int8.fmlp")
}

fn run_json(model: &Path, board: &str, count: usize) -> serde_json::Value {
    run_firmware(model, board, count, "rust")
}

/// `firmware-sim qemu --firmware FIRMWARE` (`rust` or `c`) on the first `count` test images.
fn run_firmware(model: &Path, board: &str, count: usize, firmware: &str) -> serde_json::Value {
    let count = count.to_string();
    let run = sim()
        .args(["qemu", "--json", "--firmware", firmware, "--board", board, "--count", &count, "--model"])
        .arg(model)
        .output()
        .unwrap();
    assert!(run.status.success(), "firmware-sim qemu failed:\n{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn firmware_matches_the_host_bit_for_bit_within_budgets() {
    let dir = tempfile::tempdir().unwrap();
    for (activation, seed) in [(Activation::Relu, 3), (Activation::Sigmoid, 4)] {
        let sub = dir.path().join(format!("{activation:?}"));
        std::fs::create_dir_all(&sub).unwrap();
        let model = int8_model(&sub, &[784, 512, 256, 10], activation, seed);
        let report = run_json(&model, "mps2-an386", 120);
        assert_eq!(report["images"], 120, "{report}");
        assert_eq!(report["disagreements"], 0, "{report}");
        assert_eq!(report["score_mismatches"], 0, "{report}");
        // The model is embedded whole, on a 64-byte boundary (padded to a multiple of 64).
        let file = std::fs::metadata(&model).unwrap().len();
        assert_eq!(report["model_bytes"], file, "{report}");
        assert_eq!(report["weights_bytes"], file.next_multiple_of(64), "{report}");
        // Under 20 KB before sparse layers; their kernel and checks take about 3 KB, and
        // int4 layers' 3.4 KB more (21.9 to 25.3 KB when they came).
        assert!(report["code_bytes"].as_u64().unwrap() < 26 * 1024, "{report}");
        assert!(report["ram_bytes"].as_u64().unwrap() < 8 * 1024, "{report}");
        // The stack holds at least the scratch buffers and one image.
        assert!(report["stack_bytes"].as_u64().unwrap() > (infer_core::int8net::INT8_SCRATCH_BYTES + 784) as u64);
        assert!(report["smlad_in_code"].as_u64().unwrap() >= 8, "{report}");
        // A pass reads at least the last two layers' weights: far more than 100k instructions.
        let instructions = report["instructions_per_inference"].as_f64().unwrap();
        assert!(instructions > 100_000.0 && instructions < 2_000_000.0, "{report}");
    }
}

#[test]
fn a_small_model_runs_on_the_cortex_m0_within_256_kb_of_flash_and_16_kb_of_ram() {
    let dir = tempfile::tempdir().unwrap();
    for (widths, activation) in [(&[784, 128, 64, 10][..], Activation::Relu), (&[784, 40, 10][..], Activation::Sigmoid)]
    {
        let sub = dir.path().join(format!("{}", widths.len()));
        std::fs::create_dir_all(&sub).unwrap();
        let model = int8_model(&sub, widths, activation, 6);
        let report = run_json(&model, "microbit", 60);
        assert_eq!((report["board"].as_str(), report["cpu"].as_str()), (Some("microbit"), Some("cortex-m0")));
        assert_eq!(report["disagreements"], 0, "{report}");
        assert_eq!(report["score_mismatches"], 0, "{report}");
        assert!(report["flash_bytes"].as_u64().unwrap() <= 256 * 1024, "{report}");
        assert!(report["ram_bytes"].as_u64().unwrap() <= 16 * 1024, "{report}");
        // Armv6-M has no DSP extension: the portable kernel.
        assert_eq!(report["kernel"], "portable", "{report}");
    }
}

/// A pruned model (90% of the hidden layers' blocks of four inputs cut, as `trainer fit
/// --prune 0.9` leaves them) is stored sparse (format version 4) and runs on the M4 (Rust
/// and C firmware) and on the micro:bit's M0, every image and score as on the host, in far
/// fewer instructions and bytes than the dense model of its shape.
#[test]
fn a_pruned_model_runs_sparse_on_the_m4_and_the_m0_bit_for_bit() {
    use trainer::prune;
    let dir = tempfile::tempdir().unwrap();
    let ds = trainer::data::load(None).expect("the real dataset (apt-get install dataset-fashion-mnist)");
    let arch = infer_core::arch::Architecture::new(&[784, 256, 128, 10]).unwrap();
    let mut model = trainer::model::Mlp::new(&arch, Activation::Relu, &mut rand_chacha::ChaCha8Rng::seed_from_u64(8));
    // The model's rows are in the image's order already: the identity maps them.
    let order: Vec<u16> = (0..784).collect();
    let mut masks = prune::uncut(&model);
    prune::update(&mut masks, &model, 0.9, &order);
    prune::apply(&masks, &mut model, &order);
    let export = trainer::quant::export_int8(&model, &ds).unwrap();
    trainer::report::write_int8(dir.path(), "m", &export, &ds.test.labels).unwrap();
    let path = dir.path().join("m.int8.fmlp");
    let header = *infer_core::format::read(&export.bytes).unwrap().header();
    assert_eq!((header.version(), header.storage().kept(2)), (4, None), "sparse hidden layers, dense output layer");
    assert!(export.bytes.len() < 40 * 1024, "{} bytes", export.bytes.len());
    for (board, firmware, kernel) in
        [("mps2-an386", "rust", "armv7em (SMLAD)"), ("microbit", "rust", "portable"), ("mps2-an386", "c", "")]
    {
        let report = run_firmware(&path, board, 300, firmware);
        let what = format!("{firmware} firmware on {board}: {report}");
        assert_eq!((report["images"].as_u64(), report["disagreements"].as_u64()), (Some(300), Some(0)), "{what}");
        assert_eq!(report["score_mismatches"], 0, "{what}");
        if !kernel.is_empty() {
            assert_eq!(report["kernel"], kernel, "{what}");
        }
        // A tenth of the weights of a 784-256-128-10 are read: a dense one takes about 250k
        // instructions on the M4 and 600k on the M0.
        let instructions = report["instructions_per_inference"].as_f64().unwrap();
        eprintln!("{firmware} firmware on {board}: {instructions:.0} instructions per inference");
        let most = if board == "microbit" { 300_000.0 } else { 120_000.0 };
        assert!(instructions > 5_000.0 && instructions < most, "{what}");
    }
}

/// Int4 models (format version 5) on the M4 (Rust and C firmware) and on the micro:bit's M0,
/// every image and score as on the host: a pruned 784-256-128-10 (83% of the hidden layers'
/// blocks cut, int4 hidden weights, as `trainer fit --flash 32K --quant int4` leaves it), and a
/// dense one whose first layer's odd width (101) makes blocks straddle words.
#[test]
fn int4_models_run_on_the_m4_and_the_m0_bit_for_bit() {
    use trainer::prune;
    use trainer::qat::WeightBits;
    let dir = tempfile::tempdir().unwrap();
    let ds = trainer::data::load(None).expect("the real dataset (apt-get install dataset-fashion-mnist)");
    for (widths, cut) in [(&[784, 256, 128, 10][..], Some(0.833)), (&[784, 101, 64, 10][..], None)] {
        let arch = infer_core::arch::Architecture::new(widths).unwrap();
        let mut model =
            trainer::model::Mlp::new(&arch, Activation::Relu, &mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
        if let Some(cut) = cut {
            let order: Vec<u16> = (0..784).collect();
            let mut masks = prune::uncut(&model);
            prune::update(&mut masks, &model, cut, &order);
            prune::apply(&masks, &mut model, &order);
        }
        let export = trainer::quant::export_as(&model, &ds, WeightBits::Int4).unwrap();
        let sub = dir.path().join(arch.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        trainer::report::write_int8(&sub, "m", &export, &ds.test.labels).unwrap();
        let path = sub.join("m.int8.fmlp");
        let storage = infer_core::format::read(&export.bytes).unwrap().header().storage();
        assert_eq!((storage.int4(0), storage.int4(1), storage.int4(2)), (true, true, false), "{arch}");
        assert_eq!(storage.kept(0).is_some(), cut.is_some(), "{arch}");
        for (board, firmware, kernel) in
            [("mps2-an386", "rust", "armv7em (SMLAD)"), ("microbit", "rust", "portable"), ("mps2-an386", "c", "")]
        {
            let report = run_firmware(&path, board, 300, firmware);
            let what = format!("{arch}: {firmware} firmware on {board}: {report}");
            assert_eq!((report["images"].as_u64(), report["disagreements"].as_u64()), (Some(300), Some(0)), "{what}");
            assert_eq!(report["score_mismatches"], 0, "{what}");
            if !kernel.is_empty() {
                assert_eq!(report["kernel"], kernel, "{what}");
            }
            let instructions = report["instructions_per_inference"].as_f64().unwrap();
            eprintln!("{arch}: {firmware} firmware on {board}: {instructions:.0} instructions per inference");
        }
    }
}

/// The C firmware (tools/firmware-c: infer-c's fmlp.h and libfmlp.a, the model as C from
/// `trainer export --c-header`) predicts what the host predicts, bit for bit, on the M4 and
/// on the micro:bit's M0, and reports what the Rust firmware reports. Prints both
/// firmwares' instructions per inference (the C API's cost is in the notes, not asserted).
#[test]
fn the_c_firmware_matches_the_host_bit_for_bit_on_the_m4_and_the_m0() {
    let dir = tempfile::tempdir().unwrap();
    for (widths, board, count) in
        [(&[784, 512, 256, 10][..], "mps2-an386", 120), (&[784, 128, 64, 10][..], "microbit", 60)]
    {
        let sub = dir.path().join(board);
        std::fs::create_dir_all(&sub).unwrap();
        let model = int8_model(&sub, widths, Activation::Relu, 8);
        let c = run_firmware(&model, board, count, "c");
        let rust = run_firmware(&model, board, count, "rust");
        assert_eq!((c["images"].as_u64(), c["disagreements"].as_u64()), (Some(count as u64), Some(0)), "{c}");
        assert_eq!(c["score_mismatches"], 0, "{c}");
        assert!(c["elf"].as_str().unwrap().contains("firmware-c"), "{c}");
        assert!(c["ram_bytes"].as_u64().unwrap() <= c["ram_budget_bytes"].as_u64().unwrap(), "{c}");
        // The model is embedded whole and the same JSON keys are reported.
        assert_eq!(c["model_bytes"], std::fs::metadata(&model).unwrap().len(), "{c}");
        let keys = |r: &serde_json::Value| r.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&c), keys(&rust));
        let (ci, ri) =
            (c["instructions_per_inference"].as_f64().unwrap(), rust["instructions_per_inference"].as_f64().unwrap());
        println!("{board} {widths:?}: C {ci} instructions per inference, Rust {ri} ({:+.2}%)", 100.0 * (ci / ri - 1.0));
    }
}

#[test]
fn f32_and_corrupt_models_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = trainer::model::Mlp::new(
        &infer_core::arch::Architecture::FMNIST,
        Activation::Relu,
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(1),
    );
    let f32_path = dir.path().join("m.f32.fmlp");
    trainer::format::save_f32(&model, &f32_path).unwrap();
    let run = sim().args(["qemu", "--count", "1", "--model"]).arg(&f32_path).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("int8"), "{}", String::from_utf8_lossy(&run.stderr));

    let int8 = int8_model(dir.path(), &[784, 512, 256, 10], Activation::Relu, 2);
    let mut bytes = std::fs::read(&int8).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&int8, &bytes).unwrap();
    let run = sim().args(["qemu", "--count", "1", "--model"]).arg(&int8).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("corrupt"), "{}", String::from_utf8_lossy(&run.stderr));
}
