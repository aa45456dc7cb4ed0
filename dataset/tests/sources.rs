//! Data of every source the tool reads: an IDX folder of another size and other classes,
//! CSV tables (Debian's scikit-learn ships real ones), NumPy archives written by NumPy
//! (`tests/fixtures/make.py`), and the errors that say what to fix.

use std::io::Write;
use std::path::{Path, PathBuf};

use dataset::{DataError, DataOptions, DataSpec, Source};

/// Where Debian's `python3-sklearn` keeps its CSV datasets.
const SKLEARN: &str = "/usr/lib/python3/dist-packages/sklearn/datasets/data";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn csv(train: &Path, test: Option<&Path>, label: Option<&str>) -> DataSpec {
    let source = Source::Csv { train: train.into(), test: test.map(Into::into), label_column: label.map(Into::into) };
    DataSpec { source, test_split: if test.is_some() { None } else { Some(0.25) }, seed: 1 }
}

/// A scikit-learn CSV as a user's table: its count header replaced by column names.
fn sklearn_table(name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(SKLEARN).join(name))
        .unwrap_or_else(|e| panic!("{SKLEARN}/{name}: {e} (apt-get install python3-sklearn)"));
    let mut lines = text.lines();
    let counts: Vec<&str> = lines.next().unwrap().split(',').collect();
    let features: usize = counts[1].parse().unwrap();
    let mut out = (0..features).map(|i| format!("f{i},")).collect::<String>() + "class\n";
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    write(dir, name, &out)
}

#[test]
fn iris_and_wine_read_as_tables_with_a_stratified_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let iris = csv(&sklearn_table("iris.csv", dir.path()), None, None).open().unwrap();
    assert_eq!((iris.schema.inputs, iris.schema.class_names.clone()), (4, vec!["0".into(), "1".into(), "2".into()]));
    assert!(!iris.schema.bytes && iris.schema.image.is_none());
    assert_eq!((iris.train.len(), iris.test.len()), (112, 38), "a quarter of 150 held out");
    // Stratified: each class of 50 gives 12 or 13.
    for c in 0..3 {
        let n = iris.test.labels.iter().filter(|&&l| l == c).count();
        assert!((12..=13).contains(&n), "class {c}: {n}");
    }
    assert_eq!(iris.train.values.len(), 112 * 4);
    assert!(iris.train.pixels.is_empty());
    // The same seed gives the same split; another seed another.
    let again = csv(&dir.path().join("iris.csv"), None, None).open().unwrap();
    assert_eq!(again.test.values, iris.test.values);
    let other = DataSpec { seed: 2, ..csv(&dir.path().join("iris.csv"), None, None) }.open().unwrap();
    assert_ne!(other.test.values, iris.test.values);

    let wine = csv(&sklearn_table("wine_data.csv", dir.path()), None, Some("class")).open().unwrap();
    assert_eq!((wine.schema.inputs, wine.schema.classes()), (13, 3));
    assert_eq!(wine.train.len() + wine.test.len(), 178);
}

#[test]
fn string_labels_are_class_names_in_sorted_order_and_the_test_file_is_read_alike() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", "kind,x,y\nwalk,1,2\nrun,3,4\nidle,5,6\nrun,7,8\n");
    let test = write(dir.path(), "test.csv", "kind,x,y\nidle,0.5,1e3\nwalk,-2,0\n");
    let data = csv(&train, Some(&test), Some("kind")).open().unwrap();
    assert_eq!(data.schema.class_names, ["idle", "run", "walk"]);
    assert_eq!(data.train.labels, [2, 1, 0, 1]);
    assert_eq!(data.train.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    assert_eq!((data.test.labels.clone(), data.test.values.clone()), (vec![0, 2], vec![0.5, 1000.0, -2.0, 0.0]));
    // By index too (0 is the first column), and integer labels in numeric order.
    let numbers = write(dir.path(), "n.csv", "a,label,b\n1,10,2\n3,2,4\n5,10,6\n");
    let data = csv(&numbers, Some(&numbers), Some("1")).open().unwrap();
    assert_eq!(
        (data.schema.class_names.clone(), data.train.labels.clone()),
        (vec!["2".into(), "10".into()], vec![1, 0, 1])
    );
}

/// The error `spec` gives, as text.
fn error(spec: &DataSpec) -> String {
    match spec.open() {
        Ok(_) => panic!("{spec:?} was read"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_tables_name_the_file_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("empty.csv", "a,b,label\n1,,0\n3,4,1\n", "empty.csv, row 2: column \"b\" is empty"),
        ("text.csv", "a,b,label\n1,2,0\n3,four,1\n", "row 3: column \"b\" holds \"four\""),
        ("nan.csv", "a,b,label\n1,NaN,0\n3,4,1\n", "row 2: column \"b\" holds \"NaN\", not a finite number"),
        ("inf.csv", "a,b,label\n1,2,0\n3,inf,1\n", "row 3: column \"b\" holds \"inf\""),
        ("ragged.csv", "a,b,label\n1,2,0\n3,4\n", "row 3: 2 fields, the header has 3"),
        ("one.csv", "a,b,label\n1,2,x\n3,4,x\n", "at least two classes"),
        ("nolabel.csv", "a,b,label\n1,2,\n3,4,1\n", "row 2: the label (column \"label\") is empty"),
        ("header.csv", "a,b,label\n", "no rows"),
        ("narrow.csv", "label\n1\n", "a table needs features and a label"),
    ];
    for (name, text, needle) in cases {
        let e = error(&csv(&write(dir.path(), name, text), None, None));
        assert!(e.contains(needle), "{name}: {e}");
    }
    let good = write(dir.path(), "good.csv", "a,b,label\n1,2,0\n3,4,1\n5,6,0\n");
    // Tab-separated values by their name.
    let tsv = csv(&write(dir.path(), "good.tsv", "a\tb\tlabel\n1\t2\t0\n3\t4\t1\n5\t6\t0\n"), Some(&good), None);
    assert_eq!(tsv.open().unwrap().train.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let e = error(&csv(&good, None, Some("target")));
    assert!(e.contains("no label column \"target\"") && e.contains("\"a\", \"b\", \"label\""), "{e}");
    let other = write(dir.path(), "other.csv", "a,c,label\n1,2,0\n");
    assert!(error(&csv(&good, Some(&other), None)).contains("are not the training file's"));
    let unseen = write(dir.path(), "unseen.csv", "a,b,label\n1,2,5\n");
    assert!(error(&csv(&good, Some(&unseen), None)).contains("label \"5\" is not a class of the training file"));
    let many: String = "a,label\n".to_string() + &(0..300).map(|i| format!("{i},{i}\n")).collect::<String>();
    assert!(error(&csv(&write(dir.path(), "many.csv", &many), None, None)).contains("at most 256 classes"));
}

#[test]
fn an_idx_folder_of_other_images_and_classes_reads_with_labels_as_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let idx = |magic: u32, dims: &[u32], body: &[u8]| {
        let mut v: Vec<u8> = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    };
    // 16x16 images, labels 1 to 5 (as EMNIST's letters start at 1), EMNIST-style prefixes.
    let images = |n: u32| idx(0x803, &[n, 16, 16], &(0..n * 256).map(|i| (i * 7 % 256) as u8).collect::<Vec<_>>());
    let labels = |l: &[u8]| idx(0x801, &[l.len() as u32], l);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&images(10)).unwrap();
    std::fs::write(dir.path().join("toy-train-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.path().join("toy-train-labels-idx1-ubyte"), labels(&[1, 2, 3, 4, 5, 1, 2, 3, 4, 5])).unwrap();
    std::fs::write(dir.path().join("toy-t10k-images-idx3-ubyte"), images(3)).unwrap();
    std::fs::write(dir.path().join("toy-t10k-labels-idx1-ubyte"), labels(&[5, 1, 3])).unwrap();
    let spec = DataSpec::from_options(&DataOptions { data: dir.path().to_str(), ..DataOptions::default() }, 0).unwrap();
    assert_eq!(spec.source, Source::Idx { dir: dir.path().into() });
    let data = spec.open().unwrap();
    assert_eq!((data.schema.inputs, data.schema.image, data.schema.classes()), (256, Some([16, 16]), 5));
    assert_eq!(data.schema.class_names, ["1", "2", "3", "4", "5"]);
    assert_eq!(data.test.labels, [4, 0, 2]);
    assert!(data.schema.bytes && data.train.pixels.len() == 10 * 256);
    // A test set of another image size is refused.
    std::fs::write(dir.path().join("toy-t10k-images-idx3-ubyte"), idx(0x803, &[3, 8, 8], &[0; 192])).unwrap();
    assert!(matches!(spec.open(), Err(DataError::WrongImageSize { rows: 8, expected: Some([16, 16]), .. })));
    // A header that claims 10 GB (40 million images) over 1 KB of pixels.
    std::fs::write(dir.path().join("toy-t10k-images-idx3-ubyte"), idx(0x803, &[40_000_000, 16, 16], &[0; 1024]))
        .unwrap();
    let e = error(&spec);
    assert!(e.contains("the header promises 10240000016 bytes, the file has 1040"), "{e}");
    std::fs::remove_file(dir.path().join("toy-t10k-images-idx3-ubyte")).unwrap();
    assert!(error(&spec).contains("no file named *t10k-images-idx3-ubyte"));
}

#[test]
fn fashion_mnist_in_a_folder_is_known_by_its_checksums() {
    let dir = dataset::locate(None).unwrap_or_else(|e| panic!("the real dataset is needed:\n{e}"));
    let data = DataSpec { source: Source::Idx { dir }, test_split: None, seed: 0 }.open().unwrap();
    assert!(data.schema.is_fashion_mnist(), "{:?}", data.schema);
    assert_eq!(data.schema.class_names[9], "Ankle boot");
}

#[test]
fn npz_archives_written_by_numpy_read_as_tables_or_images() {
    let table =
        DataSpec { source: Source::Npz { path: fixture("table.npz") }, test_split: None, seed: 0 }.open().unwrap();
    assert_eq!((table.schema.inputs, table.schema.class_names.clone()), (3, vec!["3".into(), "7".into()]));
    assert!(!table.schema.bytes);
    assert_eq!(table.train.labels, [0, 1, 0, 1, 1, 0]);
    assert_eq!(table.train.values[..3], [1.5, -2.0, 0.25]);
    assert_eq!(
        (table.test.values.clone(), table.test.labels.clone()),
        (vec![1.0, 1.0, 1.0, 2.5, -1.5, 0.5], vec![1, 0])
    );

    let images =
        DataSpec { source: Source::Npz { path: fixture("images.npz") }, test_split: None, seed: 0 }.open().unwrap();
    assert_eq!((images.schema.inputs, images.schema.image, images.schema.classes()), (20, Some([4, 5]), 3));
    assert!(images.schema.bytes);
    // The first image's first bytes, as NumPy's generator (seed 1) drew them.
    assert_eq!(images.train.pixels[..8], [255, 228, 34, 121, 243, 189, 6, 131]);
    assert_eq!(images.train.values[0], 1.0);
    assert_eq!(images.test.len(), 3);

    let missing = DataSpec { source: Source::Npz { path: fixture("incomplete.npz") }, test_split: None, seed: 0 };
    assert!(error(&missing).contains("no array y_test"), "{}", error(&missing));
    // A header that claims 80 GB is refused before anything is allocated for it.
    let claims = DataSpec { source: Source::Npz { path: fixture("claims.npz") }, test_split: None, seed: 0 };
    assert!(error(&claims).contains("shape [100000, 100000] holds more than"), "{}", error(&claims));
    let dir = tempfile::tempdir().unwrap();
    let not_zip = write(dir.path(), "bad.npz", "not a zip file");
    let bad = DataSpec { source: Source::Npz { path: not_zip }, test_split: None, seed: 0 };
    assert!(error(&bad).contains("not a NumPy .npz archive"), "{}", error(&bad));
}

#[test]
fn the_options_name_a_source_or_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(dir.path(), "t.csv", "a,b\n1,0\n2,1\n");
    let table = table.to_str().unwrap();
    let spec = |options: DataOptions<'_>| DataSpec::from_options(&options, 7).map_err(|e| e.to_string());
    let default = spec(DataOptions::default()).unwrap();
    assert!(default.is_fashion_mnist() && default.test_split.is_none());
    let csv = spec(DataOptions { data: Some(table), ..DataOptions::default() }).unwrap();
    assert_eq!((csv.test_split, csv.seed), (Some(0.2), 7), "a table without a test file holds a fifth out");
    let cases: [(DataOptions<'_>, &str); 6] = [
        (DataOptions { data: Some("/nonexistent.csv.zip"), ..DataOptions::default() }, "no such file or folder"),
        (
            DataOptions { test_split: Some(0.3), ..DataOptions::default() },
            "--test-split is for data without a test set",
        ),
        (
            DataOptions { data: Some(table), test_split: Some(1.5), ..DataOptions::default() },
            "a fraction between 0 and 1",
        ),
        (DataOptions { label_column: Some("b"), ..DataOptions::default() }, "--label-column is for a CSV source"),
        (
            DataOptions { test_data: Some(Path::new("x.csv")), ..DataOptions::default() },
            "--test-data is the test table",
        ),
        (
            DataOptions { data: Some(table), data_dir: Some(Path::new("/tmp")), ..DataOptions::default() },
            "--data-dir says",
        ),
    ];
    for (options, needle) in cases {
        let e = spec(options.clone()).unwrap_err();
        assert!(e.contains(needle), "{options:?}: {e}");
    }
}
