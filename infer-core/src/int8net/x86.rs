//! The x86-64 kernels, chosen when the program runs: AVX-512 VNNI's `VPDPBUSD` (64
//! multiply-accumulates per instruction), AVX2's 16-bit `VPMADDWD`, and the baseline
//! (16-bit products with `wide`, on whatever the build enables: SSE2 for a portable build).
//!
//! One body of code ([`dense_many_with`] and what it calls) serves every path: it is generic
//! over a [`Dot`] (the instruction that multiplies four inputs into 16 outputs' sums) and
//! inlined into one function per path that carries the path's `#[target_feature]`s, so that
//! the intrinsics inline into it. A path's [`Dot`] token can only be made once the CPU is
//! known to have its instructions ([`Level::detect`]), which is what makes the safe
//! functions that use them sound. Every path gives the same integers (exact integer sums,
//! the same requantization), so results are bit-identical whichever runs.

use core::arch::x86_64::{
    __m256i, __m512i, _mm256_add_epi32, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_set1_epi32, _mm256_setzero_si256,
    _mm256_slli_epi16, _mm256_srai_epi16, _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_set1_epi32,
    _mm512_setzero_si512,
};
use core::sync::atomic::{AtomicU8, Ordering};

use super::layer::{Lane, Layer, Output, Sparse, emit, requant};
use crate::spec::{BLOCK, GROUP};
use wide::i32x16;

pub(super) mod amx;

/// An x86-64 kernel, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Level {
    /// AVX-512 F, BW and VNNI.
    Vnni,
    /// AVX2.
    Avx2,
    /// What the build enables (x86-64's SSE2 at least).
    Baseline,
}

/// [`Level::detect`]'s answer, once known: `1 + level as u8`, 0 before.
static DETECTED: AtomicU8 = AtomicU8::new(0);

impl Level {
    /// The best kernel this CPU (and its operating system, which must save the wider
    /// registers) runs; asked of `CPUID` once and remembered.
    pub(super) fn detect() -> Level {
        match DETECTED.load(Ordering::Relaxed) {
            1 => Level::Vnni,
            2 => Level::Avx2,
            3 => Level::Baseline,
            _ => {
                let level = cpu_level();
                DETECTED.store(1 + level as u8, Ordering::Relaxed);
                level
            }
        }
    }

    /// Whether this CPU runs `self`.
    pub(super) fn runs(self) -> bool {
        self >= Level::detect()
    }
}

/// Reads the CPU's features: the instruction sets (`CPUID` leaves 1 and 7) and whether the
/// operating system saves the YMM and ZMM registers (`XCR0`), as `std`'s detection does
/// (this crate has no `std`).
fn cpu_level() -> Level {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let bit = |word: u32, n: u32| word >> n & 1 == 1;
    #[allow(unused_unsafe)]
    // SAFETY: every x86-64 CPU has CPUID.
    let (max, leaf1) = unsafe { (__cpuid(0).eax, __cpuid(1)) };
    // OSXSAVE (XGETBV usable) and AVX.
    if max < 7 || !bit(leaf1.ecx, 27) || !bit(leaf1.ecx, 28) {
        return Level::Baseline;
    }
    // SAFETY: OSXSAVE is set, so XGETBV exists and XCR0 reads.
    let xcr0 = unsafe { xcr0() };
    #[allow(unused_unsafe)]
    // SAFETY: leaf 7 exists (max >= 7).
    let leaf7 = unsafe { __cpuid_count(7, 0) };
    let ymm = xcr0 & 0b110 == 0b110;
    let zmm = xcr0 & 0b1110_0110 == 0b1110_0110;
    let (avx2, avx512f, avx512bw, vnni) =
        (bit(leaf7.ebx, 5), bit(leaf7.ebx, 16), bit(leaf7.ebx, 30), bit(leaf7.ecx, 11));
    if zmm && avx512f && avx512bw && vnni {
        Level::Vnni
    } else if ymm && avx2 {
        Level::Avx2
    } else {
        Level::Baseline
    }
}

/// `XCR0`: which register states the operating system saves.
///
/// # Safety
/// The CPU must have XSAVE and the OS must have enabled it (`CPUID.1:ECX.OSXSAVE`).
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: the caller's contract.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}

/// `acc[k] += Σ_{i<4} x[i] · w[k][i]` for the 16 outputs `k` whose weights are `w`.
trait Dot: Copy {
    /// The 16 outputs' sums (in whatever split the instruction leaves them).
    type Acc: Copy;
    fn zero(self) -> Self::Acc;
    fn dot4(self, acc: &mut Self::Acc, xs: u32, w: &[u8; 64]);
    /// The 16 outputs' sums.
    fn fold(self, acc: &Self::Acc) -> [i32; 16];
}

/// AVX-512 VNNI: made only where [`Level::Vnni`] runs.
#[derive(Clone, Copy)]
struct Vnni(());

impl Dot for Vnni {
    type Acc = __m512i;

    #[inline(always)]
    fn zero(self) -> __m512i {
        // SAFETY: `self` exists, so the CPU has AVX-512F.
        unsafe { _mm512_setzero_si512() }
    }

    #[inline(always)]
    fn dot4(self, acc: &mut __m512i, xs: u32, w: &[u8; 64]) {
        // SAFETY: `self` exists, so the CPU has AVX-512F and VNNI; `w` is 64 readable bytes.
        unsafe {
            let w = _mm512_loadu_si512(w.as_ptr().cast());
            *acc = _mm512_dpbusd_epi32(*acc, _mm512_set1_epi32(xs as i32), w);
        }
    }

    #[inline(always)]
    fn fold(self, acc: &__m512i) -> [i32; 16] {
        bytemuck::cast(*acc)
    }
}

/// AVX2: made only where [`Level::Avx2`] runs. `acc[h]` holds outputs `8h..8h + 8`, one
/// 32-bit lane each.
///
/// The 64 weight bytes are read as 16-bit words without widening them byte by byte: word
/// `2k` of a half holds output `k`'s weights from inputs 0 and 1, word `2k + 1` those from
/// inputs 2 and 3. Shifting each word left and then arithmetically right by 8 gives the
/// low bytes sign-extended (inputs 0 and 2), shifting right by 8 the high ones (inputs 1
/// and 3); `VPMADDWD` against `[x0, x2]` and `[x1, x3]` repeated then leaves each output's
/// whole sum of four in one lane.
#[derive(Clone, Copy)]
struct Avx2(());

impl Dot for Avx2 {
    type Acc = [__m256i; 2];

    #[inline(always)]
    fn zero(self) -> [__m256i; 2] {
        // SAFETY: `self` exists, so the CPU has AVX2.
        unsafe { [_mm256_setzero_si256(); 2] }
    }

    #[inline(always)]
    fn dot4(self, acc: &mut [__m256i; 2], xs: u32, w: &[u8; 64]) {
        let x = xs.to_le_bytes().map(u32::from);
        let (even, odd) = ((x[0] | x[2] << 16) as i32, (x[1] | x[3] << 16) as i32);
        // SAFETY: `self` exists, so the CPU has AVX2; each load reads 32 of `w`'s 64 bytes.
        unsafe {
            let (even, odd) = (_mm256_set1_epi32(even), _mm256_set1_epi32(odd));
            for (h, acc) in acc.iter_mut().enumerate() {
                let words = _mm256_loadu_si256(w[32 * h..].as_ptr().cast());
                let low = _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(words));
                let high = _mm256_srai_epi16::<8>(words);
                let sum = _mm256_add_epi32(_mm256_madd_epi16(low, even), _mm256_madd_epi16(high, odd));
                *acc = _mm256_add_epi32(*acc, sum);
            }
        }
    }

    #[inline(always)]
    fn fold(self, acc: &[__m256i; 2]) -> [i32; 16] {
        bytemuck::cast(*acc)
    }
}

/// The baseline: `wide`'s 16-bit vectors, as wide as the build allows. Lane pairs of
/// `acc[0]` hold outputs 0..8 and of `acc[1]` outputs 8..16.
#[derive(Clone, Copy)]
struct Baseline;

impl Dot for Baseline {
    type Acc = [i32x16; 2];

    #[inline(always)]
    fn zero(self) -> [i32x16; 2] {
        [i32x16::ZERO; 2]
    }

    #[inline(always)]
    fn dot4(self, acc: &mut [i32x16; 2], xs: u32, w: &[u8; 64]) {
        use wide::{i8x32, i16x32};
        let x = xs.to_le_bytes().map(|b| b as u64);
        let pattern = x[0] | x[1] << 16 | x[2] << 32 | x[3] << 48;
        let x: i16x32 = bytemuck::cast([pattern; 8]);
        let (lo, hi) = w.split_at(32);
        let lo = i16x32::from_i8x32(bytemuck::pod_read_unaligned::<i8x32>(lo));
        let hi = i16x32::from_i8x32(bytemuck::pod_read_unaligned::<i8x32>(hi));
        acc[0] += lo.dot(x);
        acc[1] += hi.dot(x);
    }

    #[inline(always)]
    fn fold(self, acc: &[i32x16; 2]) -> [i32; 16] {
        let (lo, hi) = (acc[0].to_array(), acc[1].to_array());
        core::array::from_fn(|k| if k < 8 { lo[2 * k] + lo[2 * k + 1] } else { hi[2 * k - 16] + hi[2 * k - 15] })
    }
}

/// A layer for several images on `level` (which must run on this CPU): for each stretch of
/// outputs, every image in turn, so that the stretch's weights serve them all from the
/// cache. `blocked` (a batch, rather than one image): the VNNI kernel then sweeps 64
/// outputs at a time instead of 128, half the weights to keep in cache (a choice by
/// analogy with AVX2's measurements, not measured: this session's machine has no AVX-512);
/// AVX2 sweeps 128 either way.
pub(super) fn dense_many(level: Level, layer: &Layer<'_>, lanes: &mut [Lane<'_>], blocked: bool) {
    assert!(level.runs(), "{level:?} kernel on a CPU without it");
    match (level, blocked) {
        // SAFETY (both): the CPU has AVX-512 F, BW and VNNI (asserted above).
        (Level::Vnni, false) => unsafe { vnni::<8>(layer, lanes) },
        (Level::Vnni, true) => unsafe { vnni::<4>(layer, lanes) },
        // SAFETY: the CPU has AVX2 (asserted above).
        (Level::Avx2, _) => unsafe { avx2(layer, lanes) },
        (Level::Baseline, _) => dense_many_with::<_, 4>(Baseline, layer, lanes),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn vnni<const C: usize>(layer: &Layer<'_>, lanes: &mut [Lane<'_>]) {
    dense_many_with::<_, C>(Vnni(()), layer, lanes);
}

/// One group of four inputs of several images at once, against one block of four weights:
/// a sparse layer's batched kernel ([`sparse_many`]) keeps one 32-bit lane per image.
trait Across: Copy {
    /// Images a vector holds.
    const IMAGES: usize;
    /// A group's inputs of every image, as [`Across::dot4`] reads them.
    type X: Copy;
    /// The images' sums of one output.
    type Acc: Copy;
    fn zero(self) -> Self::Acc;
    /// The group's inputs of each image, one little-endian word each (zero past the batch).
    fn inputs(self, words: &[u32; 16]) -> Self::X;
    /// `acc[i] += Σ_{k<4} x[i][k] · w[k]` for every image `i`.
    fn dot4(self, acc: &mut Self::Acc, x: Self::X, w: u32);
    /// The images' sums.
    fn sums(self, acc: &Self::Acc) -> [i32; 16];
}

impl Across for Vnni {
    const IMAGES: usize = 16;
    type X = __m512i;
    type Acc = __m512i;

    #[inline(always)]
    fn zero(self) -> __m512i {
        // SAFETY: `self` exists, so the CPU has AVX-512F.
        unsafe { _mm512_setzero_si512() }
    }

    #[inline(always)]
    fn inputs(self, words: &[u32; 16]) -> __m512i {
        // SAFETY: `self` exists, so the CPU has AVX-512F; `words` is 64 readable bytes.
        unsafe { _mm512_loadu_si512(words.as_ptr().cast()) }
    }

    #[inline(always)]
    fn dot4(self, acc: &mut __m512i, x: __m512i, w: u32) {
        // SAFETY: `self` exists, so the CPU has AVX-512F and VNNI.
        unsafe { *acc = _mm512_dpbusd_epi32(*acc, x, _mm512_set1_epi32(w as i32)) }
    }

    #[inline(always)]
    fn sums(self, acc: &__m512i) -> [i32; 16] {
        bytemuck::cast(*acc)
    }
}

impl Across for Avx2 {
    const IMAGES: usize = 8;
    /// Per image, inputs 0 and 1 as 16-bit halves of one lane, and inputs 2 and 3.
    type X = [__m256i; 2];
    type Acc = __m256i;

    #[inline(always)]
    fn zero(self) -> __m256i {
        // SAFETY: `self` exists, so the CPU has AVX2.
        unsafe { _mm256_setzero_si256() }
    }

    #[inline(always)]
    fn inputs(self, words: &[u32; 16]) -> [__m256i; 2] {
        let low: [u32; 8] = core::array::from_fn(|i| words[i] & 0xff | (words[i] >> 8 & 0xff) << 16);
        let high: [u32; 8] = core::array::from_fn(|i| words[i] >> 16 & 0xff | (words[i] >> 24) << 16);
        // SAFETY: `self` exists, so the CPU has AVX2; each array is 32 readable bytes.
        unsafe { [_mm256_loadu_si256(low.as_ptr().cast()), _mm256_loadu_si256(high.as_ptr().cast())] }
    }

    #[inline(always)]
    fn dot4(self, acc: &mut __m256i, [x01, x23]: [__m256i; 2], w: u32) {
        // The weights sign-extended to 16-bit pairs: (w0, w1) and (w2, w3).
        let pair = |lo: u32, hi: u32| {
            (lo as u8 as i8 as i16 as u16 as u32 | (hi as u8 as i8 as i16 as u16 as u32) << 16) as i32
        };
        let (w01, w23) = (pair(w, w >> 8), pair(w >> 16, w >> 24));
        // SAFETY: `self` exists, so the CPU has AVX2.
        unsafe {
            let sum = _mm256_add_epi32(
                _mm256_madd_epi16(x01, _mm256_set1_epi32(w01)),
                _mm256_madd_epi16(x23, _mm256_set1_epi32(w23)),
            );
            *acc = _mm256_add_epi32(*acc, sum);
        }
    }

    #[inline(always)]
    fn sums(self, acc: &__m256i) -> [i32; 16] {
        let eight: [i32; 8] = bytemuck::cast(*acc);
        core::array::from_fn(|i| if i < 8 { eight[i] } else { 0 })
    }
}

/// A sparse layer for several images on `level` (VNNI or AVX2, which must run on this
/// CPU): [`Across::IMAGES`] images at a time, each kept block's four weights multiplied
/// with every image's four inputs at once. `false` for a level without such a kernel.
pub(super) fn sparse_many(level: Level, layer: &Layer<'_>, sparse: &Sparse<'_>, lanes: &mut [Lane<'_>]) -> bool {
    assert!(level.runs(), "{level:?} kernel on a CPU without it");
    match level {
        // SAFETY: the CPU has AVX-512 F, BW and VNNI (asserted above).
        Level::Vnni => unsafe { sparse_vnni(layer, sparse, lanes) },
        // SAFETY: the CPU has AVX2 (asserted above).
        Level::Avx2 => unsafe { sparse_avx2(layer, sparse, lanes) },
        Level::Baseline => return false,
    }
    true
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn sparse_vnni(layer: &Layer<'_>, sparse: &Sparse<'_>, lanes: &mut [Lane<'_>]) {
    sparse_many_with(Vnni(()), layer, sparse, lanes);
}

#[target_feature(enable = "avx2")]
fn sparse_avx2(layer: &Layer<'_>, sparse: &Sparse<'_>, lanes: &mut [Lane<'_>]) {
    sparse_many_with(Avx2(()), layer, sparse, lanes);
}

/// Every image's outputs of a sparse layer, [`Across::IMAGES`] images at a time: for each
/// block of up to 128 outputs, each group of four inputs that is not zero in every image
/// adds its kept blocks' products to their outputs' accumulators (a vector of images each).
#[inline(always)]
fn sparse_many_with<A: Across>(a: A, layer: &Layer<'_>, sparse: &Sparse<'_>, lanes: &mut [Lane<'_>]) {
    let groups = layer.inputs / GROUP;
    for chunk in lanes.chunks_mut(A::IMAGES) {
        let (mut at, mut j0) = (0, 0);
        for counts in sparse.counts.chunks_exact(groups) {
            let width = BLOCK.min(layer.outputs - j0);
            let mut acc = [a.zero(); BLOCK];
            for (g, &count) in counts.iter().enumerate() {
                let n = usize::from(count);
                if n == 0 {
                    continue;
                }
                let mut words = [0u32; 16];
                for (word, lane) in words.iter_mut().zip(chunk.iter()) {
                    let xs = &lane.x[GROUP * g..][..GROUP];
                    *word = u32::from_le_bytes([xs[0], xs[1], xs[2], xs[3]]);
                }
                if words != [0; 16] {
                    let x = a.inputs(&words);
                    let weights = layer.weights[GROUP * at..][..GROUP * n].chunks_exact(GROUP);
                    for (&k, w) in sparse.indices[at..at + n].iter().zip(weights) {
                        // Indices are below the block's width (checked when the model was read).
                        a.dot4(&mut acc[usize::from(k) % BLOCK], x, u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                    }
                }
                at += n;
            }
            for (k, acc) in acc[..width].iter().enumerate() {
                let (j, sums) = (j0 + k, a.sums(acc));
                let (bias, mult) = (layer.bias(j), layer.mult(j));
                for (lane, &sum) in chunk.iter_mut().zip(&sums) {
                    emit(layer, j, requant(sum, bias, mult, layer.r, layer.s), lane.act, lane.scores);
                }
            }
            j0 += width;
        }
    }
}

/// Output vectors per sweep on AVX2, for one image and for a batch: eight (128 outputs in
/// 16 accumulator registers, all that AVX2 has). A batch of 10,000 on one thread of an
/// AVX2-only EPYC, blocks of 16: 9.0 µs an image with eight, 9.7 with six, 11.1 with four;
/// the kernel that widened each byte (`VPMOVSXBW`, four accumulators per 16 outputs) took
/// 10.4 at best.
const AVX2_VECTORS: usize = 8;

#[target_feature(enable = "avx2")]
fn avx2(layer: &Layer<'_>, lanes: &mut [Lane<'_>]) {
    dense_many_with::<_, AVX2_VECTORS>(Avx2(()), layer, lanes);
}

/// Every image's outputs of `layer`, `C` output vectors (16 outputs each) at a time: for
/// each stretch of `16 * C` outputs, each image sweeps its non-zero groups.
#[inline(always)]
fn dense_many_with<D: Dot, const C: usize>(d: D, layer: &Layer<'_>, lanes: &mut [Lane<'_>]) {
    let vectors = layer.outputs.div_ceil(16);
    let mut first = 0;
    while first + C <= vectors {
        for lane in lanes.iter_mut() {
            pass::<D, C>(d, layer, lane, first);
        }
        first += C;
    }
    for v in first..vectors {
        for lane in lanes.iter_mut() {
            pass::<D, 1>(d, layer, lane, v);
        }
    }
}

/// Outputs `16 * first .. 16 * (first + C)` of one image: one sweep over its non-zero
/// groups with `C` output vectors held in registers.
#[inline(always)]
fn pass<D: Dot, const C: usize>(d: D, layer: &Layer<'_>, lane: &mut Lane<'_>, first: usize) {
    // A vector's lanes past the layer's outputs load the next group's weights, or up to 60
    // bytes past the layer's weights, and are discarded. Those bytes are in `reach` (the
    // rest of the payload) for any model but the tiniest; the groups are listed in
    // ascending order, so if the last one's loads stay inside it, every one's do. Else the
    // sweep reads zero-padded copies (a check in the loop instead cost 4% of a pass).
    let (x, groups) = (lane.x, lane.groups);
    let inside = groups.last().is_none_or(|&g| layer.offset(g.into(), 16 * first) + 64 * C <= layer.reach.len());
    let acc = if inside {
        sweep::<D, C, false>(d, layer, x, groups, first)
    } else {
        sweep::<D, C, true>(d, layer, x, groups, first)
    };
    for (v, acc) in acc.iter().enumerate() {
        requantize16(layer, 16 * (first + v), d.fold(acc), lane.act, lane.scores);
    }
}

/// The accumulators of [`pass`]; `PAD`: copy each load's bytes that exist into zeros.
#[inline(always)]
fn sweep<D: Dot, const C: usize, const PAD: bool>(
    d: D,
    layer: &Layer<'_>,
    x: &[u8],
    groups: &[u16],
    first: usize,
) -> [D::Acc; C] {
    let mut acc = [d.zero(); C];
    // `layer.offset(g, 16 * first)`, as a start and a step per group.
    let (base, step) = (layer.offset(0, 16 * first), layer.offset(1, 16 * first) - layer.offset(0, 16 * first));
    for &g in groups {
        let g = g as usize;
        let xs = u32::from_le_bytes(x[4 * g..4 * g + 4].try_into().unwrap());
        let at = base + g * step;
        let padded: [[u8; 64]; C];
        let row = if PAD {
            let rest = layer.reach.get(at..).unwrap_or(&[]);
            let rest = &rest[..rest.len().min(64 * C)];
            let mut copy = [[0u8; 64]; C];
            copy.as_flattened_mut()[..rest.len()].copy_from_slice(rest);
            padded = copy;
            padded.as_flattened()
        } else {
            &layer.reach[at..][..64 * C]
        };
        for (acc, w) in acc.iter_mut().zip(row.chunks_exact(64)) {
            d.dot4(acc, xs, w.try_into().unwrap());
        }
    }
    acc
}

/// Requantizes the sums of outputs `j0..j0 + 16` (fewer at the end of the layer).
#[inline(always)]
fn requantize16(layer: &Layer<'_>, j0: usize, sums: [i32; 16], act: &mut [u8], scores: &mut [i32]) {
    use wide::i16x16;
    let live = 16.min(layer.outputs - j0);
    let (bias, mult) = if live == 16 {
        let b: i16x16 = bytemuck::pod_read_unaligned(&layer.bias[2 * j0..2 * j0 + 32]);
        let m: i16x16 = bytemuck::pod_read_unaligned(&layer.mult[2 * j0..2 * j0 + 32]);
        (i32x16::from_i16x16(b), i32x16::from_i16x16(m))
    } else {
        let mut b = [0i32; 16];
        let mut m = [0i32; 16];
        for k in 0..live {
            b[k] = layer.bias(j0 + k);
            m[k] = layer.mult(j0 + k);
        }
        (i32x16::new(b), i32x16::new(m))
    };
    let (r, s) = (layer.r, layer.s);
    let t = (i32x16::new(sums) + i32x16::splat((1 << r) >> 1)) >> r;
    let t = (t + bias).max(i32x16::splat(-32768)).min(i32x16::splat(32767));
    let v = (t * mult + i32x16::splat((1 << s) >> 1)) >> s;
    match layer.output {
        Output::Relu => {
            let v = v.max(i32x16::ZERO).min(i32x16::splat(255)).to_array();
            for (a, v) in act[j0..j0 + live].iter_mut().zip(v) {
                *a = v as u8;
            }
        }
        Output::Sigmoid { zero_point, table } => {
            let v = v + i32x16::splat(zero_point + 128);
            let v = v.max(i32x16::ZERO).min(i32x16::splat(255)).to_array();
            for (a, v) in act[j0..j0 + live].iter_mut().zip(v) {
                *a = table[v as usize & 0xff];
            }
        }
        Output::Scores => scores[j0..j0 + live].copy_from_slice(&v.to_array()[..live]),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::super::dense_scalar;
    use super::*;

    /// Every level this CPU runs.
    fn levels() -> impl Iterator<Item = Level> {
        [Level::Vnni, Level::Avx2, Level::Baseline].into_iter().filter(|l| l.runs())
    }

    #[test]
    fn detection_agrees_with_the_standard_library() {
        let vnni = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni");
        let expected = match (vnni, std::is_x86_feature_detected!("avx2")) {
            (true, _) => Level::Vnni,
            (false, true) => Level::Avx2,
            _ => Level::Baseline,
        };
        assert_eq!(cpu_level(), expected);
        assert_eq!(Level::detect(), expected);
        assert!(Level::Baseline.runs());
    }

    /// A layer of 12 inputs and 21 outputs (two vectors, the second with 5 live lanes) whose
    /// `reach` ends with its weights: the loads of the last groups must read padded copies.
    #[test]
    fn loads_past_the_payload_read_zero_padded_copies() {
        let (inputs, outputs) = (12, 21);
        let weights: [u8; 12 * 21] = core::array::from_fn(|i| (i * 37 % 255) as u8);
        let (bias, mult) = ([3u8, 0].repeat(outputs), [1u8, 64].repeat(outputs));
        let layer = Layer {
            inputs,
            outputs,
            weights: &weights,
            int4: false,
            sparse: None,
            reach: &weights,
            bias: &bias,
            mult: &mult,
            r: 4,
            s: 12,
            output: Output::Scores,
        };
        let x: [u8; 12] = core::array::from_fn(|i| (i * 29 % 256) as u8);
        let mut slow = [0i32; 21];
        dense_scalar(&layer, &x, 0..3, &mut [], &mut slow);
        assert!(slow.iter().any(|&v| v != slow[0]), "{slow:?}");
        for level in levels() {
            for blocked in [false, true] {
                let mut fast = [0i32; 21];
                let mut lane = [Lane { x: &x, groups: &[0, 1, 2], act: &mut [], scores: &mut fast }];
                dense_many(level, &layer, &mut lane, blocked);
                assert_eq!(fast, slow, "{level:?}, blocked {blocked}");
            }
        }
    }
}
