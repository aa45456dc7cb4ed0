//! Recipes from a preset and the options that change it ([`recipe::resolve`]), without the
//! command line: what each option changes, and the errors that name it.

use infer_core::Activation;
use trainer::augment::Augment;
use trainer::optim::{Optimizer, Schedule};
use trainer::recipe::{
    self, DataFacts, ModelKind, Models, OptimizerKind, Overrides, Preset, Recipe, Request, STUDY_TRAIN_IMAGES,
    ScheduleKind,
};

fn request(preset: Preset, models: Models, overrides: Overrides) -> Request {
    Request { preset, models, overrides }
}

fn resolve(preset: Preset, models: Models, overrides: Overrides) -> Result<Vec<Recipe>, String> {
    recipe::resolve(&request(preset, models, overrides), &DataFacts::STUDY).map_err(|e| e.to_string())
}

/// Fashion-MNIST's first `n` images (`--limit n`).
fn limited(n: usize) -> DataFacts {
    DataFacts { examples: n, images: true }
}

fn one(preset: Preset, models: Models, overrides: Overrides) -> Recipe {
    let mut recipes = resolve(preset, models, overrides).unwrap();
    assert_eq!(recipes.len(), 1);
    recipes.remove(0)
}

#[test]
fn the_study_without_options_is_its_own_recipe() {
    let all = resolve(Preset::Seed, Models::Study(ModelKind::ALL.to_vec()), Overrides::default()).unwrap();
    assert_eq!(all, ModelKind::ALL.map(Recipe::seed).to_vec());
    assert!(all.iter().all(Recipe::is_study));
    let sigmoid = &all[0];
    assert_eq!((sigmoid.epochs, sigmoid.lr, sigmoid.batch_size, sigmoid.seed), (20, 0.01, 500, 42));
}

#[test]
fn the_best_preset_alone_trains_its_network_with_a_warm_up_of_one_epoch() {
    let r = one(Preset::Best, Models::Preset, Overrides::default());
    assert_eq!(r.name, "best");
    assert_eq!((r.network.hidden.as_slice(), r.network.dropout, r.network.batch_norm), (&[512, 256][..], 0.2, true));
    assert_eq!(r.val_split, 2_000);
    // 58,000 images in steps of 256.
    assert_eq!(r.schedule, Schedule::Cosine { warmup: (STUDY_TRAIN_IMAGES - 2_000).div_ceil(256) });
    assert_eq!(r.optimizer, Optimizer::adamw(1e-4));
    assert_eq!(r.augment, Augment { shift: 0, flip: true });
    assert!(!r.is_study());
}

#[test]
fn a_limit_scales_the_held_out_split_and_the_warm_up() {
    let r = recipe::resolve(&request(Preset::Best, Models::Preset, Overrides::default()), &limited(3_000))
        .unwrap()
        .remove(0);
    assert_eq!(r.val_split, 100, "a thirtieth of the limited set");
    // Batches of 128 (the power of two under a twentieth of 2,900) and at least 2,000 steps:
    // 23 an epoch, 87 epochs.
    assert_eq!((r.batch_size, r.epochs), (128, 87));
    assert_eq!(r.schedule, Schedule::Cosine { warmup: 2_900usize.div_ceil(128) });
    // An explicit split, batch and epochs are taken as they are.
    let explicit = Overrides { val_split: Some(500), batch_size: Some(256), epochs: Some(3), ..Overrides::default() };
    let r = recipe::resolve(&request(Preset::Best, Models::Preset, explicit), &limited(3_000)).unwrap().remove(0);
    assert_eq!((r.val_split, r.batch_size, r.epochs), (500, 256, 3));
    assert_eq!(r.schedule, Schedule::Cosine { warmup: 2_500usize.div_ceil(256) });
}

#[test]
fn networks_of_ones_own_are_named_for_their_shape_and_recipe() {
    let hidden = || Models::Hidden(vec![16]);
    assert_eq!(one(Preset::Seed, hidden(), Overrides::default()).name, "relu-16");
    let bn = Overrides { batch_norm: Some(true), ..Overrides::default() };
    let r = one(Preset::Seed, hidden(), bn);
    assert_eq!((r.name.as_str(), r.network.batch_norm, r.epochs), ("relu-16-bn", true, 15));
    let sigmoid = Overrides { activation: Some(Activation::Sigmoid), dropout: Some(0.2), ..Overrides::default() };
    assert_eq!(one(Preset::Seed, hidden(), sigmoid).name, "sigmoid-16-dropout0.2");
    let best =
        one(Preset::Best, Models::Hidden(vec![128, 64]), Overrides { batch_norm: Some(false), ..Overrides::default() });
    assert_eq!((best.name.as_str(), best.network.batch_norm), ("relu-128-64-best", false));
    let study = resolve(Preset::Best, Models::Study(vec![ModelKind::Dropout]), Overrides::default()).unwrap();
    assert_eq!((study[0].name.as_str(), study[0].network.dropout), ("dropout-best", 0.5));
}

#[test]
fn options_change_only_their_part_of_the_preset() {
    let o = Overrides {
        epochs: Some(3),
        lr: Some(0.05),
        batch_size: Some(64),
        seed: Some(7),
        label_smoothing: Some(0.2),
        shift: Some(2),
        flip: Some(false),
        early_stopping: Some(4),
        ..Overrides::default()
    };
    let r = one(Preset::Best, Models::Preset, o);
    let base = one(Preset::Best, Models::Preset, Overrides::default());
    let expected = Recipe {
        epochs: 3,
        lr: 0.05,
        batch_size: 64,
        seed: 7,
        label_smoothing: 0.2,
        augment: Augment { shift: 2, flip: false },
        early_stopping: Some(4),
        schedule: Schedule::Cosine { warmup: (STUDY_TRAIN_IMAGES - 2_000).div_ceil(64) },
        ..base
    };
    assert_eq!(r, expected);
}

#[test]
fn another_optimizer_keeps_the_presets_weight_decay_unless_told() {
    let sgd =
        Overrides { optimizer: Some(OptimizerKind::Sgd), momentum: Some(0.9), nesterov: true, ..Overrides::default() };
    let r = one(Preset::Best, Models::Preset, sgd);
    assert_eq!(r.optimizer, Optimizer::Sgd { momentum: 0.9, nesterov: true, weight_decay: 1e-4 });
    let adam = Overrides { optimizer: Some(OptimizerKind::Adam), weight_decay: Some(0.0), ..Overrides::default() };
    assert_eq!(one(Preset::Best, Models::Preset, adam).optimizer, Optimizer::adam(0.0));
    let step = Overrides { schedule: Some(ScheduleKind::Step), step_every: Some(3), ..Overrides::default() };
    assert_eq!(one(Preset::Best, Models::Preset, step).schedule, Schedule::Step { every: 3, gamma: 0.1 });
    let cosine = Overrides { schedule: Some(ScheduleKind::Cosine), ..Overrides::default() };
    let study = Models::Study(vec![ModelKind::Relu]);
    assert_eq!(one(Preset::Seed, study, cosine).schedule, Schedule::Cosine { warmup: 0 }, "no warm-up unless asked");
}

#[test]
fn options_that_do_not_fit_are_refused_by_name() {
    let study = || Models::Study(vec![ModelKind::Relu]);
    let cases: [(Preset, Models, Overrides, &str); 10] = [
        (Preset::Seed, study(), Overrides { dropout: Some(0.1), ..Overrides::default() }, "--activation and --dropout"),
        (Preset::Seed, Models::Preset, Overrides::default(), "say what to train"),
        (Preset::Seed, Models::Hidden(vec![8]), Overrides { dropout: Some(1.0), ..Overrides::default() }, "--dropout"),
        (Preset::Seed, Models::Hidden(vec![0]), Overrides::default(), "--hidden"),
        (Preset::Seed, study(), Overrides { lr: Some(-1.0), ..Overrides::default() }, "--lr"),
        (Preset::Best, Models::Preset, Overrides { momentum: Some(0.9), ..Overrides::default() }, "--momentum"),
        (Preset::Seed, study(), Overrides { nesterov: true, ..Overrides::default() }, "--nesterov needs"),
        (Preset::Best, Models::Preset, Overrides { step_every: Some(2), ..Overrides::default() }, "--step-every"),
        (Preset::Seed, study(), Overrides { warmup_epochs: Some(1.0), ..Overrides::default() }, "--warmup-epochs"),
        (Preset::Seed, study(), Overrides { early_stopping: Some(3), ..Overrides::default() }, "--val-split"),
    ];
    for (preset, models, overrides, needle) in cases {
        let e = resolve(preset, models, overrides.clone()).expect_err(needle);
        assert!(e.contains(needle), "{overrides:?}: {e}");
    }
}

#[test]
fn a_table_of_features_gets_no_augmentation_and_a_hold_out_of_its_size() {
    // 500 rows of a table: the best preset's flips are off, its hold-out a thirtieth.
    let table = DataFacts { examples: 500, images: false };
    let r = recipe::resolve(&request(Preset::Best, Models::Hidden(vec![64, 32]), Overrides::default()), &table)
        .unwrap()
        .remove(0);
    assert_eq!((r.augment, r.val_split), (Augment::default(), 16));
    // No batch norm (a table's batches are small), a tenth dropped, batches of 16 and 2,000
    // steps: 31 an epoch of 484 rows, 65 epochs.
    assert_eq!((r.network.batch_norm, r.network.dropout), (false, 0.1));
    assert_eq!(r.name, "relu-64-32-dropout0.1-best");
    assert_eq!((r.batch_size, r.epochs), (16, 65));
    assert_eq!(r.schedule, Schedule::Cosine { warmup: (500usize - 16).div_ceil(16) });
    // What the options say wins.
    let o = Overrides { dropout: Some(0.0), batch_norm: Some(true), ..Overrides::default() };
    let r = recipe::resolve(&request(Preset::Best, Models::Hidden(vec![64, 32]), o), &table).unwrap().remove(0);
    assert_eq!((r.network.batch_norm, r.network.dropout), (true, 0.0));
    // Asked for by name, augmentation of a table is refused.
    for o in
        [Overrides { flip: Some(true), ..Overrides::default() }, Overrides { shift: Some(2), ..Overrides::default() }]
    {
        let e = recipe::resolve(&request(Preset::Seed, Models::Hidden(vec![8]), o), &table).unwrap_err();
        assert!(e.to_string().contains("table of features"), "{e}");
    }
}
