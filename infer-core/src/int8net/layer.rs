//! One dense layer of an int8 model as the kernels read it, and what every kernel does
//! with an accumulator: requantize it and emit the output.

use crate::spec::{BLOCK, GROUP, SIGMOID_TABLE_BYTES};

/// What a layer's requantized values become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Output<'a> {
    Relu,
    Sigmoid { zero_point: i32, table: &'a [u8; SIGMOID_TABLE_BYTES] },
    Scores,
}

/// Where a sparse layer's kept blocks of four weights are (see [`super`]'s documentation):
/// validated by [`Sparse::check`], so that every kernel may rely on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sparse<'a> {
    /// `[ceil(outputs / 128)][inputs / 4]`: blocks kept per output block and group.
    pub(super) counts: &'a [u8],
    /// Per kept block, its output within its block of 128; strictly increasing within a group.
    pub(super) indices: &'a [u8],
}

impl Sparse<'_> {
    /// Checks the counts and indices of a layer of `outputs` and `groups`, `kept` blocks in
    /// all: each count at most its block's width, each group's indices strictly increasing
    /// and below the block's width, the counts summing to `kept`.
    pub(super) fn check(&self, outputs: usize, groups: usize, kept: usize) -> bool {
        if self.counts.len() != outputs.div_ceil(BLOCK) * groups || self.indices.len() != kept {
            return false;
        }
        let mut at = 0;
        for (b, counts) in self.counts.chunks_exact(groups.max(1)).enumerate() {
            let width = BLOCK.min(outputs - b * BLOCK);
            for &count in counts {
                let Some(run) = self.indices.get(at..at + usize::from(count)) else {
                    return false;
                };
                let increasing = run.windows(2).all(|p| p[0] < p[1]);
                if usize::from(count) > width || !increasing || run.last().is_some_and(|&i| usize::from(i) >= width) {
                    return false;
                }
                at += run.len();
            }
        }
        at == kept
    }
}

/// One dense layer of an int8 model, borrowed from the payload.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layer<'a> {
    /// Inputs padded to a whole number of groups of four.
    pub(super) inputs: usize,
    pub(super) outputs: usize,
    /// Dense: `[ceil(outputs / 128)][inputs / 4][≤128][4]` int8 weights, exactly. Sparse:
    /// the kept blocks' four weights each, in the order of [`Layer::sparse`]'s indices.
    /// Int4: the same blocks in the same order, two to a 32-bit word ([`Layer::block`]).
    pub(super) weights: &'a [u8],
    /// Whether the weights are int4.
    pub(super) int4: bool,
    /// Which blocks a sparse layer keeps; `None` for a dense layer.
    pub(super) sparse: Option<Sparse<'a>>,
    /// The weights and the rest of the payload after them, for vector loads that reach
    /// past a layer's last outputs (their extra lanes are discarded).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) reach: &'a [u8],
    pub(super) bias: &'a [u8],
    pub(super) mult: &'a [u8],
    pub(super) r: u32,
    pub(super) s: u32,
    pub(super) output: Output<'a>,
}

impl Layer<'_> {
    pub(super) const EMPTY: Layer<'static> = Layer {
        inputs: 0,
        outputs: 0,
        weights: &[],
        int4: false,
        sparse: None,
        reach: &[],
        bias: &[],
        mult: &[],
        r: 0,
        s: 0,
        output: Output::Scores,
    };

    /// Byte offset of the four weights from inputs `4g..4g+4` to output `j`.
    #[inline(always)]
    pub(super) fn offset(&self, g: usize, j: usize) -> usize {
        let block = j / BLOCK;
        let width = BLOCK.min(self.outputs - block * BLOCK);
        block * BLOCK * self.inputs + (g * width + j % BLOCK) * GROUP
    }

    /// The four weights of block `t` of the layer's weights (counted in blocks, in storage
    /// order), as the int8 values the kernels multiply by ([`int4_block`] for an int4 layer).
    #[inline(always)]
    pub(super) fn block(&self, t: usize) -> [i8; GROUP] {
        if self.int4 {
            int4_block(self.weights, t)
        } else {
            let w = &self.weights[t * GROUP..][..GROUP];
            core::array::from_fn(|k| w[k] as i8)
        }
    }

    pub(super) fn bias(&self, j: usize) -> i32 {
        i16::from_le_bytes([self.bias[2 * j], self.bias[2 * j + 1]]) as i32
    }

    pub(super) fn mult(&self, j: usize) -> i32 {
        i16::from_le_bytes([self.mult[2 * j], self.mult[2 * j + 1]]) as i32
    }
}

/// The four weights of block `t` of an int4 layer's `weights` as the int8 values `16q` they
/// stand for: word `t / 2`'s low four bits of each byte for an even `t`, its high four bits
/// for an odd one (see [`super`]'s documentation).
#[inline(always)]
pub fn int4_block(weights: &[u8], t: usize) -> [i8; GROUP] {
    let w = &weights[t / 2 * GROUP..][..GROUP];
    let shift = if t.is_multiple_of(2) { 4 } else { 0 };
    core::array::from_fn(|k| ((w[k] << shift) & 0xF0) as i8)
}

/// One image's part of a layer as a kernel runs it: its input, the groups of four inputs
/// that are not all zero, and where the outputs go (a hidden layer's activations, or the
/// scores).
pub(super) struct Lane<'l> {
    pub(super) x: &'l [u8],
    pub(super) groups: &'l [u16],
    pub(super) act: &'l mut [u8],
    pub(super) scores: &'l mut [i32],
}

/// [`super::requantize`] as the kernels run it: `|acc| < 2^25`, `r <= 24`, `s <= 30` and i16
/// `bias` and `mult`, which a validated model guarantees.
#[inline(always)]
pub(super) fn requant(acc: i32, bias: i32, mult: i32, r: u32, s: u32) -> i32 {
    let t = (((acc + ((1 << r) >> 1)) >> r) + bias).clamp(-32768, 32767);
    (t * mult + ((1 << s) >> 1)) >> s
}

/// Writes the layer's requantized output `v` for channel `j`: an activation byte for a
/// hidden layer, a score for the last one.
#[inline(always)]
pub(super) fn emit(layer: &Layer<'_>, j: usize, v: i32, act: &mut [u8], scores: &mut [i32]) {
    match layer.output {
        Output::Relu => act[j] = v.clamp(0, 255) as u8,
        Output::Sigmoid { zero_point, table } => act[j] = table[((v + zero_point).clamp(-128, 127) + 128) as usize],
        Output::Scores => scores[j] = v,
    }
}

/// Requantizes outputs `j0..j0 + acc.len()` of `layer` from their accumulators and writes
/// them ([`emit`] for a stretch of outputs, with the output's kind decided once and no index
/// checked per output: a third of the instructions on a Cortex-M4).
#[inline(always)]
pub(super) fn emit_block(layer: &Layer<'_>, j0: usize, acc: &[i32], act: &mut [u8], scores: &mut [i32]) {
    let n = acc.len();
    let half = |b: &[u8]| i16::from_le_bytes([b[0], b[1]]) as i32;
    let bias = layer.bias[2 * j0..][..2 * n].chunks_exact(2).map(half);
    let mult = layer.mult[2 * j0..][..2 * n].chunks_exact(2).map(half);
    let (r, s) = (layer.r, layer.s);
    let v = acc.iter().zip(bias).zip(mult).map(|((&a, b), m)| requant(a, b, m, r, s));
    match layer.output {
        Output::Relu => act[j0..][..n].iter_mut().zip(v).for_each(|(o, v)| *o = v.clamp(0, 255) as u8),
        Output::Sigmoid { zero_point, table } => act[j0..][..n]
            .iter_mut()
            .zip(v)
            .for_each(|(o, v)| *o = table[((v + zero_point).clamp(-128, 127) + 128) as usize]),
        Output::Scores => scores[j0..][..n].iter_mut().zip(v).for_each(|(o, v)| *o = v),
    }
}
