//! The one place where the instruction set is chosen: lane type and micro-tile shape.
//!
//! `wide` compiles to AVX-512, AVX2+FMA, SSE2 or NEON depending on the target features
//! the crate is built with (see `.cargo/config.toml`). The micro-tile is sized so that
//! its accumulators, the B vectors and one broadcast fit the register file:
//! AVX-512 has 32 vector registers (12x2 accumulators), AVX2 and others 16 (6x2).

#[cfg(target_feature = "avx512f")]
mod pick {
    pub type V = wide::f32x16;
    pub const MR: usize = 12;
}

#[cfg(not(target_feature = "avx512f"))]
mod pick {
    pub type V = wide::f32x8;
    pub const MR: usize = 6;
}

/// Rows of the output micro-tile.
pub use pick::MR;
/// The SIMD vector type every kernel is written over.
pub use pick::V;

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

/// Human-readable name of the compiled instruction set, for logs and bench reports.
pub const fn isa() -> &'static str {
    if cfg!(target_feature = "avx512f") {
        "AVX-512 (f32x16)"
    } else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "AVX2+FMA (f32x8)"
    } else if cfg!(target_feature = "avx") {
        "AVX (f32x8)"
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
