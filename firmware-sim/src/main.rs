//! `firmware-sim`: runs a model file through `infer-core` the way firmware does, and checks
//! it against the trainer.
//!
//! - `check`: on the host (one static byte blob, one fixed scratch buffer, no allocation in
//!   the inference loop) over the test set, against the trainer's predictions: bit-exact for
//!   int8 models.
//! - `qemu`: real Cortex-M firmware (`tools/firmware`) with the model in flash, on an
//!   emulated board (M4F, M3 or M0), against infer-core on the host: flash, RAM and
//!   instruction counts.

mod blob;
mod check;
mod qemu;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Runs infer-core as firmware would and compares it with the trainer.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify the test examples with a model file and report accuracy, agreement with the
    /// trainer, flash and RAM use and latency.
    ///
    /// The test examples are those the model's run tested on (its run.json names its data
    /// and test split), or those the data options name.
    ///
    /// Exits with status 2 when fewer than --min-agreement of the predictions equal the
    /// trainer's. The default depends on the model:
    ///
    /// - int8: 1.0. Integer inference is exact, so every one of the 10,000 predictions must
    ///   equal the trainer's integer reference (predictions_int8.csv).
    /// - f32: 0.999. At most 10 of 10,000 may differ from predictions.csv, from f32 rounding
    ///   of near-ties between the trainer's blocked SIMD sums and infer-core's sequential ones.
    Check {
        /// The model file (`*.int8.fmlp` or `*.f32.fmlp` from `trainer fit`).
        #[arg(long)]
        model: PathBuf,
        /// The test data (default: the model's run's, from its run.json; else Fashion-MNIST).
        #[command(flatten)]
        data: dataset::cli::DataArgs,
        /// The seed the trainer drew --test-split's split with (its --seed), for data given
        /// by options rather than by the model's run.
        #[arg(long, default_value_t = 42, help_heading = "Data")]
        seed: u64,
        /// The trainer's predictions (default: predictions_int8.csv or predictions.csv beside
        /// the model). A missing file is an error, unless --no-agreement.
        #[arg(long, value_name = "CSV", conflicts_with = "no_agreement")]
        predictions: Option<PathBuf>,
        /// Measure accuracy, RAM and latency only; compare with no trainer predictions.
        #[arg(long)]
        no_agreement: bool,
        /// Smallest fraction of predictions that must equal the trainer's, in 0..=1 (default:
        /// 1.0 for int8, 0.999 for f32).
        #[arg(long, value_parser = check::parse_fraction)]
        min_agreement: Option<f64>,
        /// Threads for the batched pass (int8): 1 to 4 per CPU (default: RAYON_NUM_THREADS if
        /// set, else one per CPU). The firmware-like pass, one image at a time, runs on one.
        #[arg(long)]
        threads: Option<u32>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Build the Cortex-M firmware with an int8 model in flash, run it on an emulated board
    /// (QEMU), and compare every prediction and score with infer-core on the host.
    ///
    /// Boards: mps2-an386 (Cortex-M4F, the default: the SMLAD kernel), mps2-an385
    /// (Cortex-M3) and microbit (Cortex-M0, 256 KB flash and 16 KB RAM: a small model, e.g.
    /// `trainer fit --hidden 128,64`), both on the portable kernel.
    ///
    /// Reports accuracy, disagreements with the host, flash (code and model apart, from the
    /// ELF), RAM (statics plus the stack's high-water mark, found by painting the stack) and
    /// instructions per inference. Instructions are counted by QEMU: with `-icount shift=0`
    /// every instruction advances virtual time by 1 ns, SysTick counts virtual time, and a
    /// calibration loop of a known instruction count converts ticks to instructions. It is a
    /// count of executed instructions, not of cycles (a real M4 spends extra cycles on
    /// loads, taken branches and flash wait states).
    ///
    /// Needs Debian's rustc-web and rust-web-src (to build `core` for the Cortex-M targets),
    /// gcc-arm-none-eabi (the linker) and qemu-system-arm. Exits with status 2 when any
    /// prediction or score differs from the host's, or the firmware's RAM exceeds the
    /// board's (a model too large for its flash fails to link).
    Qemu {
        /// The int8 model file (`*.int8.fmlp`).
        #[arg(long)]
        model: PathBuf,
        /// The emulated board.
        #[arg(long, value_enum, default_value = "mps2-an386")]
        board: qemu::Board,
        /// Classify only the first N test examples (default: all).
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// The test data (default: the model's run's, from its run.json; else Fashion-MNIST).
        #[command(flatten)]
        data: dataset::cli::DataArgs,
        /// The seed the trainer drew --test-split's split with (its --seed), for data given
        /// by options rather than by the model's run.
        #[arg(long, default_value_t = 42, help_heading = "Data")]
        seed: u64,
        /// Which firmware: `rust` (tools/firmware, infer-core linked as a crate) or `c`
        /// (tools/firmware-c: C through infer-c's fmlp.h and libfmlp.a, the model written as
        /// C by `trainer export --c-header`). Same protocol, report and JSON keys.
        #[arg(long, value_enum, default_value = "rust")]
        firmware: qemu::Firmware,
        /// The firmware's folder (default: tools/firmware, or tools/firmware-c for --firmware c).
        #[arg(long, value_name = "DIR")]
        firmware_dir: Option<PathBuf>,
        /// Give up on QEMU after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 900)]
        timeout: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            runio::note!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Check { model, data, seed, predictions, no_agreement, min_agreement, threads, json } => {
            let threads = trainer::threads::count_here(threads).map_err(anyhow::Error::msg)?;
            check::run(check::Args { model, data, seed, predictions, no_agreement, min_agreement, threads, json })
        }
        Command::Qemu { model, board, count, data, seed, firmware, firmware_dir, timeout, json } => {
            let firmware_dir = firmware_dir.unwrap_or_else(|| firmware.default_dir());
            qemu::run(qemu::Args { model, board, count, data, seed, firmware, firmware_dir, timeout, json })
        }
    }
}
