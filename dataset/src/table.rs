//! Tables of features in CSV: a header row, numeric feature columns and one label column.

use std::path::Path;

use crate::data::{Schema, Split};
use crate::error::DataError;
use crate::idx::read_maybe_gz;

/// Most bytes a CSV file may have (decompressed, when it ends in `.gz`).
pub const MAX_TABLE_BYTES: u64 = 1 << 30;

/// Which column holds the labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelColumn {
    /// The last one.
    Last,
    /// The column with this header, or else, if it is a number, the column at that index
    /// (0 is the first).
    Named(String),
}

impl LabelColumn {
    /// `--label-column NAME|INDEX`, or the last column without one.
    pub fn from_option(text: Option<&str>) -> LabelColumn {
        text.map_or(LabelColumn::Last, |t| LabelColumn::Named(t.to_string()))
    }

    /// The index of the label column among `headers` of `path`.
    fn index(&self, headers: &[String], path: &Path) -> Result<usize, DataError> {
        let missing = |why: String| DataError::Table { path: path.to_path_buf(), row: 1, why };
        match self {
            LabelColumn::Last => headers.len().checked_sub(1).ok_or_else(|| missing("the header is empty".into())),
            LabelColumn::Named(name) => {
                if let Some(i) = headers.iter().position(|h| h == name) {
                    return Ok(i);
                }
                match name.parse::<usize>() {
                    Ok(i) if i < headers.len() => Ok(i),
                    _ => Err(missing(format!(
                        "no label column {name:?}: the columns are {} (or give an index, 0 to {})",
                        quoted(headers),
                        headers.len().saturating_sub(1)
                    ))),
                }
            }
        }
    }
}

fn quoted(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(12).map(|n| format!("{n:?}")).collect();
    shown.join(", ") + if names.len() > 12 { ", ..." } else { "" }
}

/// A CSV file read: its header, the features of each row, and each row's label text.
struct Raw {
    headers: Vec<String>,
    label: usize,
    values: Vec<f32>,
    labels: Vec<String>,
}

/// Reads a CSV file: every field but the label column must be a finite number.
fn read(path: &Path, label: &LabelColumn) -> Result<Raw, DataError> {
    let bytes = read_maybe_gz(path, MAX_TABLE_BYTES)?;
    // Tab-separated when the name says so (`.tsv`, `.tsv.gz`).
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let delimiter = if name.ends_with(".tsv") || name.ends_with(".tsv.gz") { b'\t' } else { b',' };
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).flexible(false).delimiter(delimiter).from_reader(&bytes[..]);
    let error = |row: u64, why: String| DataError::Table { path: path.to_path_buf(), row, why };
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| error(1, format!("cannot read the header row: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.len() < 2 {
        return Err(error(
            1,
            format!("the header has {} column(s); a table needs features and a label", headers.len()),
        ));
    }
    let label = label.index(&headers, path)?;
    let (mut values, mut labels) = (Vec::new(), Vec::new());
    for (i, record) in reader.records().enumerate() {
        // Rows are numbered as a spreadsheet shows them: the header is row 1.
        let row = i as u64 + 2;
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                error(row, format!("{len} fields, the header has {expected_len}"))
            }
            _ => error(row, e.to_string()),
        })?;
        for (c, field) in record.iter().enumerate() {
            let field = field.trim();
            if c == label {
                if field.is_empty() {
                    return Err(error(row, format!("the label (column {:?}) is empty", headers[c])));
                }
                labels.push(field.to_string());
                continue;
            }
            let value = match field.parse::<f32>() {
                Ok(v) if v.is_finite() => v,
                Ok(_) | Err(_) if field.is_empty() => {
                    return Err(error(row, format!("column {:?} is empty: fill it in or drop the row", headers[c])));
                }
                _ => return Err(error(row, format!("column {:?} holds {field:?}, not a finite number", headers[c]))),
            };
            values.push(value);
        }
    }
    if labels.is_empty() {
        return Err(error(2, "the table has a header but no rows".into()));
    }
    Ok(Raw { headers, label, values, labels })
}

/// The classes of labels `texts`: integers in numeric order if every label is one, else
/// the texts in sorted order; and whether they are integers.
fn classes(texts: &[String]) -> (Vec<String>, bool) {
    let mut names: Vec<String> = texts.to_vec();
    names.sort_unstable();
    names.dedup();
    let numeric = names.iter().all(|n| n.parse::<i64>().is_ok());
    if numeric {
        names.sort_by(|a, b| compare(a, b, true));
    }
    (names, numeric)
}

/// Reads a table from `train` and, if given, `test` (the same columns; every label of
/// the test file a class of the training file): the splits and their description.
pub fn load(
    train: &Path,
    test: Option<&Path>,
    label: &LabelColumn,
) -> Result<(Split, Option<Split>, Schema), DataError> {
    let raw = read(train, label)?;
    let (names, numeric) = classes(&raw.labels);
    if names.len() < 2 {
        return Err(DataError::Classes {
            path: train.to_path_buf(),
            why: format!("every row has label {:?}: a classifier needs at least two classes", names[0]),
        });
    }
    if names.len() > 256 {
        return Err(DataError::Classes {
            path: train.to_path_buf(),
            why: format!(
                "{} different labels; at most 256 classes (is the label column {:?} right?)",
                names.len(),
                raw.headers[raw.label]
            ),
        });
    }
    let inputs = raw.headers.len() - 1;
    let split = |raw: Raw, path: &Path| -> Result<Split, DataError> {
        let labels = raw
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                names.binary_search_by(|n| compare(n, l, numeric)).map(|c| c as u8).map_err(|_| DataError::Table {
                    path: path.to_path_buf(),
                    row: i as u64 + 2,
                    why: format!("label {l:?} is not a class of the training file ({})", quoted(&names)),
                })
            })
            .collect::<Result<Vec<u8>, _>>()?;
        Ok(Split::real(raw.values, labels, inputs))
    };
    let headers = raw.headers.clone();
    let label_name = headers[raw.label].clone();
    let train_split = split(raw, train)?;
    let test_split = match test {
        None => None,
        Some(path) => {
            let raw = read(path, &LabelColumn::Named(label_name.clone()))?;
            if raw.headers != headers {
                return Err(DataError::Table {
                    path: path.to_path_buf(),
                    row: 1,
                    why: format!(
                        "its columns ({}) are not the training file's ({})",
                        quoted(&raw.headers),
                        quoted(&headers)
                    ),
                });
            }
            Some(split(raw, path)?)
        }
    };
    let name = train.file_name().map_or_else(|| train.display().to_string(), |n| n.to_string_lossy().into_owned());
    let schema = Schema { name, inputs, class_names: names, image: None, bytes: false };
    Ok((train_split, test_split, schema))
}

/// The order of [`classes`]: by value when the labels are integers (then by text, so that
/// `01` and `1` stay apart), else by text.
fn compare(a: &str, b: &str, numeric: bool) -> std::cmp::Ordering {
    match (numeric, a.parse::<i64>(), b.parse::<i64>()) {
        (true, Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        _ => a.cmp(b),
    }
}
