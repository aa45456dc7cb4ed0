//! Mutated model files of the study's shape, for a few seconds: bit flips, byte runs,
//! truncations, splices and header edits, each with the checksum recomputed so that the
//! parser's later checks and the kernels see them. Nothing may panic, and any model that
//! loads must classify with the fast kernel exactly as with the scalar reference.
//!
//! A stable-Rust complement to the cargo-fuzz targets (`infer-core/fuzz`), run by `cargo
//! test` on every build, including CI's portable one (the x86 kernel without VNNI).
//! `MUTATE_SECONDS` sets the time (default 3).

use std::time::{Duration, Instant};

use infer_core::arch::Architecture;
use infer_core::format;
use infer_core::int8net::{self, INT8_SCRATCH_MAX};
use infer_core::{Activation, Int8Scratch, Model, Scratch};

mod common;

use common::{Params, Rng};

/// Rewrites the last four bytes as the checksum of the rest (when there are four).
fn reseal(file: &mut [u8]) {
    if file.len() >= 8 {
        let n = file.len() - 4;
        let crc = format::checksum(&file[..n]);
        file[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// One random mutation of `file`.
fn mutate(rng: &mut Rng, file: &[u8]) -> Vec<u8> {
    let mut f = file.to_vec();
    let len = f.len();
    match rng.pick(7) {
        // Flip bits anywhere, mostly in the small parameters after the weights.
        0 => {
            for _ in 0..1 + rng.pick(8) {
                let at = if rng.pick(2) == 0 { rng.pick(len) } else { len - 1 - rng.pick(4000.min(len)) };
                f[at] ^= 1 << rng.pick(8);
            }
        }
        // Overwrite a run of bytes with one value (0, 0xff, 0x80 or random).
        1 => {
            let at = rng.pick(len);
            let run = 1 + rng.pick(64);
            let v = [0, 0xff, 0x80, rng.next() as u8][rng.pick(4)];
            f[at..(at + run).min(len)].fill(v);
        }
        // Truncate.
        2 => f.truncate(rng.pick(len)),
        // Splice: copy a chunk of the file over another place.
        3 => {
            let (from, to, run) = (rng.pick(len), rng.pick(len), 1 + rng.pick(512));
            let chunk: Vec<u8> = f[from..(from + run).min(len)].to_vec();
            let end = (to + chunk.len()).min(len);
            f[to..end].copy_from_slice(&chunk[..end - to]);
        }
        // Header edits: a field byte of the first 64.
        4 => {
            let at = rng.pick(20);
            f[at] = rng.next() as u8;
        }
        // Append or insert bytes.
        5 => {
            let at = rng.pick(len);
            let extra: Vec<u8> = (0..1 + rng.pick(16)).map(|_| rng.next() as u8).collect();
            f.splice(at..at, extra);
        }
        // The shifts, zero points and score scale of every layer: set to edge values.
        _ => {
            let at = len - 4 - rng.pick(64.min(len - 4));
            f[at] = [0, 24, 25, 30, 31, 32, 0x7f, 0x80, 0xff][rng.pick(9)];
        }
    }
    // Most mutations keep a valid checksum, so that they reach past it.
    if rng.pick(8) != 0 {
        reseal(&mut f);
    }
    f
}

#[test]
fn mutated_files_are_errors_or_models_that_classify_alike_on_both_kernels() {
    let seconds = std::env::var("MUTATE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let shapes = [
        Architecture::FMNIST,
        Architecture::new(&[784, 128, 64, 10]).unwrap(),
        Architecture::new(&[784, 33, 10]).unwrap(),
    ];
    let seeds: Vec<Vec<u8>> = shapes
        .iter()
        .flat_map(|&a| [Activation::Relu, Activation::Sigmoid].map(|act| (a, act)))
        .map(|(a, act)| Params::random(&mut rng, a, act).encode())
        .collect();
    let images: Vec<Vec<u8>> =
        (0..4).map(|k| (0..784).map(|i| if (i + k) % 3 == 0 { 0 } else { (i * 7 + k * 13) as u8 }).collect()).collect();
    let (mut tried, mut loaded, mut classified) = (0usize, 0usize, 0usize);
    let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
    let mut f32_scratch = Scratch::<2048>::zeroed();
    while Instant::now() < deadline || tried < 200 {
        let seed = &seeds[rng.pick(seeds.len())];
        let mut file = mutate(&mut rng, seed);
        // Sometimes a second mutation on top of the first.
        if rng.pick(4) == 0 {
            file = mutate(&mut rng, &file);
        }
        tried += 1;
        let Ok(model) = Model::from_bytes(&file) else { continue };
        loaded += 1;
        let arch = model.architecture();
        match model {
            Model::Int8(m) => {
                for img in &images {
                    let image = &img[..arch.inputs().min(784)];
                    let (mut fast, mut slow) = (vec![0i32; arch.classes()], vec![0i32; arch.classes()]);
                    let a = m.predict(image, &mut scratch, &mut fast);
                    let b = m.predict_scalar(image, &mut scratch, &mut slow);
                    assert_eq!((a, &fast), (b, &slow), "mutated file {tried}: kernels differ");
                    classified += usize::from(a.is_ok());
                }
            }
            Model::F32(m) => {
                let mut logits = vec![0f32; arch.classes()];
                let _ = m.predict(&vec![0.5; arch.inputs()], &mut f32_scratch, &mut logits);
            }
        }
    }
    println!(
        "{tried} mutated files, {loaded} loaded, {classified} images classified by both kernels ({})",
        int8net::KERNEL
    );
    assert!(loaded > tried / 50, "mutations must reach the kernels: {loaded} of {tried} loaded");
    assert!(classified > 0);
}
