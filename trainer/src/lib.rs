//! Trains the Fashion-MNIST MLPs of the study and writes what infer-core runs.
//!
//! Modules by concept: [`data`] (IDX files), [`kernels`] (SIMD matrix products),
//! [`model`] (forward and backward pass), [`train`] (the loop), [`format`](mod@format) (model files),
//! [`report`] (history, confusion matrices, summaries).

pub mod data;
pub mod figures;
pub mod format;
pub mod fsutil;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod report;
pub mod train;
