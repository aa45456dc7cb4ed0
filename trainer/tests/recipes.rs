//! Recipes beyond the study's on small synthetic data: label smoothing's gradient, the
//! validation split and the weights chosen on it, early stopping, checkpoints and resume,
//! and determinism of all of it across thread counts.

mod common;

use common::{PIXELS, data};
use std::panic::AssertUnwindSafe;

use infer_core::Activation;
use infer_core::arch::Architecture;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trainer::augment::Augment;
use trainer::checkpoint::Checkpoint;
use trainer::data::Split;

use trainer::format;
use trainer::history::EpochRecord;
use trainer::keep;
use trainer::model::{Mlp, Network, Soft, Workspace};
use trainer::optim::{OptState, Optimizer, Schedule, Step};
use trainer::recipe::Recipe;
use trainer::state::TrainState;
use trainer::train::{self, FitError, Observer, Quiet, Trained};

/// Images whose class is a bright band at row `2 * class + 3`, plus noise; `noise` of them
/// (a fraction) carry a random label, so that validation accuracy stops improving.
fn synthetic(n: usize, seed: u64, noise: f64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    use rand::RngExt;
    let mut pixels = vec![0u8; n * PIXELS];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let class = rng.random_range(0..10usize);
        labels[i] = if rng.random_bool(noise) { rng.random_range(0..10u8) } else { class as u8 };
        for (p, v) in pixels[i * PIXELS..(i + 1) * PIXELS].iter_mut().enumerate() {
            let row = p / 28;
            *v = if row == 2 * class + 3 { rng.random_range(150..=255u8) } else { rng.random_range(0..60u8) };
        }
    }
    Split::bytes(pixels, labels, PIXELS)
}

/// A small modern recipe: batch norm, AdamW, cosine with warm-up, smoothing, shifts and
/// flips, dropout, a validation split.
fn modern(epochs: usize) -> Recipe {
    let network = Network { hidden: vec![48, 24], activation: Activation::Relu, dropout: 0.1, batch_norm: true };
    Recipe {
        epochs,
        batch_size: 64,
        lr: 0.003,
        optimizer: Optimizer::adamw(1e-3),
        schedule: Schedule::Cosine { warmup: 10 },
        label_smoothing: 0.1,
        augment: Augment { shift: 2, flip: true },
        val_split: 300,
        ..Recipe::best("modern", network)
    }
}

/// A trained model's bits: its file, its history (without times), its test predictions and
/// the epochs it kept and found best on validation.
type Bits = (Vec<u8>, Vec<(u64, u64, u64, u64)>, Vec<u8>, Option<usize>, Option<usize>);

fn bits(t: &Trained) -> Bits {
    let history = t
        .history
        .iter()
        .map(|r| (r.loss.to_bits(), r.accuracy.to_bits(), r.val_loss.to_bits(), r.val_accuracy.to_bits()))
        .collect();
    (format::encode_f32(&t.model).unwrap(), history, t.test.predictions.clone(), t.best_epoch, t.top_epoch)
}

#[test]
fn label_smoothing_gradient_matches_finite_differences_of_the_smoothed_loss() {
    let s = synthetic(12, 5, 0.0);
    let rows = 12;
    let smoothing = 0.2f32;
    let arch = Architecture::new(&[784, 16, 10]).unwrap();
    let model = Mlp::new(&arch, Activation::Sigmoid, &mut ChaCha8Rng::seed_from_u64(3));
    let x = &s.values[..rows * PIXELS];
    let smoothed_loss = |m: &Mlp| {
        let mut ws = Workspace::default();
        m.forward(x, rows, &mut ws, None);
        let mut total = 0.0f64;
        for (p, &y) in ws.probs.chunks_exact(10).zip(&s.labels[..rows]) {
            for (j, &pj) in p.iter().enumerate() {
                let target =
                    f64::from(smoothing) / 10.0 + if j == y as usize { f64::from(1.0 - smoothing) } else { 0.0 };
                total -= target * f64::from(pj).ln();
            }
        }
        total / rows as f64
    };
    let mut stepped = model.clone();
    let mut ws = Workspace::default();
    stepped.forward(x, rows, &mut ws, None);
    stepped.backward(
        x,
        &s.labels[..rows],
        &mut ws,
        false,
        Soft { smoothing, teacher: None },
        &mut OptState::default(),
        Step::Sgd { lr: 1.0 },
    );
    for l in 0..2 {
        let grads: Vec<f32> = model.layers[l].b.iter().zip(&stepped.layers[l].b).map(|(a, b)| a - b).collect();
        for (j, &grad) in grads.iter().enumerate().take(6) {
            let eps = 1e-2f32;
            let (mut plus, mut minus) = (model.clone(), model.clone());
            plus.layers[l].b[j] += eps;
            minus.layers[l].b[j] -= eps;
            let numeric = (smoothed_loss(&plus) - smoothed_loss(&minus)) / (2.0 * f64::from(eps));
            let analytic = f64::from(grad);
            assert!(
                (numeric - analytic).abs() <= 0.02 * analytic.abs().max(1e-3),
                "layer {l} b[{j}]: analytic {analytic:e}, numeric {numeric:e}"
            );
        }
    }
}

#[test]
fn a_modern_recipe_gives_the_same_bits_with_1_and_2_threads() {
    let (tr, te) = (synthetic(1500, 1, 0.0), synthetic(200, 2, 0.0));
    let recipes = [
        modern(3),
        Recipe { optimizer: Optimizer::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 }, ..modern(2) },
        Recipe { optimizer: Optimizer::adam(1e-4), schedule: Schedule::Step { every: 1, gamma: 0.5 }, ..modern(2) },
    ];
    for recipe in recipes {
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| train::fit(&recipe, &data(&tr, &te), &mut Quiet).unwrap())
        };
        assert_eq!(bits(&run(1)), bits(&run(2)), "{:?}", recipe.optimizer);
    }
}

/// The held-out validation images of a run of `recipe` on `train`.
fn held_out(train: &Split, recipe: &Recipe) -> Split {
    let (_, held) = trainer::data::split::stratified_holdout(&train.labels, recipe.val_split, recipe.seed);
    train.select(&held)
}

/// The kept weights are those of the epoch reported as kept: their accuracy on the held-out
/// images is that epoch's.
fn assert_kept_weights(t: &Trained, train: &Split) {
    let kept = t.best_epoch.expect("a validation split chooses an epoch");
    let accuracy = train::evaluate(&t.model, &held_out(train, &t.recipe), &mut Workspace::default()).accuracy;
    assert_eq!(accuracy, t.history[kept - 1].val_accuracy, "the weights of epoch {kept}");
}

#[test]
fn clearly_better_needs_more_than_chance() {
    let labels = [0u8; 100];
    // Predictions right on the first `right` images.
    let right = |n: usize| (0..100).map(|i| u8::from(i >= n)).collect::<Vec<u8>>();
    let clearly = |a: usize, b: usize| keep::clearly_better(&right(a), &right(b), &labels);
    // 5 images only the first gets right: 5 > 2·sqrt(5) = 4.47. 4 of them: 4 = 2·sqrt(4), not more.
    assert!(clearly(55, 50) && !clearly(54, 50));
    assert!(!clearly(50, 55) && !clearly(50, 50), "worse or equal is never clearly better");
    // The same net difference counts for less where the two disagree on more images.
    let wrong_at = |at: &[usize]| (0..100).map(|i| u8::from(at.contains(&i))).collect::<Vec<u8>>();
    let (a, b) = (wrong_at(&(0..10).collect::<Vec<_>>()), wrong_at(&(10..26).collect::<Vec<_>>()));
    assert!(!keep::clearly_better(&a, &b, &labels), "16 against 10: 6 < 2·sqrt(26) = 10.2");
    let b = wrong_at(&(10..32).collect::<Vec<_>>());
    assert!(keep::clearly_better(&a, &b, &labels), "22 against 10: 12 > 2·sqrt(32) = 11.3");
}

#[test]
fn the_modern_recipe_learns_and_keeps_the_last_epoch_unless_an_earlier_one_is_clearly_better() {
    let (tr, te) = (synthetic(3000, 3, 0.3), synthetic(500, 4, 0.0));
    // (Without batch norm: on this data it is the network whose top epoch is not the last.)
    let network = Network { batch_norm: false, ..modern(6).network };
    let recipe = Recipe { augment: Augment::default(), network, ..modern(6) };
    let t = train::fit(&recipe, &data(&tr, &te), &mut Quiet).unwrap();
    assert!(t.test.accuracy > 0.9, "accuracy {}", t.test.accuracy);
    let top = t.top_epoch.expect("the best epoch on validation");
    let best = t.history.iter().map(|r| r.val_accuracy).fold(0.0, f64::max);
    assert_eq!(t.history[top - 1].val_accuracy, best, "the top epoch is the best on validation");
    // Every epoch gets the same held-out images right but for a few: none is clearly better
    // than the last, which is kept.
    assert!(top < 6, "the top epoch {top} is an earlier one");
    assert_eq!(t.best_epoch, Some(6));
    assert_kept_weights(&t, &tr);

    // Half the labels random and a large constant step: the network learns the noise and
    // validation accuracy falls far below its best, which is then kept.
    let (tr, te) = (synthetic(1500, 5, 0.5), synthetic(200, 6, 0.0));
    let recipe =
        Recipe { epochs: 30, lr: 0.01, schedule: Schedule::Constant, augment: Augment::default(), ..modern(30) };
    let t = train::fit(&recipe, &data(&tr, &te), &mut Quiet).unwrap();
    let (top, last) = (t.top_epoch.unwrap(), &t.history[29]);
    assert!(t.history[top - 1].val_accuracy > last.val_accuracy + 0.05, "{:?}", t.history);
    assert_eq!(t.best_epoch, Some(top), "the clearly better epoch is kept");
    assert_kept_weights(&t, &tr);
}

#[test]
fn early_stopping_stops_after_patience_epochs_without_improvement() {
    let (tr, te) = (synthetic(1500, 5, 0.5), synthetic(200, 6, 0.0));
    // A constant, large step on noisy labels: validation stops improving early.
    let recipe = Recipe {
        epochs: 40,
        lr: 0.01,
        schedule: Schedule::Constant,
        early_stopping: Some(2),
        augment: Augment::default(),
        ..modern(40)
    };
    let t = train::fit(&recipe, &data(&tr, &te), &mut Quiet).unwrap();
    let best = t.top_epoch.unwrap();
    assert!(t.history.len() < 40, "stopped early: {} epochs", t.history.len());
    assert!(t.best_epoch == Some(best) || t.best_epoch == Some(t.history.len()), "the best or the last is kept");
    assert_eq!(t.history.len(), best + 2, "two epochs without a better validation accuracy after epoch {best}");
}

#[test]
fn options_that_do_not_go_together_are_refused() {
    let (tr, te) = (synthetic(200, 1, 0.0), synthetic(50, 2, 0.0));
    let leak = Recipe { val_split: 0, early_stopping: Some(3), ..modern(2) };
    let e = train::fit(&leak, &data(&tr, &te), &mut Quiet).unwrap_err();
    assert!(matches!(e, FitError::Recipe(_)) && e.to_string().contains("--val-split"), "{e}");
    let all = Recipe { val_split: 200, ..modern(2) };
    let e = train::fit(&all, &data(&tr, &te), &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("holds out all 200"), "{e}");
    for bad in [
        Recipe { label_smoothing: 1.0, ..modern(1) },
        Recipe { optimizer: Optimizer::adamw(-1.0), ..modern(1) },
        Recipe { optimizer: Optimizer::Sgd { momentum: 1.0, nesterov: false, weight_decay: 0.0 }, ..modern(1) },
        Recipe { lr: f32::NAN, ..modern(1) },
    ] {
        assert!(matches!(train::fit(&bad, &data(&tr, &te), &mut Quiet), Err(FitError::Recipe(_))), "{bad:?}");
    }
}

/// Panics at `epoch`, step `step`: a crash in the middle of an epoch.
struct CrashAt {
    epoch: usize,
    step: usize,
    now: usize,
}

impl Observer for CrashAt {
    fn epoch_start(&mut self, epoch: usize, _epochs: usize, _steps: usize) {
        self.now = epoch;
    }
    fn step(&mut self, step: usize, _loss: f64, _accuracy: f64) {
        if self.now == self.epoch && step == self.step {
            panic!("simulated crash");
        }
    }
}

#[derive(Default)]
struct Resumed(Vec<(usize, bool)>, Vec<EpochRecord>);
impl Observer for Resumed {
    fn resumed(&mut self, epochs: usize, finished: bool) {
        self.0.push((epochs, finished));
    }
    fn epoch_end(&mut self, record: &EpochRecord) {
        self.1.push(*record);
    }
}

#[test]
fn a_run_continued_from_its_checkpoint_after_a_crash_ends_with_the_same_bits() {
    let (tr, te) = (synthetic(1200, 7, 0.1), synthetic(200, 8, 0.0));
    let dir = tempfile::tempdir().unwrap();
    let recipe = modern(4);
    let whole = train::fit_with(&recipe, &data(&tr, &te), &mut Quiet, Some(&dir.path().join("whole.bin"))).unwrap();
    assert_eq!(
        bits(&whole),
        bits(&train::fit(&recipe, &data(&tr, &te), &mut Quiet).unwrap()),
        "checkpoints change nothing"
    );

    let path = dir.path().join("crashed.bin");
    let crash = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut observer = CrashAt { epoch: 3, step: 7, now: 0 };
        train::fit_with(&recipe, &data(&tr, &te), &mut observer, Some(&path))
    }));
    assert!(crash.is_err(), "the run crashed");
    let saved = trainer::checkpoint::read(&path).unwrap().expect("a checkpoint was left");
    assert_eq!((saved.state.epoch, saved.state.finished), (2, false));

    let mut observer = Resumed::default();
    let resumed = train::fit_with(&recipe, &data(&tr, &te), &mut observer, Some(&path)).unwrap();
    assert_eq!(observer.0, [(2, false)]);
    assert_eq!(observer.1.iter().map(|r| r.epoch).collect::<Vec<_>>(), [3, 4], "only the epochs left ran");
    assert_eq!(bits(&resumed), bits(&whole));

    // A finished run's checkpoint gives its model again without training.
    let mut observer = Resumed::default();
    let again = train::fit_with(&recipe, &data(&tr, &te), &mut observer, Some(&path)).unwrap();
    assert_eq!((observer.0, observer.1.len()), (vec![(4, true)], 0));
    assert_eq!(bits(&again), bits(&whole));

    // A checkpoint made to pass its checksum with an order that repeats an image, or with
    // more epochs than the recipe has, is refused rather than trusted.
    let good = trainer::checkpoint::read(&path).unwrap().unwrap();
    let encode = |c: &Checkpoint| trainer::checkpoint::encode(&c.recipe, c.train_images, &c.state);
    let with = |change: &dyn Fn(&mut TrainState)| {
        let mut c = good.clone();
        change(&mut c.state);
        c
    };
    for (what, bad) in [
        ("permutation", with(&|s| s.order[0] = s.order[1])),
        ("epoch counts", with(&|s| s.epoch = 9)),
        ("validation predictions", with(&|s| s.selection.best_predictions.pop().map(drop).unwrap())),
    ] {
        std::fs::write(&path, encode(&bad)).unwrap();
        let e = train::fit_with(&recipe, &data(&tr, &te), &mut Quiet, Some(&path)).unwrap_err();
        assert!(e.to_string().contains(what) && e.to_string().contains("damaged"), "{e}");
    }
    // One whose model lost its norms (or their optimizer state) is of another network.
    for bad in [with(&|s| s.model.norms.clear()), with(&|s| s.opt.norms.clear())] {
        std::fs::write(&path, encode(&bad)).unwrap();
        let e = train::fit_with(&recipe, &data(&tr, &te), &mut Quiet, Some(&path)).unwrap_err();
        assert!(e.to_string().contains("another network"), "{e}");
    }
    std::fs::write(&path, encode(&good)).unwrap();

    // Another recipe does not continue from it, and a damaged checkpoint is refused.
    let e =
        train::fit_with(&Recipe { seed: 1, ..recipe.clone() }, &data(&tr, &te), &mut Quiet, Some(&path)).unwrap_err();
    assert!(matches!(e, FitError::Checkpoint(_)) && e.to_string().contains("another recipe"), "{e}");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let e = train::fit_with(&recipe, &data(&tr, &te), &mut Quiet, Some(&path)).unwrap_err();
    assert!(e.to_string().contains("damaged") && e.to_string().contains("remove it"), "{e}");
    std::fs::write(&path, &bytes[..100]).unwrap();
    let e = train::fit_with(&recipe, &data(&tr, &te), &mut Quiet, Some(&path)).unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
    // One of an older format is named as such, not as damaged.
    let mut older = encode(&good);
    older[8..12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&path, &older).unwrap();
    let e = train::fit_with(&recipe, &data(&tr, &te), &mut Quiet, Some(&path)).unwrap_err();
    assert!(e.to_string().contains("another version of the trainer (checkpoint format 1"), "{e}");
}

#[test]
fn recipes_round_trip_through_json_and_old_summaries_still_read() {
    let r = modern(5);
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Recipe>(&json).unwrap(), r);
    for needle in ["\"adamw\"", "\"cosine\"", "\"label_smoothing\":0.1", "\"val_split\":300", "\"shift\":2"] {
        assert!(json.contains(needle), "{needle} in {json}");
    }
    // A recipe written before optimizers existed is the study's SGD.
    let old = r#"{"name":"relu","network":{"hidden":[512,256],"activation":"relu","dropout":0.0},"epochs":15,"lr":0.01,"batch_size":500,"seed":42}"#;
    let read: Recipe = serde_json::from_str(old).unwrap();
    assert_eq!(read, Recipe::seed(trainer::recipe::ModelKind::Relu));
    assert!(read.is_study());
}
