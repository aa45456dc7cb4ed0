//! `trainer fit --resume` after `kill -9`, SIGINT or SIGTERM in the middle of a run, on the
//! real dataset: the run ends with the same bits as one never interrupted.

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

/// The run never interrupted, made once for the tests of this file (in Cargo's scratch
/// folder for tests, replaced on every run).
fn whole() -> &'static Path {
    static WHOLE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    WHOLE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("resume-whole");
        let _ = std::fs::remove_dir_all(&out);
        let run = trainer().args(ARGS).args(["--data-dir", &data_dir()]).arg("--out").arg(&out).output().unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert!(!out.join(MODEL).join("checkpoint.bin").exists(), "a complete run keeps no checkpoint");
        out
    })
}

/// Starts the run into `out` and sends it `signal` as it prints its third epoch: by then the
/// first epoch's checkpoint is on disk (each save waits for the one before). What it
/// printed, or `None` if the run had finished before the signal landed.
fn interrupted_run(out: &Path, signal: &str) -> Option<String> {
    let data = data_dir();
    let mut run = Watched::spawn(trainer().args(ARGS).args(["--data-dir", &data]).arg("--out").arg(out));
    assert!(run.wait_for(&format!("{MODEL} epoch  3:")), "the run ended before its third epoch");
    let (status, printed) = run.signal(signal);
    let stopped = match signal {
        "INT" => status.code() == Some(130),
        "TERM" => status.code() == Some(143),
        _ => signalled(&status),
    };
    // Stopped as the signal asks, or finished before it landed: nothing else.
    assert!(stopped || status.success(), "kill -{signal}: {status}\n{printed}");
    stopped.then_some(printed)
}

/// Interrupts the run with `signal` (again if it finished first), checks the folder it
/// leaves, resumes it with another thread count and checks it ends with the bits of the
/// run never interrupted. What the interrupted run printed.
fn interrupted_and_resumed(signal: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    // The signal is sent on an event, but lands when the kernel delivers it: a run that
    // finished first (five epochs later) is run again.
    let (killed, printed) = (0..3)
        .map(|attempt| tmp.path().join(format!("killed-{attempt}")))
        .find_map(|dir| interrupted_run(&dir, signal).map(|printed| (dir, printed)))
        .unwrap_or_else(|| panic!("three runs finished before a kill -{signal} sent at their third epoch landed"));
    let checkpoint = killed.join(MODEL).join("checkpoint.bin");
    let saved = trainer::checkpoint::read(&checkpoint).unwrap().expect("a whole checkpoint survives the signal");
    assert!(saved.state.epoch >= 1, "interrupted after the first checkpoint");
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

    let whole = whole();
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
    assert_eq!(history_without_seconds(whole), history_without_seconds(&killed));
    assert!(!checkpoint.exists(), "the finished run removed its checkpoint");
    let report = trainer().arg("report").arg(&killed).output().unwrap();
    assert!(report.status.success(), "the resumed run is sealed: {}", String::from_utf8_lossy(&report.stderr));

    let again = trainer().args(["fit", "--resume"]).arg(&killed).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to resume"));
    printed.replace(&killed.display().to_string(), "DIR")
}

#[test]
fn a_run_killed_mid_run_resumes_to_the_same_bits() {
    interrupted_and_resumed("KILL");
}

/// SIGINT (Ctrl-C) and SIGTERM stop the run between two steps: it says where it stands and
/// how to continue, and exits as shells report a process the signal ended.
#[test]
fn a_run_stopped_by_sigint_or_sigterm_says_so_and_resumes_to_the_same_bits() {
    for (signal, name) in [("INT", "SIGINT"), ("TERM", "SIGTERM")] {
        let printed = interrupted_and_resumed(signal);
        let said = printed.lines().find(|l| l.starts_with("Stopped by")).unwrap_or_else(|| panic!("{printed}"));
        assert!(said.starts_with(&format!("Stopped by {name}")), "{said}");
        assert!(said.contains(&format!("{MODEL} stopped after epoch")) && said.contains("of 8"), "{said}");
        assert!(printed.contains("Continue the run with: trainer fit --resume DIR"), "{printed}");
    }
}
