//! Arbitrary int8 payloads in a well-formed file (valid header and CRC): the parameter
//! checks and the forward pass never panic (overflow checks included, as in a debug
//! build), and the SIMD kernel gives the scalar reference's bits.
//!
//! `cargo fuzz run int8_forward` (from `infer-core/`). The input's first byte picks the
//! activation (bit 0) and whether to bring the parameters into their valid ranges (bit 1:
//! multipliers non-negative, shifts in range, a positive score scale), so that most inputs
//! reach the forward pass; the next 784 bytes are the image, and the rest is repeated to
//! fill the payload.
#![no_main]

use infer_core::format::{self, Header};
use infer_core::arch::{HIDDEN1, HIDDEN2, INPUT, INT8_CHANNEL_BYTES, INT8_WEIGHT_BYTES, OUTPUT};
use infer_core::{Activation, Int8Model, Int8Scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    if rest.len() <= INPUT {
        return;
    }
    let (image, params) = rest.split_at(INPUT);
    let activation = if pick & 1 == 0 { Activation::Relu } else { Activation::Sigmoid };
    let header = Header::int8(activation);
    let mut payload: Vec<u8> = params.iter().copied().cycle().take(header.payload_len()).collect();
    if pick & 2 != 0 {
        let mut at = INT8_WEIGHT_BYTES;
        for n in [HIDDEN1, HIDDEN2, OUTPUT] {
            // Bias (2n bytes), then the multipliers: clear each one's sign bit.
            for j in 0..n {
                payload[at + 2 * n + 2 * j + 1] &= 0x7f;
            }
            at += 4 * n;
        }
        let layers = INT8_WEIGHT_BYTES + INT8_CHANNEL_BYTES;
        for k in 0..3 {
            payload[layers + 3 * k] %= 25;
            payload[layers + 3 * k + 1] %= 31;
            if activation == Activation::Relu || k == 2 {
                payload[layers + 3 * k + 2] = 0;
            }
        }
        payload[layers + 9..layers + 13].copy_from_slice(&1.0f32.to_le_bytes());
    }
    let mut file = vec![0u8; payload.len() + format::MAX_OVERHEAD];
    let len = format::write(&header, &payload, &mut file).expect("a payload of the right size encodes");
    let Ok(model) = Int8Model::from_bytes(&file[..len]) else { return };
    let image: &[u8; INPUT] = image.try_into().unwrap();
    let mut scratch = Int8Scratch::new();
    let fast = model.predict(image, &mut scratch);
    let reference = model.predict_scalar(image, &mut scratch);
    assert_eq!(fast, reference);
});
