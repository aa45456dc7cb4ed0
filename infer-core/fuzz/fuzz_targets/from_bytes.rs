//! Any byte string is a model or an error, never a panic; a model that parses classifies.
//!
//! `cargo fuzz run from_bytes` (from `infer-core/`). Most inputs stop at the header or the
//! CRC; `int8_forward` reaches past them.
#![no_main]

use infer_core::int8net::INT8_SCRATCH_MAX;
use infer_core::{Int8Scratch, Model, Scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data) else { return };
    let arch = model.architecture();
    match model {
        Model::Int8(model) => {
            let mut scores = vec![0i32; arch.classes()];
            let image = vec![200u8; arch.inputs()];
            let class = model.predict(&image, &mut Int8Scratch::<INT8_SCRATCH_MAX>::zeroed(), &mut scores).unwrap();
            assert_eq!(class, infer_core::int8net::argmax_i32(&scores));
        }
        Model::F32(model) => {
            let mut logits = vec![0f32; arch.classes()];
            let image = vec![0.5f32; arch.inputs()];
            let class = model.predict(&image, &mut Scratch::<2048>::zeroed(), &mut logits).unwrap();
            assert!(class < arch.classes());
        }
    }
});
