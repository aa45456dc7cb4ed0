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

/// A pool of one thread for the one-thread figures, pinned to the last CPU the process may
/// use: [`train::start_thread_pool`] pins the calling thread, which waits for this pool's
/// work, to the first. Unpinned, the scheduler sometimes ran it on the first CPU too.
pub fn one_thread_pool() -> rayon::ThreadPool {
    let last = core_affinity::get_core_ids().unwrap_or_default().pop();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .start_handler(move |_| {
            if let Some(cpu) = last {
                core_affinity::set_for_current(cpu);
            }
        })
        .build()
        .expect("a one-thread pool")
}

/// A copy of a model file placed so that its payload starts on a 64-byte boundary: the
/// int8 kernel loads 64 weight bytes at a time, and a load that straddles two cache lines
/// costs two. The payload follows a 17-byte header, so a file read into a plain `Vec`
/// never has it aligned; one image then takes 5.4 µs instead of 4.4 (Zen 4, trained ReLU
/// model). Aligning it makes the figure repeatable from run to run.
pub struct AlignedModel {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedModel {
    /// Copies `bytes` (a whole model file) so that its payload is 64-byte aligned.
    pub fn new(bytes: &[u8]) -> AlignedModel {
        const LINE: usize = 64;
        let file = infer_core::format::read(bytes).expect("a valid model file");
        let payload_at = file.payload.as_ptr() as usize - bytes.as_ptr() as usize;
        let mut buf = vec![0u8; bytes.len() + LINE];
        let start = (LINE - (buf.as_ptr() as usize + payload_at) % LINE) % LINE;
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        AlignedModel { buf, start, len: bytes.len() }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}
