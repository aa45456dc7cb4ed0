//! The int8 model on many shapes: the SIMD kernel against the scalar reference and both
//! against a naive loop over the natural weight layout; the writer and the parser against
//! corrupt, truncated and out-of-range files; the errors that replaced panics.

use infer_core::arch::Architecture;
use infer_core::format::{self, Extras, Header};
use infer_core::int8net::{self, INT8_SCRATCH_MAX};
use infer_core::layout::Int8Layout;
use infer_core::{Activation, Error, Int8Model, Int8Scratch, Model, Param, Quant};

mod common;

use common::{Params, Rng, arch, kernels, random_image};

/// Shapes that reach every path: 1 to 4 hidden layers, widths that are not multiples of
/// 4, 16 or 128, a hidden layer wider than the input, one-unit layers, blocks of 128.
fn shapes() -> Vec<Architecture> {
    vec![
        Architecture::FMNIST,
        arch(&[784, 32, 10]),
        arch(&[784, 256, 128, 64, 10]),
        arch(&[784, 33, 10]),
        arch(&[8, 1024, 3, 1, 7, 2]),
        arch(&[12, 5, 130, 2]),
        arch(&[4, 1, 1]),
        arch(&[64, 250, 129, 17]),
        // Inputs of any width: a table's few features, one feature, the widest input.
        arch(&[13, 7, 3]),
        arch(&[1, 4, 2]),
        arch(&[30, 64, 32, 2]),
        arch(&[4096, 16, 5]),
        arch(&[4093, 9, 256]),
    ]
}

#[test]
fn simd_kernel_matches_scalar_and_the_naive_loop_on_every_shape() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for arch in shapes() {
        for activation in [Activation::Relu, Activation::Sigmoid] {
            let params = Params::random(&mut rng, arch, activation);
            let bytes = params.encode();
            let model = Int8Model::from_bytes(&bytes).unwrap();
            assert_eq!((model.architecture(), model.activation()), (arch, activation));
            let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
            let mut images: Vec<Vec<u8>> = (0..68).map(|_| random_image(&mut rng, arch.inputs())).collect();
            images.push(vec![0; arch.inputs()]);
            images.push(vec![255; arch.inputs()]);
            let mut classes = vec![0usize; arch.classes()];
            let mut expected = Vec::new();
            for img in &images {
                let (mut fast, mut slow) = (vec![0; arch.classes()], vec![0; arch.classes()]);
                let a = model.predict(img, &mut scratch, &mut fast).unwrap();
                let b = model.predict_scalar(img, &mut scratch, &mut slow).unwrap();
                assert_eq!((a, &fast), (b, &slow), "{arch} {activation:?}");
                assert_eq!(fast, params.naive(img), "{arch} {activation:?}");
                for kernel in kernels() {
                    let mut other = vec![0; arch.classes()];
                    let c = model.predict_with(kernel, img, &mut scratch, &mut other).unwrap();
                    assert_eq!((c, &other), (b, &slow), "{arch} {activation:?} on {kernel}");
                }
                classes[a] += 1;
                expected.push((b as u16, slow));
            }
            // The batched pass: every image as alone, on every kernel, for batches that end
            // inside a block and on one's edge, and AMX's one tile, two, two and one image.
            for kernel in kernels() {
                for n in [1, 16, 33, 48, int8net::BATCH_BLOCK, images.len()] {
                    let flat: Vec<u8> = images[..n].concat();
                    let mut batch_scratch = vec![0u8; model.batch_scratch_bytes(n)];
                    let (mut scores, mut got) = (vec![0; n * arch.classes()], vec![0u16; n]);
                    model.predict_batch_with(kernel, &flat, &mut batch_scratch, &mut scores, &mut got).unwrap();
                    for (i, (class, want)) in expected[..n].iter().enumerate() {
                        let at = i * arch.classes();
                        assert_eq!(
                            (got[i], &scores[at..at + arch.classes()]),
                            (*class, &want[..]),
                            "{arch} {activation:?} image {i} of {n} on {kernel}"
                        );
                    }
                }
            }
            // The models are random, but not degenerate: scores vary across images.
            if arch.classes() > 2 && arch.hidden().iter().all(|&w| w > 2) {
                assert!(classes.iter().filter(|&&c| c > 0).count() >= 2, "{arch} {activation:?}: {classes:?}");
            }
        }
    }
}

#[test]
fn every_kernel_the_cpu_has_is_tested_and_the_others_are_refused() {
    // CI runs these tests on emulated CPUs and names the kernel each must choose.
    if let Ok(want) = std::env::var("FMLP_EXPECT_KERNEL") {
        let got = int8net::Kernel::detected();
        assert!(got.name().contains(&want), "FMLP_EXPECT_KERNEL={want}, but {got} was chosen");
    }
    let ran: Vec<_> = kernels().collect();
    assert!(ran.contains(&int8net::Kernel::detected()) && ran.contains(&int8net::Kernel::Portable), "{ran:?}");
    #[cfg(target_arch = "x86_64")]
    assert!(ran.contains(&int8net::Kernel::X86Baseline), "{ran:?}");
    let bytes = Params::random(&mut Rng(5), arch(&[12, 5, 3]), Activation::Relu).encode();
    let model = Int8Model::from_bytes(&bytes).unwrap();
    let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
    for kernel in int8net::Kernel::ALL.into_iter().filter(|k| !k.runs()) {
        assert_eq!(model.predict_with(kernel, &[1; 12], &mut scratch, &mut [0; 3]), Err(Error::KernelUnavailable));
    }
}

#[test]
fn a_batch_refuses_short_buffers_and_partial_images_and_writes_nothing() {
    let bytes = Params::random(&mut Rng(6), arch(&[13, 7, 3]), Activation::Relu).encode();
    let model = Int8Model::from_bytes(&bytes).unwrap();
    // More images than a block: the scratch holds one block.
    let n = int8net::BATCH_BLOCK + 2;
    let images = vec![7u8; 13 * n];
    let need = model.batch_scratch_bytes(n);
    assert_eq!(need, model.batch_scratch_bytes(int8net::BATCH_BLOCK));
    // A lane per image of a block, and on x86-64 room to copy whole tiles of 16 for AMX.
    assert!(need >= int8net::BATCH_BLOCK * model.scratch_bytes().next_multiple_of(4));
    assert_eq!(model.batch_scratch_bytes(3), 3 * model.scratch_bytes().next_multiple_of(4));
    let mut scratch = vec![0u8; need + 2];
    let (mut scores, mut classes) = (vec![-1; 3 * n], vec![9u16; n]);
    let cases = [
        (&images[..13 * n - 1], need, 3 * n, n, Error::InputSize { expected: 13 * n, found: 13 * n - 1 }),
        (&images[..], need, 3 * n - 1, n, Error::OutputSize { expected: 3 * n, found: 3 * n - 1 }),
        (&images[..], need, 3 * n, n - 1, Error::OutputSize { expected: n, found: n - 1 }),
        (&images[..], need - 1, 3 * n, n, Error::ScratchTooSmall { needed: need, capacity: need - 1 }),
    ];
    for (images, bytes, n_scores, n_classes, error) in cases {
        let got =
            model.predict_batch_in(images, &mut scratch[..bytes], &mut scores[..n_scores], &mut classes[..n_classes]);
        assert_eq!(got, Err(error));
    }
    let odd = model.predict_batch_in(&images, &mut scratch[1..need + 1], &mut scores, &mut classes);
    assert_eq!(odd, Err(Error::ScratchAlignment));
    assert!(scores.iter().all(|&s| s == -1) && classes.iter().all(|&c| c == 9));
    model.predict_batch_in(&images, &mut scratch, &mut scores, &mut classes).unwrap();
    assert!(classes.iter().all(|&c| c == classes[0] && c < 3), "{classes:?}");
    // An empty batch is a batch.
    assert_eq!(model.predict_batch_in(&[], &mut scratch, &mut [], &mut []), Ok(()));
}

#[test]
fn a_scratch_sized_for_the_model_gives_the_same_scores_as_a_large_one() {
    let mut rng = Rng(3);
    let arch = arch(&[784, 256, 128, 64, 10]);
    let bytes = Params::random(&mut rng, arch, Activation::Relu).encode();
    let model = Int8Model::from_bytes(&bytes).unwrap();
    const NEED: usize = 256 + 128 + 2 * 784 / 4;
    assert_eq!(model.scratch_bytes(), NEED);
    assert_eq!(arch.int8_scratch_bytes(), NEED);
    let mut exact = Int8Scratch::<NEED>::for_model(&model).unwrap();
    let mut large = Int8Scratch::<INT8_SCRATCH_MAX>::for_model(&model).unwrap();
    // Stale bytes from a wider model must not leak into the padding of this one.
    let wide = Params::random(&mut rng, self::arch(&[784, 1024, 1023, 10]), Activation::Sigmoid).encode();
    let wide = Int8Model::from_bytes(&wide).unwrap();
    wide.predict(&[255; 784], &mut large, &mut [0; 10]).unwrap();
    for _ in 0..20 {
        let img = random_image(&mut rng, 784);
        let (mut a, mut b) = ([0; 10], [0; 10]);
        assert_eq!(model.predict(&img, &mut exact, &mut a), model.predict(&img, &mut large, &mut b));
        assert_eq!(a, b);
    }
}

/// `params` with an input quantizer of a gain and an offset per input, as a file.
fn with_quantizer(params: &Params, pairs: &[(f32, f32)]) -> Vec<u8> {
    let mut input = vec![0u8; 8 * pairs.len()];
    Extras::input_bytes(pairs, &mut input).unwrap();
    let names = (0..params.arch.classes()).map(|c| format!("class {c}\n")).collect::<String>();
    let extras = Extras::new(names.as_bytes(), &input);
    let header = Header::new(params.arch, params.activation, Quant::Int8).with_extras(&extras);
    let mut out = vec![0u8; header.file_len()];
    let len =
        int8net::encode(&params.arch, params.activation, &params.layers(), 0.01, params.table(), &extras, &mut out)
            .unwrap();
    assert_eq!(len, out.len());
    out
}

#[test]
fn real_valued_features_go_through_the_input_quantizer_on_every_kernel() {
    let mut rng = Rng(29);
    for widths in [&[13, 7, 3][..], &[8, 16, 2], &[30, 64, 32, 5], &[4096, 8, 3]] {
        let arch = arch(widths);
        let params = Params::random(&mut rng, arch, Activation::Relu);
        let pairs: Vec<(f32, f32)> =
            (0..arch.inputs()).map(|i| (1.0 + i as f32 * 0.25, if i % 5 == 0 { 0.0 } else { 128.0 })).collect();
        let bytes = with_quantizer(&params, &pairs);
        let model = Int8Model::from_bytes(&bytes).unwrap();
        assert!(model.extras().has_input_quantizer());
        assert_eq!(model.extras().class_name(1), Some("class 1"));
        // Room for the quantized input beside the groups list, even when it is whole groups.
        assert_eq!(
            model.scratch_bytes(),
            arch.int8_activation_bytes() + arch.int8_group_bytes() + 4 * arch.inputs().div_ceil(4)
        );
        let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
        for _ in 0..20 {
            let features: Vec<f32> = (0..arch.inputs()).map(|_| (rng.below(4000) as f32 - 2000.0) / 37.0).collect();
            let quantized: Vec<u8> =
                features.iter().zip(&pairs).map(|(&x, &(g, o))| format::quantize_input(x, g, o)).collect();
            let mut bytes = vec![0u8; arch.inputs()];
            model.quantize_features(&features, &mut bytes).unwrap();
            assert_eq!(bytes, quantized);
            let (mut a, mut b, mut c) = (vec![0; arch.classes()], vec![0; arch.classes()], vec![0; arch.classes()]);
            let fast = model.predict_features(&features, &mut scratch, &mut a).unwrap();
            let slow = model.predict_features_scalar(&features, &mut scratch, &mut b).unwrap();
            let raw = model.predict(&quantized, &mut scratch, &mut c).unwrap();
            assert_eq!((fast, &a), (slow, &b), "{arch}");
            assert_eq!((fast, &a), (raw, &c), "{arch}");
            assert_eq!(a, params.naive(&quantized), "{arch}");
        }
        let (needed, mut scores) = (model.scratch_bytes(), vec![0; arch.classes()]);
        let small = model.predict_features(&vec![0.0; arch.inputs()], &mut Int8Scratch::<16>::zeroed(), &mut scores);
        assert_eq!(small, Err(Error::ScratchTooSmall { needed, capacity: 16 }));
        let short = model.predict_features(&vec![0.0; arch.inputs() - 1], &mut scratch, &mut scores);
        assert_eq!(short, Err(Error::InputSize { expected: arch.inputs(), found: arch.inputs() - 1 }));
    }
}

#[test]
fn buffers_of_the_wrong_size_are_errors_not_panics() {
    let mut rng = Rng(5);
    let bytes = Params::random(&mut rng, Architecture::FMNIST, Activation::Relu).encode();
    let model = Int8Model::from_bytes(&bytes).unwrap();
    let mut scratch = Int8Scratch::new();
    let mut scores = [0; 10];
    assert_eq!(
        model.predict(&[0; 783], &mut scratch, &mut scores),
        Err(Error::InputSize { expected: 784, found: 783 })
    );
    assert_eq!(model.predict(&[0; 784], &mut scratch, &mut [0; 9]), Err(Error::OutputSize { expected: 10, found: 9 }));
    // A longer scores buffer is fine: the first ten are written.
    let mut long = [7; 12];
    model.predict(&[0; 784], &mut scratch, &mut long).unwrap();
    assert_eq!(long[10..], [7, 7]);
    let mut small = Int8Scratch::<1159>::zeroed();
    assert_eq!(
        model.predict(&[0; 784], &mut small, &mut scores),
        Err(Error::ScratchTooSmall { needed: 1160, capacity: 1159 })
    );
    assert!(Int8Scratch::<1159>::for_model(&model).is_err());
    // The default scratch is the study's network's, and no larger.
    assert_eq!(std::mem::size_of::<Int8Scratch>(), 1160);
    assert_eq!(int8net::INT8_SCRATCH_BYTES, 1160);
    // A wider model does not fit the default scratch.
    let wide = Params::random(&mut rng, arch(&[784, 1024, 10]), Activation::Relu).encode();
    let wide = Int8Model::from_bytes(&wide).unwrap();
    assert!(matches!(Int8Scratch::<1160>::for_model(&wide), Err(Error::ScratchTooSmall { needed: 1536, .. })));
    // Features are for a model with an input quantizer; this one takes pixels.
    assert_eq!(model.predict_features(&[0.5; 784], &mut scratch, &mut scores), Err(Error::NoInputQuantizer));
}

#[test]
fn golden_int8_file_bytes() {
    let mut rng = Rng(7);
    let arch = arch(&[8, 5, 3]);
    let params = Params::random(&mut rng, arch, Activation::Relu);
    let bytes = params.encode();
    let layout = Int8Layout::new(&arch, Activation::Relu);
    // Header: magic, version 3, 3 widths 8 5 3, ReLU 1, int8 1, payload length, extras
    // length; zeros to 64.
    assert_eq!(bytes[..11], [b'F', b'M', b'L', b'P', 3, 3, 8, 5, 3, 1, 1]);
    assert_eq!(layout.len(), 170);
    assert_eq!(bytes[11..14], [0xaa, 0x01, 2], "170 as a varint; two empty extras");
    assert!(bytes[14..64].iter().all(|&b| b == 0));
    assert_eq!(bytes.len(), 64 + layout.len() + 2 + 4);
    let payload = &bytes[64..64 + layout.len()];
    // Weights of input group g to output j at (g * 5 + j) * 4: input 4g + k is byte k.
    let w = &params.weights[0];
    assert_eq!(payload[..4], [w[0] as u8, w[5] as u8, w[10] as u8, w[15] as u8], "inputs 0..4 to output 0");
    assert_eq!(payload[(5 + 2) * 4 + 1], w[5 * 5 + 2] as u8, "input 5 to output 2");
    // The second layer starts on 64 bytes; its 5 inputs are padded to 8 with zero weights.
    let w2 = &params.weights[1];
    assert_eq!(layout.weights(1).start, 64);
    assert_eq!(payload[64..68], [w2[0] as u8, w2[3] as u8, w2[6] as u8, w2[9] as u8]);
    assert_eq!(payload[64 + (3 + 1) * 4..64 + (3 + 1) * 4 + 4], [w2[12 + 1] as u8, 0, 0, 0]);
    let b = layout.biases(0).start;
    assert_eq!(payload[b..b + 2], params.biases[0][0].to_le_bytes());
    assert_eq!(payload[layout.shifts(1).range()], params.shifts[1]);
    assert_eq!(payload[layout.score_scale().range()], 0.01f32.to_le_bytes());
    assert_eq!(bytes[bytes.len() - 4..], format::checksum(&bytes[..bytes.len() - 4]).to_le_bytes());
}

#[test]
fn every_truncation_is_an_error() {
    let mut rng = Rng(11);
    for arch in [arch(&[12, 5, 130, 2]), Architecture::FMNIST] {
        let bytes = Params::random(&mut rng, arch, Activation::Sigmoid).encode();
        assert!(Model::from_bytes(&bytes).is_ok());
        let step = if bytes.len() > 10_000 { 997 } else { 1 };
        for cut in (0..bytes.len()).step_by(step) {
            assert!(Model::from_bytes(&bytes[..cut]).is_err(), "{arch}: cut at {cut}");
        }
        assert_eq!(Model::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err(), Error::Truncated);
    }
}

#[test]
fn flipped_bytes_are_errors() {
    let mut rng = Rng(13);
    let bytes = Params::random(&mut rng, arch(&[12, 5, 130, 2]), Activation::Relu).encode();
    common::every_flipped_byte_is_an_error(&bytes);
}

/// `payload` wrapped in a valid header and checksum, whatever its contents.
fn raw_file(arch: Architecture, activation: Activation, payload: &[u8]) -> Vec<u8> {
    let header = Header::new(arch, activation, Quant::Int8);
    let mut out = vec![0u8; header.with_extras(&Extras::NONE).file_len()];
    format::write(&header, payload, &Extras::NONE, &mut out).unwrap();
    out
}

#[test]
fn out_of_range_parameters_name_the_layer_and_field() {
    let mut rng = Rng(17);
    let arch = arch(&[784, 64, 32, 10]);
    let good = Params::random(&mut rng, arch, Activation::Relu).encode();
    let payload = format::read(&good).unwrap().payload();
    let layout = Int8Layout::new(&arch, Activation::Relu);
    let out_of_range = |layer, what, value| Error::OutOfRange { layer, what, value };
    let cases: [(usize, &[u8], Error); 6] = [
        (layout.shifts(0).start, &[25], out_of_range(0, Param::RoundingShift, 25)),
        (layout.shifts(1).start + 1, &[31], out_of_range(1, Param::MultiplierShift, 31)),
        (layout.shifts(1).start + 2, &[3], out_of_range(1, Param::ZeroPoint, 3)),
        (layout.shifts(2).start + 2, &[0xff], out_of_range(2, Param::ZeroPoint, -1)),
        (layout.multipliers(2).start + 2 * 4, &[0x00, 0x80], out_of_range(2, Param::Multipliers, -32768)),
        (layout.score_scale().start, &f32::NAN.to_le_bytes(), Error::ScoreScale),
    ];
    for (at, patch, expected) in cases {
        let mut p = payload.to_vec();
        p[at..at + patch.len()].copy_from_slice(patch);
        let e = Int8Model::from_bytes(&raw_file(arch, Activation::Relu, &p)).unwrap_err();
        assert_eq!(e, expected);
        assert!(e.to_string().starts_with("layer ") || e == Error::ScoreScale, "{e}");
    }
    assert!(Int8Model::from_bytes(&raw_file(arch, Activation::Relu, payload)).is_ok());
    // The writer refuses what the reader would.
    let mut params = Params::random(&mut rng, arch, Activation::Relu);
    params.shifts[1][0] = 25;
    let mut out = vec![0u8; good.len()];
    let e =
        int8net::encode(&arch, Activation::Relu, &params.layers(), 0.01, None, &Extras::NONE, &mut out).unwrap_err();
    assert_eq!(e, out_of_range(1, Param::RoundingShift, 25));
    params.shifts[1][0] = 10;
    params.biases[2].pop();
    let e =
        int8net::encode(&arch, Activation::Relu, &params.layers(), 0.01, None, &Extras::NONE, &mut out).unwrap_err();
    assert_eq!(e, Error::ParameterCount { layer: 2, what: Param::Biases, expected: 10, found: 9 });
    params.biases[2].push(0);
    let table = [0u8; 256];
    let e = int8net::encode(&arch, Activation::Relu, &params.layers(), 0.01, Some(&table), &Extras::NONE, &mut out)
        .unwrap_err();
    assert_eq!(e, Error::SigmoidTable);
    let e = int8net::encode(&arch, Activation::Relu, &params.layers()[..2], 0.01, None, &Extras::NONE, &mut out)
        .unwrap_err();
    assert_eq!(e, Error::LayerCount { expected: 3, found: 2 });
    let e = int8net::encode(&arch, Activation::Relu, &params.layers(), 0.01, None, &Extras::NONE, &mut out[..100])
        .unwrap_err();
    assert_eq!(e, Error::BufferTooSmall { needed: good.len(), found: 100 });
}

#[test]
fn quantization_mismatch_is_reported() {
    let mut rng = Rng(19);
    let bytes = Params::random(&mut rng, arch(&[16, 8, 4]), Activation::Relu).encode();
    assert_eq!(
        infer_core::F32Model::from_bytes(&bytes).unwrap_err(),
        Error::WrongQuantization { expected: Quant::F32, found: Quant::Int8 }
    );
    assert!(matches!(Model::from_bytes(&bytes), Ok(Model::Int8(_))));
}

#[test]
fn version_1_files_of_the_study_network_load_and_classify_alike() {
    // Version 1 put the payload right after the header fields, with a varint length.
    let mut rng = Rng(23);
    let params = Params::random(&mut rng, Architecture::FMNIST, Activation::Relu);
    let v2 = params.encode();
    let payload = format::read(&v2).unwrap().payload();
    let mut v1 = vec![b'F', b'M', b'L', b'P', 1, 0x90, 0x06, 0x80, 0x04, 0x80, 0x02, 10, 1, 1];
    let mut len = payload.len();
    while len >= 0x80 {
        v1.push((len as u8) | 0x80);
        len >>= 7;
    }
    v1.push(len as u8);
    v1.extend_from_slice(payload);
    let crc = format::checksum(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    let (old, new) = (Int8Model::from_bytes(&v1).unwrap(), Int8Model::from_bytes(&v2).unwrap());
    let mut scratch = Int8Scratch::new();
    for _ in 0..10 {
        let img = random_image(&mut rng, 784);
        let (mut a, mut b) = ([0; 10], [0; 10]);
        assert_eq!(old.predict(&img, &mut scratch, &mut a), new.predict(&img, &mut scratch, &mut b));
        assert_eq!(a, b);
    }
}
