//! `trainer fit --resume` after `kill -9` in the middle of an epoch, on the real dataset:
//! the run ends with the same bits as one never interrupted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
}

/// A modern recipe with every part a checkpoint must carry: AdamW's moments, a cosine
/// schedule, dropout, shifts and flips, a validation split and its best epoch.
const ARGS: [&str; 17] = [
    "fit",
    "--preset",
    "best",
    "--hidden",
    "128",
    "--dropout",
    "0.1",
    "--epochs",
    "4",
    "--shift",
    "1",
    "--flip",
    "--val-split",
    "3000",
    "--threads",
    "2",
    "--data-dir",
];
const MODEL: &str = "relu-128-dropout0.1-best";

fn history_without_seconds(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(MODEL).join("history.csv")).unwrap();
    text.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n").collect()
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_bits() {
    assert!(
        Path::new(DEBIAN_DIR).join("train-images-idx3-ubyte.gz").is_file(),
        "the real dataset is missing: apt-get install dataset-fashion-mnist"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    let run = trainer().args(ARGS).arg(DEBIAN_DIR).arg("--out").arg(&whole).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!whole.join(MODEL).join("checkpoint.bin").exists(), "a complete run keeps no checkpoint");
    let history = std::fs::read_to_string(whole.join(MODEL).join("history.csv")).unwrap();
    let epoch_seconds: f64 = history.lines().nth(2).unwrap().rsplit(',').next().unwrap().parse().unwrap();

    // Kill the second run half way through its second epoch: after the first checkpoint.
    let mut child =
        trainer().args(ARGS).arg(DEBIAN_DIR).arg("--out").arg(&killed).stderr(Stdio::null()).spawn().unwrap();
    let checkpoint = killed.join(MODEL).join("checkpoint.bin");
    let started = Instant::now();
    while !checkpoint.exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs_f64(epoch_seconds / 2.0));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let saved = trainer::checkpoint::read(&checkpoint).unwrap().expect("a whole checkpoint survives the kill");
    assert!(
        saved.state.epoch < 4 && !saved.state.finished,
        "killed before the end (after epoch {})",
        saved.state.epoch
    );
    assert!(!killed.join("manifest.json").exists());
    // The interrupted run cannot be mistaken for a finished one.
    let report = trainer().arg("report").arg(&killed).output().unwrap();
    assert!(!report.status.success());

    // The data folder comes from the run's plan; another thread count gives the same bits.
    let resumed = trainer().args(["fit", "--resume"]).arg(&killed).args(["--threads", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("continuing from the checkpoint after epoch {}", saved.state.epoch)), "{stderr}");

    for file in [
        format!("{MODEL}/{MODEL}.f32.fmlp"),
        format!("{MODEL}/{MODEL}.int8.fmlp"),
        format!("{MODEL}/predictions.csv"),
        format!("{MODEL}/predictions_int8.csv"),
        format!("{MODEL}/confusion.csv"),
    ] {
        let (a, b) = (std::fs::read(whole.join(&file)).unwrap(), std::fs::read(killed.join(&file)).unwrap());
        assert!(a == b, "{file} differs after resume");
    }
    assert_eq!(history_without_seconds(&whole), history_without_seconds(&killed));
    assert!(!checkpoint.exists(), "the finished run removed its checkpoint");
    let report = trainer().arg("report").arg(&killed).output().unwrap();
    assert!(report.status.success(), "the resumed run is sealed: {}", String::from_utf8_lossy(&report.stderr));

    let again = trainer().args(["fit", "--resume"]).arg(&killed).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to resume"));
}
