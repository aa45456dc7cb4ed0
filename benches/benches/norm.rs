//! Batch norm of a hidden layer at batch 256 (512 units, the first hidden layer of the best
//! preset): the training forward pass (batch statistics, ẑ, `relu(γ·ẑ + β)`) and the
//! backward pass (the gradients of γ, β and z), against the scalar f64 reference.
//! Throughput in elements of the (256, 512) matrix.

use benches::values;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use trainer::kernels::Act;
use trainer::norm::{self, BatchStats, Norm};

fn bench(c: &mut Criterion) {
    let threads = trainer::threads::count_here(None).expect("RAYON_NUM_THREADS: 1 to 4 per CPU");
    trainer::threads::start_pool(threads).expect("the global pool starts once");
    let (rows, n) = (256, 512);
    let z = values(rows * n);
    let norm = Norm::new(n);
    let mut g = c.benchmark_group("batch norm 256x512");
    g.throughput(Throughput::Elements((rows * n) as u64));
    let (mut h, mut stats) = (vec![0.0f32; rows * n], BatchStats::default());
    g.bench_function("forward", |b| b.iter(|| norm::forward(black_box(&z), &mut h, n, &norm, Act::Relu, &mut stats)));
    g.bench_function("forward, scalar reference", |b| {
        b.iter(|| {
            h.copy_from_slice(&z);
            norm::reference::forward(black_box(&mut h), n, &norm)
        })
    });
    norm::forward(&z, &mut h, n, &norm, Act::Relu, &mut stats);
    let dy = values(rows * n);
    let (mut d, mut dg, mut db) = (dy.clone(), vec![0.0f32; n], vec![0.0f32; n]);
    g.bench_function("backward", |b| {
        b.iter(|| {
            d.copy_from_slice(&dy);
            norm::backward(black_box(&mut d), &z, n, &norm.gamma, &stats, &mut dg, &mut db)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
