//! The gemm bench's ratios measured so that machine noise cancels: SIMD on one thread,
//! nalgebra, and SIMD on all threads take turns in short blocks, 60 rounds per shape.
//!
//! Criterion measures one function for several seconds, then the next; on a shared
//! machine the clock and the neighbours change in between, which moves a 2% difference
//! either way. Here each round runs four products of each kind back to back (after one
//! untimed product of that kind), so every ratio compares products that ran within a few
//! milliseconds of each other.
//!
//! ```text
//! cargo run --release -p benches --example interleaved
//! ```

use std::time::Instant;

use benches::values;
use trainer::kernels::{self, Epilogue, MatRef};

/// (name, m, n, k, A transposed, B transposed): the bench's training shapes.
const SHAPES: [(&str, usize, usize, usize, bool, bool); 5] = [
    ("fwd1", 500, 512, 784, false, false),
    ("fwd2", 500, 256, 512, false, false),
    ("dW1", 784, 512, 500, true, false),
    ("dW2", 512, 256, 500, true, false),
    ("dA1", 500, 512, 256, false, true),
];
const ROUNDS: usize = 60;
const PER_ROUND: usize = 4;

/// Seconds for `PER_ROUND` calls of `f`, after one untimed call.
fn block(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..PER_ROUND {
        f();
    }
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads = trainer::threads::count_here(None).expect("RAYON_NUM_THREADS: 1 to 4 per CPU");
    trainer::threads::start_pool(threads).expect("the global pool starts once");
    let one = benches::one_thread_pool();
    let threads = rayon::current_num_threads();
    println!("GFLOP/s over {ROUNDS} rounds; ratios: totals (median of the rounds)");
    println!(
        "{:<5} {:>8} {:>9} {:>9} {:>16} {:>16}",
        "shape", "SIMD 1T", "nalgebra", "SIMD all", "SIMD/nalgebra", "all/1T"
    );
    for (name, m, n, k, ta, tb) in SHAPES {
        let (a, b) = (values(m * k), values(k * n));
        let av = if ta { MatRef::row_major(&a, m).t() } else { MatRef::row_major(&a, k) };
        let bv = if tb { MatRef::row_major(&b, k).t() } else { MatRef::row_major(&b, n) };
        let na_a = if ta {
            nalgebra::DMatrix::from_row_slice(k, m, &a).transpose()
        } else {
            nalgebra::DMatrix::from_row_slice(m, k, &a)
        };
        let na_b = if tb {
            nalgebra::DMatrix::from_row_slice(n, k, &b).transpose()
        } else {
            nalgebra::DMatrix::from_row_slice(k, n, &b)
        };
        let mut na_c = nalgebra::DMatrix::<f32>::zeros(m, n);
        let mut out = vec![0.0f32; m * n];
        let (mut simd, mut na, mut all) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            // Both single-thread kinds on the one-thread pool's thread.
            let (s, n_) = one.install(|| {
                let s = block(|| kernels::gemm(m, n, k, av, bv, &mut out, Epilogue::Store));
                (s, block(|| na_c.gemm(1.0, &na_a, &na_b, 0.0)))
            });
            simd.push(s);
            na.push(n_);
            all.push(block(|| kernels::gemm(m, n, k, av, bv, &mut out, Epilogue::Store)));
        }
        let flops = (2 * m * n * k * PER_ROUND * ROUNDS) as f64 / 1e9;
        let total = |v: &[f64]| v.iter().sum::<f64>();
        let per_round = |x: &[f64], y: &[f64]| median(x.iter().zip(y).map(|(x, y)| x / y).collect());
        println!(
            "{name:<5} {:>8.1} {:>9.1} {:>9.1} {:>8.3} ({:.3}) {:>8.3} ({:.3})",
            flops / total(&simd),
            flops / total(&na),
            flops / total(&all),
            total(&na) / total(&simd),
            per_round(&na, &simd),
            total(&simd) / total(&all),
            per_round(&simd, &all),
        );
    }
    println!("({threads} threads for \"SIMD all\")");
}
