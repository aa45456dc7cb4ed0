//! `trainer fit --resume` after `kill -9` in the middle of a run, on the real dataset: the
//! run ends with the same bits as one never interrupted.

use std::path::Path;
use std::process::Command;

mod common;

use common::{Watched, data_dir, signalled};

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
}

/// A modern recipe with every part a checkpoint must carry: AdamW's moments, a cosine
/// schedule, batch norm, dropout, shifts and flips, a validation split and its best epoch.
const ARGS: [&str; 20] = [
    "fit",
    "--preset",
    "best",
    "--hidden",
    "128",
    "--dropout",
    "0.1",
    "--epochs",
    "8",
    "--shift",
    "1",
    "--flip",
    "--val-split",
    "1000",
    "--limit",
    "12000",
    "--threads",
    "2",
    "--seed",
    "5",
];
const MODEL: &str = "relu-128-dropout0.1-best";

fn history_without_seconds(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(MODEL).join("history.csv")).unwrap();
    text.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n").collect()
}

/// Starts the run into `out` and kills it (SIGKILL) as it prints its third epoch: by then
/// the first epoch's checkpoint is on disk (each save waits for the one before). `None` if
/// the run had finished before the kill landed.
fn killed_run(out: &Path) -> Option<()> {
    let data = data_dir();
    let mut run = Watched::spawn(trainer().args(ARGS).args(["--data-dir", &data]).arg("--out").arg(out));
    assert!(run.wait_for(&format!("{MODEL} epoch  3:")), "the run ended before its third epoch");
    let (status, _) = run.signal("KILL");
    signalled(&status).then_some(())
}

#[test]
fn a_run_killed_mid_run_resumes_to_the_same_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let run = trainer().args(ARGS).args(["--data-dir", &data_dir()]).arg("--out").arg(&whole).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!whole.join(MODEL).join("checkpoint.bin").exists(), "a complete run keeps no checkpoint");

    // The kill is sent on an event, but lands when the kernel delivers it: a run that
    // finished first (five epochs later) is run again.
    let killed = (0..3)
        .map(|attempt| tmp.path().join(format!("killed-{attempt}")))
        .find(|dir| killed_run(dir).is_some())
        .expect("three runs finished before a kill sent at their third epoch landed");
    let checkpoint = killed.join(MODEL).join("checkpoint.bin");
    let saved = trainer::checkpoint::read(&checkpoint).unwrap().expect("a whole checkpoint survives the kill");
    assert!(saved.state.epoch >= 1, "killed after the first checkpoint");
    assert!(!killed.join("manifest.json").exists());
    // The interrupted run cannot be mistaken for a finished one.
    let report = trainer().arg("report").arg(&killed).output().unwrap();
    assert!(!report.status.success());

    // The data folder comes from the run's plan; another thread count gives the same bits.
    let resumed = trainer().args(["fit", "--resume"]).arg(&killed).args(["--threads", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    let said = match saved.state.finished {
        false => format!("continuing from the checkpoint after epoch {}", saved.state.epoch),
        true => format!("trained in full before the interruption ({} epochs)", saved.state.epoch),
    };
    assert!(stderr.contains(&said), "{stderr}");

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
