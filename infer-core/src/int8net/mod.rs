//! The int8 forward pass: integer arithmetic only, bit-exact on every platform; and the
//! int8 payload's writer.
//!
//! # Scheme
//!
//! - **Weights** are int8, symmetric, with one scale per output channel
//!   (`s_w[j] = max_i |w[i][j]| / 127`).
//! - **Activations** (the input pixels and every hidden layer) are 8-bit, unsigned, with a
//!   per-tensor scale and zero point 0. All of them are non-negative (pixels, ReLU and sigmoid
//!   outputs), so the unsigned grid loses nothing, and a zero activation is a stored 0: dark
//!   pixels and inactive units cost no work. The input scale is exactly 1/255, so a raw pixel
//!   byte is the quantized input.
//! - **Accumulators** are i32: `acc[j] = Σ_i x[i] · w[i][j]` is exact (|acc| < 2^25 for up
//!   to [`MAX_WIDTH`] inputs).
//! - **Requantization** per output channel `j`, with a per-layer rounding shift `r`, a
//!   per-layer multiplier shift `s`, and per-channel i16 bias `b[j]` and multiplier `m[j]`:
//!
//!   ```text
//!   t = clamp(((acc + (2^r >> 1)) >> r) + b[j], -32768, 32767)
//!   v = (t · m[j] + (2^s >> 1)) >> s
//!   ```
//!
//!   `t` is the pre-activation on a 16-bit grid; `v` is it on the output grid. Every product
//!   fits in 32 bits, so the same integers come out on a Cortex-M and on AVX-512
//!   ([`requantize`] computes it for any arguments).
//! - **Output of a hidden layer**: ReLU gives `clamp(v, 0, 255)`; sigmoid looks up
//!   `table[clamp(v + zero_point, -128, 127) + 128]` in the model's 256-entry sigmoid table
//!   (`v` is then the int8 pre-activation with that zero point).
//! - **Scores**: the last layer returns `v` for each class; `v · score_scale` approximates the
//!   f32 logit. The class is the first index of the largest score.
//!
//! # Payload layout (all integers little-endian; offsets in [`Int8Layout`])
//!
//! | field | bytes |
//! |---|---|
//! | per layer: i8 weights `[ceil(outputs / 128)][ceil(inputs / 4)][≤128][4]`, starting on a multiple of 64 (zeros between) | 784-512-256-10: 401 408 + 131 072 + 2 560 |
//! | per layer: `outputs` × i16 bias, then `outputs` × i16 multiplier (0..=32767) | 3 112 |
//! | per layer: `r` (u8, ≤ 24), `s` (u8, ≤ 30), zero point (i8; 0 unless a sigmoid hidden layer) | 9 |
//! | `score_scale`: f32, finite, > 0 (only for turning scores into logits) | 4 |
//! | sigmoid models only: the table, 256 × u8 | 256 |
//!
//! A **sparse layer** (format version 4, for pruned models: [`Int8Layer::sparse`]) stores
//! only its kept blocks of four weights (the blocks that are not all zero), in place of
//! the dense weights:
//!
//! | field | bytes |
//! |---|---|
//! | the kept blocks' weights, 4 bytes each, ordered by output block, then group, then output; starting on a multiple of 4 | 4 × kept |
//! | after every layer's weights, per sparse layer: the counts `[ceil(outputs / 128)][ceil(inputs / 4)]`, u8 (how many blocks of group `g` output block `b` keeps, ≤ the block's width) | blocks × groups |
//! | then that layer's indices: per kept block, its output within its block of 128 (u8), strictly increasing within a group | kept |
//!
//! An **int4 layer** (format version 5, dense or sparse: [`Int8Layer::int4`]) stores the
//! same blocks of four weights in the same order, two blocks to a 32-bit word: byte `k` of
//! word `n` holds input `k`'s weight of block `2n` in its low four bits and that of block
//! `2n + 1` in its high four bits, each a two's complement int4 `q` that stands for the int8
//! weight `16q`; the scheme above is otherwise unchanged (the weight scale is the int4
//! step divided by 16). An odd number of blocks leaves the high halves of the last word
//! zero. A layer's weights then take half the bytes (a sparse layer's kept block 3 bytes
//! with its index), and an int8 weight that is a multiple of 16 converts to int4 and back
//! exactly: the same model stored either way gives the same scores. The int4 weights start
//! on a multiple of 4. The kernels unpack a block with a shift and a mask.
//!
//! The kernels walk a block's groups in order and skip those whose inputs are all zero, as
//! for a dense layer; for each kept block of a non-zero group, they add its four products
//! to the output its index names. In a file with a sparse layer the biases start on a
//! multiple of 4 rather than 64. The header says how many blocks each sparse layer keeps,
//! and the reader checks every count and index before a kernel sees them.
//!
//! Weights are grouped by four inputs: the 32-bit word at `[b][g][j]` holds the weights
//! from inputs `4g..4g+4` to output `128b + j`. This is the operand layout of x86's
//! `VPDPBUSD` and of the Cortex-M4's `SMLAD` after `SXTB16`, and lets an all-zero group of
//! four inputs be skipped with one test. A layer whose input width is not a multiple of
//! four has its last group padded with zero weights (and zero activations). Outputs come
//! in blocks of 128 (the last block of a layer may be narrower: the 10 classes are one
//! block of 10), so that one pass over the inputs for 128 outputs reads one contiguous
//! stretch of memory.
//!
//! # Kernels
//!
//! One reference ([`Int8Model::predict_scalar`]: every output, every input) and the fast
//! kernels ([`Kernel`]): on x86-64 AVX-512 VNNI, AVX2 and a baseline, chosen when the
//! program runs (`x86`); `armv7em` (Cortex-M4/M7 `SMLAD`) where the build targets it; and
//! `portable` (the scalar loop over the non-zero groups, e.g. for a Cortex-M0), compiled on
//! every target. Each runs one image ([`Int8Model::predict`]) or a batch
//! ([`Int8Model::predict_batch_in`]), with the same bits as the reference.

use crate::arch::{Architecture, BLOCK, GROUP, MAX_INPUT, MAX_LAYERS, MAX_WIDTH, SIGMOID_TABLE_BYTES, pad_to_group};
use crate::buffers::{check_buffers, fits, layer_io};
use crate::error::{Error, Param};
use crate::format::{self, Activation, Extras, HEADER_BYTES, Header, Quant, quantize_input};
use crate::layout::{Int8Layout, Storage, groups};
use layer::{Lane, Layer, Output, Sparse, emit, requant};

mod layer;

pub use layer::int4_block;

#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[allow(unsafe_code)]
mod armv7em;
// On every target: the kernel of the Cortex-M0 and M3, and a path the host's tests hold
// to the reference like the others.
mod portable;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

/// A fast int8 kernel. [`Int8Model::predict`] runs [`Kernel::detected`]; every kernel gives
/// the same bits as [`Int8Model::predict_scalar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// x86-64 with AMX-INT8 for batches (`TDPBUSD`, 16,384 multiply-accumulates an
    /// instruction), AVX-512 VNNI for the rest. Runs once the program has the operating
    /// system's leave to use the tile registers ([`assume_amx_permitted`]).
    X86Amx,
    /// x86-64 with AVX-512 F, BW and VNNI: `VPDPBUSD`, 64 multiply-accumulates an instruction.
    X86Vnni,
    /// x86-64 with AVX2: 16-bit products, `VPMADDWD`.
    X86Avx2,
    /// x86-64 with what the build enables (SSE2 for a portable build): `wide`'s 16-bit vectors.
    X86Baseline,
    /// Armv7E-M (Cortex-M4, M7, M33): `SMLAD` on pairs of 16-bit values.
    ArmDsp,
    /// Plain Rust over the non-zero groups (a Cortex-M0 or M3; any target).
    Portable,
}

impl Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Kernel; 6] =
        [Kernel::X86Amx, Kernel::X86Vnni, Kernel::X86Avx2, Kernel::X86Baseline, Kernel::ArmDsp, Kernel::Portable];

    /// The fastest kernel this build and this CPU run. On x86-64 the CPU is asked when the
    /// program runs (`CPUID`, once), so one binary uses AVX-512 VNNI where it exists and
    /// still runs on a CPU without it (and AMX where the program was given the use of it);
    /// on Arm the build's target decides.
    #[inline]
    pub fn detected() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if x86::amx::usable() {
            return Kernel::X86Amx;
        }
        #[cfg(target_arch = "x86_64")]
        return match x86::Level::detect() {
            x86::Level::Vnni => Kernel::X86Vnni,
            x86::Level::Avx2 => Kernel::X86Avx2,
            x86::Level::Baseline => Kernel::X86Baseline,
        };
        #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
        return Kernel::ArmDsp;
        #[allow(unreachable_code)]
        Kernel::Portable
    }

    /// Whether this build has the kernel and this CPU runs it.
    pub fn runs(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::X86Amx => x86::amx::usable(),
            #[cfg(target_arch = "x86_64")]
            Kernel::X86Vnni => x86::Level::Vnni.runs(),
            #[cfg(target_arch = "x86_64")]
            Kernel::X86Avx2 => x86::Level::Avx2.runs(),
            #[cfg(target_arch = "x86_64")]
            Kernel::X86Baseline => true,
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            Kernel::ArmDsp => true,
            Kernel::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// What the kernel is, for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::X86Amx => "x86-64 AMX + AVX-512 VNNI",
            Kernel::X86Vnni => "x86-64 AVX-512 VNNI",
            Kernel::X86Avx2 => "x86-64 AVX2",
            Kernel::X86Baseline if cfg!(target_feature = "avx512bw") => "x86-64 baseline (AVX-512BW build)",
            Kernel::X86Baseline if cfg!(target_feature = "avx2") => "x86-64 baseline (AVX2 build)",
            Kernel::X86Baseline => "x86-64 baseline (SSE2)",
            Kernel::ArmDsp => "Armv7E-M SMLAD",
            Kernel::Portable => "portable",
        }
    }
}

impl core::fmt::Display for Kernel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Records that the operating system lets this process use the AMX tile registers, so that
/// [`Kernel::X86Amx`] runs (where the CPU has AMX-INT8 and AVX-512 VNNI) and
/// [`Kernel::detected`] chooses it. `infer-host` asks the OS and calls this.
///
/// # Safety
/// The OS must have given this process the use of AMX tile data: on Linux,
/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` returned 0. Otherwise the first
/// tile instruction faults.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub unsafe fn assume_amx_permitted() {
    // SAFETY: the caller's contract.
    unsafe { x86::amx::permit() }
}

/// Whether this CPU has what [`Kernel::X86Amx`] needs (AMX-INT8, AVX-512 VNNI, and an OS
/// that enables the tile state), before the process is given the tiles: when a program
/// should ask for them.
#[cfg(target_arch = "x86_64")]
pub fn amx_in_cpu() -> bool {
    x86::amx::in_cpu()
}

/// Images per block of a batched pass ([`Int8Model::predict_batch_in`]): they go through
/// each layer together, so that a stretch of weights read into the cache serves all of them.
pub const BATCH_BLOCK: usize = 64;

pub use crate::spec::{MAX_MULTIPLIER_SHIFT, MAX_ROUNDING_SHIFT};

/// Bytes of [`Int8Scratch`] the study's 784-512-256-10 network needs (1,160).
pub const INT8_SCRATCH_BYTES: usize = Architecture::FMNIST.int8_scratch_bytes();

/// Bytes of [`Int8Scratch`] that hold any valid model's pass: two hidden layers of
/// [`MAX_WIDTH`], the groups of a [`MAX_INPUT`] input and a copy of it.
pub const INT8_SCRATCH_MAX: usize = 2 * MAX_WIDTH + 2 * MAX_INPUT / GROUP + MAX_INPUT;

/// Working memory of an int8 forward pass: `N` bytes for the hidden activations, the list
/// of input groups that are not all zero, and the input's bytes when the pass makes them
/// (from real-valued features, or padded to a whole group).
///
/// A model needs [`Int8Model::scratch_bytes`] of them, which
/// [`Architecture::int8_scratch_bytes`] computes at compile time for a model without an
/// input quantizer: the largest two consecutive hidden layers (each padded to a multiple of
/// four), two bytes per group of four inputs of the widest layer input, and a padded copy
/// of an input that is not a whole number of groups. The default `N` fits the study's
/// network (1,160 bytes); firmware for another model names its own, and
/// [`Int8Scratch::for_model`] and [`Int8Model::predict`] refuse a model that needs more.
#[derive(Clone)]
#[repr(C, align(4))]
pub struct Int8Scratch<const N: usize = INT8_SCRATCH_BYTES> {
    arena: [u8; N],
}

impl Int8Scratch {
    /// Zeroed buffers for the study's network.
    pub const fn new() -> Int8Scratch {
        Int8Scratch::zeroed()
    }
}

impl<const N: usize> Int8Scratch<N> {
    /// Zeroed buffers of `N` bytes.
    pub const fn zeroed() -> Int8Scratch<N> {
        Int8Scratch { arena: [0; N] }
    }

    /// Zeroed buffers, or an error if `model` needs more than `N` bytes.
    pub fn for_model(model: &Int8Model<'_>) -> Result<Int8Scratch<N>, Error> {
        fits(model.scratch_bytes(), N)?;
        Ok(Int8Scratch::zeroed())
    }
}

impl Default for Int8Scratch {
    fn default() -> Self {
        Int8Scratch::new()
    }
}

/// Requantizes one accumulator (see the module documentation), for any arguments.
///
/// `None` when a shift is out of the format's range (`r > 24` or `s > 30`). Otherwise the
/// value every kernel computes: the kernels' accumulators stay below 2^25 in magnitude,
/// and this gives the same result for every `acc` by widening the first addition.
pub fn requantize(acc: i32, bias: i16, mult: i16, r: u8, s: u8) -> Option<i32> {
    if r > MAX_ROUNDING_SHIFT || s > MAX_MULTIPLIER_SHIFT {
        return None;
    }
    let t = ((i64::from(acc) + ((1i64 << r) >> 1)) >> r) + i64::from(bias);
    // |t| <= 2^15 and |mult| <= 2^15, so the rest fits in i32 as in the kernels.
    let t = t.clamp(-32768, 32767) as i32;
    Some((t * i32::from(mult) + ((1 << s) >> 1)) >> s)
}

/// The parameters of one dense layer, for [`encode`]. Every slice has the length the
/// architecture gives the layer.
#[derive(Debug, Clone, Copy)]
pub struct Int8Layer<'p> {
    /// Weights, (inputs, outputs) row-major.
    pub weights: &'p [i8],
    /// Bias per output, on the layer's 16-bit pre-activation grid.
    pub biases: &'p [i16],
    /// Requantization multiplier per output, 0..=32767.
    pub multipliers: &'p [i16],
    /// Rounding shift `r`, 0..=24.
    pub rounding_shift: u8,
    /// Multiplier shift `s`, 0..=30.
    pub multiplier_shift: u8,
    /// Zero point of the int8 pre-activation that indexes the sigmoid table; 0 on every
    /// layer of a ReLU model and on the last layer.
    pub zero_point: i8,
    /// Store only the blocks of four weights (four consecutive inputs of one output) that are
    /// not all zero, with their indices (a pruned layer: smaller, and the kernels skip what
    /// is not stored). A file with a sparse layer is format version 4.
    pub sparse: bool,
    /// Store the weights as int4, two a byte (half the bytes): every weight must then be a
    /// multiple of 16 (`-128..=112`, the int4 value times 16, which is what the kernels
    /// multiply by). A file with an int4 layer is format version 5.
    pub int4: bool,
}

impl Int8Layer<'_> {
    /// Blocks of four weights of this layer of `inputs` and `outputs` that are not all zero:
    /// what it keeps if stored sparse.
    pub fn kept_blocks(&self, inputs: usize, outputs: usize) -> usize {
        let mut kept = 0;
        for g in 0..groups(inputs) {
            for j in 0..outputs {
                let rows = GROUP * g..inputs.min(GROUP * g + GROUP);
                kept += usize::from(rows.into_iter().any(|i| self.weights[i * outputs + j] != 0));
            }
        }
        kept
    }
}

/// The storage [`encode`] gives `layers` (checked to have their architecture's lengths).
fn storage_of(architecture: &Architecture, layers: &[Int8Layer<'_>]) -> Storage {
    let mut storage = Storage::DENSE;
    for (l, layer) in layers.iter().enumerate() {
        let (i, o) = architecture.layer(l);
        if layer.sparse {
            // At most MAX_WIDTH · MAX_INPUT / 4 = 2^20 blocks.
            storage = storage.with_sparse(l, layer.kept_blocks(i, o) as u32);
        }
        if layer.int4 {
            storage = storage.with_int4(l);
        }
    }
    storage
}

/// Checks one layer's requantization parameters (shared by the writer and the reader).
fn check_layer(
    l: usize,
    last: bool,
    activation: Activation,
    shifts: [u8; 3],
    mult: impl Iterator<Item = i16>,
) -> Result<(), Error> {
    let [r, s, zero_point] = shifts;
    let out_of_range = |what, value: i32| Err(Error::OutOfRange { layer: l, what, value });
    if r > MAX_ROUNDING_SHIFT {
        return out_of_range(Param::RoundingShift, r.into());
    }
    if s > MAX_MULTIPLIER_SHIFT {
        return out_of_range(Param::MultiplierShift, s.into());
    }
    if zero_point != 0 && (last || activation != Activation::Sigmoid) {
        return out_of_range(Param::ZeroPoint, (zero_point as i8).into());
    }
    for m in mult {
        if m < 0 {
            return out_of_range(Param::Multipliers, m.into());
        }
    }
    Ok(())
}

/// Bytes [`encode`] writes for these layers (which layers are sparse, and how many blocks
/// they keep, decide the size); `layers` must have the architecture's lengths.
pub fn encoded_len(
    architecture: &Architecture,
    activation: Activation,
    layers: &[Int8Layer<'_>],
    extras: &Extras<'_>,
) -> Result<usize, Error> {
    check_lengths(architecture, layers)?;
    let storage = storage_of(architecture, layers);
    Ok(Header::new(*architecture, activation, Quant::Int8).with_extras(extras).with_storage(storage).file_len())
}

/// Checks that there is a layer per dense layer of `architecture`, each slice the length
/// the architecture gives it.
fn check_lengths(architecture: &Architecture, layers: &[Int8Layer<'_>]) -> Result<(), Error> {
    if layers.len() != architecture.layers() {
        return Err(Error::LayerCount { expected: architecture.layers(), found: layers.len() });
    }
    for (l, layer) in layers.iter().enumerate() {
        let (i, o) = architecture.layer(l);
        let counts = [(Param::Weights, layer.weights.len(), i * o), (Param::Biases, layer.biases.len(), o)];
        for (what, found, expected) in counts.into_iter().chain([(Param::Multipliers, layer.multipliers.len(), o)]) {
            if found != expected {
                return Err(Error::ParameterCount { layer: l, what, expected, found });
            }
        }
    }
    Ok(())
}

/// Encodes an int8 model file into `out` (at least [`encoded_len`] bytes); returns the
/// bytes used.
///
/// Every slice must have the length `architecture` gives it, every parameter must be in
/// the format's range, and `sigmoid_table` must be given exactly for a sigmoid model, so
/// that what this writes [`Int8Model::from_bytes`] reads.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    architecture: &Architecture,
    activation: Activation,
    layers: &[Int8Layer<'_>],
    score_scale: f32,
    sigmoid_table: Option<&[u8; SIGMOID_TABLE_BYTES]>,
    extras: &Extras<'_>,
    out: &mut [u8],
) -> Result<usize, Error> {
    check_lengths(architecture, layers)?;
    if !(score_scale.is_finite() && score_scale > 0.0) {
        return Err(Error::ScoreScale);
    }
    if sigmoid_table.is_some() != (activation == Activation::Sigmoid) {
        return Err(Error::SigmoidTable);
    }
    for (l, layer) in layers.iter().enumerate() {
        let shifts = [layer.rounding_shift, layer.multiplier_shift, layer.zero_point as u8];
        check_layer(l, l + 1 == layers.len(), activation, shifts, layer.multipliers.iter().copied())?;
        if let Some(&w) = layer.weights.iter().find(|&&w| layer.int4 && w % 16 != 0) {
            return Err(Error::OutOfRange { layer: l, what: Param::Weights, value: w.into() });
        }
    }
    let storage = storage_of(architecture, layers);
    let header = Header::new(*architecture, activation, Quant::Int8).with_extras(extras).with_storage(storage);
    let layout = Int8Layout::with_storage(architecture, activation, &storage);
    let len = header.file_len();
    let found = out.len();
    let file = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len, found })?;
    let payload = &mut file[HEADER_BYTES..HEADER_BYTES + layout.len()];
    payload.fill(0);
    for (l, layer) in layers.iter().enumerate() {
        write_weights(payload, &layout, l, layer, architecture.layer(l));
        let params = [(layout.biases(l), layer.biases), (layout.multipliers(l), layer.multipliers)];
        for (span, values) in params {
            for (b, v) in payload[span.range()].chunks_exact_mut(2).zip(values) {
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
        payload[layout.shifts(l).range()].copy_from_slice(&[
            layer.rounding_shift,
            layer.multiplier_shift,
            layer.zero_point as u8,
        ]);
    }
    payload[layout.score_scale().range()].copy_from_slice(&score_scale.to_le_bytes());
    if let (Some(span), Some(table)) = (layout.table(), sigmoid_table) {
        payload[span.range()].copy_from_slice(table);
    }
    format::seal(&header, extras, file)
}

/// Writes layer `l` (of `inputs` and `outputs`) into its part of `payload` as `layout`
/// places it: its blocks of four weights (dense: every one; sparse: those not all zero, with
/// their counts and indices), four bytes each or, int4, two to a word.
fn write_weights(payload: &mut [u8], layout: &Int8Layout, l: usize, layer: &Int8Layer<'_>, (i, o): (usize, usize)) {
    // The four weights of group `g` to output `j` (the padding inputs of the last group
    // keep zero weights).
    let block = |g: usize, j: usize| -> [u8; GROUP] {
        core::array::from_fn(|k| if GROUP * g + k < i { layer.weights[(GROUP * g + k) * o + j] as u8 } else { 0 })
    };
    // Where the next block goes: a byte offset for int8, a block number for int4.
    let start = layout.weights(l).start;
    let (mut at, mut kept) = (if layer.int4 { 0 } else { start }, 0);
    let (counts, indices) = (layout.counts(l).start, layout.indices(l).start);
    for b in (0..o).step_by(BLOCK) {
        for g in 0..groups(i) {
            let mut count = 0u8;
            for j in b..o.min(b + BLOCK) {
                let w = block(g, j);
                if layer.sparse && w == [0; GROUP] {
                    continue;
                }
                if layer.int4 {
                    // Block `at` (counted in blocks): the low halves of word at / 2 if
                    // even, the high halves if odd.
                    let word = &mut payload[start + at / 2 * GROUP..][..GROUP];
                    for (byte, &w) in word.iter_mut().zip(&w) {
                        *byte |= if at % 2 == 0 { w >> 4 } else { w & 0xF0 };
                    }
                    at += 1;
                } else {
                    payload[at..at + GROUP].copy_from_slice(&w);
                    at += GROUP;
                }
                if layer.sparse {
                    // j - b < BLOCK = 128, and so is the count.
                    payload[indices + kept] = (j - b) as u8;
                    kept += 1;
                    count += 1;
                }
            }
            if layer.sparse {
                payload[counts + b / BLOCK * groups(i) + g] = count;
            }
        }
    }
}

/// An int8 model whose weights stay in the borrowed bytes (flash on a microcontroller).
#[derive(Debug, Clone, Copy)]
pub struct Int8Model<'a> {
    architecture: Architecture,
    activation: Activation,
    layers: [Layer<'a>; MAX_LAYERS],
    score_scale: f32,
    extras: Extras<'a>,
    /// How a pass splits its scratch, computed once: the hidden activations' bytes, the
    /// group list's, and all it needs ([`Int8Model::scratch_bytes`]).
    split: ScratchSplit,
}

/// The parts of an int8 pass's scratch, in bytes.
#[derive(Debug, Clone, Copy)]
struct ScratchSplit {
    activations: usize,
    groups: usize,
    total: usize,
}

/// What a pass classifies: bytes as the first layer reads them (pixels), or real-valued
/// features for the model's input quantizer to make bytes of.
#[derive(Clone, Copy)]
enum Input<'x> {
    Bytes(&'x [u8]),
    Features(&'x [f32]),
}

impl Input<'_> {
    fn len(&self) -> usize {
        match self {
            Input::Bytes(b) => b.len(),
            Input::Features(f) => f.len(),
        }
    }
}

impl<'a> Int8Model<'a> {
    /// Validates a model file (see [`format::read`]) holding an int8 model: shifts and
    /// multipliers in range, zero points only where a sigmoid uses them, a finite score scale.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Int8Model<'a>, Error> {
        Int8Model::from_file(format::read(bytes)?)
    }

    /// An int8 model from a file [`format::read`] validated.
    pub fn from_file(file: format::ModelFile<'a>) -> Result<Int8Model<'a>, Error> {
        let header = file.header();
        if header.quant() != Quant::Int8 {
            return Err(Error::WrongQuantization { expected: Quant::Int8, found: header.quant() });
        }
        let (architecture, activation) = (header.architecture(), header.activation());
        let storage = header.storage();
        let layout = Int8Layout::with_storage(&architecture, activation, &storage);
        let payload = file.payload();
        if payload.len() != layout.len() {
            return Err(Error::PayloadSize { expected: layout.len(), found: payload.len() });
        }
        let scale = &payload[layout.score_scale().range()];
        let score_scale = f32::from_le_bytes([scale[0], scale[1], scale[2], scale[3]]);
        if !(score_scale.is_finite() && score_scale > 0.0) {
            return Err(Error::ScoreScale);
        }
        let table: Option<&'a [u8; SIGMOID_TABLE_BYTES]> = match layout.table() {
            Some(span) => Some(payload[span.range()].try_into().map_err(|_| Error::SigmoidTable)?),
            None => None,
        };
        let mut layers = [Layer::EMPTY; MAX_LAYERS];
        let n = architecture.layers();
        for (l, slot) in layers.iter_mut().enumerate().take(n) {
            let (inputs, outputs) = architecture.layer(l);
            let shifts = &payload[layout.shifts(l).range()];
            let (r, s, zero_point) = (shifts[0], shifts[1], shifts[2] as i8);
            let mult = &payload[layout.multipliers(l).range()];
            let mults = mult.chunks_exact(2).map(|m| i16::from_le_bytes([m[0], m[1]]));
            check_layer(l, l + 1 == n, activation, [r, s, zero_point as u8], mults)?;
            let output = match (l + 1 == n, table) {
                (true, _) => Output::Scores,
                (false, Some(table)) => Output::Sigmoid { zero_point: zero_point.into(), table },
                (false, None) => Output::Relu,
            };
            let sparse = match storage.kept(l) {
                Some(kept) => {
                    let sparse = Sparse {
                        counts: &payload[layout.counts(l).range()],
                        indices: &payload[layout.indices(l).range()],
                    };
                    if !sparse.check(outputs, groups(inputs), kept as usize) {
                        return Err(Error::SparseLayer { layer: l });
                    }
                    Some(sparse)
                }
                None => None,
            };
            let weights = &payload[layout.weights(l).range()];
            let int4 = storage.int4(l);
            // An odd number of int4 blocks leaves the high halves of the last word unused:
            // they are zero.
            let blocks = sparse.map_or(groups(inputs) * outputs, |s| s.indices.len());
            if int4 && blocks % 2 == 1 && weights[weights.len() - GROUP..].iter().any(|&b| b & 0xF0 != 0) {
                return Err(Error::Malformed);
            }
            *slot = Layer {
                inputs: pad_to_group(inputs),
                outputs,
                weights,
                int4,
                sparse,
                reach: &payload[layout.weights(l).start..],
                bias: &payload[layout.biases(l).range()],
                mult,
                r: r.into(),
                s: s.into(),
                output,
            };
        }
        let extras = *file.extras();
        let staged = extras.has_input_quantizer() && architecture.int8_input_bytes() == 0;
        let split = ScratchSplit {
            activations: architecture.int8_activation_bytes(),
            groups: architecture.int8_group_bytes(),
            total: architecture.int8_scratch_bytes() + if staged { architecture.inputs() } else { 0 },
        };
        Ok(Int8Model { architecture, activation, layers, score_scale, extras, split })
    }

    /// Layer widths.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// Hidden-layer activation of this model.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Multiply a score by this to get (approximately) the f32 model's logit.
    pub fn score_scale(&self) -> f32 {
        self.score_scale
    }

    /// The file's class names and input quantizer (none in files without them).
    pub fn extras(&self) -> &Extras<'a> {
        &self.extras
    }

    /// Bytes of [`Int8Scratch`] a forward pass needs: [`Architecture::int8_scratch_bytes`],
    /// and with an input quantizer room for the input's bytes.
    pub fn scratch_bytes(&self) -> usize {
        self.split.total
    }

    /// Classifies one example of raw bytes (an image's pixels, 0 = black, row-major),
    /// writing the integer scores to `scores[..classes]`; returns the class (the first
    /// largest score).
    ///
    /// Uses the fastest kernel this build has; it gives the same bits as
    /// [`Int8Model::predict_scalar`]. Errors, and writes nothing, when `image` is not the
    /// model's input width, `scores` is shorter than its classes, or `scratch` is too small.
    pub fn predict<const N: usize>(
        &self,
        image: &[u8],
        scratch: &mut Int8Scratch<N>,
        scores: &mut [i32],
    ) -> Result<usize, Error> {
        self.run(Input::Bytes(image), &mut scratch.arena, scores, fast(Kernel::detected()))
    }

    /// Classifies one example of real-valued features (raw sensor values: the model's input
    /// quantizer standardizes and quantizes them, [`format::quantize_input`]), as
    /// [`Int8Model::predict`] does bytes. Errors, and writes nothing, also when the model
    /// has no input quantizer (it takes bytes).
    pub fn predict_features<const N: usize>(
        &self,
        features: &[f32],
        scratch: &mut Int8Scratch<N>,
        scores: &mut [i32],
    ) -> Result<usize, Error> {
        self.run(Input::Features(features), &mut scratch.arena, scores, fast(Kernel::detected()))
    }

    /// [`Int8Model::predict`] on the plain portable kernel: one output at a time, every
    /// input. The reference every fast kernel is tested against.
    pub fn predict_scalar<const N: usize>(
        &self,
        image: &[u8],
        scratch: &mut Int8Scratch<N>,
        scores: &mut [i32],
    ) -> Result<usize, Error> {
        self.run(Input::Bytes(image), &mut scratch.arena, scores, scalar)
    }

    /// [`Int8Model::predict`] on a kernel of the caller's choice (to compare kernels, or to
    /// run the baseline on purpose); [`Error::KernelUnavailable`] where this build or CPU
    /// lacks it ([`Kernel::runs`]). The same bits on every kernel.
    pub fn predict_with<const N: usize>(
        &self,
        kernel: Kernel,
        image: &[u8],
        scratch: &mut Int8Scratch<N>,
        scores: &mut [i32],
    ) -> Result<usize, Error> {
        if !kernel.runs() {
            return Err(Error::KernelUnavailable);
        }
        self.run(Input::Bytes(image), &mut scratch.arena, scores, fast(kernel))
    }

    /// [`Int8Model::predict_features`] on the plain portable kernel.
    pub fn predict_features_scalar<const N: usize>(
        &self,
        features: &[f32],
        scratch: &mut Int8Scratch<N>,
        scores: &mut [i32],
    ) -> Result<usize, Error> {
        self.run(Input::Features(features), &mut scratch.arena, scores, scalar)
    }

    /// [`Int8Model::predict`] with scratch memory the caller owns as plain bytes (from C, or
    /// sized at run time): at least [`Int8Model::scratch_bytes`] of them, starting on an
    /// even address (else [`Error::ScratchAlignment`]). The same bits as `predict`.
    pub fn predict_in(&self, image: &[u8], scratch: &mut [u8], scores: &mut [i32]) -> Result<usize, Error> {
        self.run(Input::Bytes(image), scratch, scores, fast(Kernel::detected()))
    }

    /// [`Int8Model::predict_features`] with scratch memory as [`Int8Model::predict_in`] takes it.
    pub fn predict_features_in(
        &self,
        features: &[f32],
        scratch: &mut [u8],
        scores: &mut [i32],
    ) -> Result<usize, Error> {
        self.run(Input::Features(features), scratch, scores, fast(Kernel::detected()))
    }

    /// Bytes of scratch [`Int8Model::predict_batch_in`] needs for a batch of `images`:
    /// [`Int8Model::scratch_bytes`] (rounded up to a multiple of 4) for each image of one
    /// block of at most [`BATCH_BLOCK`], however long the batch.
    pub fn batch_scratch_bytes(&self, images: usize) -> usize {
        let lanes = images.clamp(1, BATCH_BLOCK);
        lanes * self.lane_bytes() + self.stage_bytes(lanes)
    }

    /// What a block of `lanes` images needs besides its lanes: on x86-64, room to copy their
    /// inputs of the widest layer as AMX tiles (whole tiles of 16 images); none elsewhere.
    fn stage_bytes(&self, lanes: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        {
            let widest = self.layers[..self.architecture.layers()].iter().map(|l| l.inputs).max().unwrap_or(0);
            x86::amx::stage_bytes(lanes, widest)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = lanes;
            0
        }
    }

    /// One image's part of a batch's scratch.
    fn lane_bytes(&self) -> usize {
        self.split.total.next_multiple_of(4)
    }

    /// Classifies a batch: `images` holds whole inputs of raw bytes one after another (for
    /// a model with an input quantizer, the bytes of [`Int8Model::quantize_features`]);
    /// image `i`'s scores go to `scores[i * classes..][..classes]` and its class to
    /// `classes_out[i]`. `scratch` holds [`Int8Model::batch_scratch_bytes`] and starts on
    /// an even address.
    ///
    /// Images go through each layer in blocks of [`BATCH_BLOCK`], sharing each stretch of
    /// weights while it is in the cache, on the fastest kernel ([`Kernel::detected`]). Every
    /// image gets the same bits as [`Int8Model::predict`] gives it alone. Errors, and writes
    /// nothing, when `images` is not a whole number of inputs or a buffer is short.
    pub fn predict_batch_in(
        &self,
        images: &[u8],
        scratch: &mut [u8],
        scores: &mut [i32],
        classes_out: &mut [u16],
    ) -> Result<(), Error> {
        self.predict_batch_with(Kernel::detected(), images, scratch, scores, classes_out)
    }

    /// [`Int8Model::predict_batch_in`] on a kernel of the caller's choice, as
    /// [`Int8Model::predict_with`].
    pub fn predict_batch_with(
        &self,
        kernel: Kernel,
        images: &[u8],
        scratch: &mut [u8],
        scores: &mut [i32],
        classes_out: &mut [u16],
    ) -> Result<(), Error> {
        if !kernel.runs() {
            return Err(Error::KernelUnavailable);
        }
        let (inputs, classes) = (self.architecture.inputs(), self.architecture.classes());
        if !images.len().is_multiple_of(inputs) {
            return Err(Error::InputSize { expected: images.len().next_multiple_of(inputs), found: images.len() });
        }
        let n = images.len() / inputs;
        let found = scores.len();
        let scores = scores.get_mut(..n * classes).ok_or(Error::OutputSize { expected: n * classes, found })?;
        let found = classes_out.len();
        let classes_out = classes_out.get_mut(..n).ok_or(Error::OutputSize { expected: n, found })?;
        fits(self.batch_scratch_bytes(n), scratch.len())?;
        if !scratch.as_ptr().cast::<u16>().is_aligned() {
            return Err(Error::ScratchAlignment);
        }
        let blocks = images.chunks(BATCH_BLOCK * inputs).zip(scores.chunks_mut(BATCH_BLOCK * classes));
        for ((images, scores), classes_out) in blocks.zip(classes_out.chunks_mut(BATCH_BLOCK)) {
            self.run_block(kernel, images, scratch, scores, classes_out);
        }
        Ok(())
    }

    /// Up to [`BATCH_BLOCK`] images through every layer together: each image's scratch is a
    /// lane of `scratch` split as a single pass splits its own.
    fn run_block(
        &self,
        kernel: Kernel,
        images: &[u8],
        scratch: &mut [u8],
        scores: &mut [i32],
        classes_out: &mut [u16],
    ) {
        let arch = &self.architecture;
        let (inputs, classes, lane) = (arch.inputs(), arch.classes(), self.lane_bytes());
        let n = arch.layers();
        let split = self.split;
        let (scratch, stage) = scratch.split_at_mut(images.len() / inputs * lane);
        for (l, layer) in self.layers[..n].iter().enumerate() {
            // The lanes AMX runs (whole tiles of 16 images, dense layers) need no list of
            // their non-zero groups: it does not skip them.
            #[cfg(target_arch = "x86_64")]
            let unlisted = match kernel == Kernel::X86Amx && layer.sparse.is_none() && !layer.int4 {
                true => x86::amx::tiled(images.len() / inputs),
                false => 0,
            };
            #[cfg(not(target_arch = "x86_64"))]
            let unlisted = 0;
            let (k, m, last) = (layer.inputs, pad_to_group(layer.outputs), l + 1 == n);
            let mut lanes: heapless::Vec<Lane<'_>, BATCH_BLOCK> = heapless::Vec::new();
            let per_image =
                images.chunks_exact(inputs).zip(scratch.chunks_exact_mut(lane)).zip(scores.chunks_exact_mut(classes));
            for (i, ((image, arena), scores)) in per_image.enumerate() {
                let (acts, rest) = arena.split_at_mut(split.activations);
                let (groups, staged) = rest.split_at_mut(split.groups);
                // Aligned: the scratch starts on an even address, a lane is a multiple of 4
                // bytes, and so are the activations.
                let groups: &mut [u16] = bytemuck::cast_slice_mut(groups);
                let (x, act, scores): (&[u8], &mut [u8], &mut [i32]) = match (l, last) {
                    (0, _) => {
                        let x = if image.len().is_multiple_of(GROUP) {
                            image
                        } else {
                            let staged = &mut staged[..pad_to_group(image.len())];
                            staged[..image.len()].copy_from_slice(image);
                            staged[image.len()..].fill(0);
                            staged
                        };
                        if last { (x, &mut [], scores) } else { (x, &mut acts[..m], &mut []) }
                    }
                    (_, true) => (layer_io(acts, l, k, 0).0, &mut [], scores),
                    (_, false) => {
                        let (x, out) = layer_io(acts, l, k, m);
                        (x, out, &mut [])
                    }
                };
                // A sparse layer's kernels walk every group themselves.
                let count = if layer.sparse.is_some() || i < unlisted { 0 } else { nonzero_groups(x, groups) };
                // At most BATCH_BLOCK images (the caller's chunks).
                let _ = lanes.push(Lane { x, groups: &groups[..count], act, scores });
            }
            dense_many(kernel, layer, &mut lanes, Some(&mut *stage));
            if !last {
                // The inputs that pad the next layer's last group are zero.
                for lane in lanes.iter_mut() {
                    lane.act[layer.outputs..].fill(0);
                }
            }
        }
        for (class, scores) in classes_out.iter_mut().zip(scores.chunks_exact(classes)) {
            // Classes are at most MAX_WIDTH (1,024).
            *class = argmax_i32(scores) as u16;
        }
    }

    /// The bytes `features` become through the model's input quantizer, written into
    /// `out[..inputs]`; what [`Int8Model::predict_features`] classifies.
    pub fn quantize_features(&self, features: &[f32], out: &mut [u8]) -> Result<(), Error> {
        let inputs = self.architecture.inputs();
        if features.len() != inputs {
            return Err(Error::InputSize { expected: inputs, found: features.len() });
        }
        let found = out.len();
        let out = out.get_mut(..inputs).ok_or(Error::OutputSize { expected: inputs, found })?;
        if !self.extras.has_input_quantizer() {
            return Err(Error::NoInputQuantizer);
        }
        for (i, (q, &x)) in out.iter_mut().zip(features).enumerate() {
            let (gain, offset) = self.extras.input_quantizer(i).unwrap_or((0.0, 0.0));
            *q = quantize_input(x, gain, offset);
        }
        Ok(())
    }

    /// Checks the buffers, stages the input's bytes where the first layer cannot read them
    /// in place, then runs every layer through `dense(layer, x, groups, act, scores)`: a
    /// hidden layer writes `act`, the last one `scores`.
    #[inline(always)]
    fn run(
        &self,
        input: Input<'_>,
        arena: &mut [u8],
        scores: &mut [i32],
        dense: impl Fn(&Layer<'_>, &[u8], &mut [u16], &mut [u8], &mut [i32]),
    ) -> Result<usize, Error> {
        let arch = &self.architecture;
        let capacity = arena.len();
        let scores = check_buffers(arch, input.len(), scores, self.scratch_bytes(), capacity)?;
        if matches!(input, Input::Features(_)) && !self.extras.has_input_quantizer() {
            return Err(Error::NoInputQuantizer);
        }
        if !arena.as_ptr().cast::<u16>().is_aligned() {
            return Err(Error::ScratchAlignment);
        }
        let (acts, rest) = arena.split_at_mut(self.split.activations);
        let (groups, staged) = rest.split_at_mut(self.split.groups);
        // Aligned: the arena is (an Int8Scratch by construction), and the activations take
        // a multiple of 4.
        let groups: &mut [u16] = bytemuck::try_cast_slice_mut(groups).map_err(|_| Error::ScratchAlignment)?;
        let first: &[u8] = match input {
            Input::Bytes(image) if image.len().is_multiple_of(GROUP) => image,
            Input::Bytes(image) => {
                let staged = &mut staged[..pad_to_group(image.len())];
                staged[..image.len()].copy_from_slice(image);
                staged[image.len()..].fill(0);
                staged
            }
            Input::Features(features) => {
                let staged = &mut staged[..pad_to_group(features.len())];
                self.quantize_features(features, staged)?;
                staged[features.len()..].fill(0);
                staged
            }
        };
        let n = arch.layers();
        for (l, layer) in self.layers[..n].iter().enumerate() {
            // `inputs` is padded to whole groups already; the output is padded here.
            let (k, m) = (layer.inputs, pad_to_group(layer.outputs));
            if l + 1 == n {
                let x = if l == 0 { first } else { layer_io(acts, l, k, 0).0 };
                dense(layer, x, groups, &mut [], scores);
            } else {
                let (x, out) = if l == 0 { (first, &mut acts[..m]) } else { layer_io(acts, l, k, m) };
                dense(layer, x, groups, out, &mut []);
                // The inputs that pad the next layer's last group are zero.
                out[layer.outputs..].fill(0);
            }
        }
        Ok(argmax_i32(scores))
    }
}

/// A layer on `kernel` (one this CPU runs), over the groups of its input that are not all zero.
#[inline(always)]
fn fast(kernel: Kernel) -> impl Fn(&Layer<'_>, &[u8], &mut [u16], &mut [u8], &mut [i32]) {
    move |layer, x, groups, act, scores| {
        // A sparse layer's kernels walk every group themselves.
        let n = if layer.sparse.is_some() { 0 } else { nonzero_groups(x, groups) };
        let mut lane = [Lane { x, groups: &groups[..n], act, scores }];
        dense_many(kernel, layer, &mut lane, None);
    }
}

/// Each lane's outputs of `layer` on `kernel` (one this CPU runs); `stage` for a block of
/// [`Int8Model::predict_batch_in`] (the images share the weights in the cache; AMX copies
/// their inputs there), `None` for one image.
#[inline(always)]
fn dense_many(kernel: Kernel, layer: &Layer<'_>, lanes: &mut [Lane<'_>], stage: Option<&mut [u8]>) {
    let blocked = stage.is_some();
    if layer.int4 {
        for lane in lanes.iter_mut() {
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            if kernel == Kernel::ArmDsp {
                armv7em::int4(layer, lane.x, lane.groups, lane.act, lane.scores);
                continue;
            }
            portable::int4(layer, lane.x, lane.groups, lane.act, lane.scores);
        }
        return;
    }
    if let Some(sparse) = layer.sparse {
        // A batch on x86: several images per vector. One image: the portable loop, which
        // skips its zero groups.
        #[cfg(target_arch = "x86_64")]
        if blocked && lanes.len() > 1 {
            let level = match kernel {
                Kernel::X86Amx | Kernel::X86Vnni => Some(x86::Level::Vnni),
                Kernel::X86Avx2 => Some(x86::Level::Avx2),
                _ => None,
            };
            if let Some(level) = level
                && x86::sparse_many(level, layer, &sparse, lanes)
            {
                return;
            }
        }
        for lane in lanes.iter_mut() {
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            if kernel == Kernel::ArmDsp {
                armv7em::sparse(layer, &sparse, lane.x, lane.act, lane.scores);
                continue;
            }
            portable::sparse(layer, &sparse, lane.x, lane.act, lane.scores);
        }
        return;
    }
    // Whole tiles of 16 images on AMX; the rest on VNNI.
    #[cfg(target_arch = "x86_64")]
    let lanes = match (kernel, stage) {
        (Kernel::X86Amx, Some(stage)) => {
            let done = x86::amx::dense_many(layer, lanes, stage);
            &mut lanes[done..]
        }
        _ => lanes,
    };
    #[cfg(target_arch = "x86_64")]
    let level = match kernel {
        Kernel::X86Amx | Kernel::X86Vnni => Some(x86::Level::Vnni),
        Kernel::X86Avx2 => Some(x86::Level::Avx2),
        Kernel::X86Baseline => Some(x86::Level::Baseline),
        _ => None,
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(level) = level {
        return x86::dense_many(level, layer, lanes, blocked);
    }
    // (Used by the x86 kernels only; the Arm ones choose by the build's target.)
    let _ = (kernel, blocked);
    for lane in lanes.iter_mut() {
        #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
        if kernel == Kernel::ArmDsp {
            armv7em::dense(layer, lane.x, lane.groups, lane.act, lane.scores);
            continue;
        }
        portable::dense(layer, lane.x, lane.groups, lane.act, lane.scores);
    }
}

/// A layer on the reference: every output, every input.
fn scalar(layer: &Layer<'_>, x: &[u8], _: &mut [u16], act: &mut [u8], scores: &mut [i32]) {
    match layer.sparse {
        Some(sparse) => sparse_scalar(layer, &sparse, x, act, scores),
        None => dense_scalar(layer, x, 0..layer.inputs / GROUP, act, scores),
    }
}

/// Every output of a sparse `layer`, one at a time, every input: the weight of each group
/// looked up among the group's kept blocks (zero if it has none for the output).
fn sparse_scalar(layer: &Layer<'_>, sparse: &Sparse<'_>, x: &[u8], act: &mut [u8], scores: &mut [i32]) {
    let groups = layer.inputs / GROUP;
    for j in 0..layer.outputs {
        let (b, k) = (j / BLOCK, j % BLOCK);
        // The kept blocks of the output blocks before `b`.
        let mut at: usize = sparse.counts[..b * groups].iter().map(|&c| usize::from(c)).sum();
        let mut acc = 0i32;
        for g in 0..groups {
            let count = usize::from(sparse.counts[b * groups + g]);
            let run = &sparse.indices[at..at + count];
            if let Some(pos) = run.iter().position(|&i| usize::from(i) == k) {
                let w = layer.block(at + pos);
                for (&xi, &wi) in x[g * GROUP..][..GROUP].iter().zip(&w) {
                    acc += xi as i32 * wi as i32;
                }
            }
            at += count;
        }
        let v = requant(acc, layer.bias(j), layer.mult(j), layer.r, layer.s);
        emit(layer, j, v, act, scores);
    }
}

/// Index of the largest score; the first one on ties, 0 for an empty slice.
pub fn argmax_i32(scores: &[i32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

/// Every output of `layer`, one at a time: the dot product over the groups of four inputs
/// listed in `groups` (in order), requantized and emitted.
fn dense_scalar(
    layer: &Layer<'_>,
    x: &[u8],
    groups: impl Iterator<Item = usize> + Clone,
    act: &mut [u8],
    scores: &mut [i32],
) {
    for j in 0..layer.outputs {
        let mut acc = 0i32;
        for g in groups.clone() {
            let w = layer.block(layer.offset(g, j) / GROUP);
            for (&xi, &wi) in x[g * GROUP..][..GROUP].iter().zip(&w) {
                acc += xi as i32 * wi as i32;
            }
        }
        let v = requant(acc, layer.bias(j), layer.mult(j), layer.r, layer.s);
        emit(layer, j, v, act, scores);
    }
}

/// Lists the groups of four inputs of `x` that hold a non-zero byte in `groups` (at least
/// `x.len() / 4` long); returns how many there are.
fn nonzero_groups(x: &[u8], groups: &mut [u16]) -> usize {
    let words = x.chunks_exact(GROUP).map(|xs| u32::from_le_bytes([xs[0], xs[1], xs[2], xs[3]]));
    let groups = &mut groups[..x.len() / GROUP];
    let mut n = 0;
    // On x86 without a branch on the data: each group's number is written at the next free
    // slot, which moves on only if the group is non-zero. Whether a group is zero follows
    // the image's outline and the units' activity, and a branch on it was mispredicted
    // often: listing an image's groups took 270 ns with the branch, 70 ns without (a
    // tenth of an inference). On a Cortex-M4, which predicts nothing, the branch-free
    // loop executed 1% more instructions per inference, so it keeps the branch.
    #[cfg(target_arch = "x86_64")]
    for (g, word) in words.enumerate() {
        // g < 2^16: a layer has at most MAX_INPUT / 4 groups.
        groups[n] = g as u16;
        n += usize::from(word != 0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (g, word) in words.enumerate() {
        if word != 0 {
            groups[n] = g as u16;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requantize_rounds_half_up_and_saturates() {
        assert_eq!(requantize(6, 0, 1, 2, 0), Some(2)); // 6/4 = 1.5 -> 2
        assert_eq!(requantize(-6, 0, 1, 2, 0), Some(-1)); // -1.5 -> -1
        assert_eq!(requantize(1 << 24, 0, 1, 0, 0), Some(32767));
        assert_eq!(requantize(-(1 << 24), 0, 1, 0, 0), Some(-32768));
        assert_eq!(requantize(100, 3, 3, 0, 1), Some(155)); // (103 * 3 + 1) >> 1
        // The extremes stay inside i32.
        assert_eq!(requantize(-(1 << 25), -32768, 32767, 0, 30), Some(-1));
        assert_eq!(requantize(1 << 25, 32767, 32767, 24, 30), Some(1));
    }

    #[test]
    fn requantize_is_total() {
        // Shifts of 32 and more used to overflow; out-of-range shifts are now refused.
        for (r, s) in [(32, 0), (0, 32), (255, 255), (25, 0), (0, 31)] {
            assert_eq!(requantize(1, 0, 1, r, s), None, "r {r}, s {s}");
        }
        for acc in [i32::MIN, i32::MAX, -1, 0, 1] {
            for (bias, mult) in [(i16::MIN, i16::MIN), (i16::MAX, i16::MAX), (0, -1)] {
                for (r, s) in [(0, 0), (24, 30), (0, 30), (24, 0)] {
                    let v = requantize(acc, bias, mult, r, s).unwrap();
                    if acc.unsigned_abs() < 1 << 25 {
                        assert_eq!(v, requant(acc, bias.into(), mult.into(), r.into(), s.into()));
                    }
                }
            }
        }
    }

    #[test]
    fn nonzero_groups_lists_every_group_of_the_widest_layer() {
        // 4096 inputs: 1024 groups, numbered 0..=1023; every odd group non-zero.
        let mut x = [0u8; 4096];
        for g in (1..1024).step_by(2) {
            x[4 * g + 3] = 1;
        }
        let mut groups = [0u16; 1024];
        let n = nonzero_groups(&x, &mut groups);
        assert_eq!(n, 512);
        assert!(groups[..n].iter().enumerate().all(|(k, &g)| usize::from(g) == 2 * k + 1));
    }
}
