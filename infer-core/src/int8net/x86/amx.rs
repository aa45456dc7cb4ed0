//! Intel AMX (Advanced Matrix Extensions) for batches: `TDPBUSD` multiplies a tile of 16
//! images' 64 input bytes (unsigned) by a tile of 16 groups of four inputs' weights to 16
//! outputs (signed), 16,384 multiply-accumulates an instruction, into a tile of 16 × 16 i32
//! sums.
//!
//! A dense layer's weights are already tiles: the 16 rows of a weight tile (16 consecutive
//! groups) are one group's 64 bytes for 16 outputs each, a group's stride apart (see
//! [`super::super`]'s layout). The images' inputs are copied, tile by tile, into the batch's
//! scratch (`stage`: each tile's 16 rows of 64 bytes contiguous and aligned, the last one
//! zero-padded past the layer's inputs), so that an image tile is one kilobyte of cache
//! lines. Two tiles of images and two of weights give four tiles of sums, each loaded tile
//! serving two products. The last step's weights are zero-padded copies too (only whole
//! tiles are loaded, none past a buffer). Outputs that do not fill a tile (the 10 classes)
//! go to the VNNI kernel, as do images short of a tile of 16 and single images. The sums are
//! exact and requantized as the other kernels do, so every image gets the same bits on
//! every kernel.
//!
//! The tile registers are state the operating system must agree to save: a process asks for
//! them (on Linux, `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), which a `no_std`
//! crate cannot do. [`permit`] records that the caller did; until then AMX is not used.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use core::arch::x86_64::{
    __m512i, _mm_cvtsi32_si128, _mm_storeu_si128, _mm256_loadu_si256, _mm512_add_epi32, _mm512_cvtepi16_epi32,
    _mm512_cvtusepi32_epi8, _mm512_loadu_si512, _mm512_max_epi32, _mm512_min_epi32, _mm512_mullo_epi32,
    _mm512_set1_epi32, _mm512_setzero_si512, _mm512_sra_epi32, _mm512_storeu_si512,
};

use super::super::layer::{Lane, Layer, Output};
use super::{Level, requantize16};
use crate::spec::{BLOCK, GROUP};

/// Set by [`permit`]: the operating system lets this process use the tile registers.
static PERMITTED: AtomicBool = AtomicBool::new(false);
/// Whether the CPU has AMX-TILE and AMX-INT8 and the OS enables their state: 0 not yet
/// asked, 1 no, 2 yes.
static CPU: AtomicU8 = AtomicU8::new(0);

/// Records that the operating system lets this process use AMX's tile data.
///
/// # Safety
/// It must: on Linux, `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` returned 0 in
/// this process. Otherwise the first tile instruction faults.
pub(in super::super) unsafe fn permit() {
    PERMITTED.store(true, Ordering::Relaxed);
}

/// Whether AMX runs here: the CPU has AMX-INT8 and AVX-512 VNNI (the rest of a layer runs on
/// it), the OS saves the tile state, and [`permit`] was called.
pub(in super::super) fn usable() -> bool {
    PERMITTED.load(Ordering::Relaxed) && in_cpu()
}

/// Whether the CPU has AMX-INT8 and AVX-512 VNNI and the OS enables the tile state: what
/// [`usable`] needs besides the process's leave.
pub(in super::super) fn in_cpu() -> bool {
    Level::Vnni.runs() && cpu_has_amx()
}

fn cpu_has_amx() -> bool {
    match CPU.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let has = read_cpu();
            CPU.store(if has { 2 } else { 1 }, Ordering::Relaxed);
            has
        }
    }
}

/// `CPUID.(7,0):EDX` bits 24 (AMX-TILE) and 25 (AMX-INT8); `XCR0` bits 17 and 18 (tile
/// configuration and data saved by the OS).
fn read_cpu() -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    #[allow(unused_unsafe)]
    // SAFETY: every x86-64 CPU has CPUID.
    let (max, leaf1) = unsafe { (__cpuid(0).eax, __cpuid(1)) };
    if max < 7 || leaf1.ecx >> 27 & 1 == 0 {
        return false;
    }
    #[allow(unused_unsafe)]
    // SAFETY: leaf 7 exists (max >= 7).
    let edx = unsafe { __cpuid_count(7, 0) }.edx;
    // SAFETY: OSXSAVE is set, so XGETBV exists.
    let xcr0 = unsafe { super::xcr0() };
    edx >> 24 & 0b11 == 0b11 && xcr0 >> 17 & 0b11 == 0b11
}

/// Images a tile holds (its rows).
const ROWS: usize = 16;
/// Bytes of a tile row: 16 groups of four inputs, or 16 outputs' four weights, or 16 sums.
const ROW: usize = 64;
/// Bytes of a tile.
const TILE: usize = ROWS * ROW;
/// Groups of four inputs a step over the inputs takes.
const STEP: usize = ROW / GROUP;

const _: () = assert!(super::super::BATCH_BLOCK.is_multiple_of(ROWS) && BLOCK.is_multiple_of(2 * ROWS));

/// Bytes the staged inputs of `lanes` images take for a layer of `inputs` (padded to
/// groups): whole tiles of 16 images, each step of 64 bytes a tile; plus 64 to align them.
pub(in super::super) const fn stage_bytes(lanes: usize, inputs: usize) -> usize {
    match lanes / ROWS {
        0 => 0,
        tiles => ROW + tiles * TILE * inputs.div_ceil(ROW),
    }
}

/// The lanes of a block of `lanes` images that AMX runs: its whole tiles of 16, the first
/// ones. (The batched pass lists no non-zero groups for them: AMX does not skip zeros.)
pub(in super::super) const fn tiled(lanes: usize) -> usize {
    lanes - lanes % ROWS
}

/// A tile's bytes, aligned as a tile load likes them.
#[repr(C, align(64))]
struct Tile([[u8; ROW]; ROWS]);

impl Tile {
    const ZERO: Tile = Tile([[0; ROW]; ROWS]);
}

/// Every tile register 16 rows of 64 bytes (`LDTILECFG`'s palette 1): `tmm0` and `tmm1`
/// images, `tmm2` and `tmm3` weights, `tmm4`..`tmm7` sums.
static CONFIG: Tile = {
    let mut c = [[0u8; ROW]; ROWS];
    c[0][0] = 1;
    let mut t = 0;
    while t < 8 {
        c[0][16 + 2 * t] = ROW as u8;
        c[0][48 + t] = ROWS as u8;
        t += 1;
    }
    Tile(c)
};

/// Runs `layer` (dense) for the [`tiled`] lanes, AMX doing the products, and returns how
/// many it ran. Their non-zero groups need not be listed. `stage` is at least
/// [`stage_bytes`] for the lanes and the layer's inputs.
pub(in super::super) fn dense_many(layer: &Layer<'_>, lanes: &mut [Lane<'_>], stage: &mut [u8]) -> usize {
    assert!(usable(), "AMX kernel where it cannot run");
    let lanes_len = lanes.len();
    let lanes = &mut lanes[..tiled(lanes_len)];
    if lanes.is_empty() || layer.sparse.is_some() {
        return 0;
    }
    let steps = layer.inputs.div_ceil(ROW);
    let align = stage.as_ptr().align_offset(ROW);
    let stage = &mut stage[align..][..lanes.len() * ROW * steps];
    for (tile, lanes) in stage.chunks_exact_mut(TILE * steps).zip(lanes.chunks_exact(ROWS)) {
        for (r, lane) in lanes.iter().enumerate() {
            let (whole, rest) = lane.x[..layer.inputs].as_chunks::<ROW>();
            let mut rows = tile.chunks_exact_mut(TILE).map(|step| &mut step[ROW * r..][..ROW]);
            // (`whole` first: a zip asks its first iterator first, and must not take the last
            // step's row when the whole ones run out.)
            for (x, row) in whole.iter().zip(rows.by_ref()) {
                row.copy_from_slice(x);
            }
            if let Some(row) = rows.next() {
                row[..rest.len()].copy_from_slice(rest);
                row[rest.len()..].fill(0);
            }
        }
    }
    // SAFETY: AMX and AVX-512 VNNI run here and the OS lets this process use the tiles
    // (`usable`); `stage` is 64-aligned and holds every lane's inputs as tiles.
    unsafe { layer_on_tiles(layer, lanes, stage) };
    lanes.len()
}

/// # Safety
/// As [`dense_many`] checks: `stage` holds `lanes` (whole tiles) as tiles, aligned.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn layer_on_tiles(layer: &Layer<'_>, lanes: &mut [Lane<'_>], stage: &[u8]) {
    let images = lanes.len() / ROWS;
    let mut sums = [[[[0i32; ROWS]; ROWS]; 2]; 2];
    // SAFETY: the caller's contract; the configuration is 64 readable bytes.
    unsafe { asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(readonly, nostack, preserves_flags)) };
    for b in 0..layer.outputs.div_ceil(BLOCK) {
        let width = BLOCK.min(layer.outputs - b * BLOCK);
        let tiles = width.div_ceil(ROWS);
        // Pairs of whole tiles of outputs, then what is left: one whole or partial tile.
        for t in (0..tiles).step_by(2) {
            let j0 = b * BLOCK + ROWS * t;
            let live = (width - ROWS * t).min(ROWS);
            let pair = live == ROWS && width - ROWS * t >= 2 * ROWS;
            for i in (0..images).step_by(2) {
                // SAFETY: the caller's contract; the outputs are in block `b` (`live` of
                // them in a single tile), the images whole tiles of `lanes`.
                unsafe {
                    match (images - i >= 2, pair) {
                        (true, true) => sweep::<2, 2>(layer, lanes, stage, i, j0, ROWS, &mut sums),
                        (false, true) => sweep::<1, 2>(layer, lanes, stage, i, j0, ROWS, &mut sums),
                        (true, false) => sweep::<2, 1>(layer, lanes, stage, i, j0, live, &mut sums),
                        (false, false) => sweep::<1, 1>(layer, lanes, stage, i, j0, live, &mut sums),
                    }
                }
            }
            if !pair && live == ROWS && t + 1 < tiles {
                let (j0, live) = (j0 + ROWS, width - ROWS * (t + 1));
                for i in (0..images).step_by(2) {
                    // SAFETY: as above; the block's last, partial tile.
                    unsafe {
                        match images - i >= 2 {
                            true => sweep::<2, 1>(layer, lanes, stage, i, j0, live, &mut sums),
                            false => sweep::<1, 1>(layer, lanes, stage, i, j0, live, &mut sums),
                        }
                    }
                }
            }
        }
    }
    // SAFETY: back to the tiles' initial state (the OS saves less on a switch).
    unsafe { asm!("tilerelease", options(nomem, nostack, preserves_flags)) };
}

/// Outputs `j0..j0 + 16 * T` of image tiles `i0..i0 + I` (`live` of the 16 outputs of a
/// single tile, `T == 1`): `I × T` tiles of sums over all the inputs, then requantized.
///
/// # Safety
/// Tiles configured as [`CONFIG`]; `stage` holds the images' inputs as tiles; image tiles
/// `i0..i0 + I` are whole tiles of `lanes`; the outputs are inside one block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn sweep<const I: usize, const T: usize>(
    layer: &Layer<'_>,
    lanes: &mut [Lane<'_>],
    stage: &[u8],
    i0: usize,
    j0: usize,
    live: usize,
    sums: &mut [[[[i32; ROWS]; ROWS]; 2]; 2],
) {
    // SAFETY (every asm block): the caller's contract. A tile load reads 16 rows of 64
    // bytes, a stride apart; a sum tile store writes 16 rows of 64 bytes.
    unsafe { zero::<I, T>() };
    let groups = layer.inputs / GROUP;
    let per_tile = TILE * groups.div_ceil(STEP);
    let images = |i: usize, k: usize| stage[per_tile * (i0 + i) + TILE * k..][..TILE].as_ptr();
    let weights = layer.weights.as_ptr();
    for k in 0..groups.div_ceil(STEP) {
        if STEP * (k + 2) <= groups {
            // The next step's weights, 16 rows apart in the L2 cache, into L1.
            for r in 0..STEP {
                let row = weights.wrapping_add(layer.offset(STEP * (k + 1) + r, j0));
                for t in 0..T {
                    let line = row.wrapping_add(ROW * t).cast();
                    unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(line) };
                }
            }
        }
        for i in 0..I {
            unsafe { load_images(i, images(i, k)) };
        }
        for t in 0..T {
            unsafe { load_weight_tile(layer, t, STEP * k, j0 + ROWS * t, live) };
        }
        unsafe { multiply::<I, T>() };
    }
    for (i, tiles) in sums[..I].iter_mut().enumerate() {
        for (t, tile) in tiles[..T].iter_mut().enumerate() {
            unsafe { store(2 * i + t, tile.as_mut_ptr().cast()) };
        }
    }
    for (i, tiles) in sums[..I].iter().enumerate() {
        let lanes = &mut lanes[ROWS * (i0 + i)..][..ROWS];
        for (t, tile) in tiles[..T].iter().enumerate() {
            if live < ROWS {
                for (lane, &row) in lanes.iter_mut().zip(tile) {
                    requantize16(layer, j0, row, lane.act, lane.scores);
                }
            } else {
                // SAFETY: AVX-512 F and BW run here (the caller's contract).
                unsafe { requantize_tile(layer, j0 + ROWS * t, tile, lanes) };
            }
        }
    }
}

/// Weight tile `t` = the weights of groups `first..first + 16` to outputs `j..j + live`
/// (`live` ≤ 16, inside one block). Read in place where the tile is whole, or where only
/// its rows run past the layer's groups and stay inside the payload (the images' inputs
/// past the layer's are zero, so those rows may hold anything); else a copy, zero past the
/// layer's groups and outputs.
///
/// # Safety
/// Tiles configured as [`CONFIG`].
#[inline(always)]
unsafe fn load_weight_tile(layer: &Layer<'_>, t: usize, first: usize, j: usize, live: usize) {
    let rows = (layer.inputs / GROUP - first).min(STEP);
    let (at, stride) = (layer.offset(first, j), layer.offset(first + 1, j) - layer.offset(first, j));
    if live == ROWS && (rows == STEP || at + (STEP - 1) * stride + ROW <= layer.reach.len()) {
        // SAFETY: the caller's contract; 16 rows of 64 bytes from `at`, `stride` apart,
        // inside the payload (the rows of a whole step are the layer's).
        unsafe { load_weights(t, layer.reach[at..].as_ptr(), stride) };
    } else {
        let mut w = Tile::ZERO;
        for (r, row) in w.0[..rows].iter_mut().enumerate() {
            let at = layer.offset(first + r, j);
            row[..GROUP * live].copy_from_slice(&layer.weights[at..at + GROUP * live]);
        }
        // SAFETY: the caller's contract; `w` is a whole tile.
        unsafe { load_weights(t, w.0.as_ptr().cast(), ROW) };
    }
}

/// Requantizes a tile of sums (16 images × outputs `j0..j0 + 16`) into the lanes:
/// [`super::super::requantize`] on 16 lanes of AVX-512 for ReLU and scores, the VNNI
/// kernel's code for sigmoid (a table lookup).
///
/// # Safety
/// AVX-512 F and BW run here; outputs `j0..j0 + 16` exist.
#[inline(always)]
unsafe fn requantize_tile(layer: &Layer<'_>, j0: usize, tile: &[[i32; ROWS]; ROWS], lanes: &mut [Lane<'_>]) {
    if let Output::Sigmoid { .. } = layer.output {
        for (lane, &row) in lanes.iter_mut().zip(tile) {
            requantize16(layer, j0, row, lane.act, lane.scores);
        }
        return;
    }
    let (bias, mult) = (&layer.bias[2 * j0..][..32], &layer.mult[2 * j0..][..32]);
    // SAFETY: AVX-512 F and BW (the caller's contract); every load and store is of a
    // slice of its length (32 bytes of i16, 64 of i32, 16 of u8).
    unsafe {
        let bias = _mm512_cvtepi16_epi32(_mm256_loadu_si256(bias.as_ptr().cast()));
        let mult = _mm512_cvtepi16_epi32(_mm256_loadu_si256(mult.as_ptr().cast()));
        let (r, s) = (_mm_cvtsi32_si128(layer.r as i32), _mm_cvtsi32_si128(layer.s as i32));
        let (half_r, half_s) = (_mm512_set1_epi32((1 << layer.r) >> 1), _mm512_set1_epi32((1 << layer.s) >> 1));
        let (lo, hi) = (_mm512_set1_epi32(-32768), _mm512_set1_epi32(32767));
        for (lane, row) in lanes.iter_mut().zip(tile) {
            let acc: __m512i = _mm512_loadu_si512(row.as_ptr().cast());
            let t = _mm512_add_epi32(_mm512_sra_epi32(_mm512_add_epi32(acc, half_r), r), bias);
            let t = _mm512_min_epi32(_mm512_max_epi32(t, lo), hi);
            let v = _mm512_sra_epi32(_mm512_add_epi32(_mm512_mullo_epi32(t, mult), half_s), s);
            match layer.output {
                Output::Relu => {
                    let out = &mut lane.act[j0..][..ROWS];
                    let v = _mm512_cvtusepi32_epi8(_mm512_max_epi32(v, _mm512_setzero_si512()));
                    _mm_storeu_si128(out.as_mut_ptr().cast(), v);
                }
                _ => {
                    let out = &mut lane.scores[j0..][..ROWS];
                    _mm512_storeu_si512(out.as_mut_ptr().cast(), v);
                }
            }
        }
    }
}

/// Image tile `i` (`tmm0` or `tmm1`) = the staged tile at `p` (16 rows of 64 bytes).
#[inline(always)]
unsafe fn load_images(i: usize, p: *const u8) {
    unsafe {
        match i {
            0 => {
                asm!("tileloadd tmm0, [{p} + {s}]", p = in(reg) p, s = in(reg) ROW, options(readonly, nostack, preserves_flags))
            }
            _ => {
                asm!("tileloadd tmm1, [{p} + {s}]", p = in(reg) p, s = in(reg) ROW, options(readonly, nostack, preserves_flags))
            }
        }
    }
}
/// Weight tile `t` (`tmm2` or `tmm3`) = 16 rows of 64 bytes from `p`, `stride` apart.
#[inline(always)]
unsafe fn load_weights(t: usize, p: *const u8, stride: usize) {
    unsafe {
        match t {
            0 => {
                asm!("tileloadd tmm2, [{p} + {s}]", p = in(reg) p, s = in(reg) stride, options(readonly, nostack, preserves_flags))
            }
            _ => {
                asm!("tileloadd tmm3, [{p} + {s}]", p = in(reg) p, s = in(reg) stride, options(readonly, nostack, preserves_flags))
            }
        }
    }
}

/// The sum tiles of `I` image tiles and `T` weight tiles = 0.
#[inline(always)]
unsafe fn zero<const I: usize, const T: usize>() {
    unsafe {
        asm!("tilezero tmm4", options(nomem, nostack, preserves_flags));
        if T == 2 {
            asm!("tilezero tmm5", options(nomem, nostack, preserves_flags));
        }
        if I == 2 {
            asm!("tilezero tmm6", options(nomem, nostack, preserves_flags));
        }
        if I == 2 && T == 2 {
            asm!("tilezero tmm7", options(nomem, nostack, preserves_flags));
        }
    }
}

/// Sum tile `2i + t` (`tmm4 + 2i + t`) += image tile `i` × weight tile `t`, for every pair.
#[inline(always)]
unsafe fn multiply<const I: usize, const T: usize>() {
    unsafe {
        asm!("tdpbusd tmm4, tmm0, tmm2", options(nomem, nostack, preserves_flags));
        if T == 2 {
            asm!("tdpbusd tmm5, tmm0, tmm3", options(nomem, nostack, preserves_flags));
        }
        if I == 2 {
            asm!("tdpbusd tmm6, tmm1, tmm2", options(nomem, nostack, preserves_flags));
        }
        if I == 2 && T == 2 {
            asm!("tdpbusd tmm7, tmm1, tmm3", options(nomem, nostack, preserves_flags));
        }
    }
}

/// Writes sum tile `n` (`tmm4 + n`) to `p`: 16 rows (images) of 16 i32 sums, 64 bytes apart.
#[inline(always)]
unsafe fn store(n: usize, p: *mut u8) {
    unsafe {
        match n {
            0 => {
                asm!("tilestored [{p} + {s}], tmm4", p = in(reg) p, s = in(reg) ROW, options(nostack, preserves_flags))
            }
            1 => {
                asm!("tilestored [{p} + {s}], tmm5", p = in(reg) p, s = in(reg) ROW, options(nostack, preserves_flags))
            }
            2 => {
                asm!("tilestored [{p} + {s}], tmm6", p = in(reg) p, s = in(reg) ROW, options(nostack, preserves_flags))
            }
            _ => {
                asm!("tilestored [{p} + {s}], tmm7", p = in(reg) p, s = in(reg) ROW, options(nostack, preserves_flags))
            }
        }
    }
}
