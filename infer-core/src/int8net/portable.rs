//! The portable kernel, for targets without a SIMD one (a Cortex-M0 or M3, for example):
//! plain Rust in the shape of the Cortex-M4 kernel.
//!
//! For each block of up to 128 outputs the accumulators live in a stack array, and each
//! non-zero group of four inputs sweeps the block's weight words in storage order: the
//! four inputs are loaded once per group rather than once per output, and the weights
//! are read sequentially. On a Cortex-M0 that is about half the instructions per
//! multiply-accumulate of the reference loop, which recomputes each weight's offset.

use super::layer::{Layer, Sparse, emit, emit_block, requant};
use crate::spec::{BLOCK, GROUP};

pub(super) fn dense(layer: &Layer<'_>, x: &[u8], groups: &[u16], act: &mut [u8], scores: &mut [i32]) {
    let mut j0 = 0;
    while j0 < layer.outputs {
        let width = BLOCK.min(layer.outputs - j0);
        let block = &layer.weights[j0 * layer.inputs..][..width * layer.inputs];
        let mut acc = [0i32; BLOCK];
        let acc = &mut acc[..width];
        for &g in groups {
            let g = g as usize * GROUP;
            let xs = &x[g..g + GROUP];
            let (x0, x1, x2, x3) = (i32::from(xs[0]), i32::from(xs[1]), i32::from(xs[2]), i32::from(xs[3]));
            // Group `g / 4` of the block: its `width` words, one per output.
            for (a, w) in acc.iter_mut().zip(block[g * width..][..width * GROUP].chunks_exact(GROUP)) {
                let w = [w[0] as i8, w[1] as i8, w[2] as i8, w[3] as i8].map(i32::from);
                *a += x0 * w[0] + x1 * w[1] + x2 * w[2] + x3 * w[3];
            }
        }
        for (k, &sum) in acc.iter().enumerate() {
            let j = j0 + k;
            emit(layer, j, requant(sum, layer.bias(j), layer.mult(j), layer.r, layer.s), act, scores);
        }
        j0 += width;
    }
}

/// A sparse layer: for each block of up to 128 outputs, each group of four inputs that is
/// not all zero adds its products to the outputs of its kept blocks.
pub(super) fn sparse(layer: &Layer<'_>, sparse: &Sparse<'_>, x: &[u8], act: &mut [u8], scores: &mut [i32]) {
    let groups = layer.inputs / GROUP;
    let (mut at, mut j0) = (0, 0);
    for counts in sparse.counts.chunks_exact(groups) {
        let width = BLOCK.min(layer.outputs - j0);
        let mut acc = [0i32; BLOCK];
        for (xs, &count) in x.chunks_exact(GROUP).zip(counts) {
            let n = usize::from(count);
            if n != 0 && xs != [0; GROUP] {
                let (x0, x1, x2, x3) = (i32::from(xs[0]), i32::from(xs[1]), i32::from(xs[2]), i32::from(xs[3]));
                let weights = layer.weights[at * GROUP..][..n * GROUP].chunks_exact(GROUP);
                for (&k, w) in sparse.indices[at..at + n].iter().zip(weights) {
                    let w = [w[0] as i8, w[1] as i8, w[2] as i8, w[3] as i8].map(i32::from);
                    // Indices are below the block's width (checked when the model was read).
                    acc[usize::from(k) % BLOCK] += x0 * w[0] + x1 * w[1] + x2 * w[2] + x3 * w[3];
                }
            }
            at += n;
        }
        emit_block(layer, j0, &acc[..width], act, scores);
        j0 += width;
    }
}

/// The high four bits of each byte: an int4 word's odd block as int8 weights `16q`.
const HIGH: u32 = 0xF0F0_F0F0;

/// `Σ x[k] · w[k]` over the four int8 weights of word `w`.
#[inline(always)]
fn dot(xs: [i32; GROUP], w: u32) -> i32 {
    let b = w.to_le_bytes();
    xs[0] * i32::from(b[0] as i8)
        + xs[1] * i32::from(b[1] as i8)
        + xs[2] * i32::from(b[2] as i8)
        + xs[3] * i32::from(b[3] as i8)
}

/// `acc[k] += dot(xs, block)` for a group's blocks of an int4 layer, the `k` from `outputs`
/// (each below 128), the blocks two to a word from block `first` of `weights` on: a word
/// unpacked with a shift and a mask for its low halves, a mask for its high ones.
#[inline(always)]
fn scatter4(
    acc: &mut [i32; BLOCK],
    xs: [i32; GROUP],
    mut outputs: impl ExactSizeIterator<Item = usize>,
    weights: &[u8],
    first: usize,
) {
    let mut words =
        weights[first / 2 * GROUP..].chunks_exact(GROUP).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    if first % 2 == 1
        && let (Some(k), Some(w)) = (outputs.next(), words.next())
    {
        acc[k % BLOCK] += dot(xs, w & HIGH);
    }
    while outputs.len() >= 2 {
        let (Some(k0), Some(k1), Some(w)) = (outputs.next(), outputs.next(), words.next()) else { break };
        acc[k0 % BLOCK] += dot(xs, (w << 4) & HIGH);
        acc[k1 % BLOCK] += dot(xs, w & HIGH);
    }
    if let (Some(k), Some(w)) = (outputs.next(), words.next()) {
        acc[k % BLOCK] += dot(xs, (w << 4) & HIGH);
    }
}

/// An int4 layer, dense (over the non-zero `groups`) or sparse (over every group, as
/// [`sparse`]): each group's blocks by [`scatter4`].
pub(super) fn int4(layer: &Layer<'_>, x: &[u8], groups: &[u16], act: &mut [u8], scores: &mut [i32]) {
    let n_groups = layer.inputs / GROUP;
    let inputs = |xs: &[u8]| [i32::from(xs[0]), i32::from(xs[1]), i32::from(xs[2]), i32::from(xs[3])];
    // A sparse layer's next group's first kept block.
    let (mut at, mut j0) = (0, 0);
    while j0 < layer.outputs {
        let width = BLOCK.min(layer.outputs - j0);
        let mut acc = [0i32; BLOCK];
        match layer.sparse {
            None => {
                for &g in groups {
                    let (g, first) = (usize::from(g), j0 * n_groups + usize::from(g) * width);
                    scatter4(&mut acc, inputs(&x[g * GROUP..]), 0..width, layer.weights, first);
                }
            }
            Some(sparse) => {
                let counts = &sparse.counts[j0 / BLOCK * n_groups..][..n_groups];
                for (xs, &count) in x.chunks_exact(GROUP).zip(counts) {
                    let n = usize::from(count);
                    if n != 0 && xs != [0; GROUP] {
                        let kept = sparse.indices[at..at + n].iter().map(|&k| usize::from(k));
                        scatter4(&mut acc, inputs(xs), kept, layer.weights, at);
                    }
                    at += n;
                }
            }
        }
        emit_block(layer, j0, &acc[..width], act, scores);
        j0 += width;
    }
}

#[cfg(test)]
mod tests {
    use super::super::dense_scalar;
    use super::super::layer::Output;
    use super::*;

    /// Layers of every block shape: one narrow block, one of 128 and a partial one, and
    /// padded inputs; the kernel over the non-zero groups equals the reference.
    #[test]
    fn equals_the_reference_loop() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (inputs, outputs) in [(8, 5), (12, 128), (20, 300)] {
            let weights: [u8; 20 * 300] = core::array::from_fn(|_| next() as u8);
            let bias: [u8; 600] = core::array::from_fn(|i| if i % 2 == 1 { 0 } else { next() as u8 >> 2 });
            let mult: [u8; 600] = core::array::from_fn(|i| if i % 2 == 1 { 0x10 } else { next() as u8 });
            let layer = Layer {
                inputs,
                outputs,
                weights: &weights[..inputs * outputs],
                int4: false,
                sparse: None,
                reach: &weights,
                bias: &bias,
                mult: &mult,
                r: 6,
                s: 13,
                output: Output::Relu,
            };
            let x: [u8; 20] = core::array::from_fn(|i| if i % 3 == 0 { 0 } else { next() as u8 });
            let groups: [u16; 5] = [0, 1, 2, 3, 4];
            let groups = &groups[..inputs / GROUP];
            let (mut fast, mut slow) = ([0u8; 300], [0u8; 300]);
            dense(&layer, &x, groups, &mut fast, &mut []);
            dense_scalar(&layer, &x, 0..inputs / GROUP, &mut slow, &mut []);
            assert_eq!(fast, slow, "{inputs}x{outputs}");
            assert!(fast[..outputs].iter().any(|&v| v != 0) && fast[..outputs].iter().any(|&v| v != 255));
        }
    }
}
