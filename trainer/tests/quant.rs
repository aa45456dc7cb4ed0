//! The int8 export's renumbering of hidden units: exact, and it groups units that are zero
//! together.

use infer_core::Activation;
use infer_core::arch::{Architecture, GROUP};
use trainer::model::Mlp;
use trainer::quant::{self, InputKind, QuantModel};

const INPUT: usize = 784;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A Glorot-initialised ReLU model quantized on noise images, and more noise images.
fn model_and_images() -> (QuantModel, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let model = Mlp::new(&Architecture::FMNIST, Activation::Relu, &mut rng);
    let pixels: Vec<u8> = (0..64 * INPUT).map(|_| rng.random::<u8>()).collect();
    let images: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    (quant::quantize(&model, &images, InputKind::Bytes), pixels)
}

/// Groups of four activations with a non-zero byte, in one image's activations.
fn nonzero_groups(acts: &[u8]) -> usize {
    acts.chunks_exact(GROUP).filter(|g| g.iter().any(|&v| v != 0)).count()
}

#[test]
fn renumbered_hidden_units_give_the_same_scores() {
    let (q, pixels) = model_and_images();
    // Two permutations with no fixed structure: multiplying by a unit coprime to the width.
    let order: Vec<Vec<usize>> =
        vec![(0..512).map(|k| (k * 149 + 5) % 512).collect(), (0..256).map(|k| (k * 91 + 3) % 256).collect()];
    let p = q.permute_hidden(&order);
    assert_ne!(p.encode().unwrap(), q.encode().unwrap(), "the weights moved");
    for (i, px) in pixels.chunks_exact(INPUT).enumerate() {
        let (hq, sq) = q.forward(px);
        let (hp, sp) = p.forward(px);
        assert_eq!(sp, sq, "image {i}: the scores");
        // Unit `order[l][k]` of the original is unit `k` of the renumbered model.
        for l in 0..2 {
            let moved: Vec<u8> = order[l].iter().map(|&u| hq[l][u]).collect();
            assert_eq!(hp[l], moved, "image {i}, layer {l}");
        }
    }
}

#[test]
fn grouping_puts_units_that_are_zero_together_in_one_group() {
    // Unit u is active (non-zero) on the images whose number is u modulo 16 (layer 0) or
    // modulo 8 (layer 1): four units of a group share their images only if they share that
    // residue, which numbering order never gives.
    let images = 160;
    let acts = |n: usize, m: usize| -> Vec<u8> {
        (0..images).flat_map(|i| (0..n).map(move |u| if u % m == i % m { 1 + (u % 7) as u8 } else { 0 })).collect()
    };
    let hidden = [acts(512, 16), acts(256, 8)];
    let order = quant::group_hidden_units(&hidden, &[512, 256]);
    for (l, (order, m)) in order.iter().zip([16, 8]).enumerate() {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..order.len()).collect::<Vec<_>>(), "layer {l}: a permutation");
        for group in order.chunks_exact(GROUP) {
            assert!(group.iter().all(|&u| u % m == group[0] % m), "layer {l}: group {group:?}");
        }
        let n = order.len();
        let before: usize = hidden[l].chunks_exact(n).map(nonzero_groups).sum();
        let after: usize =
            hidden[l].chunks_exact(n).map(|h| nonzero_groups(&order.iter().map(|&u| h[u]).collect::<Vec<_>>())).sum();
        assert_eq!(before, images * n / m, "layer {l}: in numbering order a group is active on 4 images in {m}");
        assert_eq!(after, images * n / GROUP / m, "layer {l}: each group active on 1 image in {m}");
    }
}

#[test]
fn sparse_order_does_not_add_active_groups() {
    let (q, pixels) = model_and_images();
    let p = q.permute_hidden(&q.sparse_order(&pixels, &[]));
    let count = |m: &QuantModel| -> [usize; 2] {
        let mut c = [0; 2];
        for px in pixels.chunks_exact(INPUT) {
            let (h, _) = m.forward(px);
            for l in 0..2 {
                c[l] += nonzero_groups(&h[l]);
            }
        }
        c
    };
    let (before, after) = (count(&q), count(&p));
    for l in 0..2 {
        assert!(after[l] <= before[l], "layer {l}: {} -> {} active groups", before[l], after[l]);
    }
    assert!(after[0] < before[0], "noise leaves some units off together: {before:?} -> {after:?}");
}

#[test]
#[should_panic(expected = "not a permutation")]
fn renumbering_rejects_an_order_that_repeats_a_unit() {
    let (q, _) = model_and_images();
    let mut order: Vec<Vec<usize>> = vec![(0..512).collect(), (0..256).collect()];
    order[1][7] = 6;
    q.permute_hidden(&order);
}
