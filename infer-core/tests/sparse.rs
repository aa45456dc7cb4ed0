//! Sparse int8 layers (format version 4): every kernel against the scalar reference and the
//! naive loop on random shapes and sparsities (outputs with nothing kept, fully kept layers,
//! nothing kept at all); the same model stored dense and sparse classifies alike; the file's
//! golden bytes; and every inconsistency of the counts and indices refused.

use infer_core::format::{self, Extras, Header};
use infer_core::int8net::INT8_SCRATCH_MAX;
use infer_core::layout::{Int8Layout, Storage};
use infer_core::{Activation, Error, Int8Model, Int8Scratch, Model, Quant};

mod common;

use common::{Params, Rng, arch, check_every_kernel, kernels, random_image};

#[test]
fn sparse_layers_match_the_reference_on_every_kernel_shape_and_sparsity() {
    let mut rng = Rng(0x05ee_d0f5_a75e);
    let shapes = [
        arch(&[784, 64, 32, 10]),
        arch(&[784, 300, 10]),
        arch(&[12, 5, 130, 2]),
        arch(&[13, 7, 3]),
        arch(&[8, 1024, 3, 1, 7, 2]),
        arch(&[64, 250, 129, 17]),
        arch(&[1, 4, 2]),
    ];
    for arch in shapes {
        for activation in [Activation::Relu, Activation::Sigmoid] {
            // Cut fractions from none (every block kept, stored sparse) to all.
            for cut in [0.0, 0.5, 0.9, 0.99, 1.0] {
                let mut params = Params::random(&mut rng, arch, activation);
                for l in 0..arch.layers() {
                    // Some layers stay dense; some outputs keep nothing.
                    if rng.pick(4) != 0 {
                        let empty = rng.pick(3);
                        params.prune(&mut rng, l, cut, empty);
                    }
                }
                let bytes = params.encode();
                let model = Int8Model::from_bytes(&bytes).unwrap();
                let mut images: Vec<Vec<u8>> = (0..36).map(|_| random_image(&mut rng, arch.inputs())).collect();
                images.push(vec![0; arch.inputs()]);
                images.push(vec![255; arch.inputs()]);
                let what = format!("{arch} {activation:?} cut {cut} sparse {:?}", params.sparse);
                check_every_kernel(&params, &model, &images, &what);
            }
        }
    }
}

#[test]
fn a_pruned_model_classifies_alike_stored_dense_or_sparse_and_is_smaller() {
    let mut rng = Rng(23);
    let arch = arch(&[784, 128, 64, 10]);
    let mut params = Params::random(&mut rng, arch, Activation::Relu);
    params.prune(&mut rng, 0, 0.9, 0);
    params.prune(&mut rng, 1, 0.8, 1);
    let sparse = params.encode();
    params.sparse = vec![false; 3];
    let dense = params.encode();
    assert_eq!((dense[4], sparse[4]), (3, 4), "format versions");
    assert!(sparse.len() * 3 < dense.len(), "{} against {}", sparse.len(), dense.len());
    let (a, b) = (Int8Model::from_bytes(&dense).unwrap(), Int8Model::from_bytes(&sparse).unwrap());
    let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
    for _ in 0..30 {
        let img = random_image(&mut rng, 784);
        for kernel in kernels() {
            let (mut x, mut y) = ([0; 10], [0; 10]);
            let c = a.predict_with(kernel, &img, &mut scratch, &mut x).unwrap();
            assert_eq!(b.predict_with(kernel, &img, &mut scratch, &mut y).unwrap(), c);
            assert_eq!(x, y, "on {kernel}");
        }
    }
    // The header names the kept blocks; the encoder's size is the file's.
    let header = *format::read(&sparse).unwrap().header();
    let kept = header.storage().kept(0).unwrap() as usize;
    assert!((196 * 128 / 20..196 * 128 / 5).contains(&kept), "{kept}");
    assert_eq!(header.storage().kept(2), None, "the output layer is dense");
    assert_eq!(header.file_len(), sparse.len());
}

#[test]
fn golden_bytes_of_a_sparse_file() {
    // 8-5-3: the first layer sparse, keeping four blocks; the second dense.
    let mut rng = Rng(7);
    let a = arch(&[8, 5, 3]);
    let mut params = Params::random(&mut rng, a, Activation::Relu);
    params.weights[0] = vec![0; 40];
    // (input, output, weight): group 0 keeps outputs 1 and 4, group 1 outputs 0 and 4.
    for (i, j, w) in [(0, 1, 7i8), (3, 1, -2), (2, 4, 5), (4, 0, -128), (7, 4, 127), (5, 4, 1)] {
        params.weights[0][i * 5 + j] = w;
    }
    params.sparse = vec![true, false];
    let bytes = params.encode();
    let sparsity = Storage::DENSE.with_sparse(0, 4);
    let layout = Int8Layout::with_storage(&a, Activation::Relu, &sparsity);
    // Header: magic, version 4, widths, ReLU, int8, payload length, extras length, then per
    // layer: sparse with 4 blocks (1, 4), dense (0).
    // Weights 0..16, the dense layer's 64..88, counts 88..90, indices 90..94; biases and
    // multipliers from 96 (a multiple of 4 in a version-4 file), shifts 128..134, score
    // scale 134..138.
    let len = layout.len();
    assert_eq!(len, 138);
    assert_eq!(bytes[..11], [b'F', b'M', b'L', b'P', 4, 3, 8, 5, 3, 1, 1]);
    assert_eq!(bytes[11..17], [len as u8 | 0x80, (len >> 7) as u8, 2, 2, 1, 4][..]);
    assert_eq!(bytes[17], 0);
    assert!(bytes[18..64].iter().all(|&b| b == 0));
    let payload = &bytes[64..64 + len];
    assert_eq!(layout.weights(0).len, 16);
    let weights = [7, 0, 0, 0xfe, 0, 0, 5, 0, 0x80, 0, 0, 0, 0, 1, 0, 127];
    assert_eq!(payload[..16], weights, "blocks in order: (g0, o1), (g0, o4), (g1, o0), (g1, o4)");
    assert_eq!(payload[layout.counts(0).range()], [2, 2]);
    assert_eq!(payload[layout.indices(0).range()], [1, 4, 0, 4]);
    assert_eq!(layout.weights(1).start, 64, "the dense layer starts on 64 bytes");
    assert_eq!(layout.counts(0).start, 64 + 8 * 3);
    assert_eq!(layout.biases(0).start, 96);
    let model = Int8Model::from_bytes(&bytes).unwrap();
    check_every_kernel(&params, &model, &[vec![1, 2, 3, 4, 5, 6, 7, 8], vec![0; 8]], "golden");
}

/// `params`' file with `edit` applied to the first layer's counts and indices, resealed.
fn edited(params: &Params, edit: impl Fn(&mut [u8], &mut [u8])) -> Vec<u8> {
    let mut file = params.encode();
    let header = *format::read(&file).unwrap().header();
    let layout = Int8Layout::with_storage(&header.architecture(), header.activation(), &header.storage());
    let payload = &mut file[64..64 + layout.len()];
    let (counts, indices) = payload.split_at_mut(layout.indices(0).start);
    edit(&mut counts[layout.counts(0).range()], &mut indices[..layout.indices(0).len]);
    let n = file.len() - 4;
    let crc = format::checksum(&file[..n]);
    file[n..].copy_from_slice(&crc.to_le_bytes());
    file
}

#[test]
fn inconsistent_counts_and_indices_are_refused_naming_the_layer() {
    let mut rng = Rng(29);
    let a = arch(&[16, 130, 3]);
    let mut params = Params::random(&mut rng, a, Activation::Relu);
    params.prune(&mut rng, 0, 0.5, 0);
    let refused = Err(Error::SparseLayer { layer: 0 });
    let check = |file: &[u8]| Int8Model::from_bytes(file).map(|_| ());
    // Unchanged: loads. (4 groups, 2 output blocks: 128 outputs and 2.)
    assert_eq!(check(&edited(&params, |_, _| {})), Ok(()));
    // Indices out of order, repeated, past the block of 128 or past the last block's 2.
    assert_eq!(check(&edited(&params, |_, i| i.swap(0, 1))), refused);
    assert_eq!(check(&edited(&params, |_, i| i[1] = i[0])), refused);
    assert_eq!(check(&edited(&params, |c, i| i[usize::from(c[0]) - 1] = 128)), refused);
    let past_last = edited(&params, |c, i| {
        let g = (4..8).find(|&g| c[g] > 0).unwrap();
        let end: usize = c[..=g].iter().map(|&c| usize::from(c)).sum();
        i[end - 1] = 2;
    });
    assert_eq!(check(&past_last), refused);
    // A count above the block's width, and counts that do not add up to the header's.
    assert_eq!(check(&edited(&params, |c, _| c[4] = 3)), refused);
    assert_eq!(check(&edited(&params, |c, _| c[0] -= 1)), refused);
    let one_more = edited(&params, |c, i| {
        // The group's indices stay increasing: one more kept block would need one more
        // index, which the header does not count.
        let g = (0..4).find(|&g| c[g] < 128).unwrap();
        c[g] += 1;
        i.sort();
    });
    assert_eq!(check(&one_more), refused);
    // Kept blocks beyond the layer's are refused with the header.
    let header = Header::new(a, Activation::Relu, Quant::Int8);
    let too_many = header.with_storage(Storage::DENSE.with_sparse(0, 4 * 130 + 1));
    let mut out = vec![0u8; too_many.with_extras(&Extras::NONE).file_len()];
    let payload = vec![0u8; too_many.payload_len()];
    assert_eq!(format::write(&too_many, &payload, &Extras::NONE, &mut out), Err(Error::Malformed));
    let absurd = header.with_storage(Storage::DENSE.with_sparse(0, u32::MAX));
    assert_eq!(format::write(&absurd, &[0; 64], &Extras::NONE, &mut [0; 256]), Err(Error::Malformed));
}

#[test]
fn every_truncation_and_flipped_byte_of_a_sparse_file_is_an_error() {
    let mut rng = Rng(31);
    let mut params = Params::random(&mut rng, arch(&[12, 5, 130, 2]), Activation::Sigmoid);
    params.prune(&mut rng, 0, 0.6, 1);
    params.prune(&mut rng, 1, 0.3, 0);
    let bytes = params.encode();
    assert_eq!(bytes[4], 4);
    for cut in 0..bytes.len() {
        assert!(Model::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    common::every_flipped_byte_is_an_error(&bytes);
}

#[test]
fn version_4_headers_that_list_no_sparse_layer_or_the_wrong_layers_are_malformed() {
    let mut rng = Rng(37);
    let mut params = Params::random(&mut rng, arch(&[8, 5, 3]), Activation::Relu);
    params.prune(&mut rng, 0, 0.5, 0);
    let good = params.encode();
    assert!(Model::from_bytes(&good).is_ok());
    // Byte 14 is the count of listed layers (2), 15 layer 1's tag (1, sparse), 17 layer 2's (0).
    assert_eq!((good[14], good[15], good[17]), (2, 1, 0));
    for (at, value) in [(14, 3), (14, 1), (15, 0), (17, 2)] {
        let mut bad = good.clone();
        bad[at] = value;
        let n = bad.len() - 4;
        let crc = format::checksum(&bad[..n]);
        bad[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(Model::from_bytes(&bad).is_err(), "byte {at} = {value}");
    }
}

#[test]
fn the_smallest_storage_is_sparse_only_where_that_is_smaller() {
    let arch = arch(&[784, 256, 128, 10]);
    let header = Header::new(arch, Activation::Relu, Quant::Int8);
    let all = |l: usize| {
        let (i, o) = arch.layer(l);
        (i.div_ceil(4) * o) as u32
    };
    // Everything kept: a kept block costs 5 bytes against 4, so all dense (version 3).
    assert_eq!(header.smallest_storage(&[all(0), all(1), all(2)]), Storage::DENSE);
    // A tenth kept in the hidden layers: those sparse, the output layer (all kept) dense.
    let tenth = [all(0) / 10, all(1) / 10, all(2)];
    let stored = header.smallest_storage(&tenth);
    assert_eq!(stored, Storage::DENSE.with_sparse(0, tenth[0]).with_sparse(1, tenth[1]));
    assert!(header.with_storage(stored).file_len() < header.file_len() / 5);
    // 85% kept: 4.25 bytes a block against 4, dense; 75%: 3.75 (and the counts), sparse.
    assert_eq!(header.smallest_storage(&[all(0) * 85 / 100]), Storage::DENSE);
    assert_eq!(header.smallest_storage(&[all(0) * 3 / 4]), Storage::DENSE.with_sparse(0, all(0) * 3 / 4));
    // Nothing listed, nothing sparse.
    assert_eq!(header.smallest_storage(&[]), Storage::DENSE);
}
