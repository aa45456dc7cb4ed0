//! Int4 weights (`--quant int4`): the run ends on weights on their int4 grids, the export
//! writes them as int4 layers that classify as the integer reference, and a run has the same
//! bits at any thread count and after a stop and resume. (That training on rounded weights
//! beats rounding afterwards is tested on the real data, `tests/tests/end_to_end.rs`.)

mod common;

use common::{data, fit_on_threads, synthetic, whole_and_resumed};
use infer_core::Activation;
use trainer::format;
use trainer::model::{Mlp, Network};
use trainer::prune::Prune;
use trainer::qat::{self, WeightBits};
use trainer::recipe::{ModelKind, Recipe};
use trainer::train::{self, Quiet};

/// A 784-64-30-10 network with int4 hidden weights, pruned to `sparsity` if given.
fn int4(sparsity: Option<f32>, batch_norm: bool, epochs: usize) -> Recipe {
    let network = Network { hidden: vec![64, 30], activation: Activation::Relu, dropout: 0.1, batch_norm };
    Recipe {
        name: network.name(),
        network,
        epochs,
        lr: 0.1,
        batch_size: 100,
        seed: 11,
        prune: sparsity.map(|s| Prune { every: 3, ..Prune::to(s) }),
        quant: WeightBits::Int4,
        ..Recipe::seed(ModelKind::Relu)
    }
}

/// Whether each hidden layer's weights are on their units' int4 grids (up to f32 rounding).
fn on_int4_grids(model: &Mlp) -> bool {
    let hidden = &model.layers[..model.layers.len() - 1];
    hidden.iter().all(|l| {
        let step = qat::int4_steps(&l.w, l.outputs);
        l.w.chunks_exact(l.outputs).all(|row| {
            row.iter().zip(&step).all(|(&w, &s)| {
                let q = f64::from(w) / s;
                (q - q.round()).abs() < 1e-3 && q.abs() <= 7.0 + 1e-3
            })
        })
    })
}

#[test]
fn an_int4_run_ends_on_int4_grids_and_exports_int4_layers_that_classify_as_the_reference() {
    use infer_core::{Int8Model, Int8Scratch, int8net::INT8_SCRATCH_MAX};
    let (tr, te) = (synthetic(1000, 21), synthetic(300, 22));
    let ds = data(&tr, &te);
    for (sparsity, batch_norm, version_kept) in [(None, true, None), (Some(0.8), false, Some(()))] {
        let t = train::fit(&int4(sparsity, batch_norm, 6), &ds, &mut Quiet).unwrap();
        assert!(on_int4_grids(&t.model), "{sparsity:?}: the kept model's hidden weights are rounded");
        assert!(t.model.layers[2].w.iter().filter(|&&w| w != 0.0).count() > 200, "the output layer is not rounded");
        let export = trainer::quant::export_as(&t.model, &ds, WeightBits::Int4).unwrap();
        let storage = *format_storage(&export.bytes);
        assert_eq!((storage.int4(0), storage.int4(1), storage.int4(2)), (true, true, false));
        assert_eq!(storage.kept(0).is_some(), version_kept.is_some(), "{sparsity:?}");
        assert!(export.model.layers[..2].iter().all(|l| l.w.iter().all(|&w| w % 16 == 0 && w.abs() <= 112)));
        // The int4 export loses little against the f32 model it came from (trained on
        // rounded weights), and the kernels agree with the integer reference.
        assert!(export.accuracy > t.test.accuracy - 0.02, "{} against {}", export.accuracy, t.test.accuracy);
        let model = Int8Model::from_bytes(&export.bytes).unwrap();
        let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
        for (pixels, &want) in te.pixels.chunks_exact(te.width).zip(&export.predictions) {
            assert_eq!(model.predict(pixels, &mut scratch, &mut [0; 10]).unwrap(), usize::from(want));
        }
        // Under 70% of the int8 export of the same model (its output layer is int8 in both).
        let int8 = trainer::quant::export_int8(&t.model, &ds).unwrap();
        assert!(export.bytes.len() * 10 < int8.bytes.len() * 7, "{} against {}", export.bytes.len(), int8.bytes.len());
    }
}

fn format_storage(bytes: &[u8]) -> &'static infer_core::layout::Storage {
    Box::leak(Box::new(infer_core::format::read(bytes).unwrap().header().storage()))
}

#[test]
fn an_int4_run_has_the_same_bits_with_1_and_2_threads() {
    let (tr, te) = (synthetic(600, 25), synthetic(100, 26));
    let recipe = int4(Some(0.7), true, 3);
    let ds = data(&tr, &te);
    let (a, b) = (fit_on_threads(&recipe, &ds, 1), fit_on_threads(&recipe, &ds, 2));
    assert_eq!(format::encode_f32(&a.model).unwrap(), format::encode_f32(&b.model).unwrap());
    assert_eq!(a.test.predictions, b.test.predictions);
}

#[test]
fn an_int4_run_stopped_on_rounded_weights_and_resumed_ends_with_the_bits_of_one_never_stopped() {
    let (tr, te) = (synthetic(600, 27), synthetic(100, 28));
    // Six steps an epoch, 24 in all; rounded from step 14 (60%): stopped at step 17.
    let recipe = int4(None, false, 4);
    let (whole, resumed) = whole_and_resumed(&recipe, &data(&tr, &te), 17, 2);
    assert_eq!(format::encode_f32(&whole.model).unwrap(), format::encode_f32(&resumed.model).unwrap());
}
