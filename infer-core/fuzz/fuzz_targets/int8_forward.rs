//! Int8 models of arbitrary shape and parameters: the parser and the forward pass never
//! panic (overflow checks included, as in a debug build), and the SIMD kernel gives the
//! scalar reference's bits.
//!
//! `cargo fuzz run int8_forward` (from `infer-core/`). The input's first bytes pick the
//! shape (1 to 4 hidden layers of 1 to 64 units, 4 to 64 inputs, 1 to 16 classes) and the
//! activation; one bit stores the hidden layers sparse (format version 4, most of their
//! weights zeroed), one their weights as int4 (version 5; a model that loads is also
//! widened to int8, `widen::widen`, and must score alike); one bit picks how the parameters
//! are made:
//!
//! - through the codec (`int8net::encode`), from the input's bytes brought into the
//!   format's ranges, so that most inputs reach the forward pass;
//! - or as raw payload bytes wrapped in a valid header and checksum (`format::write`),
//!   so that the parser's parameter checks see anything.
//!
//! The rest of the input is the image, then the parameter bytes (repeated as needed).
#![no_main]

use infer_core::arch::Architecture;
use infer_core::format::{self, Header, Quant};
use infer_core::int8net::{self, INT8_SCRATCH_MAX, Int8Layer};
use infer_core::{Activation, Int8Model, Int8Scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // Say which kernel is under test: the one this CPU runs best, chosen at run time.
        eprintln!("int8_forward: fast kernel {}", infer_core::int8net::Kernel::detected());
    },
    |data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<6>() else { return };
    let hidden = 1 + usize::from(head[0] & 3);
    let raw = head[0] & 4 != 0;
    let activation = if head[0] & 8 == 0 { Activation::Relu } else { Activation::Sigmoid };
    let sparse = head[0] & 16 != 0;
    let int4 = head[0] & 32 != 0;
    let mut widths = vec![1 + usize::from(head[1] % 64)];
    widths.extend(head[2..2 + hidden].iter().map(|&w| 1 + usize::from(w % 64)));
    widths.push(1 + usize::from(head[5] % 16));
    let Ok(arch) = Architecture::new(&widths) else { return };
    let Some((image, params)) = rest.split_at_checked(arch.inputs()) else { return };
    if params.is_empty() {
        return;
    }
    let mut bytes = params.iter().copied().cycle();
    let mut header = Header::new(arch, activation, Quant::Int8);
    if sparse {
        // The first layer sparse, keeping as many blocks as the next byte says (at most
        // all of them): the parser checks counts and indices made of raw bytes.
        let (i, o) = arch.layer(0);
        let kept = usize::from(head[1]) * 7 % (i.div_ceil(4) * o + 1);
        header = header.with_storage(infer_core::layout::Storage::DENSE.with_sparse(0, kept as u32));
    }
    if int4 {
        let hidden = (0..arch.layers() - 1).fold(header.storage(), |s, l| s.with_int4(l));
        header = header.with_storage(hidden);
    }
    let mut file = vec![0u8; header.file_len()];
    if raw {
        let payload: Vec<u8> = bytes.take(header.payload_len()).collect();
        format::write(&header, &payload, &format::Extras::NONE, &mut file).expect("a payload of the right size encodes");
    } else {
        let mut layers = Vec::new();
        for l in 0..arch.layers() {
            let (i, o) = arch.layer(l);
            let mut weights: Vec<i8> = bytes.by_ref().take(i * o).map(|b| b as i8).collect();
            if sparse && l + 1 < arch.layers() {
                // About three blocks of four in four cut.
                weights.iter_mut().filter(|w| **w as u8 % 16 < 15).for_each(|w| *w = 0);
            }
            if int4 && l + 1 < arch.layers() {
                // Int4 values times 16.
                weights.iter_mut().for_each(|w| *w &= -16);
            }
            let biases: Vec<i16> = (0..o).map(|_| i16::from_le_bytes([bytes.next().unwrap(), bytes.next().unwrap()])).collect();
            let mults: Vec<i16> =
                (0..o).map(|_| i16::from_le_bytes([bytes.next().unwrap(), bytes.next().unwrap() & 0x7f])).collect();
            let shifts = [bytes.next().unwrap() % 25, bytes.next().unwrap() % 31, bytes.next().unwrap()];
            let zero_point = if activation == Activation::Sigmoid && l + 1 < arch.layers() { shifts[2] as i8 } else { 0 };
            layers.push((weights, biases, mults, shifts[0], shifts[1], zero_point));
        }
        let layers: Vec<Int8Layer<'_>> = layers
            .iter()
            .enumerate()
            .map(|(l, (w, b, m, r, s, zp))| Int8Layer {
                weights: w,
                biases: b,
                multipliers: m,
                rounding_shift: *r,
                multiplier_shift: *s,
                zero_point: *zp,
                sparse,
                int4: int4 && l + 1 < arch.layers(),
            })
            .collect();
        let table: [u8; 256] = std::array::from_fn(|_| bytes.next().unwrap());
        let table = (activation == Activation::Sigmoid).then_some(&table);
        let none = infer_core::format::Extras::NONE;
        file = vec![0u8; int8net::encoded_len(&arch, activation, &layers, &none).expect("whole layers")];
        int8net::encode(&arch, activation, &layers, 1.0, table, &none, &mut file).expect("in-range parameters encode");
    }
    let Ok(model) = Int8Model::from_bytes(&file) else {
        assert!(raw, "what the codec writes, the parser reads");
        return;
    };
    let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
    let (mut fast, mut reference) = (vec![0i32; arch.classes()], vec![0i32; arch.classes()]);
    let a = model.predict(image, &mut scratch, &mut fast);
    let b = model.predict_scalar(image, &mut scratch, &mut reference);
    assert_eq!((a, &fast), (b, &reference));
    assert!(a.is_ok());
    if int4 {
        let wide_header = infer_core::widen::widened_header(format::read(&file).expect("it loaded").header());
        let mut wide = vec![0u8; wide_header.file_len()];
        let len = infer_core::widen::widen(&file, &mut wide).expect("a loaded model widens");
        let wide = Int8Model::from_bytes(&wide[..len]).expect("the widened file loads");
        let mut widened = vec![0i32; arch.classes()];
        assert_eq!((wide.predict(image, &mut scratch, &mut widened), &widened), (b, &reference));
    }
});
