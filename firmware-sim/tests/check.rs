//! `firmware-sim check` exit codes: agreement below the threshold, and a corrupt model.

use std::process::Command;

use rand::SeedableRng;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
}

#[test]
fn low_agreement_exits_2_and_corrupt_model_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let model = trainer::model::Mlp::new(infer_core::Activation::Relu, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
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
