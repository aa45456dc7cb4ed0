//! An optimizer step on the first layer's weights (784x512) at batch 256: the weight
//! gradient Xᵀ·dZ with the step in the product's epilogue (what training runs), against the
//! gradient stored and then a separate pass of the step over the weights and their state.
//! Throughput in FLOP/s of the product.

use benches::{optimizers, step_pass, values};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use trainer::kernels::{self, Epilogue, MatRef};
use trainer::optim::{OptState, slots_mut};

fn bench(c: &mut Criterion) {
    let threads = trainer::threads::count_here(None).expect("RAYON_NUM_THREADS: 1 to 4 per CPU");
    trainer::threads::start_pool(threads).expect("the global pool starts once");
    let (m, n, k) = (784, 512, 256);
    let x = values(k * m); // X: (batch, 784), read transposed
    let dz = values(k * n);
    let (av, bv) = (MatRef::row_major(&x, m).t(), MatRef::row_major(&dz, n));
    for (name, opt) in optimizers() {
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
                step_pass(step, &mut w, &grad, &mut state);
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
