//! Criterion benchmarks of the trainer's and infer-core's kernels; see `benches/`.
//!
//! `cargo bench` runs them all; `cargo bench -- --quick` a short pass. This library holds
//! what the bench files share: the real data and a trained model to run.

use std::path::PathBuf;

/// The benches allocate as `trainer` does: large buffers on a cache line (see
/// `trainer::alloc`), so that their figures do not depend on where a buffer happened to land.
#[global_allocator]
static ALLOCATOR: trainer::alloc::CacheAligned = trainer::alloc::CacheAligned;

use rayon::prelude::*;
use trainer::data::{self, Dataset};
use trainer::format;
use trainer::model::Mlp;
use trainer::optim::{OptState, Optimizer, Step, slots_mut, step_slice};
use trainer::recipe::{ModelKind, Recipe};
use trainer::train::{self, Quiet};

/// `len` operands spread over [-0.5, 0.5), none of them zero by design (the products do
/// not skip steps of them).
pub fn values(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect()
}

/// The optimizers the step benchmarks compare: plain SGD (no state), Nesterov momentum
/// with L2 (one state array), AdamW (two).
pub fn optimizers() -> [(&'static str, Optimizer); 3] {
    [
        ("sgd", Optimizer::default()),
        ("nesterov", Optimizer::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 }),
        ("adamw", Optimizer::adamw(1e-4)),
    ]
}

/// Values per parallel piece of [`step_pass`].
const CHUNK: usize = 16 * 1024;

/// `s` in `CHUNK`-long pieces, or `count` empty ones for an unused state slot.
fn chunked(s: &mut [f32], count: usize) -> Vec<&mut [f32]> {
    match s.is_empty() {
        true => (0..count).map(|_| &mut [][..]).collect(),
        false => s.chunks_mut(CHUNK).collect(),
    }
}

/// `step` as a pass of its own over `w` (the first layer of `state`) with the stored
/// gradient `grad`, in parallel pieces of whole vectors: what the product's epilogue saves.
pub fn step_pass(step: Step, w: &mut [f32], grad: &[f32], state: &mut OptState) {
    let count = w.len().div_ceil(CHUNK);
    let (s1, s2) = slots_mut(&mut state.layers[0].w);
    let (c1, c2) = (chunked(s1, count), chunked(s2, count));
    w.par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(c1.into_par_iter().zip(c2))
        .for_each(|((w, g), (s1, s2))| step_slice(step, w, g, s1, s2));
}

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
    train::fit(&recipe, ds, &mut Quiet).expect("2 epochs of the seed recipe converge").model
}

/// A pool of one thread for the one-thread figures, pinned to the last CPU the process may
/// use: [`trainer::threads::start_pool`] pins the calling thread, which waits for this pool's
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

/// A copy of a model file on a 64-byte boundary, as firmware embeds it: the payload starts
/// 64 bytes into a version-2 file, so it is aligned too. The int8 kernel loads 64 weight
/// bytes at a time, and a load that straddles two cache lines costs two: one image took
/// 5.4 µs instead of 4.4 with a payload off the boundary (Zen 4, trained ReLU model).
pub struct AlignedModel {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedModel {
    /// Copies `bytes` (a whole model file) to a 64-byte boundary.
    pub fn new(bytes: &[u8]) -> AlignedModel {
        const LINE: usize = 64;
        let mut buf = vec![0u8; bytes.len() + LINE];
        let start = buf.as_ptr().align_offset(LINE);
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        AlignedModel { buf, start, len: bytes.len() }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}
