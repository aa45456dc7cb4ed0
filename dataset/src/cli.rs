//! The data options of the command-line tools (`trainer`, `firmware-sim`), one definition
//! for both (feature `cli`).

use std::path::PathBuf;

use crate::error::DataError;
use crate::source::{DataOptions, DataSpec};

/// The options every command that reads data takes.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Data")]
pub struct DataArgs {
    /// The data: `fashion-mnist` (the default), a folder of IDX files (MNIST's four file
    /// names, any image size and classes), a CSV file (a header row, numeric features and a
    /// label column), or a NumPy .npz archive of x_train, y_train, x_test, y_test.
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<String>,
    /// A CSV file to test on, with the training file's columns (with --data FILE.csv).
    #[arg(long, value_name = "FILE")]
    pub test_data: Option<PathBuf>,
    /// The label column of a CSV file: its header, or its index from 0 [default: the last].
    /// Integer labels are classes in numeric order; text labels become class names, sorted.
    #[arg(long, value_name = "NAME|INDEX")]
    pub label_column: Option<String>,
    /// For data without a test set (a CSV file without --test-data): the share of its rows
    /// held out to test on, stratified by class and chosen by --seed [default: 0.2].
    #[arg(long, value_name = "FRACTION")]
    pub test_split: Option<f64>,
    /// Folder with the four Fashion-MNIST files (.gz or raw IDX). Without it the tools look in
    /// $FASHION_MNIST_DIR, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist, then the user cache.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// Whether any option names data (not the default Fashion-MNIST lookup).
    pub fn given(&self) -> bool {
        self.data.is_some() || self.test_data.is_some() || self.label_column.is_some() || self.test_split.is_some()
    }

    /// The data these options name; `seed` chooses a test split.
    pub fn spec(&self, seed: u64) -> Result<DataSpec, DataError> {
        let options = DataOptions {
            data: self.data.as_deref(),
            test_data: self.test_data.as_deref(),
            label_column: self.label_column.as_deref(),
            test_split: self.test_split,
            data_dir: self.data_dir.as_deref(),
        };
        DataSpec::from_options(&options, seed)
    }
}

/// The data a model was trained on: the options' if they name any, else its run's (from
/// its `run.json`), else Fashion-MNIST.
pub fn data_of_model(model: &std::path::Path, args: &DataArgs, seed: u64) -> Result<DataSpec, DataError> {
    if args.given() {
        return args.spec(seed);
    }
    Ok(match DataSpec::of_run(model)? {
        Some(spec) => spec,
        None => DataSpec::fashion_mnist(args.data_dir.as_deref()),
    })
}
