//! Batch norm in a whole network: its gradients against finite differences of the loss,
//! the folded network against inference with the running statistics, a run that trains
//! with it, and checkpoints that must carry it.

mod common;

use common::{PIXELS, data};
use infer_core::Activation;
use infer_core::arch::Architecture;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trainer::data::Split;

use trainer::model::{Mlp, Network, Soft, Workspace};
use trainer::norm::EPSILON;
use trainer::optim::{OptState, Optimizer, Step};
use trainer::recipe::Recipe;
use trainer::train::{self, Quiet};

/// Images whose class is a bright band at row `2 * class + 3`, plus noise.
fn synthetic(n: usize, seed: u64) -> Split {
    use rand::RngExt;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = vec![0u8; n * PIXELS];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let class = rng.random_range(0..10usize);
        labels[i] = class as u8;
        for (p, v) in pixels[i * PIXELS..(i + 1) * PIXELS].iter_mut().enumerate() {
            *v = if p / 28 == 2 * class + 3 { rng.random_range(150..=255u8) } else { rng.random_range(0..60u8) };
        }
    }
    Split::bytes(pixels, labels, PIXELS)
}

/// A 784-16-12-10 network with norms whose γ and β are not the initial 1 and 0.
fn normed(activation: Activation) -> Mlp {
    let arch = Architecture::new(&[784, 16, 12, 10]).unwrap();
    let mut model = Mlp::new(&arch, activation, &mut ChaCha8Rng::seed_from_u64(5)).with_norms();
    for norm in &mut model.norms {
        for (i, (g, b)) in norm.gamma.iter_mut().zip(&mut norm.beta).enumerate() {
            (*g, *b) = (0.6 + 0.07 * i as f32, 0.1 * (i % 5) as f32 - 0.2);
        }
    }
    model
}

#[test]
fn gradients_through_the_norms_match_finite_differences_of_the_training_loss() {
    let (rows, s) = (24, synthetic(24, 1));
    let x = &s.values[..rows * PIXELS];
    let model = normed(Activation::Sigmoid);
    // The training loss: batch statistics, mean cross-entropy.
    let loss = |m: &Mlp| {
        let mut ws = Workspace::default();
        m.forward(x, rows, &mut ws, None);
        let probs = ws.probs.chunks_exact(10).zip(&s.labels);
        -probs.map(|(p, &y)| f64::from(p[y as usize]).ln()).sum::<f64>() / rows as f64
    };
    let mut stepped = model.clone();
    let mut ws = Workspace::default();
    stepped.forward(x, rows, &mut ws, None);
    // One plain SGD step at lr 1 moves each parameter by minus its gradient.
    stepped.backward(
        x,
        &s.labels[..rows],
        &mut ws,
        false,
        Soft::default(),
        &mut OptState::default(),
        Step::Sgd { lr: 1.0 },
    );
    let check = |what: String, analytic: f32, perturb: &dyn Fn(&mut Mlp, f32)| {
        let eps = 1e-2f32;
        let (mut plus, mut minus) = (model.clone(), model.clone());
        perturb(&mut plus, eps);
        perturb(&mut minus, -eps);
        let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(eps));
        let analytic = f64::from(analytic);
        assert!(
            (numeric - analytic).abs() <= 0.03 * analytic.abs().max(2e-3),
            "{what}: analytic {analytic:e}, numeric {numeric:e}"
        );
    };
    for l in 0..2 {
        for j in 0..6 {
            let dg = model.norms[l].gamma[j] - stepped.norms[l].gamma[j];
            check(format!("norm {l} gamma[{j}]"), dg, &|m, e| m.norms[l].gamma[j] += e);
            let db = model.norms[l].beta[j] - stepped.norms[l].beta[j];
            check(format!("norm {l} beta[{j}]"), db, &|m, e| m.norms[l].beta[j] += e);
        }
        // Weights of the layer before each norm: the gradient went back through it.
        let n = model.layers[l].outputs;
        let inputs = if l == 0 { [3 * 28 + 4, 9 * 28 + 20, 15 * 28 + 11] } else { [0, 5, 11] };
        for i in inputs {
            for j in [0, n / 2, n - 1] {
                let at = i * n + j;
                let dw = model.layers[l].w[at] - stepped.layers[l].w[at];
                check(format!("layer {l} w[{i}][{j}]"), dw, &|m, e| m.layers[l].w[at] += e);
            }
        }
    }
    // The batch mean cancels a normed layer's bias: it has none, and stays 0.
    assert!(stepped.layers[..2].iter().all(|l| l.b.iter().all(|&b| b == 0.0)));
}

#[test]
fn the_folded_network_is_inference_with_the_running_statistics() {
    let s = synthetic(300, 2);
    let mut model = normed(Activation::Relu);
    let opt = Optimizer::adamw(1e-4);
    let mut state = model.opt_state(opt.slots());
    let mut ws = Workspace::default();
    for (t, start) in (0..300).step_by(50).enumerate() {
        let (x, y) = (&s.values[start * PIXELS..(start + 50) * PIXELS], &s.labels[start..start + 50]);
        model.forward(x, 50, &mut ws, None);
        model.backward(x, y, &mut ws, false, Soft::default(), &mut state, opt.step(0.01, t as u64 + 1));
    }
    assert!(model.norms[0].mean.iter().any(|&m| m.abs() > 1e-3), "the running means moved");
    let folded = model.folded();
    assert!(folded.norms.is_empty() && folded.layers.len() == 3);
    let rows = 20;
    folded.forward(&s.values[..rows * PIXELS], rows, &mut ws, None);
    for r in 0..rows {
        // f64 inference: dense, then (z - mean) / √(var + ε) · γ + β, then ReLU.
        let mut a: Vec<f64> = s.values[r * PIXELS..(r + 1) * PIXELS].iter().map(|&v| f64::from(v)).collect();
        for (l, layer) in model.layers.iter().enumerate() {
            let n = layer.outputs;
            let mut z: Vec<f64> = (0..n)
                .map(|j| {
                    (0..layer.inputs).map(|i| a[i] * f64::from(layer.w[i * n + j])).sum::<f64>() + f64::from(layer.b[j])
                })
                .collect();
            if let Some(norm) = model.norms.get(l) {
                for (j, z) in z.iter_mut().enumerate() {
                    let sd = (f64::from(norm.var[j]) + f64::from(EPSILON)).sqrt();
                    *z = ((*z - f64::from(norm.mean[j])) / sd * f64::from(norm.gamma[j]) + f64::from(norm.beta[j]))
                        .max(0.0);
                }
            }
            a = z;
        }
        let max = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = a.iter().map(|v| (v - max).exp()).sum();
        for (j, &p) in ws.probs[r * 10..(r + 1) * 10].iter().enumerate() {
            let expected = (a[j] - max).exp() / sum;
            assert!((f64::from(p) - expected).abs() < 1e-4, "image {r} class {j}: {p} vs {expected}");
        }
    }
}

#[test]
fn a_run_with_batch_norm_learns_and_returns_the_folded_network() {
    let (tr, te) = (synthetic(1500, 3), synthetic(300, 4));
    let network = Network { hidden: vec![32, 16], activation: Activation::Relu, dropout: 0.1, batch_norm: true };
    let schedule = trainer::optim::Schedule::Cosine { warmup: 10 };
    let recipe = Recipe { epochs: 3, batch_size: 64, val_split: 150, schedule, ..Recipe::best("bn", network) };
    let trained = train::fit(&recipe, &data(&tr, &te), &mut Quiet).unwrap();
    assert!(trained.model.norms.is_empty(), "what is exported has no norms");
    assert!(trained.model.layers[0].b.iter().any(|&b| b != 0.0), "the norm's shift went into the biases");
    assert!(trained.test.accuracy > 0.9, "test accuracy {}", trained.test.accuracy);
    // The test figure is the folded network's own.
    let again = train::evaluate(&trained.model, &te, &mut Workspace::default());
    assert_eq!(again.predictions, trained.test.predictions);
}
