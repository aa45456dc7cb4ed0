//! Optimizers against plain scalar implementations of their textbook (PyTorch) formulas,
//! in f64 on small tensors, both where the trainer runs them: over a slice (biases) and in
//! the epilogue of the weight-gradient product (weights).
//!
//! Tolerance: 1e-5 of the parameter's scale after 6 steps. f32 rounding of one step is
//! about 1e-7 of it; Adam's step divides by √v + ε, so a relative error of the moments
//! scales by up to lr, and six steps add up to well under 1e-5.

use trainer::kernels::{self, MatRef, reference};
use trainer::optim::{OptState, Optimizer, Schedule, Step, step_slice};

/// A deterministic spread of values in about [-1, 1], with exact zeros now and then.
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13).wrapping_mul(40_503);
            if h.is_multiple_of(11) { 0.0 } else { (h >> 8) as f32 / (1u32 << 23) as f32 - 1.0 }
        })
        .collect()
}

/// The textbook update of one parameter, in f64: `w`, its state and the gradient `g` at
/// step `t` (1-based) with learning rate `lr`.
fn scalar_step(opt: Optimizer, lr: f64, t: i32, w: &mut f64, s1: &mut f64, s2: &mut f64, g: f64) {
    match opt {
        Optimizer::Sgd { momentum, nesterov, weight_decay } => {
            let (mu, wd) = (f64::from(momentum), f64::from(weight_decay));
            let g = g + wd * *w;
            if mu == 0.0 {
                *w -= lr * g;
                return;
            }
            *s1 = mu * *s1 + g;
            let d = if nesterov { g + mu * *s1 } else { *s1 };
            *w -= lr * d;
        }
        Optimizer::Adam { beta1, beta2, eps, weight_decay } | Optimizer::AdamW { beta1, beta2, eps, weight_decay } => {
            let (b1, b2, eps, wd) = (f64::from(beta1), f64::from(beta2), f64::from(eps), f64::from(weight_decay));
            let g = match opt {
                Optimizer::Adam { .. } => g + wd * *w,
                _ => {
                    *w *= 1.0 - lr * wd;
                    g
                }
            };
            *s1 = b1 * *s1 + (1.0 - b1) * g;
            *s2 = b2 * *s2 + (1.0 - b2) * g * g;
            let m_hat = *s1 / (1.0 - b1.powi(t));
            let v_hat = *s2 / (1.0 - b2.powi(t));
            *w -= lr * m_hat / (v_hat.sqrt() + eps);
        }
    }
}

fn optimizers() -> Vec<(&'static str, Optimizer)> {
    vec![
        ("sgd", Optimizer::default()),
        ("sgd + L2", Optimizer::Sgd { momentum: 0.0, nesterov: false, weight_decay: 0.01 }),
        ("momentum", Optimizer::Sgd { momentum: 0.9, nesterov: false, weight_decay: 0.0 }),
        ("nesterov + L2", Optimizer::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 }),
        ("adam", Optimizer::adam(0.0)),
        ("adam + L2", Optimizer::adam(0.01)),
        ("adamw", Optimizer::adamw(0.05)),
    ]
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * w.abs().max(1.0);
        assert!((f64::from(g) - w).abs() <= tol, "{what}[{i}]: {g} vs {w} (tolerance {tol:e})");
    }
}

#[test]
fn each_optimizer_over_a_slice_matches_its_scalar_formula() {
    let n = 77; // several vectors and a tail
    let lr = 0.05f32;
    for (name, opt) in optimizers() {
        let mut w = values(n, 1);
        let mut state = OptState::new(opt.slots(), [(n, 0)]);
        let mut want: Vec<(f64, f64, f64)> = w.iter().map(|&w| (f64::from(w), 0.0, 0.0)).collect();
        for t in 1..=6 {
            let g = values(n, 100 + t);
            let (s1, s2) = trainer::optim::slots_mut(&mut state.layers[0].w);
            step_slice(opt.step(lr, u64::from(t)), &mut w, &g, s1, s2);
            for ((w, s1, s2), &g) in want.iter_mut().zip(&g) {
                scalar_step(opt, f64::from(lr), t as i32, w, s1, s2, f64::from(g));
            }
        }
        assert_close(&format!("{name} w"), &w, &want.iter().map(|x| x.0).collect::<Vec<_>>());
        if opt.slots() >= 1 {
            assert_close(&format!("{name} s1"), &state.layers[0].w[0], &want.iter().map(|x| x.1).collect::<Vec<_>>());
        }
        if opt.slots() >= 2 {
            assert_close(&format!("{name} s2"), &state.layers[0].w[1], &want.iter().map(|x| x.2).collect::<Vec<_>>());
        }
    }
}

#[test]
fn each_optimizer_in_the_product_epilogue_matches_its_scalar_formula_and_the_slice_step() {
    // Shapes with ragged tiles on both axes, and one that spans several row tasks.
    for (m, n, k) in [(13, 37, 9), (40, 70, 33), (1, 1, 1)] {
        for (name, opt) in optimizers() {
            let lr = 0.02f32;
            let mut w = values(m * n, 7);
            let mut by_slice = w.clone();
            let mut state = OptState::new(opt.slots(), [(m * n, 0)]);
            let mut slice_state = state.clone();
            let mut want: Vec<(f64, f64, f64)> = w.iter().map(|&w| (f64::from(w), 0.0, 0.0)).collect();
            for t in 1..=6u32 {
                let a = values(m * k, 200 + t);
                let b = values(k * n, 300 + t);
                let step = opt.step(lr, u64::from(t));
                // The gradient A·B with A given transposed, as the backward pass gives it.
                let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                let av = MatRef::row_major(&at, m).t();
                let (s1, s2) = trainer::optim::slots_mut(&mut state.layers[0].w);
                kernels::gemm_update(m, n, k, av, MatRef::row_major(&b, n), &mut w, [s1, s2], step);
                let mut g = vec![0.0f32; m * n];
                reference::gemm(m, n, k, MatRef::row_major(&a, k), MatRef::row_major(&b, n), &mut g, false);
                for ((w, s1, s2), &g) in want.iter_mut().zip(&g) {
                    scalar_step(opt, f64::from(lr), t as i32, w, s1, s2, f64::from(g));
                }
                // The slice step on the product's own gradient: the same bits.
                let mut g_simd = vec![f32::NAN; m * n];
                kernels::gemm(m, n, k, av, MatRef::row_major(&b, n), &mut g_simd, kernels::Epilogue::Store);
                let (s1, s2) = trainer::optim::slots_mut(&mut slice_state.layers[0].w);
                step_slice(step, &mut by_slice, &g_simd, s1, s2);
            }
            let what = format!("{name} {m}x{n}x{k}");
            assert_close(&what, &w, &want.iter().map(|x| x.0).collect::<Vec<_>>());
            assert_eq!(
                w.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                by_slice.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{what}: epilogue and slice step differ"
            );
            assert_eq!(state, slice_state, "{what}: optimizer state");
        }
    }
}

#[test]
fn adam_state_that_decays_below_the_normal_range_becomes_zero() {
    // A parameter whose gradient was nonzero once and is zero since: its first moment
    // decays by 0.9 a step and would sink into subnormal numbers.
    let opt = Optimizer::adam(0.0);
    let (mut w, mut s1, mut s2) = (vec![0.5f32; 8], vec![0.0f32; 8], vec![0.0f32; 8]);
    step_slice(opt.step(1e-3, 1), &mut w, &[1e-3; 8], &mut s1, &mut s2);
    for t in 2..2000 {
        step_slice(opt.step(1e-3, t), &mut w, &[0.0; 8], &mut s1, &mut s2);
        assert!(s1.iter().chain(&s2).all(|v| *v == 0.0 || v.is_normal()), "step {t}: {s1:?} {s2:?}");
    }
    assert!(s1.iter().all(|&v| v == 0.0), "the first moment is gone: {s1:?}");
}

#[test]
fn the_study_sgd_step_keeps_its_bits() {
    // Plain SGD goes through the epilogue the study's recipe always used.
    assert_eq!(Optimizer::default().step(0.01, 5), Step::Sgd { lr: 0.01 });
    let (m, n, k) = (29, 41, 17);
    let a = values(m * k, 1);
    let b = values(k * n, 2);
    let mut w = values(m * n, 3);
    let mut want = w.clone();
    let (av, bv) = (MatRef::row_major(&a, k), MatRef::row_major(&b, n));
    kernels::gemm_update(m, n, k, av, bv, &mut w, [&mut [], &mut []], Step::Sgd { lr: 0.3 });
    kernels::gemm(m, n, k, av, bv, &mut want, kernels::Epilogue::Descend(0.3));
    assert_eq!(w, want);
}

#[test]
fn schedules_give_the_documented_rates() {
    let (steps, epochs) = (10, 6);
    let total = steps * epochs;
    let cosine = Schedule::Cosine { warmup: 5 };
    let lr = |t| cosine.lr(0.1, t, total, steps);
    assert_eq!([lr(0), lr(1), lr(4)], [0.02, 0.04, 0.1]);
    let mid = 5 + (total - 5) / 2;
    assert!((lr(mid) - 0.05).abs() < 0.002, "half way: {}", lr(mid));
    assert!(lr(total - 1) < 0.001);
    let step = Schedule::Step { every: 2, gamma: 0.1 };
    assert_eq!(step.lr(1.0, 19, total, steps), 1.0);
    assert!((step.lr(1.0, 20, total, steps) - 0.1).abs() < 1e-7);
    assert!((step.lr(1.0, 59, total, steps) - 0.01).abs() < 1e-8);
}
