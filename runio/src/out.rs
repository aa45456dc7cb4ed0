//! Standard output as the command-line tools write it.

use anyhow::{Context, Result};

/// Prints `text` on stdout. A reader that went away (`| head`) is not an error: the rest is
/// simply not printed.
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing to stdout"),
    }
}
