//! What the tests that run the `trainer` binary share: the dataset found the way the tool
//! finds it, and processes watched through what they print.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// Longest wait for a line a run will print: far more than any run here takes on a loaded
/// machine, so that only a hang trips it.
pub const HANG: Duration = Duration::from_secs(600);

/// The Fashion-MNIST folder as `trainer` finds it (`FASHION_MNIST_DIR`, `./data`, Debian's
/// package, the user cache), as a `--data-dir` argument.
pub fn data_dir() -> String {
    let dir = trainer::data::locate(None).unwrap_or_else(|e| panic!("the real dataset is needed:\n{e}"));
    dir.to_str().expect("a UTF-8 dataset path").to_string()
}

/// A running `trainer` whose stderr is read line by line as it prints.
pub struct Watched {
    pub child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Watched {
    /// Starts `command` with its stderr piped to the watcher.
    pub fn spawn(command: &mut Command) -> Watched {
        let mut child = command.stderr(Stdio::piped()).spawn().expect("the trainer starts");
        let stderr = child.stderr.take().expect("piped");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watched { child, lines, seen: Vec::new() }
    }

    /// Waits for a line that holds `needle`: `true` when it came, `false` when the process
    /// ended first. Panics after [`HANG`].
    pub fn wait_for(&mut self, needle: &str) -> bool {
        loop {
            match self.lines.recv_timeout(HANG) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("no line with {needle:?} after {HANG:?}: a hang; printed so far:\n{}", self.text());
                }
            }
        }
    }

    /// Sends `signal` (`kill -SIGNAL`), waits for the process to end and reads the rest of
    /// what it printed.
    pub fn signal(mut self, signal: &str) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(sent.success() || self.child.try_wait().unwrap().is_some(), "kill -{signal} {pid}");
        self.finish()
    }

    /// Waits for the process to end and reads the rest of what it printed.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let found = self.wait_for("\u{0}");
        assert!(!found, "no line holds a NUL");
        let status = self.child.wait().expect("the trainer ends");
        let text = self.text();
        (status, text)
    }

    fn text(&self) -> String {
        self.seen.join("\n")
    }
}

/// Whether the process was ended by a signal rather than exiting.
pub fn signalled(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal().is_some()
}

/// Writes `text` to the file `name` in `dir`: its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A table of `rows` rows: a constant column, two noisy features and a label of three
/// classes (`still`, `walk`, `run`) that the features separate; the label column second.
pub fn sensors(rows: usize, seed: u64) -> String {
    let mut state = seed;
    let mut noise = move || {
        // SplitMix64, scaled to [-0.5, 0.5).
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut text = String::from("battery,activity,accel_rms,step_hz\n");
    for i in 0..rows {
        let (class, name) = [(0.0, "still"), (1.0, "walk"), (2.0, "run")][i % 3];
        // Magnitudes apart (hundreds against units), as raw sensor values are.
        let accel = 100.0 + 250.0 * class + 80.0 * noise();
        let steps = 1.5 * class + 0.6 * noise();
        text.push_str(&format!("3.7,{name},{accel:.3},{steps:.4}\n"));
    }
    text
}

/// Values of one Fashion-MNIST image.
pub const PIXELS: usize = 784;

/// Fashion-MNIST-shaped data of these splits (synthetic images of the tests).
pub fn data(tr: &trainer::data::Split, te: &trainer::data::Split) -> trainer::data::Dataset {
    trainer::data::Dataset {
        train: tr.clone(),
        test: te.clone(),
        schema: trainer::data::fashion::schema(),
        origin: "synthetic".into(),
    }
}

/// What a finished command printed on stderr.
pub fn stderr(run: &Output) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// A JSON file of a run, parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Images whose class is written as a bright horizontal band at row `2 * class`, plus noise.
pub fn synthetic(n: usize, seed: u64) -> trainer::data::Split {
    let mut pixels = vec![0u8; n * PIXELS];
    let mut labels = vec![0u8; n];
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (s >> 33) as u32
    };
    for i in 0..n {
        let class = (next() % 10) as usize;
        labels[i] = class as u8;
        let img = &mut pixels[i * PIXELS..(i + 1) * PIXELS];
        for (p, v) in img.iter_mut().enumerate() {
            let row = p / 28;
            *v = if row == 2 * class + 3 { 200 + (next() % 56) as u8 } else { (next() % 40) as u8 };
        }
    }
    trainer::data::Split::bytes(pixels, labels, PIXELS)
}

/// Stops a run after `left` steps.
pub struct StopAfter {
    pub left: usize,
}

impl trainer::train::Observer for StopAfter {
    fn step(&mut self, _: usize, _: f64, _: f64) {
        self.left = self.left.saturating_sub(1);
    }
    fn stop(&mut self) -> bool {
        self.left == 0
    }
}

/// `recipe` on `ds` run whole, and run again stopped after `steps` steps (after `epochs`
/// whole epochs) and resumed from its checkpoint: both runs' results.
pub fn whole_and_resumed(
    recipe: &trainer::recipe::Recipe,
    ds: &trainer::data::Dataset,
    steps: usize,
    epochs: usize,
) -> (trainer::train::Trained, trainer::train::Trained) {
    use trainer::train::{self, FitError, Quiet};
    let whole = train::fit(recipe, ds, &mut Quiet).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    let stopped = train::fit_with(recipe, ds, &mut StopAfter { left: steps }, Some(&checkpoint));
    assert!(matches!(stopped, Err(FitError::Stopped { epochs: e }) if e == epochs), "{stopped:?}");
    let resumed = train::fit_with(recipe, ds, &mut Quiet, Some(&checkpoint)).unwrap();
    (whole, resumed)
}

/// `recipe` trained on `ds` on a pool of `threads` threads.
pub fn fit_on_threads(
    recipe: &trainer::recipe::Recipe,
    ds: &trainer::data::Dataset,
    threads: usize,
) -> trainer::train::Trained {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| trainer::train::fit(recipe, ds, &mut trainer::train::Quiet).unwrap())
}
