//! Criterion benchmarks of the trainer's and infer-core's kernels; see `benches/`.
//!
//! `cargo bench` runs them all; `cargo bench -- --quick` a short pass. This library holds
//! what the bench files share: the real data and a trained model to run.

use std::path::PathBuf;

use trainer::data::{self, Dataset};
use trainer::format;
use trainer::model::{Mlp, ModelKind};
use trainer::train::{self, Quiet, Recipe};

/// The Fashion-MNIST dataset from the trainer's lookup order; panics with the fix if absent.
pub fn dataset() -> Dataset {
    data::load(None).unwrap_or_else(|e| {
        panic!("the benches run on the real dataset: {e}\n(install it with `apt-get install dataset-fashion-mnist`)")
    })
}

/// A trained ReLU model: the f32 file named by `$BENCH_MODEL` (`*.f32.fmlp` from `trainer
/// fit`), or else one trained here for 2 epochs of the seed recipe (a few seconds), so
/// that activations are as sparse as a trained model's.
pub fn relu_model(ds: &Dataset) -> Mlp {
    if let Some(path) = std::env::var_os("BENCH_MODEL").map(PathBuf::from) {
        return format::load_f32(&path).unwrap_or_else(|e| panic!("$BENCH_MODEL: {e}"));
    }
    let recipe = Recipe { epochs: 2, ..Recipe::seed(ModelKind::Relu) };
    train::fit(&recipe, &ds.train, &ds.test, &mut Quiet).expect("2 epochs of the seed recipe converge").model
}
