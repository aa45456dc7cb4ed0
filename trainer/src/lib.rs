//! Trains multilayer perceptrons on Fashion-MNIST (the study's three, or any stack of 1 to 4
//! dense hidden layers) and writes what infer-core runs.
//!
//! Modules by concept, each importing only those below it:
//! - kernels: [`kernels`] (SIMD matrix products, their epilogues and lanes) and [`hash`]
//!   (counter-based randomness);
//! - parameters and their updates: [`optim`] (optimizers, learning-rate schedules), [`norm`]
//!   (batch norm, folded into the dense layers for export);
//! - the network: [`model`] (layers, forward and backward pass), [`prune`] (gradual
//!   magnitude pruning of its weights in blocks);
//! - data for training: [`data`] (the `dataset` crate), [`augment`] (validation split, shifts
//!   and flips), [`layout`] (pixel order and batch gathering);
//! - a run: [`recipe`] (presets and options), [`history`] (one record per epoch), [`keep`]
//!   (which epoch's weights are kept), [`state`] (what changes as a run trains),
//!   [`checkpoint`] (its file), [`train`] (the loop), [`threads`] (the worker pool);
//! - a run's life: [`run`] (train every model of a plan, write and seal its folder);
//! - outputs: [`quant`] (int8 export), [`format`](mod@format) (model files), [`c_export`]
//!   (an int8 model as C source), [`figures`]
//!   and [`report`] (history, confusion matrices, summaries), [`rundir`] (the plan of a run
//!   folder; the folders themselves are `runio`'s).

pub use dataset as data;

pub mod alloc;
pub mod augment;
pub mod budget;
pub mod c_export;
pub mod checkpoint;
pub mod figures;
pub mod format;
pub mod hash;
pub mod history;
pub mod keep;
pub mod kernels;
pub mod layout;
pub mod model;
pub mod norm;
pub mod optim;
pub mod prune;
pub mod qat;
pub mod quant;
pub mod recipe;
pub mod report;
pub mod run;
pub mod rundir;
pub mod scaling;
pub mod state;
pub mod threads;
pub mod train;
