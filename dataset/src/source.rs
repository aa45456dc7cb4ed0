//! Where a run's data comes from, as the options name it and as the run records it, so
//! that `trainer fit --resume` and `firmware-sim` read the same examples.

use std::path::{Path, PathBuf};

use crate::data::{Dataset, Schema, Split};
use crate::error::DataError;
use crate::split::stratified_holdout;
use crate::table::LabelColumn;
use crate::{fashion, idx, npz, table};

/// A source of examples.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// Fashion-MNIST, from `dir` or else the lookup order ([`fashion::candidates`]), its
    /// files' checksums verified.
    FashionMnist {
        /// The folder given with `--data-dir`, if any.
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    /// A folder of the four IDX files (MNIST's names): images of any size, any classes.
    Idx {
        /// The folder.
        dir: PathBuf,
    },
    /// A CSV table, and optionally a second one to test on.
    Csv {
        /// The training file.
        train: PathBuf,
        /// The test file (`--test-data`).
        #[serde(default)]
        test: Option<PathBuf>,
        /// `--label-column`: a header, or a 0-based index (the last column without one).
        #[serde(default)]
        label_column: Option<String>,
    },
    /// A NumPy `.npz` archive of `x_train`, `y_train`, `x_test`, `y_test`.
    Npz {
        /// The archive.
        path: PathBuf,
    },
}

/// The data of a run: a source, and for a source without a test set the share of its
/// examples held out as one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataSpec {
    /// Where the examples come from.
    pub source: Source,
    /// The fraction of the training examples held out as the test set (stratified by class,
    /// chosen by `seed`), for a source without a test set.
    #[serde(default)]
    pub test_split: Option<f64>,
    /// The seed of the test split.
    #[serde(default)]
    pub seed: u64,
}

/// The test split a source without a test set gets unless told otherwise.
pub const DEFAULT_TEST_SPLIT: f64 = 0.2;

/// The options every command that reads data takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataOptions<'a> {
    /// `--data SOURCE`: `fashion-mnist`, a folder of IDX files, a `.csv` (or `.csv.gz`)
    /// file, or a `.npz` archive.
    pub data: Option<&'a str>,
    /// `--test-data FILE`: the test table of a CSV source.
    pub test_data: Option<&'a Path>,
    /// `--label-column NAME|INDEX` of a CSV source.
    pub label_column: Option<&'a str>,
    /// `--test-split FRACTION` for a source without a test set.
    pub test_split: Option<f64>,
    /// `--data-dir DIR`: where Fashion-MNIST is.
    pub data_dir: Option<&'a Path>,
}

impl DataSpec {
    /// The data the options name; `seed` chooses a test split's examples. Only the names
    /// are checked here (the files are read by [`DataSpec::open`]).
    pub fn from_options(options: &DataOptions<'_>, seed: u64) -> Result<DataSpec, DataError> {
        let bad = |why: String| DataError::Options { why };
        // A run records its data as text (run.json), so that --resume and firmware-sim find it.
        for (option, path) in [("--data-dir", options.data_dir), ("--test-data", options.test_data)] {
            if let Some(path) = path.filter(|p| p.to_str().is_none()) {
                return Err(bad(format!(
                    "{option} {}: the path is not UTF-8, and a run records its data as text; rename it or link to it",
                    path.display()
                )));
            }
        }
        let source = match options.data {
            None => Source::FashionMnist { dir: options.data_dir.map(Path::to_path_buf) },
            Some(name) if name.eq_ignore_ascii_case("fashion-mnist") => {
                Source::FashionMnist { dir: options.data_dir.map(Path::to_path_buf) }
            }
            Some(name) => {
                // Absolute, so that a run's record finds it from any folder.
                let path = std::path::absolute(name).unwrap_or_else(|_| PathBuf::from(name));
                if options.data_dir.is_some() {
                    return Err(bad(
                        "--data-dir says where Fashion-MNIST is; with --data PATH give the path alone".into()
                    ));
                }
                if path.is_dir() {
                    Source::Idx { dir: path }
                } else if name.ends_with(".npz") {
                    Source::Npz { path }
                } else if [".csv", ".csv.gz", ".tsv", ".tsv.gz"].iter().any(|e| name.to_lowercase().ends_with(e)) {
                    Source::Csv {
                        train: path,
                        test: options.test_data.map(|t| std::path::absolute(t).unwrap_or_else(|_| t.to_path_buf())),
                        label_column: options.label_column.map(str::to_string),
                    }
                } else if !path.exists() {
                    return Err(bad(format!(
                        "--data {name}: no such file or folder (give fashion-mnist, a folder of IDX files, a .csv file or a .npz archive)"
                    )));
                } else {
                    return Err(bad(format!(
                        "--data {name}: not a folder, a .csv (or .csv.gz) file or a .npz archive"
                    )));
                }
            }
        };
        let csv = matches!(source, Source::Csv { .. });
        if !csv && options.test_data.is_some() {
            return Err(bad("--test-data is the test table of a CSV source (--data FILE.csv)".into()));
        }
        if !csv && options.label_column.is_some() {
            return Err(bad("--label-column is for a CSV source (--data FILE.csv)".into()));
        }
        let has_test = !matches!(source, Source::Csv { test: None, .. });
        let test_split = match (has_test, options.test_split) {
            (true, Some(_)) => {
                return Err(bad("--test-split is for data without a test set (a CSV file without --test-data)".into()));
            }
            (true, None) => None,
            (false, Some(f)) if !(f > 0.0 && f < 1.0) => {
                return Err(bad(format!("--test-split must be a fraction between 0 and 1, got {f}")));
            }
            (false, f) => Some(f.unwrap_or(DEFAULT_TEST_SPLIT)),
        };
        Ok(DataSpec { source, test_split, seed })
    }

    /// The Fashion-MNIST source found the usual way.
    pub fn fashion_mnist(dir: Option<&Path>) -> DataSpec {
        DataSpec { source: Source::FashionMnist { dir: dir.map(Path::to_path_buf) }, test_split: None, seed: 0 }
    }

    /// Whether this is Fashion-MNIST by name (with its checksums and lookup order).
    pub fn is_fashion_mnist(&self) -> bool {
        matches!(self.source, Source::FashionMnist { .. })
    }

    /// Reads the examples: both splits and their description.
    pub fn open(&self) -> Result<Dataset, DataError> {
        let dataset = match &self.source {
            Source::FashionMnist { dir } => fashion::load(dir.as_deref())?,
            Source::Idx { dir } => open_idx(dir)?,
            Source::Csv { train, test, label_column } => {
                let label = LabelColumn::from_option(label_column.as_deref());
                let (train_split, test_split, schema) = table::load(train, test.as_deref(), &label)?;
                let origin = match test {
                    Some(t) => format!("{} and {}", train.display(), t.display()),
                    None => train.display().to_string(),
                };
                let test_split = test_split.unwrap_or_else(|| Split::real(Vec::new(), Vec::new(), schema.inputs));
                Dataset { train: train_split, test: test_split, schema, origin }
            }
            Source::Npz { path } => {
                let (train, test, schema) = npz::load(path)?;
                Dataset { train, test, schema, origin: path.display().to_string() }
            }
        };
        match self.test_split {
            Some(fraction) => hold_out_test(dataset, fraction, self.seed),
            None => Ok(dataset),
        }
    }
}

impl DataSpec {
    /// The data of the run whose folder holds `file` (a model of it), from its `run.json`,
    /// if the file is in a run and the run says (runs of earlier versions trained on
    /// Fashion-MNIST and do not).
    pub fn of_run(file: &Path) -> Result<Option<DataSpec>, DataError> {
        Ok(run_record(file)?.and_then(|r| r.data))
    }
}

/// The `--limit` (training examples used) of the run that wrote `file`, if it had one: an
/// export of its model calibrates on the examples the run did.
pub fn limit_of_run(file: &Path) -> Result<Option<u32>, DataError> {
    Ok(run_record(file)?.and_then(|r| r.limit))
}

/// What a run's `run.json` says of its data.
#[derive(serde::Deserialize)]
struct RunRecord {
    #[serde(default)]
    data: Option<DataSpec>,
    #[serde(default)]
    limit: Option<u32>,
}

/// The record of the run that wrote `file`, if `file` is in a run folder.
fn run_record(file: &Path) -> Result<Option<RunRecord>, DataError> {
    let Some(dir) = runio::manifest::run_of(file).or_else(|| run_folder(file)) else { return Ok(None) };
    let path = dir.join(runio::rundir::PLAN);
    let bytes = match runio::fsutil::read_bounded(&path, 16 << 20) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(DataError::Io { path, error }),
    };
    let record =
        serde_json::from_slice(&bytes).map_err(|e| DataError::Options { why: format!("{}: {e}", path.display()) })?;
    Ok(Some(record))
}

/// The run folder above a model's folder (one holding `run.json`), for a run not sealed yet.
fn run_folder(file: &Path) -> Option<PathBuf> {
    let file = std::fs::canonicalize(file).ok()?;
    let dir = file.parent()?;
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .find(|d| d.join(runio::rundir::PLAN).is_file())
        .map(Path::to_path_buf)
}

/// `dataset` with `fraction` of its training examples (stratified, chosen by `seed`) as its
/// test set.
fn hold_out_test(dataset: Dataset, fraction: f64, seed: u64) -> Result<Dataset, DataError> {
    let n = dataset.train.len();
    let held = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1));
    if n < 2 {
        return Err(DataError::Options { why: format!("{} example(s): too few to hold out a test set", n) });
    }
    let (kept, test) = stratified_holdout(&dataset.train.labels, held, seed);
    Ok(Dataset {
        test: dataset.train.select(&test),
        train: dataset.train.select(&kept),
        origin: format!("{} ({:.0}% held out as the test set, seed {seed})", dataset.origin, 100.0 * fraction),
        schema: dataset.schema,
    })
}

/// A folder of IDX files: Fashion-MNIST if the files are its own (by checksum), else
/// classes named by their labels.
fn open_idx(dir: &Path) -> Result<Dataset, DataError> {
    let paths = idx::STANDARD_NAMES.map(|name| idx::find(dir, name));
    let [ti, tl, vi, vl] = paths;
    let (ti, tl, vi, vl) = (ti?, tl?, vi?, vl?);
    let limits = [idx::MAX_IDX_BYTES; 2];
    let (train, shape, [train_images, train_labels]) = idx::read_split(&ti, &tl, limits, None)?;
    let (test, _, [test_images, test_labels]) = idx::read_split(&vi, &vl, limits, Some(shape))?;
    if fashion::is_fashion_mnist(&[train_images, train_labels, test_images, test_labels]) {
        return Ok(Dataset { train, test, schema: fashion::schema(), origin: dir.display().to_string() });
    }
    let mut classes: Vec<u8> = train.labels.clone();
    classes.sort_unstable();
    classes.dedup();
    if classes.len() < 2 {
        let why = format!(
            "every label is {}: a classifier needs at least two classes",
            classes.first().copied().unwrap_or(0)
        );
        return Err(DataError::Classes { path: tl, why });
    }
    // Labels become class indices in order (EMNIST's letters are labelled 1 to 26).
    let mut index = [u8::MAX; 256];
    for (c, &l) in classes.iter().enumerate() {
        index[l as usize] = c as u8;
    }
    let relabel = |split: Split, path: &Path| -> Result<Split, DataError> {
        if let Some((at, &l)) = split.labels.iter().enumerate().find(|&(_, &l)| index[l as usize] == u8::MAX) {
            return Err(DataError::BadLabel { path: path.to_path_buf(), index: at, label: l, classes: classes.len() });
        }
        let labels = split.labels.iter().map(|&l| index[l as usize]).collect();
        Ok(Split { labels, ..split })
    };
    let (train, test) = (relabel(train, &tl)?, relabel(test, &vl)?);
    let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    let schema = Schema {
        name,
        inputs: shape[0] * shape[1],
        class_names: classes.iter().map(|c| c.to_string()).collect(),
        image: Some(shape),
        bytes: true,
    };
    Ok(Dataset { train, test, schema, origin: dir.display().to_string() })
}
