//! Data for training and checking models: Fashion-MNIST by name (found, downloaded and
//! verified by checksum), any folder of IDX files (MNIST, KMNIST, EMNIST), CSV tables of
//! features and NumPy `.npz` archives, each read within bounds into [`Split`]s and described
//! by a [`Schema`] (inputs, classes and their names, image shape) that the trainer, the
//! model files and `firmware-sim` take their shapes from.
//!
//! Shared by `trainer` and `firmware-sim`. Downloading is behind the `fetch` feature, so that
//! a program that only reads the files links no HTTP client.

#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod error;
pub mod fashion;
pub mod idx;
pub mod npz;
pub mod source;
pub mod split;
pub mod table;

pub use data::{Dataset, Schema, Split};
pub use error::DataError;
pub use fashion::{FILES, FileSpec, OFFICIAL_URL, cache_dir, candidates, load, load_dir, locate};
#[cfg(feature = "fetch")]
pub use fashion::{Patience, base_url, fetch, fetch_with};
pub use idx::{MAX_IDX_BYTES, load_split, read_limited, read_maybe_gz};
pub use source::{DataOptions, DataSpec, Source};
