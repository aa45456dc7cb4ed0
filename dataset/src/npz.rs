//! NumPy `.npz` archives holding `x_train`, `y_train`, `x_test` and `y_test`, the layout
//! `keras.datasets` loads into: `np.savez("data.npz", x_train=..., y_train=..., x_test=...,
//! y_test=...)`.
//!
//! `x` arrays of `uint8` are bytes read as value / 255 (images when they have three
//! dimensions, `(examples, rows, columns)`); any other number type is real-valued features,
//! `(examples, features)` or more dimensions flattened. `y` arrays hold integer labels.

use std::io::Read;
use std::path::Path;

use npyz::npz::NpzArchive;

use crate::data::{Schema, Split};
use crate::error::DataError;

/// Most values one array may hold: 134M, 1 GiB as float64 (Fashion-MNIST's training images
/// are 47M). Memory stays bounded whatever a header claims or a compressed member inflates to.
pub const MAX_VALUES: u64 = 1 << 27;

/// The arrays an archive must hold.
const ARRAYS: [&str; 4] = ["x_train", "y_train", "x_test", "y_test"];

/// One array read: its shape and its values, as bytes (`uint8`) or as f32.
struct Array {
    shape: Vec<u64>,
    values: Values,
}

enum Values {
    Bytes(Vec<u8>),
    Real(Vec<f32>),
    Int(Vec<i64>),
}

/// Reads the array `name` of `archive`, refusing one whose shape claims more than
/// [`MAX_VALUES`] before anything is allocated for it.
fn array<R: Read + std::io::Seek>(archive: &mut NpzArchive<R>, name: &str, path: &Path) -> Result<Array, DataError> {
    let bad = |why: String| DataError::Npz { path: path.to_path_buf(), why };
    let npy = archive.by_name(name).map_err(|e| bad(format!("{name}: {e}")))?.ok_or_else(|| {
        bad(format!("no array {name}: the archive needs {} (np.savez(path, x_train=..., ...))", ARRAYS.join(", ")))
    })?;
    let shape = npy.shape().to_vec();
    let count = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_VALUES);
    let Some(count) = count else {
        return Err(bad(format!("{name}: shape {shape:?} holds more than {MAX_VALUES} values")));
    };
    if npy.order() == npyz::Order::Fortran {
        return Err(bad(format!("{name} is in Fortran order: save it with np.ascontiguousarray")));
    }
    let dtype = npy.dtype().descr();
    let read = |e: std::io::Error| bad(format!("{name}: {e}"));
    let kind = dtype.trim_matches(['\'', '"']).trim_start_matches(['<', '>', '|', '=']);
    let values = match kind {
        "u1" => Values::Bytes(npy.into_vec::<u8>().map_err(read)?),
        "f4" => Values::Real(npy.into_vec::<f32>().map_err(read)?),
        "f8" => Values::Real(npy.into_vec::<f64>().map_err(read)?.into_iter().map(|v| v as f32).collect()),
        "i1" => Values::Int(npy.into_vec::<i8>().map_err(read)?.into_iter().map(i64::from).collect()),
        "i2" => Values::Int(npy.into_vec::<i16>().map_err(read)?.into_iter().map(i64::from).collect()),
        "u2" => Values::Int(npy.into_vec::<u16>().map_err(read)?.into_iter().map(i64::from).collect()),
        "i4" => Values::Int(npy.into_vec::<i32>().map_err(read)?.into_iter().map(i64::from).collect()),
        "u4" => Values::Int(npy.into_vec::<u32>().map_err(read)?.into_iter().map(i64::from).collect()),
        "i8" => Values::Int(npy.into_vec::<i64>().map_err(read)?),
        _ => {
            return Err(bad(format!(
                "{name} has dtype {dtype}; numbers are read (uint8, int8 to int64, float32, float64)"
            )));
        }
    };
    let len = match &values {
        Values::Bytes(v) => v.len(),
        Values::Real(v) => v.len(),
        Values::Int(v) => v.len(),
    };
    if len as u64 != count {
        return Err(bad(format!("{name}: {len} values for shape {shape:?}")));
    }
    Ok(Array { shape, values })
}

/// An `x` array as the features of each example: their count per example, and the values.
fn features(x: Array, name: &str, path: &Path) -> Result<(usize, Option<[usize; 2]>, Values), DataError> {
    let bad = |why: String| DataError::Npz { path: path.to_path_buf(), why };
    let (examples, rest) = x.shape.split_first().ok_or_else(|| bad(format!("{name} is a scalar")))?;
    let width: u64 = rest.iter().product();
    if *examples == 0 || width == 0 {
        return Err(bad(format!("{name} has shape {:?}: no examples or no features", x.shape)));
    }
    let image = match (rest, &x.values) {
        ([rows, cols], Values::Bytes(_)) => Some([*rows as usize, *cols as usize]),
        _ => None,
    };
    let values = match x.values {
        Values::Int(v) => Values::Real(v.into_iter().map(|v| v as f32).collect()),
        Values::Real(v) if v.iter().any(|v| !v.is_finite()) => {
            let at = v.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(bad(format!("{name}: value {} (example {}) is not finite", v[at], at as u64 / width)));
        }
        other => other,
    };
    Ok((width as usize, image, values))
}

/// A `y` array as integer labels, one per example.
fn labels(y: Array, examples: usize, name: &str, path: &Path) -> Result<Vec<i64>, DataError> {
    let bad = |why: String| DataError::Npz { path: path.to_path_buf(), why };
    let labels = match y.values {
        Values::Int(v) => v,
        Values::Bytes(v) => v.into_iter().map(i64::from).collect(),
        Values::Real(_) => return Err(bad(format!("{name} holds floats; labels are integers (astype(int))"))),
    };
    if labels.len() != examples {
        return Err(bad(format!("{name} has {} labels for {examples} examples (shape {:?})", labels.len(), y.shape)));
    }
    Ok(labels)
}

/// Reads an archive: both splits and their description. The classes are the labels that
/// occur, in numeric order.
pub fn load(path: &Path) -> Result<(Split, Split, Schema), DataError> {
    let io = |error| DataError::Io { path: path.to_path_buf(), error };
    let file = runio::fsutil::open_regular(path).map_err(io)?;
    let mut archive = NpzArchive::new(std::io::BufReader::new(file))
        .map_err(|e| DataError::Npz { path: path.to_path_buf(), why: format!("not a NumPy .npz archive ({e})") })?;
    let mut parts = Vec::new();
    for name in ARRAYS {
        parts.push(array(&mut archive, name, path)?);
    }
    let [x_train, y_train, x_test, y_test]: [Array; 4] =
        parts.try_into().map_err(|_| io(std::io::ErrorKind::Other.into()))?;
    let (width, image, train_x) = features(x_train, "x_train", path)?;
    let (test_width, _, test_x) = features(x_test, "x_test", path)?;
    if test_width != width {
        let why = format!("x_test has {test_width} features per example, x_train {width}");
        return Err(DataError::Npz { path: path.to_path_buf(), why });
    }
    let count = |v: &Values| match v {
        Values::Bytes(v) => v.len() / width,
        Values::Real(v) => v.len() / width,
        Values::Int(v) => v.len() / width,
    };
    let (n_train, n_test) = (count(&train_x), count(&test_x));
    let y_train = labels(y_train, n_train, "y_train", path)?;
    let y_test = labels(y_test, n_test, "y_test", path)?;
    let mut classes: Vec<i64> = y_train.clone();
    classes.sort_unstable();
    classes.dedup();
    let class_error = |why: String| DataError::Classes { path: path.to_path_buf(), why };
    if classes.len() < 2 || classes.len() > 256 {
        return Err(class_error(format!(
            "y_train has {} different labels; a classifier needs 2 to 256",
            classes.len()
        )));
    }
    let index = |y: &[i64], name: &str| -> Result<Vec<u8>, DataError> {
        y.iter()
            .enumerate()
            .map(|(i, l)| {
                classes
                    .binary_search(l)
                    .map(|c| c as u8)
                    .map_err(|_| class_error(format!("{name}[{i}] is {l}, a label y_train does not have")))
            })
            .collect()
    };
    let (train_labels, test_labels) = (index(&y_train, "y_train")?, index(&y_test, "y_test")?);
    let bytes = matches!(train_x, Values::Bytes(_)) && matches!(test_x, Values::Bytes(_));
    let split = |x: Values, labels: Vec<u8>| match x {
        Values::Bytes(p) if bytes => Split::bytes(p, labels, width),
        Values::Bytes(p) => Split::real(p.into_iter().map(f32::from).collect(), labels, width),
        Values::Real(v) => Split::real(v, labels, width),
        Values::Int(v) => Split::real(v.into_iter().map(|v| v as f32).collect(), labels, width),
    };
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let schema = Schema {
        name,
        inputs: width,
        class_names: classes.iter().map(|c| c.to_string()).collect(),
        image: image.filter(|_| bytes),
        bytes,
    };
    Ok((split(train_x, train_labels), split(test_x, test_labels), schema))
}
