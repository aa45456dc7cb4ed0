//! Any byte string is a model or an error, never a panic; a model that parses classifies.
//!
//! `cargo fuzz run from_bytes` (from `infer-core/`). Most inputs stop at the header or the
//! CRC; `int8_forward` reaches past them.
#![no_main]

use infer_core::{Int8Scratch, Model, Scratch, arch::INPUT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Model::from_bytes(data) {
        Ok(Model::Int8(model)) => {
            let (class, scores) = model.predict(&[200; INPUT], &mut Int8Scratch::new());
            assert_eq!(class, infer_core::int8net::argmax_i32(&scores));
        }
        Ok(Model::F32(model)) => {
            let (class, _) = model.predict(&[0.5; INPUT], &mut Scratch::new());
            assert!(class < 10);
        }
        Err(_) => {}
    }
});
