//! Mutated model files of three shapes, int8 (dense, sparse and int4) and f32: bit flips, byte runs, truncations,
//! splices and header edits, each with the checksum recomputed so that the parser's later
//! checks and the kernels see them. Nothing may panic, any int8 model that loads must
//! classify with the fast kernel exactly as with the scalar reference, and any f32 model
//! that loads must predict the class of its largest logit.
//!
//! A stable-Rust complement to the cargo-fuzz targets (`infer-core/fuzz`), run by `cargo
//! test` on every build, including CI's portable one (the x86 kernel without VNNI).
//! `MUTATE_FILES` sets how many files (default 6,000, a few seconds), `MUTATE_SEED` the
//! seed (default: drawn, and printed, so that a failure can be replayed).

use infer_core::arch::Architecture;
use infer_core::f32net::{self, F32Layer};
use infer_core::format::{self, Extras, Header, Quant};
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
    // What a truncation left too short to edit (a second mutation of one) stays as it is.
    if len < 8 {
        return f;
    }
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

/// An f32 model file of `arch` with weights in [-0.5, 0.5).
fn f32_file(rng: &mut Rng, arch: Architecture, activation: Activation) -> Vec<u8> {
    let params: Vec<(Vec<f32>, Vec<f32>)> = (0..arch.layers())
        .map(|l| {
            let (i, o) = arch.layer(l);
            let mut values = |n: usize| (0..n).map(|_| rng.below(1 << 16) as f32 / 65536.0 - 0.5).collect::<Vec<_>>();
            (values(i * o), values(o))
        })
        .collect();
    let layers: Vec<F32Layer<'_>> = params.iter().map(|(w, b)| F32Layer { weights: w, biases: b }).collect();
    let mut out = vec![0u8; Header::new(arch, activation, Quant::F32).file_len()];
    let len = f32net::encode(&arch, activation, &layers, &Extras::NONE, &mut out).unwrap();
    out.truncate(len);
    out
}

/// The seed: `MUTATE_SEED`, else drawn from the clock and the process.
fn seed() -> u64 {
    if let Some(seed) = std::env::var("MUTATE_SEED").ok().and_then(|s| s.parse().ok()) {
        return seed;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

#[test]
fn mutated_files_are_errors_or_models_that_classify_alike_on_both_kernels() {
    let files: usize = std::env::var("MUTATE_FILES").ok().and_then(|s| s.parse().ok()).unwrap_or(6000);
    let seed = seed();
    // Printed first: `cargo test` shows it with a failure, and MUTATE_SEED replays the run.
    println!("MUTATE_SEED={seed} MUTATE_FILES={files}");
    let mut rng = Rng(seed);
    let shapes = [
        Architecture::FMNIST,
        Architecture::new(&[784, 128, 64, 10]).unwrap(),
        Architecture::new(&[784, 33, 10]).unwrap(),
    ];
    let kinds = shapes.iter().flat_map(|&a| [Activation::Relu, Activation::Sigmoid].map(|act| (a, act)));
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for (a, act) in kinds {
        seeds.push(Params::random(&mut rng, a, act).encode());
        seeds.push(f32_file(&mut rng, a, act));
        // Pruned and stored sparse (format version 4): counts and indices to corrupt.
        let mut pruned = Params::random(&mut rng, a, act);
        for l in 0..a.layers() - 1 {
            pruned.prune(&mut rng, l, 0.9, 2);
        }
        seeds.push(pruned.encode());
        // Int4 (format version 5): the first hidden layer sparse, the others dense.
        let mut int4 = Params::random(&mut rng, a, act);
        for l in 0..a.layers() - 1 {
            int4.make_int4(l);
        }
        int4.prune(&mut rng, 0, 0.8, 1);
        seeds.push(int4.encode());
    }
    let images: Vec<Vec<u8>> =
        (0..4).map(|k| (0..784).map(|i| if (i + k) % 3 == 0 { 0 } else { (i * 7 + k * 13) as u8 }).collect()).collect();
    let (mut loaded, mut classified, mut f32_predicted, mut sparse, mut int4) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
    let mut f32_scratch = Scratch::<2048>::zeroed();
    for tried in 1..=files {
        let seed_file = &seeds[rng.pick(seeds.len())];
        let mut file = mutate(&mut rng, seed_file);
        // Sometimes a second mutation on top of the first.
        if rng.pick(4) == 0 {
            file = mutate(&mut rng, &file);
        }
        let Ok(model) = Model::from_bytes(&file) else { continue };
        loaded += 1;
        sparse += usize::from(format::read(&file).is_ok_and(|f| f.header().storage().any()));
        int4 += usize::from(format::read(&file).is_ok_and(|f| f.header().storage().any_int4()));
        let arch = model.architecture();
        let replay = format!("mutated file {tried} of MUTATE_SEED={seed}");
        match model {
            Model::Int8(m) => {
                for img in &images {
                    let image = &img[..arch.inputs().min(784)];
                    let (mut fast, mut slow) = (vec![0i32; arch.classes()], vec![0i32; arch.classes()]);
                    let a = m.predict(image, &mut scratch, &mut fast);
                    let b = m.predict_scalar(image, &mut scratch, &mut slow);
                    assert_eq!((a, &fast), (b, &slow), "{replay}: kernels differ");
                    classified += usize::from(a.is_ok());
                }
            }
            Model::F32(m) => {
                // Valid buffers for a valid model: a class, the first of the largest logits.
                let mut logits = vec![0f32; arch.classes()];
                let class = m.predict(&vec![0.5; arch.inputs()], &mut f32_scratch, &mut logits);
                let class = class.unwrap_or_else(|e| panic!("{replay}: a loaded f32 model fails to predict: {e}"));
                if logits.iter().all(|l| l.is_finite()) {
                    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    assert_eq!(class, logits.iter().position(|&l| l == top).unwrap(), "{replay}: {logits:?}");
                }
                f32_predicted += 1;
            }
        }
    }
    println!(
        "{files} mutated files, {loaded} loaded ({sparse} with sparse layers, {int4} with int4), {classified} images classified by \
         both kernels ({}), {f32_predicted} f32 models predicted",
        int8net::Kernel::detected()
    );
    assert!(loaded > files / 50, "mutations must reach the kernels: {loaded} of {files} loaded (MUTATE_SEED={seed})");
    assert!(
        classified > 0 && f32_predicted > 0 && sparse > 0 && int4 > 0,
        "every kind of model classified (MUTATE_SEED={seed})"
    );
}
