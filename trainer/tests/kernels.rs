//! Every SIMD kernel path against the scalar reference and nalgebra.

use trainer::kernels::lanes::V;
use trainer::kernels::{self, Act, Epilogue, MatRef, reference};

/// Small integers: products and sums are exact in f32, so SIMD and scalar must agree bit for bit.
fn ints(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7 + seed * 13) % 11) as f32 - 5.0).collect()
}

/// Non-integer values: agreement within a rounding tolerance.
fn reals(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 7, 3),
    (7, 1, 5),
    (7, 33, 9),
    (33, 7, 64),
    (13, 10, 256),
    (65, 130, 17),
    (500, 10, 256),
    (500, 33, 7),
    (97, 512, 31),
];

fn views<'a>(a: &'a [f32], b: &'a [f32], m: usize, n: usize, k: usize, ta: bool, tb: bool) -> (MatRef<'a>, MatRef<'a>) {
    let av = if ta { MatRef::row_major(a, m).t() } else { MatRef::row_major(a, k) };
    let bv = if tb { MatRef::row_major(b, k).t() } else { MatRef::row_major(b, n) };
    (av, bv)
}

#[test]
fn simd_equals_scalar_exactly_on_integers_all_transposes_and_epilogues() {
    for &(m, n, k) in SHAPES {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (a, b) = (ints(m * k, 1), ints(k * n, 2));
            let (av, bv) = views(&a, &b, m, n, k, ta, tb);
            let bias = ints(n, 3);
            let start = ints(m * n, 4);

            let mut want = vec![0.0; m * n];
            reference::gemm(m, n, k, av, bv, &mut want, false);
            // NaN before the kernel runs: any element it fails to write stays NaN.
            let mut got = vec![f32::NAN; m * n + 5];
            kernels::gemm(m, n, k, av, bv, &mut got[..m * n], Epilogue::Store);
            assert_eq!(got[..m * n], want[..], "store {m}x{n}x{k} ta={ta} tb={tb}");
            assert!(got[m * n..].iter().all(|v| v.is_nan()), "wrote past the output");

            let mut want_acc = start.clone();
            reference::gemm(m, n, k, av, bv, &mut want_acc, true);
            let mut got_acc = start.clone();
            kernels::gemm(m, n, k, av, bv, &mut got_acc, Epilogue::Accumulate);
            assert_eq!(got_acc, want_acc, "accumulate {m}x{n}x{k}");

            reference::add_bias(&mut want, &bias);
            let mut got_bias = vec![f32::NAN; m * n];
            kernels::gemm(m, n, k, av, bv, &mut got_bias, Epilogue::Bias(&bias));
            assert_eq!(got_bias, want, "bias {m}x{n}x{k}");

            // A hidden layer's output: the activation of the biased product, lane by lane.
            for act in [Act::Relu, Act::Sigmoid] {
                let want_act: Vec<f32> = want.iter().map(|&x| act.apply(V::splat(x)).to_array()[0]).collect();
                let mut got_act = vec![f32::NAN; m * n];
                kernels::gemm(m, n, k, av, bv, &mut got_act, Epilogue::BiasAct(&bias, act));
                assert_eq!(got_act, want_act, "bias+{act:?} {m}x{n}x{k} ta={ta} tb={tb}");
            }

            // The SGD epilogue: the same bits as storing the product and stepping with it.
            let lr = 0.3;
            let mut product = vec![0.0; m * n];
            reference::gemm(m, n, k, av, bv, &mut product, false);
            let mut want_step = start.clone();
            kernels::sgd_step(&mut want_step, &product, lr);
            let mut got_step = start.clone();
            kernels::gemm(m, n, k, av, bv, &mut got_step, Epilogue::Descend(lr));
            assert_eq!(got_step, want_step, "descend {m}x{n}x{k} ta={ta} tb={tb}");
        }
    }
}

#[test]
fn zero_steps_of_a_are_skipped_with_the_same_result() {
    // Whole columns of A zero (every third k step, as +0 and -0), scattered zeros elsewhere:
    // the kernel leaves those steps out and must still match the reference exactly.
    for &(m, n, k) in SHAPES {
        for ta in [false, true] {
            let mut a = ints(m * k, 9);
            for i in 0..m {
                for p in 0..k {
                    let at = if ta { p * m + i } else { i * k + p };
                    if p % 3 == 1 || (i + p) % 5 == 0 {
                        a[at] = if i % 2 == 0 { 0.0 } else { -0.0 };
                    }
                }
            }
            let b = ints(k * n, 10);
            let (av, bv) = views(&a, &b, m, n, k, ta, false);
            let mut want = vec![0.0; m * n];
            reference::gemm(m, n, k, av, bv, &mut want, false);
            let start = ints(m * n, 11);
            let mut got = start.clone();
            kernels::gemm(m, n, k, av, bv, &mut got, Epilogue::Accumulate);
            let want: Vec<f32> = want.iter().zip(&start).map(|(w, s)| w + s).collect();
            assert_eq!(got, want, "sparse A {m}x{n}x{k} ta={ta}");
        }
    }
}

#[test]
fn simd_equals_scalar_on_windows_of_wider_matrices() {
    // Row strides larger than the width: B's full panels are read in place with its stride.
    for &(m, n, k) in SHAPES {
        let (pad_a, pad_b) = (3, 37);
        let (a, b) = (ints(m * (k + pad_a), 7), ints(k * (n + pad_b), 8));
        let av = MatRef { data: &a[pad_a..], rs: k + pad_a, cs: 1 };
        let bv = MatRef { data: &b[pad_b - 2..], rs: n + pad_b, cs: 1 };
        let mut want = vec![0.0; m * n];
        reference::gemm(m, n, k, av, bv, &mut want, false);
        let mut got = vec![f32::NAN; m * n];
        kernels::gemm(m, n, k, av, bv, &mut got, Epilogue::Store);
        assert_eq!(got, want, "window {m}x{n}x{k}");
    }
}

#[test]
fn simd_matches_scalar_and_nalgebra_on_reals() {
    for &(m, n, k) in SHAPES {
        let (a, b) = (reals(m * k, 5), reals(k * n, 6));
        let mut want = vec![0.0; m * n];
        reference::gemm(m, n, k, MatRef::row_major(&a, k), MatRef::row_major(&b, n), &mut want, false);
        let mut got = vec![f32::NAN; m * n];
        kernels::gemm(m, n, k, MatRef::row_major(&a, k), MatRef::row_major(&b, n), &mut got, Epilogue::Store);
        let na = nalgebra::DMatrix::from_row_slice(m, k, &a) * nalgebra::DMatrix::from_row_slice(k, n, &b);
        // Sums of k products of magnitude <= 1 in different orders: error grows like k * eps.
        let tol = 4.0 * k as f32 * f32::EPSILON;
        for i in 0..m {
            for j in 0..n {
                let (g, w, x) = (got[i * n + j], want[i * n + j], na[(i, j)]);
                assert!((g - w).abs() <= tol, "{m}x{n}x{k} ({i},{j}): simd {g} scalar {w}");
                assert!((g - x).abs() <= tol, "{m}x{n}x{k} ({i},{j}): simd {g} nalgebra {x}");
            }
        }
    }
}

#[test]
fn column_sums_and_sgd_match_reference() {
    for (rows, cols) in [(1, 1), (3, 17), (500, 10), (500, 512), (7, 100)] {
        let x = ints(rows * cols, 7);
        let mut want = vec![0.0; cols];
        reference::column_sums(&x, &mut want);
        let mut got = vec![f32::NAN; cols];
        kernels::column_sums(&x, &mut got);
        assert_eq!(got, want);
    }
    let mut w = ints(1000, 1);
    let g = ints(1000, 2);
    let want: Vec<f32> = w.iter().zip(&g).map(|(w, g)| w - 0.5 * g).collect();
    kernels::sgd_step(&mut w, &g, 0.5);
    assert_eq!(w, want);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let (m, n, k) = (500, 256, 512);
    let (a, b) = (reals(m * k, 8), reals(k * n, 9));
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut c = vec![0.0; m * n];
            kernels::gemm(m, n, k, MatRef::row_major(&a, k), MatRef::row_major(&b, n), &mut c, Epilogue::Store);
            c
        })
    };
    let one = run(1);
    for threads in [2, 3, 8] {
        assert!(one.iter().zip(run(threads)).all(|(x, y)| x.to_bits() == y.to_bits()), "{threads} threads");
    }
}

/// Every intrinsic of a path chosen at run time must be inlined into code compiled for
/// that path (inside `Isa::run`'s `#[target_feature]` function). One that is not is compiled
/// for the build's baseline CPU and called through memory for every vector operation: the
/// training is then many times slower with the same bits, which no other test would notice
/// (found so: an epoch of `--preset best` took 61 s instead of 2.8 s until the closures
/// were inlined). Checks the release binary's symbol table with `nm`.
#[test]
fn no_intrinsic_of_a_dispatched_path_is_left_out_of_line() {
    if cfg!(debug_assertions) {
        return; // Nothing is inlined without optimizations.
    }
    let out = std::process::Command::new("nm").args(["--defined-only", "-C", env!("CARGO_BIN_EXE_trainer")]).output();
    let out = out.expect("running nm (binutils) on the trainer binary");
    assert!(out.status.success(), "nm failed: {}", String::from_utf8_lossy(&out.stderr));
    let symbols = String::from_utf8_lossy(&out.stdout);
    let vector = ["core_arch::x86::avx::", "core_arch::x86::avx2::", "core_arch::x86::fma::"];
    let left: Vec<&str> = symbols.lines().filter(|l| vector.iter().any(|v| l.contains(v))).collect();
    assert!(symbols.lines().count() > 1000, "the binary has a symbol table");
    assert!(left.is_empty(), "intrinsics compiled out of line: {left:#?}");
}
