//! A user's own data from the trainer to `firmware-sim`: tables Debian's scikit-learn ships
//! (as CSV files a user would have: column names, class names as labels) and a folder of
//! IDX images of another size with other classes, each trained as `trainer fit` trains
//! (the same `trainer::run::fit`, the best preset's --hidden network), then checked by the
//! `firmware-sim` binary, which finds the run's data in its record. Needs
//! `apt-get install python3-sklearn` for the tables.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use trainer::data::{DataOptions, DataSpec};
use trainer::recipe::{DataFacts, Models, Overrides, Preset, Request};
use trainer::rundir::Plan;

/// Where Debian's `python3-sklearn` keeps its CSV datasets.
const SKLEARN: &str = "/usr/lib/python3/dist-packages/sklearn/datasets/data";

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
}

/// scikit-learn's `name` as a user's tables: its count header (`150,4,setosa,...`) replaced
/// by column names, its labels by the class names the header lists, every `test_every`-th
/// row in `test.csv` (all in `train.csv` when 0). Returns the training and test paths.
fn sklearn_tables(name: &str, dir: &Path, test_every: usize) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(Path::new(SKLEARN).join(name))
        .unwrap_or_else(|e| panic!("{SKLEARN}/{name}: {e} (apt-get install python3-sklearn)"));
    let mut lines = text.lines();
    let counts: Vec<&str> = lines.next().unwrap().split(',').collect();
    let features: usize = counts[1].parse().unwrap();
    let classes = &counts[2..];
    let header = (0..features).map(|i| format!("feature {i},")).collect::<String>() + "kind\n";
    let (mut train, mut test) = (header.clone(), header);
    for (i, line) in lines.enumerate() {
        let (values, label) = line.rsplit_once(',').unwrap();
        let row = format!("{values},{}\n", classes[label.trim().parse::<usize>().unwrap()]);
        if test_every > 0 && i % test_every == 0 { test.push_str(&row) } else { train.push_str(&row) }
    }
    let paths = (dir.join(format!("{name}.train.csv")), dir.join(format!("{name}.test.csv")));
    std::fs::write(&paths.0, train).unwrap();
    std::fs::write(&paths.1, test).unwrap();
    paths
}

struct Quiet;

impl trainer::run::Progress for Quiet {
    fn model(&mut self, _: &str) -> Box<dyn trainer::train::Observer + '_> {
        Box::new(trainer::train::Quiet)
    }
    fn say(&mut self, _: &str) {}
}

/// `trainer fit --data .. --hidden <hidden> [--epochs ..]` into `out`, as the command runs
/// it (default preset for the data: best); the int8 model's path.
fn fit(out: &Path, options: &DataOptions<'_>, hidden: &[usize], epochs: Option<usize>) -> PathBuf {
    let spec = DataSpec::from_options(options, 42).unwrap();
    assert!(!spec.is_fashion_mnist());
    let ds = spec.open().unwrap();
    let overrides = Overrides { epochs, ..Overrides::default() };
    let request = Request { preset: Preset::Best, models: Models::Hidden(hidden.to_vec()), overrides };
    let facts = DataFacts { examples: ds.train.len(), images: ds.schema.image.is_some() };
    let recipes = trainer::recipe::resolve(&request, &facts).unwrap();
    let name = recipes[0].name.clone();
    let plan = Plan { run_id: "test".into(), recipes, limit: None, data_dir: None, data: Some(spec) };
    std::fs::create_dir_all(out).unwrap();
    trainer::rundir::write_plan(out, &plan).unwrap();
    trainer::run::fit(out, &plan, &ds, Instant::now(), &mut Quiet).unwrap();
    out.join(&name).join(format!("{name}.int8.fmlp"))
}

/// `firmware-sim check --model <model> --json` with these extra arguments, its report.
fn check(model: &Path, extra: &[&str]) -> serde_json::Value {
    let run = sim().args(["check", "--json", "--model"]).arg(model).args(extra).output().unwrap();
    assert!(run.status.success(), "firmware-sim check failed:\n{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_slice(&run.stdout).unwrap()
}

/// The summary's record of the run's only model.
fn summary(run: &Path) -> serde_json::Value {
    let text = std::fs::read(run.join("summary.json")).unwrap();
    serde_json::from_slice::<serde_json::Value>(&text).unwrap()["models"][0].clone()
}

#[test]
fn iris_from_two_csv_files_trains_exports_and_agrees_with_infer_core() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = sklearn_tables("iris.csv", dir.path(), 4);
    let out = dir.path().join("run");
    let data = train.to_str().unwrap();
    let options = DataOptions { data: Some(data), test_data: Some(&test), ..DataOptions::default() };
    let model = fit(&out, &options, &[64, 32], None);

    let s = summary(&out);
    assert_eq!(s["architecture"], "4-64-32-3");
    assert!(s["test_accuracy"].as_f64().unwrap() >= 0.9, "{s}");
    // The run's record says where its test rows are: no data options needed.
    let report = check(&model, &[]);
    assert_eq!((report["agreement"].as_f64(), report["images"].as_u64()), (Some(1.0), Some(38)), "{report}");
    assert_eq!(report["accuracy"], s["int8_test_accuracy"], "{report}");
    // The class names travel in the model file; the text report prints them.
    let text = sim().args(["check", "--model"]).arg(&model).output().unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("virginica"), "{stdout}");
    // The raw features go in: the standardization is inside the model.
    let bytes = std::fs::read(&model).unwrap();
    let m = infer_core::Int8Model::from_bytes(&bytes).unwrap();
    let names: Vec<&str> = m.extras().class_names().collect();
    assert_eq!(names, ["setosa", "versicolor", "virginica"]);
    let mut scratch = infer_core::Int8Scratch::new();
    let mut scores = [0i32; 3];
    // sklearn's first row: 5.1, 3.5, 1.4, 0.2 is a setosa.
    assert_eq!(m.predict_features(&[5.1, 3.5, 1.4, 0.2], &mut scratch, &mut scores).unwrap(), 0);
}

#[test]
fn breast_cancer_with_a_stratified_test_split_trains_and_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let (table, _) = sklearn_tables("breast_cancer.csv", dir.path(), 0);
    let out = dir.path().join("run");
    let data = table.to_str().unwrap();
    let options =
        DataOptions { data: Some(data), label_column: Some("kind"), test_split: Some(0.25), ..DataOptions::default() };
    let model = fit(&out, &options, &[64, 32], None);
    let s = summary(&out);
    assert_eq!(s["architecture"], "30-64-32-2");
    assert!(s["test_accuracy"].as_f64().unwrap() >= 0.93, "{s}");
    let report = check(&model, &[]);
    // A quarter of each class: 53 of 212 malignant, 89 of 357 benign.
    assert_eq!((report["agreement"].as_f64(), report["images"].as_u64()), (Some(1.0), Some(142)), "{report}");
    // The same options on the command line find the same rows.
    let by_options = check(&model, &["--data", data, "--label-column", "kind", "--test-split", "0.25", "--seed", "42"]);
    assert_eq!(by_options["accuracy"], report["accuracy"], "{by_options}");
}

/// An IDX file of `magic` with dimensions `dims` and `body`.
fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

#[test]
fn an_idx_folder_of_16x16_images_in_5_classes_trains_and_agrees() {
    use rand::{RngExt, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("shapes");
    std::fs::create_dir_all(&folder).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    // Class c: a bright vertical bar at column 3c + 1, on noise.
    let mut split = |n: usize| {
        let labels: Vec<u8> = (0..n).map(|i| (i % 5) as u8).collect();
        let mut pixels = vec![0u8; n * 256];
        for (img, &c) in pixels.chunks_exact_mut(256).zip(&labels) {
            for (p, v) in img.iter_mut().enumerate() {
                let bar = p % 16 == 3 * c as usize + 1;
                *v = if bar { rng.random_range(150..=255) } else { rng.random_range(0..=90) };
            }
        }
        (idx(0x803, &[n as u32, 16, 16], &pixels), idx(0x801, &[n as u32], &labels))
    };
    let (train_images, train_labels) = split(1000);
    let (test_images, test_labels) = split(200);
    std::fs::write(folder.join("train-images-idx3-ubyte"), train_images).unwrap();
    std::fs::write(folder.join("train-labels-idx1-ubyte"), train_labels).unwrap();
    std::fs::write(folder.join("t10k-images-idx3-ubyte"), test_images).unwrap();
    std::fs::write(folder.join("t10k-labels-idx1-ubyte"), test_labels).unwrap();

    let out = dir.path().join("run");
    let data = folder.to_str().unwrap();
    let model = fit(&out, &DataOptions { data: Some(data), ..DataOptions::default() }, &[32], Some(3));
    let s = summary(&out);
    assert_eq!(s["architecture"], "256-32-5");
    assert!(s["test_accuracy"].as_f64().unwrap() > 0.9, "{s}");
    assert!(out.join("samples.png").exists(), "images get a sample grid");
    let report = check(&model, &[]);
    assert_eq!((report["agreement"].as_f64(), report["images"].as_u64()), (Some(1.0), Some(200)), "{report}");
    assert_eq!(report["per_class_accuracy"].as_array().unwrap().len(), 5, "{report}");
}

#[test]
fn a_table_model_runs_on_the_cortex_m4_and_the_micro_bit_agreeing_on_every_row_in_rust_and_in_c() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = sklearn_tables("wine_data.csv", dir.path(), 4);
    let out = dir.path().join("run");
    let data = train.to_str().unwrap();
    let options = DataOptions { data: Some(data), test_data: Some(&test), ..DataOptions::default() };
    let model = fit(&out, &options, &[32, 16], None);
    for (board, firmware) in [("mps2-an386", "rust"), ("microbit", "rust"), ("mps2-an386", "c"), ("microbit", "c")] {
        // The data named on the command line, as a user holding the files would.
        let run = sim()
            .args(["qemu", "--json", "--firmware", firmware, "--board", board, "--model"])
            .arg(&model)
            .args(["--data", data, "--test-data"])
            .arg(&test)
            .output()
            .unwrap();
        assert!(run.status.success(), "firmware-sim qemu failed:\n{}", String::from_utf8_lossy(&run.stderr));
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        // Every one of the 45 test rows, raw features in, the same class and scores out.
        assert_eq!(report["images"], 45, "{report}");
        assert_eq!(report["disagreements"], 0, "{report}");
        assert_eq!(report["score_mismatches"], 0, "{report}");
        assert!(report["accuracy"].as_f64().unwrap() > 0.9, "{report}");
    }
}
