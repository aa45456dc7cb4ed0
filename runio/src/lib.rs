//! Files and streams of the tools, below `dataset`, `trainer` and `firmware-sim`:
//! [`fsutil`] (atomic writes, bounded reads, leftovers of killed writes), [`manifest`] (what
//! a run folder holds, file by file), [`rundir`] (one run per folder), [`out`] (standard
//! output that a closed pipe does not turn into an error) and [`stop`] (SIGINT and SIGTERM
//! as a request to stop at the next safe point).

pub mod fsutil;
pub mod manifest;
pub mod out;
pub mod rundir;
pub mod stop;

use sha2::{Digest, Sha256};

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
