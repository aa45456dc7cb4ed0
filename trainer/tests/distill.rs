//! Distillation from a teacher model file: it trains, keeps its bits at any thread count,
//! and a teacher that cannot be used is refused with its path.

mod common;

use common::{data, synthetic};
use infer_core::Activation;
use trainer::format;
use trainer::model::Network;
use trainer::recipe::{Distill, ModelKind, Recipe};
use trainer::train::{self, FitError, Quiet};

fn small(hidden: &[usize], epochs: usize) -> Recipe {
    let network = Network { hidden: hidden.to_vec(), activation: Activation::Relu, dropout: 0.0, batch_norm: false };
    Recipe { name: network.name(), network, epochs, lr: 0.1, batch_size: 100, seed: 7, ..Recipe::seed(ModelKind::Relu) }
}

#[test]
fn a_student_learns_from_its_teacher_with_the_same_bits_on_1_and_2_threads() {
    let (tr, te) = (synthetic(800, 1), synthetic(200, 2));
    let ds = data(&tr, &te);
    let dir = tempfile::tempdir().unwrap();
    let teacher = train::fit(&small(&[64], 3), &ds, &mut Quiet).unwrap();
    let path = dir.path().join("teacher.f32.fmlp");
    format::save_f32(&teacher.model, &path).unwrap();
    let alone = train::fit(&small(&[16], 3), &ds, &mut Quiet).unwrap();
    let student = Recipe { distill: Some(Distill { teacher: path, weight: 0.7, temperature: 1.0 }), ..small(&[16], 3) };
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| train::fit(&student, &ds, &mut Quiet).unwrap())
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(format::encode_f32(&a.model).unwrap(), format::encode_f32(&b.model).unwrap());
    assert_ne!(format::encode_f32(&a.model).unwrap(), format::encode_f32(&alone.model).unwrap(), "the teacher counts");
    assert!(a.test.accuracy > 0.9, "the student learns the task: {}", a.test.accuracy);
    // At temperature 3 it learns too, otherwise.
    let d = student.distill.clone().map(|d| Distill { temperature: 3.0, ..d });
    let warm = train::fit(&Recipe { distill: d, ..student.clone() }, &ds, &mut Quiet).unwrap();
    assert_ne!(
        format::encode_f32(&warm.model).unwrap(),
        format::encode_f32(&a.model).unwrap(),
        "the temperature counts"
    );
    assert!(warm.test.accuracy > 0.9, "the student learns the task at T = 3: {}", warm.test.accuracy);
}

#[test]
fn a_teacher_that_cannot_be_used_is_refused_with_its_path() {
    let (tr, te) = (synthetic(200, 3), synthetic(50, 4));
    let ds = data(&tr, &te);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.f32.fmlp");
    let with = |teacher: std::path::PathBuf| Recipe {
        distill: Some(Distill { teacher, weight: 0.5, temperature: 1.0 }),
        ..small(&[8], 1)
    };
    let e = train::fit(&with(missing.clone()), &ds, &mut Quiet).unwrap_err();
    assert!(matches!(e, FitError::Teacher { .. }) && e.to_string().contains("none.f32.fmlp"), "{e}");
    // A model of other inputs: 784 inputs are expected.
    let other = trainer::model::Mlp::new(
        &infer_core::arch::Architecture::new(&[100, 8, 10]).unwrap(),
        Activation::Relu,
        &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1),
    );
    let path = dir.path().join("other.f32.fmlp");
    format::save_f32(&other, &path).unwrap();
    let e = train::fit(&with(path), &ds, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("100 inputs") && e.to_string().contains("784"), "{e}");
    let bad =
        Recipe { distill: Some(Distill { teacher: missing.clone(), weight: 1.5, temperature: 1.0 }), ..small(&[8], 1) };
    assert!(bad.check().unwrap_err().contains("--distill-weight 1.5"));
    for t in [0.5, f32::NAN, 101.0] {
        let bad = Recipe {
            distill: Some(Distill { teacher: missing.clone(), weight: 0.5, temperature: t }),
            ..small(&[8], 1)
        };
        assert!(bad.check().unwrap_err().contains("--distill-temperature"), "{t}");
    }
}
