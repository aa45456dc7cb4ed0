use std::time::Instant;
use trainer::kernels::{gemm, Epilogue, MatRef};
fn main() {
    let shapes: &[(&str, usize, usize, usize, bool, bool)] = &[
        ("fwd1 X.W1", 500, 512, 784, false, false),
        ("fwd2", 500, 256, 512, false, false),
        ("fwd3", 500, 10, 256, false, false),
        ("dW1 Xt.dZ", 784, 512, 500, true, false),
        ("dW2", 512, 256, 500, true, false),
        ("dX1 dZ.W2t", 500, 512, 256, false, true),
        ("dW3", 256, 10, 500, true, false),
        ("dX2", 500, 256, 10, false, true),
    ];
    for &(name, m, n, k, ta, tb) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let av = if ta { MatRef::row_major(&a, m).t() } else { MatRef::row_major(&a, k) };
        let bv = if tb { MatRef::row_major(&b, k).t() } else { MatRef::row_major(&b, n) };
        for _ in 0..20 { gemm(m, n, k, av, bv, &mut c, Epilogue::Store); }
        let iters = 200;
        let t = Instant::now();
        for _ in 0..iters { gemm(m, n, k, av, bv, &mut c, Epilogue::Store); }
        let s = t.elapsed().as_secs_f64() / iters as f64;
        println!("{name:12} {m}x{n}x{k}: {:8.1} us  {:6.1} GFLOP/s", s * 1e6, 2.0 * (m * n * k) as f64 / s / 1e9);
    }
}
