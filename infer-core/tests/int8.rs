//! The int8 model: SIMD kernel against the scalar reference, and the parser against
//! corrupt, truncated and out-of-range files.

use infer_core::arch::{self, INPUT, INT8_CHANNEL_BYTES, INT8_WEIGHT_BYTES};
use infer_core::format::{self, Header};
use infer_core::{Activation, Error, Int8Model, Int8Scratch, Model};

/// xorshift64*: enough randomness for test data, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Offset of the per-layer parameters (r, s, zero point) in the payload.
const PARAMS_AT: usize = INT8_WEIGHT_BYTES + INT8_CHANNEL_BYTES;

/// A random but valid int8 payload: any weights, biases and tables; multipliers and
/// shifts within the format's ranges.
fn random_payload(rng: &mut Rng, activation: Activation) -> Vec<u8> {
    let len = Header::int8(activation).payload_len();
    let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    // Small biases (so that inputs, not biases, decide the class) and non-negative
    // multipliers (clear each one's sign bit).
    let mut at = INT8_WEIGHT_BYTES;
    for n in [arch::HIDDEN1, arch::HIDDEN2, arch::OUTPUT] {
        for j in 0..n {
            p[at + 2 * j + 1] = if p[at + 2 * j] & 1 == 0 { 0 } else { 0xff };
            p[at + 2 * n + 2 * j + 1] &= 0x7f;
        }
        at += 4 * n;
    }
    for l in 0..3 {
        // Shifts that keep activations away from always-saturated, so both kernels do real work.
        p[PARAMS_AT + 3 * l] = 9 + rng.below(3) as u8;
        p[PARAMS_AT + 3 * l + 1] = 14 + rng.below(3) as u8;
        if activation == Activation::Relu || l == 2 {
            p[PARAMS_AT + 3 * l + 2] = 0;
        }
    }
    p[PARAMS_AT + 9..PARAMS_AT + 13].copy_from_slice(&0.01f32.to_le_bytes());
    p
}

fn file(activation: Activation, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; payload.len() + format::MAX_OVERHEAD];
    let len = format::write(&Header::int8(activation), payload, &mut out).unwrap();
    out.truncate(len);
    out
}

/// An image with dark borders and zero runs, like Fashion-MNIST's.
fn random_image(rng: &mut Rng) -> [u8; INPUT] {
    let mut img = [0u8; INPUT];
    let density = rng.below(100);
    for p in img.iter_mut() {
        if rng.below(100) < density {
            *p = rng.next() as u8;
        }
    }
    img
}

#[test]
fn simd_kernel_matches_scalar_bit_for_bit() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for activation in [Activation::Relu, Activation::Sigmoid] {
        for _ in 0..3 {
            let bytes = file(activation, &random_payload(&mut rng, activation));
            let model = Int8Model::from_bytes(&bytes).unwrap();
            let (mut a, mut b) = (Int8Scratch::new(), Int8Scratch::new());
            let mut images: Vec<[u8; INPUT]> = (0..150).map(|_| random_image(&mut rng)).collect();
            images.push([0; INPUT]);
            images.push([255; INPUT]);
            let mut classes = [0usize; 10];
            for img in &images {
                let fast = model.predict(img, &mut a);
                let slow = model.predict_scalar(img, &mut b);
                assert_eq!(fast, slow, "{activation:?}");
                classes[fast.0] += 1;
            }
            // The models are random, but not degenerate: scores vary across images.
            assert!(classes.iter().filter(|&&c| c > 0).count() >= 2, "{classes:?}");
        }
    }
}

#[test]
fn golden_int8_header_bytes() {
    let mut rng = Rng(7);
    let payload = random_payload(&mut rng, Activation::Relu);
    assert_eq!(payload.len(), 538_165);
    let bytes = file(Activation::Relu, &payload);
    // magic, version 1, 784-512-256-10 as varints, activation Relu = 1, quant Int8 = 1,
    // payload length 538_165 as varint (0xb5 0xec 0x20).
    let head = [b'F', b'M', b'L', b'P', 1, 0x90, 0x06, 0x80, 0x04, 0x80, 0x02, 10, 1, 1, 0xb5, 0xec, 0x20];
    assert_eq!(bytes[..17], head);
    assert_eq!(bytes.len(), 17 + payload.len() + 4);
    assert!(bytes.len() < 540_000);
    assert_eq!(Header::int8(Activation::Sigmoid).payload_len(), 538_165 + 256);
}

#[test]
fn every_truncation_is_an_error() {
    let mut rng = Rng(11);
    let bytes = file(Activation::Sigmoid, &random_payload(&mut rng, Activation::Sigmoid));
    assert!(Model::from_bytes(&bytes).is_ok());
    for cut in 0..bytes.len() {
        assert!(Model::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(Model::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err(), Error::Truncated);
}

#[test]
fn flipped_bytes_are_errors() {
    let mut rng = Rng(13);
    let mut bytes = file(Activation::Relu, &random_payload(&mut rng, Activation::Relu));
    let weights_end = 17 + INT8_WEIGHT_BYTES;
    // Every byte of the header, the parameters and the checksum; every 127th weight (each
    // check re-reads half a megabyte, and the CRC treats every weight byte alike).
    let positions = (0..17).chain((17..weights_end).step_by(127)).chain(weights_end..bytes.len());
    let mut checked = 0;
    for at in positions {
        for flip in [0x01, 0xff] {
            bytes[at] ^= flip;
            assert!(Model::from_bytes(&bytes).is_err(), "flip {flip:#x} at {at}");
            bytes[at] ^= flip;
            checked += 1;
        }
    }
    assert!(checked > 2 * 7_000);
    assert!(Model::from_bytes(&bytes).is_ok());
}

#[test]
fn out_of_range_parameters_are_malformed() {
    let mut rng = Rng(17);
    let good = random_payload(&mut rng, Activation::Relu);
    let cases: [(&str, usize, &[u8]); 5] = [
        ("rounding shift 25", PARAMS_AT, &[25]),
        ("multiplier shift 31", PARAMS_AT + 1, &[31]),
        ("zero point on a ReLU layer", PARAMS_AT + 2, &[3]),
        ("negative multiplier", INT8_WEIGHT_BYTES + 2 * arch::HIDDEN1 + 1, &[0x80]),
        ("NaN score scale", PARAMS_AT + 9, &f32::NAN.to_le_bytes()),
    ];
    for (what, at, patch) in cases {
        let mut p = good.clone();
        p[at..at + patch.len()].copy_from_slice(patch);
        assert_eq!(Int8Model::from_bytes(&file(Activation::Relu, &p)).unwrap_err(), Error::Malformed, "{what}");
    }
    assert!(Int8Model::from_bytes(&file(Activation::Relu, &good)).is_ok());
}

#[test]
fn quantization_mismatch_is_reported() {
    let mut rng = Rng(19);
    let bytes = file(Activation::Relu, &random_payload(&mut rng, Activation::Relu));
    assert_eq!(infer_core::F32Model::from_bytes(&bytes).unwrap_err(), Error::WrongQuantization);
    assert!(matches!(Model::from_bytes(&bytes), Ok(Model::Int8(_))));
}
