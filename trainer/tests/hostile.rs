//! The second robustness audit (issue 23), case by case, on the release binary: one writer
//! per run folder, nothing removed that is not a run's, special files refused without a
//! hang, the environment checked like the options, a closed pipe that does not stop a run,
//! and failures before training that leave nothing behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

use common::{data_dir, json, sensors, stderr, write};

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
}

/// Fails unless `run` exited 1 (an error, not a crash) saying `needle`.
fn refused(run: &Output, needle: &str, what: &str) {
    let err = stderr(run);
    assert_eq!(run.status.code(), Some(1), "{what}: {err}");
    assert!(err.contains(needle) && !err.contains("panicked"), "{what}: {err}");
}

/// `trainer ARGS` run under `timeout`: a command that blocks (on a FIFO) is ended after
/// [`common::HANG`] and the test fails saying so, instead of hanging the suite.
fn bounded(args: &[&str]) -> Output {
    let run = Command::new("timeout")
        .arg(common::HANG.as_secs().to_string())
        .arg(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .expect("timeout (coreutils) runs");
    assert_ne!(run.status.code(), Some(124), "{args:?} hung: {}", stderr(&run));
    run
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo (coreutils) runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A table of 120 rows to train on in a blink, in `dir`.
fn table(dir: &Path) -> String {
    write(dir, "sensors.csv", &sensors(120, 7)).to_str().unwrap().to_string()
}

/// `fit` of a tiny network on `data` (a table) into `out`, with `extra` options.
fn tiny_fit(data: &str, out: &Path, extra: &[&str]) -> Command {
    let mut fit = trainer();
    fit.args(["fit", "--data", data, "--label-column", "activity", "--hidden", "4"]);
    if !extra.contains(&"--epochs") {
        fit.args(["--epochs", "40"]);
    }
    fit.args(extra).arg("--out").arg(out);
    fit
}

/// Two `fit`s started together into one new folder: one trains, the other is refused
/// (the folder is held, or already holds the finished run), and the folder holds one run
/// whose every file its manifest ties to it. Repeated: the audit saw a mixed folder in 3 of
/// 45 tries.
#[test]
fn two_runs_started_together_into_one_folder_leave_one_whole_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = table(tmp.path());
    for attempt in 0..45 {
        let out = tmp.path().join(format!("race-{attempt}"));
        let runs: Vec<_> = ["1", "2"]
            .map(|seed| {
                tiny_fit(&data, &out, &["--seed", seed]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
            })
            .into_iter()
            .collect();
        let outputs: Vec<Output> = runs.into_iter().map(|r| r.wait_with_output().unwrap()).collect();
        let won: Vec<&Output> = outputs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(won.len(), 1, "attempt {attempt}: {:?}", outputs.iter().map(stderr).collect::<Vec<_>>());
        let lost = outputs.iter().find(|o| !o.status.success()).unwrap();
        let why = stderr(lost);
        assert!(
            why.contains("being written by another process") || why.contains("holds a finished run"),
            "attempt {attempt}: {why}"
        );
        let (plan, summary, manifest) =
            (json(&out.join("run.json")), json(&out.join("summary.json")), json(&out.join("manifest.json")));
        assert_eq!(plan["run_id"], summary["run_id"], "attempt {attempt}");
        assert_eq!(manifest["run_id"], summary["run_id"], "attempt {attempt}");
        let report = trainer().arg("report").arg(&out).output().unwrap();
        assert!(report.status.success(), "attempt {attempt}: {}", stderr(&report));
    }
}

/// `--resume` of a run that is still training is refused while it runs.
#[test]
fn a_run_still_training_cannot_be_resumed_or_reported_into() {
    let tmp = tempfile::tempdir().unwrap();
    let data = table(tmp.path());
    let out = tmp.path().join("run");
    let mut run = common::Watched::spawn(&mut tiny_fit(&data, &out, &["--epochs", "5000"]));
    assert!(run.wait_for(" epoch  1:"), "{:?}", run.seen);
    // Frozen (SIGSTOP) while the others try, so that it cannot finish first however loaded
    // the machine is: a stopped process still holds its folder.
    let pid = run.child.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let resume = trainer().args(["fit", "--resume"]).arg(&out).output().unwrap();
    let report = trainer().arg("report").arg(&out).output().unwrap();
    // SIGTERM while it is frozen, delivered when it goes on: it stops at its next step.
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let (status, printed) = run.finish();
    assert_eq!(status.code(), Some(143), "{printed}");
    refused(&resume, "being written by another process", "--resume of a running run");
    refused(&report, "being written by another process", "report of a running run");
}

/// `--overwrite` removes only what a previous run wrote: a user's file kept inside the
/// folder, even one named like a model, stops it, and the message offers no flag that
/// would delete it.
#[test]
fn overwrite_never_removes_what_a_run_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let data = table(tmp.path());
    let out = tmp.path().join("run");
    assert!(tiny_fit(&data, &out, &[]).output().unwrap().status.success());
    let mine = out.join("deploy/relu.int8.fmlp");
    std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
    std::fs::write(&mine, "the model on my devices").unwrap();
    for extra in [&[][..], &["--overwrite"]] {
        let again = tiny_fit(&data, &out, extra).output().unwrap();
        refused(&again, "holds files that are not a run's", "a user's file in the run folder");
        assert!(stderr(&again).contains("deploy/relu.int8.fmlp") && !stderr(&again).contains("pass --overwrite"));
        assert_eq!(std::fs::read_to_string(&mine).unwrap(), "the model on my devices");
    }
    // Without it, the previous run goes and the user's folder stays.
    std::fs::remove_dir_all(out.join("deploy")).unwrap();
    let again = tiny_fit(&data, &out, &[]).output().unwrap();
    refused(&again, "holds a finished run", "a second run");
    assert!(stderr(&again).contains("pass --overwrite to remove that run's"), "{}", stderr(&again));
    assert!(tiny_fit(&data, &out, &["--overwrite", "--seed", "9"]).output().unwrap().status.success());
}

/// `trainer fit 2>&1 | head -1`: once the reader is gone, the run goes on to finish, and
/// exits 0 with its folder complete.
#[test]
fn a_closed_pipe_does_not_stop_a_real_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (reader, writer) = std::io::pipe().unwrap();
    let data = data_dir();
    let mut fit = trainer();
    fit.args(["fit", "--model", "relu", "--epochs", "3", "--limit", "1500", "--data-dir", &data]);
    fit.arg("--out").arg(&out).stdout(writer.try_clone().unwrap()).stderr(writer);
    let mut child = fit.spawn().unwrap();
    // The command holds the write ends until dropped; then the child holds the only ones.
    drop(fit);
    let mut first = String::new();
    BufReader::new(reader).read_line(&mut first).unwrap();
    assert!(first.contains("Fashion-MNIST"), "{first}");
    // The reader is dropped here: every later write of the run meets a closed pipe.
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(out.join("manifest.json").is_file() && out.join("relu/relu.int8.fmlp").is_file());
    let report = trainer().arg("report").arg(&out).output().unwrap();
    assert!(report.status.success(), "{}", stderr(&report));
}

/// A FIFO, a folder or a symlink loop where a tool reads a file: an error that says what
/// it is, at once; never a wait for a writer, never "missing".
#[test]
fn special_files_are_refused_for_what_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    std::fs::create_dir(dir.join("folder")).unwrap();
    std::os::unix::fs::symlink("loop-b", dir.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", dir.join("loop-b")).unwrap();
    let real = write(dir, "real.csv", &sensors(30, 1));
    let what = [("fifo", "a FIFO (named pipe)"), ("folder", "a folder"), ("loop-a", "symbolic links")];
    for (name, said) in what {
        // A source's kind comes from its name: links named like each kind lead to it.
        let named = |ext: &str| {
            let link = dir.join(format!("{name}.{ext}"));
            std::os::unix::fs::symlink(name, &link).unwrap();
            link.to_str().unwrap().to_string()
        };
        let (model, csv, npz) = (named("f32.fmlp"), named("csv"), named("npz"));
        let out = |case: &str| dir.join(format!("{name}-{case}")).to_str().unwrap().to_string();
        let cases: [(&str, Vec<String>); 4] = [
            ("export's model", vec!["export".into(), model, "--out".into(), out("export.int8.fmlp")]),
            (
                "a table",
                vec![
                    "fit".into(),
                    "--data".into(),
                    csv.clone(),
                    "--hidden".into(),
                    "4".into(),
                    "--out".into(),
                    out("csv"),
                ],
            ),
            (
                "an .npz",
                vec!["fit".into(), "--data".into(), npz, "--hidden".into(), "4".into(), "--out".into(), out("npz")],
            ),
            (
                "the test table",
                ["data", "check", "--data", real.to_str().unwrap(), "--label-column", "activity", "--test-data", &csv]
                    .map(String::from)
                    .to_vec(),
            ),
        ];
        for (case, args) in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // A folder given as --data is read as an IDX folder, whatever its name.
            let said = match (name, case) {
                ("folder", "a table" | "an .npz") => "an IDX folder holds",
                _ => said,
            };
            refused(&bounded(&args), said, &format!("{name} as {case}"));
        }
        for case in ["export.int8.fmlp", "csv", "npz"] {
            assert!(!Path::new(&out(case)).exists(), "{name} as {case}: nothing written");
        }
        // An IDX folder with it in place of a file.
        let idx = dir.join(format!("idx-{name}"));
        std::fs::create_dir(&idx).unwrap();
        for file in ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
            std::fs::write(idx.join(file), "").unwrap();
        }
        std::os::unix::fs::symlink(dir.join(name), idx.join("train-images-idx3-ubyte")).unwrap();
        let run = bounded(&["data", "check", "--data-dir", idx.to_str().unwrap()]);
        refused(&run, said, &format!("{name} as an IDX file"));
        assert!(!stderr(&run).contains("not found"), "{}", stderr(&run));
    }
    // A run's files: summary.json to report, run.json and a checkpoint to --resume.
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    mkfifo(&run.join("summary.json"));
    refused(&bounded(&["report", run.to_str().unwrap()]), "a FIFO", "summary.json");
    mkfifo(&run.join("run.json"));
    refused(&bounded(&["fit", "--resume", run.to_str().unwrap()]), "a FIFO", "run.json");
    // A real unfinished run (its manifest gone), whose checkpoint is a FIFO.
    let data = table(dir);
    let resumable = dir.join("resumable");
    assert!(tiny_fit(&data, &resumable, &[]).output().unwrap().status.success());
    std::fs::remove_file(resumable.join("manifest.json")).unwrap();
    let model = json(&resumable.join("summary.json"))["models"][0]["name"].as_str().unwrap().to_string();
    mkfifo(&resumable.join(&model).join("checkpoint.bin"));
    refused(&bounded(&["fit", "--resume", resumable.to_str().unwrap()]), "a FIFO", "a checkpoint");
}

/// RAYON_NUM_THREADS gets the bounds --threads has, and the error names it; in a small
/// address space, so that a pool started before the check would fail instead.
#[test]
fn the_thread_count_from_the_environment_is_checked_like_the_option() {
    let tmp = tempfile::tempdir().unwrap();
    let data = table(tmp.path());
    for (value, needle) in
        [("1000", "RAYON_NUM_THREADS=1000"), ("100000", "RAYON_NUM_THREADS=100000"), ("lots", "not a number")]
    {
        let out = tmp.path().join(format!("out-{value}"));
        let run = Command::new("prlimit")
            .args(["--as=1073741824", "--", env!("CARGO_BIN_EXE_trainer")])
            .args(["fit", "--data", &data, "--label-column", "activity", "--hidden", "4"])
            .arg("--out")
            .arg(&out)
            .env("RAYON_NUM_THREADS", value)
            .output()
            .expect("prlimit (util-linux) runs");
        refused(&run, needle, value);
        assert!(!out.exists(), "{value}: a refused run leaves no folder");
        // The same bounds as the option: the message says what to give.
        assert!(stderr(&run).contains("1 to "), "{}", stderr(&run));
    }
    // The option wins over the environment, and a sound value runs.
    let out = tmp.path().join("ok");
    let run = tiny_fit(&data, &out, &["--threads", "1"]).env("RAYON_NUM_THREADS", "1000").output().unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(json(&out.join("summary.json"))["threads"], 1);
}

/// A run that fails before it trains leaves nothing, so the same command, corrected or
/// not, meets the same error or runs; never "already holds a run".
#[test]
fn a_run_that_fails_before_training_leaves_nothing_behind() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = table(tmp.path());
    let out = tmp.path().join("run");
    let non_utf8 = std::ffi::OsStr::from_bytes(b"/tmp/data-\xff");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec!["--model".into(), "relu".into(), "--data-dir".into(), "/nonexistent".into()], "not found"),
        (vec!["--model".into(), "relu".into(), "--data-dir".into(), non_utf8.into()], "--data-dir"),
        (
            vec![
                "--data".into(),
                data.clone().into(),
                "--label-column".into(),
                "activity".into(),
                "--val-split".into(),
                "500".into(),
            ],
            "--val-split 500",
        ),
        (
            vec![
                "--data".into(),
                data.clone().into(),
                "--label-column".into(),
                "activity".into(),
                "--threads".into(),
                "99".into(),
            ],
            "--threads 99",
        ),
    ];
    for (args, needle) in cases {
        for attempt in 0..2 {
            let run = trainer().arg("fit").args(&args).arg("--out").arg(&out).output().unwrap();
            refused(&run, needle, &format!("{args:?}, attempt {attempt}"));
            assert!(!out.exists(), "{args:?}: a run that never trained leaves no folder");
        }
    }
    // --resume of a folder that is not there says so.
    let run = trainer().args(["fit", "--resume", "/nonexistent/run"]).output().unwrap();
    refused(&run, "no such folder", "--resume of nothing");
}

/// `firmware-sim check` and `trainer export` refuse the files of a run that did not finish
/// (a plan, no manifest), as `report` does.
#[test]
fn the_files_of_an_unfinished_run_are_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = table(tmp.path());
    let out = tmp.path().join("run");
    assert!(tiny_fit(&data, &out, &[]).output().unwrap().status.success());
    std::fs::remove_file(out.join("manifest.json")).unwrap();
    let model = json(&out.join("summary.json"))["models"][0]["name"].as_str().unwrap().to_string();
    let f32 = out.join(&model).join(format!("{model}.f32.fmlp"));
    let again: PathBuf = tmp.path().join("again.int8.fmlp");
    let export = trainer().arg("export").arg(&f32).arg("--out").arg(&again).args(["--data", &data]).output().unwrap();
    refused(&export, "did not finish", "export of an unfinished run's model");
    assert!(stderr(&export).contains("fit --resume"), "{}", stderr(&export));
    refused(&trainer().arg("report").arg(&out).output().unwrap(), "did not finish", "report");
}
