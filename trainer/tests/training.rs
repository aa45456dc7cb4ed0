//! Training on small synthetic data: determinism, divergence, gradients, model files.

mod common;

use common::{PIXELS, data, synthetic};
use infer_core::Activation;
use infer_core::arch::Architecture;
use trainer::data::Split;

use trainer::format;
use trainer::model::{Mlp, Network, Workspace, batch_loss_correct};
use trainer::recipe::{ModelKind, Recipe};
use trainer::train::{self, FitError, Quiet};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn recipe(kind: ModelKind, epochs: usize) -> Recipe {
    Recipe { epochs, lr: 0.1, batch_size: 100, seed: 7, ..Recipe::seed(kind) }
}

/// A recipe for a network of these hidden widths.
fn custom(hidden: &[usize], activation: Activation, dropout: f32, epochs: usize) -> Recipe {
    let network = Network { hidden: hidden.to_vec(), activation, dropout, batch_norm: false };
    Recipe { name: network.name(), network, ..recipe(ModelKind::Relu, epochs) }
}

/// `r` with a batch norm before each hidden activation.
fn with_batch_norm(r: Recipe) -> Recipe {
    Recipe { network: Network { batch_norm: true, ..r.network.clone() }, ..r }
}

#[test]
fn same_seed_gives_bit_identical_weights_and_history_with_1_and_2_threads() {
    let (tr, te) = (synthetic(1000, 1), synthetic(200, 2));
    let recipes = [
        recipe(ModelKind::Dropout, 2),
        recipe(ModelKind::Sigmoid, 2),
        custom(&[64, 33, 17, 5], Activation::Relu, 0.3, 2),
        // Batch norm's sums over the batch too (and sigmoid after a norm).
        with_batch_norm(custom(&[64, 33, 17, 5], Activation::Sigmoid, 0.3, 2)),
    ];
    for recipe in recipes {
        let kind = &recipe.name;
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| train::fit(&recipe, &data(&tr, &te), &mut Quiet).unwrap())
        };
        let (a, b) = (run(1), run(2));
        assert_eq!(format::encode_f32(&a.model).unwrap(), format::encode_f32(&b.model).unwrap(), "{kind:?} weights");
        let strip = |t: &train::Trained| {
            t.history.iter().map(|r| (r.loss, r.accuracy, r.val_loss, r.val_accuracy)).collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&b), "{kind:?} history");
        assert_eq!(a.test.predictions, b.test.predictions);
    }
}

#[test]
fn different_seeds_give_different_models() {
    let (tr, te) = (synthetic(300, 1), synthetic(100, 2));
    let a = train::fit(&recipe(ModelKind::Relu, 1), &data(&tr, &te), &mut Quiet).unwrap();
    let b = train::fit(&Recipe { seed: 8, ..recipe(ModelKind::Relu, 1) }, &data(&tr, &te), &mut Quiet).unwrap();
    assert_ne!(a.model, b.model);
}

#[test]
fn training_learns_the_synthetic_task() {
    let (tr, te) = (synthetic(2000, 3), synthetic(500, 4));
    let t = train::fit(&recipe(ModelKind::Relu, 3), &data(&tr, &te), &mut Quiet).unwrap();
    assert_eq!(t.history.len(), 3);
    assert!(t.history[2].loss < t.history[0].loss, "loss falls: {:?}", t.history);
    assert!(t.test.accuracy > 0.9, "accuracy {}", t.test.accuracy);
    // Training lays pixels out in patches; the returned model is back in image order, so
    // evaluating it on the images as they are gives the last epoch's validation figures.
    let last = t.history[2];
    assert!((t.test.accuracy - last.val_accuracy).abs() <= 0.002, "{} vs {}", t.test.accuracy, last.val_accuracy);
    assert!((t.test.loss - last.val_loss).abs() <= 1e-4 * last.val_loss, "{} vs {}", t.test.loss, last.val_loss);
}

#[test]
fn patch_order_is_a_permutation_in_3x4_patches() {
    let order = trainer::layout::patch_order([28, 28]);
    let mut seen = [false; PIXELS];
    for &p in &order {
        assert!(!seen[p as usize], "pixel {p} twice");
        seen[p as usize] = true;
    }
    assert_eq!(&order[..12], &[0, 1, 2, 3, 28, 29, 30, 31, 56, 57, 58, 59]);
    assert_eq!(&order[12..16], &[4, 5, 6, 7]);
}

#[test]
fn divergence_stops_with_a_clear_error() {
    let (tr, te) = (synthetic(500, 1), synthetic(100, 2));
    let bad = Recipe { lr: 1e6, ..recipe(ModelKind::Relu, 3) };
    let e = match train::fit(&bad, &data(&tr, &te), &mut Quiet) {
        Err(FitError::Diverged(e)) => e,
        other => panic!("expected divergence, got {other:?}"),
    };
    let msg = e.to_string();
    assert!(msg.contains("lower the learning rate"), "{msg}");
    assert!(msg.contains(&format!("epoch {}", e.epoch)) && msg.contains(&format!("step {}", e.step)), "{msg}");
    assert!(e.epoch == 1 && e.step <= 5, "caught early: {msg}");
}

/// Mean loss of `model` on the first `rows` images of `s`, without dropout.
fn loss(model: &Mlp, s: &Split, rows: usize) -> f64 {
    let mut ws = Workspace::default();
    model.forward(&s.values[..rows * PIXELS], rows, &mut ws, None);
    batch_loss_correct(&ws.probs[..rows * 10], 10, &s.labels[..rows]).0 / rows as f64
}

/// Central difference of the loss when `nudge` adds ±eps to one parameter.
fn numeric_grad(model: &Mlp, s: &Split, rows: usize, nudge: impl Fn(&mut Mlp, f32)) -> f64 {
    let eps = 1e-2f32;
    let mut plus = model.clone();
    nudge(&mut plus, eps);
    let mut minus = model.clone();
    nudge(&mut minus, -eps);
    (loss(&plus, s, rows) - loss(&minus, s, rows)) / (2.0 * f64::from(eps))
}

#[test]
fn backward_pass_matches_finite_differences() {
    let s = synthetic(16, 5);
    let rows = 16;
    let shapes = [
        (Architecture::FMNIST, Activation::Relu),
        (Architecture::FMNIST, Activation::Sigmoid),
        (Architecture::new(&[784, 24, 13, 7, 10]).unwrap(), Activation::Relu),
        (Architecture::new(&[784, 5, 10]).unwrap(), Activation::Sigmoid),
    ];
    for (arch, kind) in shapes {
        let model = Mlp::new(&arch, kind, &mut ChaCha8Rng::seed_from_u64(3));
        // One SGD step with lr = 1 leaves w - g: read the gradient back from it.
        let mut stepped = model.clone();
        let mut ws = Workspace::default();
        stepped.forward(&s.values[..rows * PIXELS], rows, &mut ws, None);
        stepped.backward_sgd(&s.values[..rows * PIXELS], &s.labels[..rows], &mut ws, false, 1.0);
        for l in 0..arch.layers() {
            let grads: Vec<f32> = model.layers[l].w.iter().zip(&stepped.layers[l].w).map(|(a, b)| a - b).collect();
            // The three largest gradients of the layer, and its largest bias gradient.
            let mut idx: Vec<usize> = (0..grads.len()).collect();
            idx.sort_by(|&a, &b| grads[b].abs().total_cmp(&grads[a].abs()));
            for &i in &idx[..3] {
                let numeric = numeric_grad(&model, &s, rows, |m, e| m.layers[l].w[i] += e);
                let analytic = f64::from(grads[i]);
                let rel = (numeric - analytic).abs() / analytic.abs().max(1e-4);
                assert!(rel < 0.05, "{kind:?} layer {l} w[{i}]: analytic {analytic:e}, numeric {numeric:e}");
            }
            let bgrads: Vec<f32> = model.layers[l].b.iter().zip(&stepped.layers[l].b).map(|(a, b)| a - b).collect();
            let j = (0..bgrads.len()).max_by(|&a, &b| bgrads[a].abs().total_cmp(&bgrads[b].abs())).unwrap();
            let numeric = numeric_grad(&model, &s, rows, |m, e| m.layers[l].b[j] += e);
            let analytic = f64::from(bgrads[j]);
            assert!(
                (numeric - analytic).abs() / analytic.abs().max(1e-4) < 0.05,
                "{kind:?} layer {l} b[{j}]: {analytic:e} vs {numeric:e}"
            );
        }
    }
}

#[test]
fn model_file_round_trips_and_rejects_damage() {
    let model = Mlp::new(&Architecture::FMNIST, Activation::Sigmoid, &mut ChaCha8Rng::seed_from_u64(1));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.f32.fmlp");
    format::save_f32(&model, &path).unwrap();
    assert_eq!(format::load_f32(&path).unwrap(), model);

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let e = format::load_f32(&path).unwrap_err().to_string();
    assert!(e.contains("truncated") && e.contains("m.f32.fmlp"), "{e}");

    let mut flipped = bytes.clone();
    flipped[5000] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    assert!(format::load_f32(&path).unwrap_err().to_string().contains("corrupt"));

    // A file of another shape, 784-100-10, is that shape.
    let small =
        Mlp::new(&Architecture::new(&[784, 100, 10]).unwrap(), Activation::Relu, &mut ChaCha8Rng::seed_from_u64(2));
    assert_eq!(format::decode_f32(&format::encode_f32(&small).unwrap()).unwrap(), small);

    // One with five hidden layers (a valid checksum, a hand-made header) is refused for it.
    let mut file = vec![0u8; 64];
    file[..15].copy_from_slice(&[b'F', b'M', b'L', b'P', 2, 7, 4, 1, 1, 1, 1, 1, 2, 1, 0]);
    // f32 4-1-1-1-1-1-2: weights and biases of the six layers.
    let payload_len = 4 * ((4 + 1) + 4 * (1 + 1) + (2 + 2));
    file[15] = payload_len as u8;
    file.extend(std::iter::repeat_n(0u8, payload_len));
    let crc = infer_core::format::checksum(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    let e = format::decode_f32(&file).unwrap_err();
    assert_eq!(e, infer_core::Error::HiddenLayers { found: 5 });
    assert!(e.to_string().contains("5 hidden layers; a network has 1 to 4"), "{e}");

    // NaN is refused when writing, so no file holds it.
    let mut nan = model.clone();
    nan.layers[1].w[3] = f32::NAN;
    assert_eq!(format::encode_f32(&nan).unwrap_err(), infer_core::Error::NonFinite { layer: 1 });
    assert!(format::save_f32(&nan, &path).unwrap_err().to_string().contains("layer 2: a weight or bias is NaN"));
}

#[test]
fn infer_core_f32_agrees_with_trainer_forward() {
    let (tr, te) = (synthetic(1000, 1), synthetic(300, 9));
    let t = train::fit(&recipe(ModelKind::Sigmoid, 2), &data(&tr, &te), &mut Quiet).unwrap();
    let bytes = format::encode_f32(&t.model).unwrap();
    let m = infer_core::F32Model::from_bytes(&bytes).unwrap();
    let mut scratch = infer_core::Scratch::new();
    let mut logits = [0f32; 10];
    let mut agree = 0;
    for i in 0..te.len() {
        let class = m.predict(&te.values[i * PIXELS..(i + 1) * PIXELS], &mut scratch, &mut logits).unwrap();
        agree += usize::from(class == t.test.predictions[i] as usize);
    }
    assert!(agree >= te.len() - 1, "{agree}/{}", te.len());
}

#[test]
fn any_stack_of_one_to_four_hidden_layers_trains_and_runs_in_infer_core() {
    let (tr, te) = (synthetic(2000, 3), synthetic(300, 4));
    for (hidden, activation, dropout) in [
        (&[32][..], Activation::Relu, 0.0),
        (&[16, 9][..], Activation::Sigmoid, 0.0),
        (&[48, 33, 17, 12][..], Activation::Relu, 0.1),
    ] {
        // Sigmoid learns slowly with plain SGD (the study's point): a larger step.
        let lr = if activation == Activation::Sigmoid { 1.0 } else { 0.1 };
        let r = Recipe { lr, ..custom(hidden, activation, dropout, 4) };
        let t = train::fit(&r, &data(&tr, &te), &mut Quiet).unwrap();
        assert_eq!(t.model.layers.len(), hidden.len() + 1, "{hidden:?}");
        assert!(t.test.accuracy > 0.8, "{hidden:?}: accuracy {}", t.test.accuracy);
        let bytes = format::encode_f32(&t.model).unwrap();
        let m = infer_core::F32Model::from_bytes(&bytes).unwrap();
        assert_eq!(m.architecture().hidden().len(), hidden.len());
        let mut scratch = infer_core::Scratch::<128>::for_model(&m).unwrap();
        let mut logits = [0f32; 10];
        let agree = (0..te.len())
            .filter(|&i| {
                let img = &te.values[i * PIXELS..(i + 1) * PIXELS];
                m.predict(img, &mut scratch, &mut logits).unwrap() == t.test.predictions[i] as usize
            })
            .count();
        assert!(agree >= te.len() - 1, "{hidden:?}: {agree}/{}", te.len());
    }
}

#[test]
fn networks_out_of_range_are_refused_before_training() {
    let (tr, te) = (synthetic(100, 3), synthetic(10, 4));
    for (hidden, needle) in
        [(&[][..], "0 hidden layers"), (&[8, 8, 8, 8, 8][..], "5 hidden layers"), (&[2000][..], "2000")]
    {
        let e = train::fit(&custom(hidden, Activation::Relu, 0.0, 1), &data(&tr, &te), &mut Quiet).unwrap_err();
        assert!(matches!(e, FitError::Network { .. }), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
}
