//! The optimizer step on the first layer's weights (784x512, batch 256), in the epilogue of
//! the weight-gradient product against the gradient stored and a separate parallel pass,
//! the two alternated 400 times so that this machine's drift falls on both alike (criterion
//! runs one after the other). Prints medians and their ratio.
//!
//! cargo run --release -p benches --example optim_ab

use std::time::Instant;

use benches::{optimizers, step_pass, values};
use trainer::kernels::{self, Epilogue, MatRef};
use trainer::optim::{OptState, slots_mut};

fn main() {
    let threads = trainer::threads::count_here(None).expect("RAYON_NUM_THREADS: 1 to 4 per CPU");
    trainer::threads::start_pool(threads).expect("the global pool starts once");
    let (m, n, k) = (784, 512, 256);
    let x = values(k * m); // X: (batch, 784), read transposed
    let dz = values(k * n);
    let (av, bv) = (MatRef::row_major(&x, m).t(), MatRef::row_major(&dz, n));
    println!("{} threads", rayon::current_num_threads());
    for (name, opt) in optimizers() {
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
            step_pass(step, &mut w, &grad, &mut state);
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
