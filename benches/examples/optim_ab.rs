//! The optimizer step on the first layer's weights (784x512, batch 256), in the epilogue of
//! the weight-gradient product against the gradient stored and a separate parallel pass,
//! the two alternated 400 times so that this machine's drift falls on both alike (criterion
//! runs one after the other). Prints medians and their ratio.
//!
//! cargo run --release -p benches --example optim_ab

use std::time::Instant;

use rayon::prelude::*;
use trainer::kernels::{self, Epilogue, MatRef};
use trainer::optim::{OptState, Optimizer, Step, slots_mut, step_slice};

fn values(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect()
}

/// Values per parallel piece of the separate pass.
const CHUNK: usize = 16 * 1024;

/// `s` in `CHUNK`-long pieces, or `count` empty ones for an unused state slot.
fn chunked(s: &mut [f32], count: usize) -> Vec<&mut [f32]> {
    match s.is_empty() {
        true => (0..count).map(|_| &mut [][..]).collect(),
        false => s.chunks_mut(CHUNK).collect(),
    }
}

/// The step as a pass of its own over `w` and its state, in parallel.
fn pass(step: Step, w: &mut [f32], grad: &[f32], state: &mut OptState) {
    let count = w.len().div_ceil(CHUNK);
    let (s1, s2) = slots_mut(&mut state.layers[0].w);
    let (c1, c2) = (chunked(s1, count), chunked(s2, count));
    w.par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(c1.into_par_iter().zip(c2))
        .for_each(|((w, g), (s1, s2))| step_slice(step, w, g, s1, s2));
}

fn main() {
    trainer::train::start_thread_pool(None).expect("the global pool starts once");
    let (m, n, k) = (784, 512, 256);
    let x = values(k * m); // X: (batch, 784), read transposed
    let dz = values(k * n);
    let (av, bv) = (MatRef::row_major(&x, m).t(), MatRef::row_major(&dz, n));
    let optimizers = [
        ("sgd", Optimizer::default()),
        ("nesterov", Optimizer::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 }),
        ("adamw", Optimizer::adamw(1e-4)),
    ];
    println!("{} threads", rayon::current_num_threads());
    for (name, opt) in optimizers {
        let step = opt.step(1e-6, 10);
        let mut w = values(m * n);
        let mut state = OptState::new(opt.slots(), [(m * n, 0)]);
        let mut grad = vec![0.0f32; m * n];
        let (mut epilogue, mut separate) = (Vec::new(), Vec::new());
        for _ in 0..400 {
            let t = Instant::now();
            let (s1, s2) = slots_mut(&mut state.layers[0].w);
            kernels::gemm_update(m, n, k, av, bv, &mut w, [s1, s2], step);
            epilogue.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            kernels::gemm(m, n, k, av, bv, &mut grad, Epilogue::Store);
            pass(step, &mut w, &grad, &mut state);
            separate.push(t.elapsed().as_secs_f64());
        }
        epilogue.sort_by(f64::total_cmp);
        separate.sort_by(f64::total_cmp);
        let (a, b) = (epilogue[200], separate[200]);
        println!(
            "{name:9} in the epilogue {:.3} ms, stored then a pass {:.3} ms (medians): ratio {:.3}",
            a * 1e3,
            b * 1e3,
            a / b
        );
    }
}
