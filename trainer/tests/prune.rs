//! Pruning in training: the sparsity reached, blocks of 4 inputs in the exported order, the
//! same bits at any thread count and after a stop and resume.

mod common;

use common::{data, fit_on_threads, synthetic, whole_and_resumed};
use infer_core::Activation;
use trainer::format;
use trainer::model::Network;
use trainer::prune::{BLOCK, Prune};
use trainer::recipe::{ModelKind, Recipe};
use trainer::train::{self, Quiet, Trained};

/// A 784-64-30-10 network (30: a width that is not a multiple of 4), pruned to `sparsity`.
fn pruned(sparsity: f32, batch_norm: bool, epochs: usize) -> Recipe {
    let network = Network { hidden: vec![64, 30], activation: Activation::Relu, dropout: 0.1, batch_norm };
    let prune = Prune { every: 3, ..Prune::to(sparsity) };
    Recipe {
        name: network.name(),
        network,
        epochs,
        lr: 0.1,
        batch_size: 100,
        seed: 7,
        prune: Some(prune),
        ..Recipe::seed(ModelKind::Relu)
    }
}

/// Blocks of each pruned layer whose weights are all zero, and blocks in all.
fn zero_blocks(t: &Trained) -> Vec<(usize, usize)> {
    let layers = &t.model.layers;
    layers[..layers.len() - 1]
        .iter()
        .map(|l| {
            let groups = l.inputs.div_ceil(BLOCK);
            let zero = (0..groups)
                .flat_map(|g| (0..l.outputs).map(move |j| (g, j)))
                .filter(|&(g, j)| (g * BLOCK..(g * BLOCK + BLOCK).min(l.inputs)).all(|i| l.w[i * l.outputs + j] == 0.0))
                .count();
            (zero, groups * l.outputs)
        })
        .collect()
}

#[test]
fn every_hidden_layer_reaches_the_sparsity_in_blocks_of_the_exported_order() {
    let (tr, te) = (synthetic(1000, 1), synthetic(300, 2));
    for (sparsity, batch_norm) in [(0.9, false), (0.75, true)] {
        let t = train::fit(&pruned(sparsity, batch_norm, 8), &data(&tr, &te), &mut Quiet).unwrap();
        eprintln!("{sparsity}: test accuracy {}", t.test.accuracy);
        assert_eq!(t.sparsity.len(), 2, "the two hidden layers are pruned");
        for (l, (&s, (zero, all))) in t.sparsity.iter().zip(zero_blocks(&t)).enumerate() {
            let want = (f64::from(sparsity) * all as f64).round() as usize;
            assert!((s - want as f64 / all as f64).abs() < 1e-12, "layer {l}: {s} of its blocks cut");
            // The cut blocks are whole blocks of 4 consecutive inputs of the exported model
            // (the first layer's rows were moved back from the trainer's pixel order), and
            // hardly any block that was kept is all zeros.
            assert!(zero >= want && zero <= want + all / 100, "layer {l}: {zero} zero blocks, {want} cut, of {all}");
        }
        let out = t.model.layers.last().unwrap();
        assert!(out.w.iter().all(|&w| w != 0.0), "the output layer stays dense");
        assert!(t.test.accuracy > 0.9, "{sparsity}: the easy task is still learned: {}", t.test.accuracy);
    }
}

#[test]
fn a_pruned_run_has_the_same_bits_with_1_and_2_threads() {
    let (tr, te) = (synthetic(600, 3), synthetic(100, 4));
    let recipe = pruned(0.8, true, 3);
    let ds = data(&tr, &te);
    let (a, b) = (fit_on_threads(&recipe, &ds, 1), fit_on_threads(&recipe, &ds, 2));
    assert_eq!(format::encode_f32(&a.model).unwrap(), format::encode_f32(&b.model).unwrap());
    assert_eq!(a.test.predictions, b.test.predictions);
    assert_eq!(a.sparsity, b.sparsity);
}

#[test]
fn a_pruned_run_stopped_and_resumed_ends_with_the_bits_of_one_never_stopped() {
    let (tr, te) = (synthetic(600, 5), synthetic(100, 6));
    let recipe = pruned(0.85, false, 4);
    // Six steps an epoch; stopped in the third epoch, while the masks are still growing.
    let (whole, resumed) = whole_and_resumed(&recipe, &data(&tr, &te), 14, 2);
    assert_eq!(format::encode_f32(&whole.model).unwrap(), format::encode_f32(&resumed.model).unwrap());
    assert_eq!(whole.sparsity, resumed.sparsity);
}

#[test]
fn the_schedule_rises_as_a_cube_from_begin_to_end_and_stays() {
    let p = Prune { sparsity: 0.9, begin: 0.1, end: 0.5, every: 10 };
    let total = 1000;
    assert_eq!(p.steps(total), (100, 500));
    assert_eq!(p.sparsity_at(99, total), 0.0);
    assert_eq!(p.sparsity_at(100, total), 0.0);
    assert!(
        (p.sparsity_at(300, total) - f64::from(0.9f32) * (1.0 - 0.125)).abs() < 1e-12,
        "half way: 1 - (1/2)^3 of the target"
    );
    assert_eq!(p.sparsity_at(500, total), f64::from(0.9f32));
    assert_eq!(p.sparsity_at(999, total), f64::from(0.9f32));
    let mut last = 0.0;
    for t in 0..total {
        let s = p.sparsity_at(t, total);
        assert!(s >= last, "step {t}");
        last = s;
    }
    let updates: Vec<usize> = (0..total).filter(|&t| p.updates_at(t, total)).collect();
    assert_eq!(updates.first(), Some(&100));
    assert_eq!(updates.last(), Some(&500), "the last update reaches the target");
    assert_eq!(updates.len(), 41);
    assert!(!p.reached(500, total) && p.reached(501, total));
}

#[test]
fn settings_that_cannot_prune_are_refused() {
    for bad in [0.0, 1.0, -0.5, 1.5, f32::NAN] {
        let e = Prune::to(bad).check().unwrap_err();
        assert!(e.contains("--prune") && e.contains("above 0 and below 1"), "{bad}: {e}");
    }
    assert!(Prune { begin: 0.7, ..Prune::to(0.5) }.check().is_err());
    assert!(Prune { every: 0, ..Prune::to(0.5) }.check().is_err());
    let e = pruned(1.2, false, 1).check().unwrap_err();
    assert!(e.contains("--prune 1.2"), "{e}");
}

#[test]
fn a_pruned_model_exports_a_sparse_int8_file_that_classifies_as_the_integer_reference() {
    use infer_core::{Int8Model, Int8Scratch, int8net::INT8_SCRATCH_MAX};
    let (tr, te) = (synthetic(1000, 5), synthetic(200, 6));
    let ds = data(&tr, &te);
    let t = train::fit(&pruned(0.9, true, 6), &ds, &mut Quiet).unwrap();
    let export = trainer::quant::export_int8(&t.model, &ds).unwrap();
    let file = infer_core::format::read(&export.bytes).unwrap();
    assert_eq!(file.header().version(), 4);
    let sparsity = file.header().storage();
    // The hidden layers are stored sparse, keeping what pruning kept: the second layer's
    // blocks of four hidden units survived the export's renumbering of the units.
    for (l, (zero, all)) in zero_blocks(&t).into_iter().enumerate() {
        let kept = sparsity.kept(l).unwrap_or_else(|| panic!("layer {l} is stored dense")) as usize;
        assert!(kept <= all - zero, "layer {l}: {kept} blocks kept, {} not zero", all - zero);
        assert!(kept * 10 > (all - zero) * 9, "layer {l}: {kept} blocks kept, {} not zero", all - zero);
    }
    assert_eq!(sparsity.kept(2), None, "the output layer is dense");
    // At most the size `--flash` plans with for this sparsity (a kept block that quantized to
    // zero is not stored either).
    let arch = infer_core::arch::Architecture::new(&[784, 64, 30, 10]).unwrap();
    let planned =
        trainer::budget::int8_file_bytes(&arch, Activation::Relu, file.extras(), 0.9, trainer::qat::WeightBits::Int8);
    assert!(export.bytes.len() <= planned && export.bytes.len() + 200 > planned, "{} of {planned}", export.bytes.len());
    let dense_bytes = 784 * 64 + 64 * 32 + 32 * 10;
    assert!(export.bytes.len() * 4 < dense_bytes, "{} bytes", export.bytes.len());
    // infer_core's kernels classify every test image as the trainer's integer reference.
    let model = Int8Model::from_bytes(&export.bytes).unwrap();
    let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
    for (pixels, &want) in te.pixels.chunks_exact(te.width).zip(&export.predictions) {
        assert_eq!(model.predict(pixels, &mut scratch, &mut [0; 10]).unwrap(), usize::from(want));
    }
    // Unpruned, the same network exports dense, as version 3.
    let dense = train::fit(&Recipe { prune: None, ..pruned(0.9, true, 1) }, &ds, &mut Quiet).unwrap();
    let bytes = trainer::quant::export_int8(&dense.model, &ds).unwrap().bytes;
    assert_eq!(infer_core::format::read(&bytes).unwrap().header().version(), 3);
}
