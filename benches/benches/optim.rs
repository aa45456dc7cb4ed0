//! An optimizer step on the first layer's weights (784x512) at batch 256: the weight
//! gradient Xᵀ·dZ with the step in the product's epilogue (what training runs), against the
//! gradient stored and then a separate pass of the step over the weights and their state.
//! Throughput in FLOP/s of the product.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use std::hint::black_box;
use trainer::kernels::{self, Epilogue, MatRef};
use trainer::optim::{OptState, Optimizer, slots_mut, step_slice};

fn values(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect()
}

/// `s` in `CHUNK`-long pieces, or `count` empty ones for an unused state slot.
fn chunked(s: &mut [f32], count: usize) -> Vec<&mut [f32]> {
    match s.is_empty() {
        true => (0..count).map(|_| &mut [][..]).collect(),
        false => s.chunks_mut(CHUNK).collect(),
    }
}

/// Values per parallel piece of the separate pass.
const CHUNK: usize = 16 * 1024;

fn bench(c: &mut Criterion) {
    trainer::train::start_thread_pool(None).expect("the global pool starts once");
    let (m, n, k) = (784, 512, 256);
    let x = values(k * m); // X: (batch, 784), read transposed
    let dz = values(k * n);
    let (av, bv) = (MatRef::row_major(&x, m).t(), MatRef::row_major(&dz, n));
    for (name, opt) in [
        ("sgd", Optimizer::default()),
        ("nesterov", Optimizer::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 }),
        ("adamw", Optimizer::adamw(1e-4)),
    ] {
        let mut g = c.benchmark_group(format!("optimizer step 784x512, batch 256/{name}"));
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.sample_size(20);
        let step = opt.step(1e-6, 10);
        let mut w = values(m * n);
        let mut state = OptState::new(opt.slots(), [(m * n, 0)]);
        g.bench_function("in the epilogue", |bn| {
            bn.iter(|| {
                let (s1, s2) = slots_mut(&mut state.layers[0].w);
                kernels::gemm_update(m, n, k, black_box(av), black_box(bv), &mut w, [s1, s2], step)
            })
        });
        let mut grad = vec![0.0f32; m * n];
        g.bench_function("stored, then a pass", |bn| {
            bn.iter(|| {
                kernels::gemm(m, n, k, black_box(av), black_box(bv), &mut grad, Epilogue::Store);
                // The pass in parallel too, in chunks of whole vectors.
                let count = w.len().div_ceil(CHUNK);
                let (s1, s2) = slots_mut(&mut state.layers[0].w);
                let (c1, c2) = (chunked(s1, count), chunked(s2, count));
                w.par_chunks_mut(CHUNK)
                    .zip(grad.par_chunks(CHUNK))
                    .zip(c1.into_par_iter().zip(c2))
                    .for_each(|((w, g), (s1, s2))| step_slice(step, w, g, s1, s2));
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
