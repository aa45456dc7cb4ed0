//! Int4 layers (format version 5), dense and sparse: every kernel against the scalar
//! reference and the naive loop on random shapes and sparsities; the same model stored int8
//! and int4 classifies alike; the file's golden bytes; and what the reader refuses.

use infer_core::format::{self, Header};
use infer_core::layout::{Int8Layout, Storage};
use infer_core::{Activation, Error, Int8Model, Model, Quant};

mod common;

use common::{Params, Rng, arch, check_every_kernel, random_image};

#[test]
fn int4_layers_match_the_reference_on_every_kernel_shape_and_sparsity() {
    let mut rng = Rng(0x1a74_0b17);
    let shapes = [
        arch(&[784, 64, 32, 10]),
        arch(&[784, 300, 10]),
        arch(&[12, 5, 130, 2]),
        arch(&[13, 7, 3]),
        arch(&[8, 1024, 3, 1, 7, 2]),
        arch(&[64, 250, 129, 17]),
        arch(&[1, 4, 2]),
        arch(&[5, 3, 3]),
    ];
    for arch in shapes {
        for activation in [Activation::Relu, Activation::Sigmoid] {
            // Dense (no cut), and sparse from every block kept to none.
            for cut in [None, Some(0.0), Some(0.5), Some(0.9), Some(1.0)] {
                let mut params = Params::random(&mut rng, arch, activation);
                for l in 0..arch.layers() {
                    // Some layers stay int8 (the output layer usually is); some int4
                    // layers are sparse, some of their outputs keeping nothing.
                    if rng.pick(4) != 0 {
                        params.make_int4(l);
                    }
                    if let Some(cut) = cut
                        && rng.pick(3) != 0
                    {
                        let empty = rng.pick(3);
                        params.prune(&mut rng, l, cut, empty);
                    }
                }
                let bytes = params.encode();
                let model = Int8Model::from_bytes(&bytes).unwrap();
                let mut images: Vec<Vec<u8>> = (0..36).map(|_| random_image(&mut rng, arch.inputs())).collect();
                images.push(vec![0; arch.inputs()]);
                images.push(vec![255; arch.inputs()]);
                let what =
                    format!("{arch} {activation:?} cut {cut:?} int4 {:?} sparse {:?}", params.int4, params.sparse);
                check_every_kernel(&params, &model, &images, &what);
                // Widened to int8 layers: the same scores (against the same naive loop).
                let wide = widened(&bytes);
                let version = if params.sparse.contains(&true) { 4 } else { 3 };
                assert_eq!(wide[4], version, "{what}");
                check_every_kernel(&params, &Int8Model::from_bytes(&wide).unwrap(), &images, &what);
            }
        }
    }
}

/// `bytes` with its int4 layers widened to int8 ([`widen::widen`]).
fn widened(bytes: &[u8]) -> Vec<u8> {
    let header = infer_core::widen::widened_header(format::read(bytes).unwrap().header());
    let mut out = vec![0u8; header.file_len()];
    assert_eq!(
        infer_core::widen::widen(bytes, &mut out[..header.file_len() - 1]),
        Err(Error::BufferTooSmall { needed: header.file_len(), found: header.file_len() - 1 })
    );
    let len = infer_core::widen::widen(bytes, &mut out).unwrap();
    assert_eq!(len, out.len());
    out
}

#[test]
fn an_int4_model_classifies_as_its_int8_twin_in_about_half_the_bytes() {
    let mut rng = Rng(41);
    let arch = arch(&[784, 128, 64, 10]);
    let mut params = Params::random(&mut rng, arch, Activation::Relu);
    params.make_int4(0);
    params.make_int4(1);
    params.int4 = vec![false; 3];
    let int8 = params.encode();
    params.int4 = vec![true, true, false];
    let int4 = params.encode();
    assert_eq!((int8[4], int4[4]), (3, 5), "format versions");
    // The hidden layers' weights take 108,544 bytes as int8, 54,272 as int4 (the alignments
    // happen to cost nothing in either file).
    assert_eq!(int8.len() - int4.len(), (784 * 128 + 128 * 64) / 2, "{} {}", int8.len(), int4.len());
    // Widening the int4 file gives the int8 file, byte for byte; a file without int4
    // layers widens to itself.
    assert_eq!(widened(&int4), int8);
    assert_eq!(widened(&int8), int8);
    let (a, b) = (Int8Model::from_bytes(&int8).unwrap(), Int8Model::from_bytes(&int4).unwrap());
    let mut scratch = infer_core::Int8Scratch::<{ infer_core::int8net::INT8_SCRATCH_MAX }>::zeroed();
    for _ in 0..50 {
        let img = random_image(&mut rng, 784);
        let (mut x, mut y) = ([0; 10], [0; 10]);
        let (cx, cy) = (a.predict(&img, &mut scratch, &mut x).unwrap(), b.predict(&img, &mut scratch, &mut y).unwrap());
        assert_eq!((cx, x), (cy, y));
    }
    // Pruned too: sparse int4 takes 3 bytes a kept block against 5.
    params.prune(&mut rng, 0, 0.9, 0);
    let sparse4 = params.encode();
    params.int4 = vec![false; 3];
    let sparse8 = params.encode();
    assert_eq!((sparse8[4], sparse4[4]), (4, 5));
    assert_eq!(widened(&sparse4), sparse8);
    let kept = format::read(&sparse8).unwrap().header().storage().kept(0).unwrap() as usize;
    let saved = sparse8.len() - sparse4.len();
    // Layer 1 (dense) saves half its 8,192 bytes; layer 0 2 bytes a kept block (less an
    // unused half word), and the alignment of the biases.
    assert!(saved.abs_diff(128 * 64 / 2 + 2 * kept) <= 66, "{saved} {kept}");
}

#[test]
fn golden_bytes_of_an_int4_file() {
    // 5-3-3: the first layer int4 and dense, 2 groups × 3 outputs = 6 blocks in 3 words; the
    // second int4 and sparse, keeping 3 blocks of its 3 in 2 words (the last half unused).
    let mut params = Params::random(&mut Rng(43), arch(&[5, 3, 3]), Activation::Relu);
    // Weights (inputs, outputs) row-major: weight (i, j) = 16 · q, q = i - j - 2 (-6..2).
    params.weights[0] = (0..15).map(|n| 16 * ((n / 3) as i8 - (n % 3) as i8 - 2)).collect();
    params.weights[1] = vec![16, 0, 0, 0, -32, 0, 0, 0, 112];
    params.int4 = vec![true, true];
    params.sparse = vec![false, true];
    let bytes = params.encode();
    assert_eq!(bytes[4], 5, "version");
    let header = *format::read(&bytes).unwrap().header();
    assert_eq!(header.storage(), Storage::DENSE.with_int4(0).with_int4(1).with_sparse(1, 3));
    // After the version-3 fields (magic, version, 3 widths, activation, quantization, payload
    // and extras lengths, one byte each but the magic): 2 layers listed, each (int4, kept):
    // (1, None), (1, Some(3)).
    assert_eq!(&bytes[13..19], &[2, 1, 0, 1, 1, 3]);
    let layout = Int8Layout::with_storage(&arch(&[5, 3, 3]), Activation::Relu, &header.storage());
    let payload = &bytes[64..64 + layout.len()];
    // Blocks in storage order (group, output): (0,0) (0,1) (0,2) (1,0) (1,1) (1,2); blocks 2n
    // and 2n+1 share a word, 2n in the low halves. Group 0 holds inputs 0-3, group 1 input 4
    // (the other three are padding, zero).
    let q = |i: i32, j: i32| if i < 5 { ((i - j - 2) & 0xF) as u8 } else { 0 };
    let word = |t0: usize, t1: usize| -> Vec<u8> {
        let (g0, j0, g1, j1) = (t0 / 3, t0 % 3, t1 / 3, t1 % 3);
        (0..4).map(|k| q(4 * g0 as i32 + k, j0 as i32) | q(4 * g1 as i32 + k, j1 as i32) << 4).collect()
    };
    assert_eq!(layout.weights(0).len, 12);
    assert_eq!(&payload[layout.weights(0).range()], [word(0, 1), word(2, 3), word(4, 5)].concat());
    // Layer 1: its diagonal, q = 1, -2, 7, in inputs 0, 1, 2 of outputs 0, 1, 2.
    assert_eq!(&payload[layout.weights(1).range()], &[0x01, 0xE0, 0, 0, 0, 0, 0x07, 0]);
    assert_eq!(&payload[layout.counts(1).range()], &[3]);
    assert_eq!(&payload[layout.indices(1).range()], &[0, 1, 2]);
    let model = Int8Model::from_bytes(&bytes).unwrap();
    check_every_kernel(&params, &model, &[vec![1, 2, 3, 4, 5], vec![0; 5], vec![255; 5]], "golden");
}

/// `bytes` with `edit` applied, resealed with a correct checksum.
fn resealed(bytes: &[u8], edit: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    edit(&mut bytes);
    let n = bytes.len() - 4;
    let crc = format::checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn what_the_int4_reader_and_writer_refuse() {
    let mut rng = Rng(47);
    let mut params = Params::random(&mut rng, arch(&[5, 3, 3]), Activation::Relu);
    params.make_int4(0);
    let good = params.encode();
    assert!(Model::from_bytes(&good).is_ok());
    // 6 blocks: 3 whole words. With 3 outputs of 1 group (inputs 4), 3 blocks: the high
    // halves of the second word are unused and must be zero.
    let mut odd = Params::random(&mut rng, arch(&[4, 3, 2]), Activation::Relu);
    odd.make_int4(0);
    let odd_file = odd.encode();
    assert!(Model::from_bytes(&odd_file).is_ok());
    for k in 0..4 {
        let bad = resealed(&odd_file, |b| b[64 + 4 + k] |= 0x10);
        assert_eq!(Model::from_bytes(&bad).map(|_| ()), Err(Error::Malformed), "byte {k}");
    }
    // A version-5 header that lists no int4 layer, or another count of layers.
    assert_eq!(&good[13..17], &[2, 1, 0, 0]);
    for (at, value) in [(13, 3), (13, 1), (14, 0)] {
        let bad = resealed(&good, |b| b[at] = value);
        assert!(Model::from_bytes(&bad).is_err(), "byte {at} = {value}");
    }
    // Every truncation and flipped byte.
    for cut in 0..good.len() {
        assert!(Model::from_bytes(&good[..cut]).is_err(), "cut at {cut}");
    }
    common::every_flipped_byte_is_an_error(&good);
    // The writer: a weight that is not a multiple of 16 has no int4 value.
    params.weights[0][7] = 17;
    let layers = params.layers();
    let mut out = vec![0u8; 4096];
    let extras = format::Extras::NONE;
    let refused = infer_core::int8net::encode(&params.arch, params.activation, &layers, 0.1, None, &extras, &mut out);
    assert_eq!(refused, Err(Error::OutOfRange { layer: 0, what: infer_core::error::Param::Weights, value: 17 }));
    // An f32 file has no int4 layers.
    let f32_header =
        Header::new(arch(&[5, 3, 3]), Activation::Relu, Quant::F32).with_storage(Storage::DENSE.with_int4(0));
    let payload = vec![0u8; f32_header.payload_len()];
    assert_eq!(format::write(&f32_header, &payload, &extras, &mut [0; 512]), Err(Error::Malformed));
}
