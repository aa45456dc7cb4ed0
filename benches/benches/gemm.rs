//! Training matrix products on the real shapes: scalar reference, SIMD on one thread,
//! SIMD + rayon on all threads, and nalgebra's product. Throughput in FLOP/s.

use benches::values;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use trainer::kernels::{self, Epilogue, MatRef, reference};

struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    /// A is stored transposed (k, m): the weight gradient Xᵀ·dZ.
    ta: bool,
    /// B is stored transposed (n, k): the input gradient dZ·Wᵀ.
    tb: bool,
}

const SHAPES: &[Shape] = &[
    Shape { name: "fwd1 X(500x784).W1(784x512)", m: 500, n: 512, k: 784, ta: false, tb: false },
    Shape { name: "fwd2 A1(500x512).W2(512x256)", m: 500, n: 256, k: 512, ta: false, tb: false },
    Shape { name: "dW1 Xt(784x500).dZ1(500x512)", m: 784, n: 512, k: 500, ta: true, tb: false },
    Shape { name: "dW2 A1t(512x500).dZ2(500x256)", m: 512, n: 256, k: 500, ta: true, tb: false },
    Shape { name: "dA1 dZ2(500x256).W2t(256x512)", m: 500, n: 512, k: 256, ta: false, tb: true },
];

fn bench(c: &mut Criterion) {
    // Products and epochs run as in `trainer fit`: the calling thread is one of the pool's.
    let threads = trainer::threads::count_here(None).expect("RAYON_NUM_THREADS: 1 to 4 per CPU");
    trainer::threads::start_pool(threads).expect("the global pool starts once");
    let threads = rayon::current_num_threads();
    let one = benches::one_thread_pool();
    for s in SHAPES {
        let (a, b) = (values(s.m * s.k), values(s.k * s.n));
        let av = if s.ta { MatRef::row_major(&a, s.m).t() } else { MatRef::row_major(&a, s.k) };
        let bv = if s.tb { MatRef::row_major(&b, s.k).t() } else { MatRef::row_major(&b, s.n) };
        let mut out = vec![0.0f32; s.m * s.n];
        let mut g = c.benchmark_group(format!("gemm/{}", s.name));
        g.throughput(Throughput::Elements((2 * s.m * s.n * s.k) as u64));
        g.sample_size(10);
        g.bench_function("scalar", |bn| {
            bn.iter(|| reference::gemm(s.m, s.n, s.k, black_box(av), black_box(bv), &mut out, false))
        });
        g.bench_function("simd-1-thread", |bn| {
            one.install(|| {
                bn.iter(|| kernels::gemm(s.m, s.n, s.k, black_box(av), black_box(bv), &mut out, Epilogue::Store))
            })
        });
        g.bench_function(BenchmarkId::new("simd-rayon", threads), |bn| {
            bn.iter(|| kernels::gemm(s.m, s.n, s.k, black_box(av), black_box(bv), &mut out, Epilogue::Store))
        });
        let na_a = if s.ta {
            nalgebra::DMatrix::from_row_slice(s.k, s.m, &a).transpose()
        } else {
            nalgebra::DMatrix::from_row_slice(s.m, s.k, &a)
        };
        let na_b = if s.tb {
            nalgebra::DMatrix::from_row_slice(s.n, s.k, &b).transpose()
        } else {
            nalgebra::DMatrix::from_row_slice(s.k, s.n, &b)
        };
        let mut na_c = nalgebra::DMatrix::<f32>::zeros(s.m, s.n);
        g.bench_function("nalgebra", |bn| bn.iter(|| na_c.gemm(1.0, black_box(&na_a), black_box(&na_b), 0.0)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
