//! Sizing a model to a flash budget (`trainer fit --flash 32K`): the pruning that makes its
//! int8 file fit.
//!
//! The size of an int8 file is known before training from the network, the data's class
//! names and input quantizer, and how many blocks of four weights each hidden layer keeps:
//! pruning to sparsity `s` cuts `round(s · blocks)` blocks of each hidden layer
//! ([`crate::prune`]), and the export stores a layer sparse where that is smaller
//! ([`crate::quant::QuantModel::encode`]). A kept block that quantizes to zero is not stored
//! either, so the file is at most the size computed here.

use infer_core::Activation;
use infer_core::arch::Architecture;
use infer_core::format::{Extras, Header, Quant};
use infer_core::layout::{Storage, groups};

use crate::qat::WeightBits;

/// Finest step of the sparsities [`sparsity_for`] tries: 0.1%, so that a budget is used
/// to within a few hundred bytes (in 1% steps the 784-512-256-10 for 32 KB was cut to 97%,
/// 26.9 KB).
const STEP: f64 = 0.001;

/// Highest sparsity [`sparsity_for`] chooses: beyond it too little is left to learn.
pub const MOST: f64 = 0.98;

/// Parses a byte count: `32768`, `32K`, `32KB`, `32KiB`, `1.5M` (K and M are 1024 and
/// 1024²; case does not matter).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_uppercase();
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (number, unit) = match t.strip_suffix('K') {
        Some(n) => (n, 1024.0),
        None => match t.strip_suffix('M') {
            Some(n) => (n, 1024.0 * 1024.0),
            None => (t, 1.0),
        },
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * unit < 1e12 => Ok((n * unit) as usize),
        _ => Err(format!("{text:?} is not a size in bytes: write for example 32768, 32K or 1.5M")),
    }
}

/// Bytes of the int8 file of `arch` with `extras` when each hidden layer is pruned to
/// `sparsity` (0: dense) and its weights are `bits` wide, each layer stored as the export
/// stores it.
pub fn int8_file_bytes(
    arch: &Architecture,
    activation: Activation,
    extras: &Extras<'_>,
    sparsity: f64,
    bits: WeightBits,
) -> usize {
    let mut storage = Storage::DENSE;
    if bits == WeightBits::Int4 {
        for l in 0..arch.layers() - 1 {
            storage = storage.with_int4(l);
        }
    }
    let header = Header::new(*arch, activation, Quant::Int8).with_extras(extras).with_storage(storage);
    // The hidden layers' kept blocks; the output layer is not pruned (dense).
    let kept: Vec<u32> = (0..arch.layers() - 1)
        .map(|l| {
            let (i, o) = arch.layer(l);
            let blocks = groups(i) * o;
            // At most 2^20 blocks.
            (blocks - (sparsity * blocks as f64).round() as usize) as u32
        })
        .collect();
    header.with_storage(header.smallest_storage(&kept)).file_len()
}

/// The lowest sparsity (in steps of 0.001, at most [`MOST`]) at which the int8 file of
/// `arch` with `bits`-wide hidden weights fits `budget` bytes: `Ok(None)` when the dense file fits, an error that says what
/// would fit when none does. The sparsity is an f32's value, as the recipe keeps it, so that
/// the blocks training cuts are those sized here.
pub fn sparsity_for(
    arch: &Architecture,
    activation: Activation,
    extras: &Extras<'_>,
    budget: usize,
    bits: WeightBits,
) -> Result<Option<f64>, String> {
    let size = |s: f64| int8_file_bytes(arch, activation, extras, s, bits);
    if size(0.0) <= budget {
        return Ok(None);
    }
    let steps = (MOST / STEP).round() as usize;
    let sparsity = |k: usize| f64::from((k as f64 * STEP) as f32);
    match (1..=steps).map(sparsity).find(|&s| size(s) <= budget) {
        Some(s) => Ok(Some(s)),
        None => Err(format!(
            "{arch} does not fit {budget} bytes even with {:.0}% of its hidden layers pruned ({} bytes): \
             choose narrower hidden layers (--hidden)",
            100.0 * MOST,
            size(MOST)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_their_units() {
        assert_eq!(parse_bytes("32768"), Ok(32768));
        assert_eq!(parse_bytes("32K"), Ok(32768));
        assert_eq!(parse_bytes("32kb"), Ok(32768));
        assert_eq!(parse_bytes("32KiB"), Ok(32768));
        assert_eq!(parse_bytes("1.5M"), Ok(1_572_864));
        for bad in ["", "K", "-3K", "0", "nan", "1e30", "32 apples"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_sparsity_chosen_is_the_lowest_that_fits() {
        let arch = Architecture::new(&[784, 256, 128, 10]).unwrap();
        let names = b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let extras = Extras::new(names, &[]);
        let dense = int8_file_bytes(&arch, Activation::Relu, &extras, 0.0, WeightBits::Int8);
        assert_eq!(sparsity_for(&arch, Activation::Relu, &extras, dense, WeightBits::Int8), Ok(None));
        let s = sparsity_for(&arch, Activation::Relu, &extras, 32 * 1024, WeightBits::Int8).unwrap().unwrap();
        assert!(int8_file_bytes(&arch, Activation::Relu, &extras, s, WeightBits::Int8) <= 32 * 1024);
        assert!(int8_file_bytes(&arch, Activation::Relu, &extras, s - STEP, WeightBits::Int8) > 32 * 1024, "{s}");
        assert!((0.85..0.95).contains(&s), "{s}");
        // Sparser is never larger, and a file kept at 10% is about an eighth of the dense one.
        let sizes: Vec<usize> = (0..=98)
            .map(|k| int8_file_bytes(&arch, Activation::Relu, &extras, k as f64 / 100.0, WeightBits::Int8))
            .collect();
        assert!(sizes.windows(2).all(|w| w[1] <= w[0]));
        assert!(sizes[90] * 6 < sizes[0], "{} against {}", sizes[90], sizes[0]);
        let err = sparsity_for(&arch, Activation::Relu, &extras, 4096, WeightBits::Int8).unwrap_err();
        assert!(err.contains("784-256-128-10 does not fit 4096 bytes") && err.contains("--hidden"), "{err}");
    }
}
