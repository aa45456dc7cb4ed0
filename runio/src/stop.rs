//! SIGINT (Ctrl-C) and SIGTERM as a request to stop: a long command, once it has called
//! [`install`], asks [`requested`] at its safe points (between training steps) and winds
//! down, saying where it stopped; a second signal ends the process at once, with the same
//! status a shell reports for a process the signal killed (128 + its number).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The signals [`install`] handles.
pub const SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// The flags the handlers set: whether a signal came, and which (the last one).
struct Flags {
    asked: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// A signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

impl Signal {
    /// Its name, `SIGINT` or `SIGTERM`.
    pub fn name(self) -> String {
        match self.0 {
            signal_hook::consts::SIGINT => "SIGINT (Ctrl-C)".into(),
            signal_hook::consts::SIGTERM => "SIGTERM".into(),
            n => format!("signal {n}"),
        }
    }

    /// The exit status for a process that stopped on it: 128 + its number (130 for SIGINT,
    /// 143 for SIGTERM), as shells report.
    pub fn exit_code(self) -> i32 {
        128 + self.0
    }
}

/// Makes SIGINT and SIGTERM set the flag [`requested`] reads instead of ending the process;
/// a second one while the first is pending ends it at once. Idempotent.
pub fn install() -> std::io::Result<()> {
    if FLAGS.get().is_some() {
        return Ok(());
    }
    let flags = Flags { asked: Arc::new(AtomicBool::new(false)), which: Arc::new(AtomicUsize::new(0)) };
    for signal in SIGNALS {
        // In this order: the shutdown sees the flag as the earlier signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&flags.asked))?;
        signal_hook::flag::register_usize(signal, Arc::clone(&flags.which), signal as usize)?;
        signal_hook::flag::register(signal, Arc::clone(&flags.asked))?;
    }
    let _ = FLAGS.set(flags);
    Ok(())
}

/// The signal that asked the process to stop, if one came since [`install`].
pub fn requested() -> Option<Signal> {
    let flags = FLAGS.get()?;
    if !flags.asked.load(Ordering::SeqCst) {
        return None;
    }
    // The handlers store which signal before they set the flag (both sequentially
    // consistent), so a flag that is set has its signal.
    Some(Signal(flags.which.load(Ordering::SeqCst) as i32))
}
