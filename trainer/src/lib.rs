//! Trains multilayer perceptrons on Fashion-MNIST (the study's three, or any stack of 1 to 4
//! dense hidden layers) and writes what infer-core runs.
//!
//! Modules by concept: [`data`] (the `dataset` crate: IDX files), [`kernels`] (SIMD matrix
//! products), [`model`] (networks, forward and backward pass), [`norm`] (batch norm, folded
//! into the dense layers for export), [`optim`] (optimizers, learning-rate schedules), [`train`] (the loop, validation split, augmentation, checkpoints),
//! [`quant`] (int8 export), [`format`](mod@format) (model files), [`report`] (history,
//! confusion matrices, summaries).

pub use dataset as data;
pub use dataset::{fsutil, manifest};

pub mod alloc;
pub mod augment;
pub mod checkpoint;
pub mod figures;
pub mod format;
pub mod kernels;
pub mod model;
pub mod norm;
pub mod optim;
pub mod quant;
pub mod report;
pub mod rundir;
pub mod train;
