//! One full training epoch of the study's models on the real dataset: 120 SGD steps of 500
//! images, then validation on the 10,000 test images, as `trainer fit` runs it. Throughput
//! in training images per second, on one thread and on all of them.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use trainer::recipe::{ModelKind, Recipe};
use trainer::train::{self, Quiet};

fn bench(c: &mut Criterion) {
    // Epochs run as in `trainer fit`: the calling thread is one of the pool's (before the
    // dataset loads, which starts the default pool otherwise).
    let threads = trainer::threads::count_here(None).expect("RAYON_NUM_THREADS: 1 to 4 per CPU");
    trainer::threads::start_pool(threads).expect("the global pool starts once");
    let ds = benches::dataset();
    let threads = rayon::current_num_threads();
    let one = benches::one_thread_pool();
    for kind in [ModelKind::Relu, ModelKind::Sigmoid, ModelKind::Dropout] {
        let recipe = Recipe { epochs: 1, ..Recipe::seed(kind) };
        let mut g = c.benchmark_group(format!("epoch/{}", kind.name()));
        g.throughput(Throughput::Elements(ds.train.len() as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(12));
        let mut epoch = || train::fit(&recipe, &ds, &mut Quiet).expect("one epoch converges");
        // The ReLU model, the reference, also on one thread (about 2 s per epoch).
        if kind == ModelKind::Relu {
            g.bench_function("1-thread", |b| one.install(|| b.iter(&mut epoch)));
        }
        g.bench_function(BenchmarkId::new("rayon", threads), |b| b.iter(&mut epoch));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
