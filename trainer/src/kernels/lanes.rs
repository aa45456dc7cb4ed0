//! The baseline path's vector type and the micro-tile shape every path shares.
//!
//! The kernels are written over eight f32 lanes: [`super::simd`] runs them on AVX2+FMA
//! when the CPU has it, whatever the build's flags, and on `wide::f32x8` otherwise, which
//! `wide` compiles to what the build targets (SSE2 by default on x86-64, NEON on aarch64,
//! AVX2 or AVX-512 under `-C target-cpu=native`). The micro-tile is sized so that its
//! accumulators, the B vectors and one broadcast fit 16 vector registers (6x2). Every path
//! has the same lanes and tile, so the order of every sum, and with it every bit of a run,
//! is the same on each (see `docs/performance.md`).

/// Rows of the output micro-tile.
pub const MR: usize = 6;
/// The baseline path's vector.
pub type V = wide::f32x8;

/// f32 lanes in one [`V`].
pub const LANES: usize = core::mem::size_of::<V>() / 4;
/// Vectors across one output micro-tile row.
pub const NV: usize = 2;
/// Columns of the output micro-tile.
pub const NR: usize = NV * LANES;

/// Loads `LANES` floats from the start of `s` (any alignment).
#[inline(always)]
pub fn load(s: &[f32]) -> V {
    V::from(*<&[f32; LANES]>::try_from(&s[..LANES]).expect("slice of LANES floats"))
}

/// Stores `v` into the first `LANES` floats of `s`.
#[inline(always)]
pub fn store(s: &mut [f32], v: V) {
    s[..LANES].copy_from_slice(&v.to_array());
}

/// Human-readable name of the baseline path as this build compiles it, for logs and
/// bench reports.
pub const fn isa() -> &'static str {
    if cfg!(target_feature = "avx512f") {
        "AVX-512 (f32x8 as built)"
    } else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "AVX2+FMA (f32x8 as built)"
    } else if cfg!(target_feature = "avx") {
        "AVX (f32x8 as built)"
    } else if cfg!(target_arch = "aarch64") {
        "NEON (f32x8 as 2 x f32x4)"
    } else {
        "portable SSE2 (f32x8 as 2 x f32x4)"
    }
}

/// `a * b + c` rounded exactly as [`V::mul_add`] rounds each lane on this build: fused where
/// `wide` fuses (x86 with FMA, aarch64), a product and a sum otherwise. Scalar tails use it
/// so that an element gets the same bits whether a vector or the tail computed it.
#[inline(always)]
pub fn mul_add(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(any(target_feature = "fma", all(target_arch = "aarch64", target_feature = "neon"))) {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}
