//! Vector types of the f32 kernels for paths chosen when the program runs.
//!
//! `wide` picks its implementation of `f32x8` by the build's `cfg(target_feature)`, so in a
//! portable build its vectors are pairs of SSE registers with unfused multiply-adds, even
//! inside a `#[target_feature(enable = "avx2,fma")]` function. The dispatched paths use
//! these types instead: `core::arch` intrinsics behind the operations the kernels use, each
//! written to give the bits `wide` gives on a build for that CPU (the same instruction, the
//! same operand order, the same NaN rules, the same exp), so that a model trained on a
//! dispatched path has the bits of one trained by a native build. The tests hold every
//! operation to `wide` on the vectors of a native build.
//!
//! Every method is `#[inline(always)]` and only meaningful inside a function that enables
//! the type's target features: there the intrinsics inline into it. A value of
//! [`F32x8`] can only be made through [`Avx2Fma`], which is only made once the CPU is known
//! to have AVX2 and FMA.

#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;
use core::ops::{Add, Div, Mul, Neg, Sub};

#[cfg(target_arch = "x86_64")]
/// The token of the AVX2 + FMA path: made only where the CPU has both.
#[derive(Clone, Copy, Debug)]
pub struct Avx2Fma(());

#[cfg(target_arch = "x86_64")]
impl Avx2Fma {
    /// The token, if this CPU has AVX2 and FMA.
    pub fn detect() -> Option<Avx2Fma> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2Fma(()))
    }
}

#[cfg(target_arch = "x86_64")]
/// Eight f32 lanes in one AVX register.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct F32x8(__m256);

// SAFETY (every `unsafe` block below): an `F32x8` exists only on a CPU with AVX2 and FMA
// (see the module documentation), which is all these intrinsics need; the loads and
// stores read and write eight floats of slices checked to hold them.

#[cfg(target_arch = "x86_64")]
impl F32x8 {
    /// f32 lanes.
    pub const LANES: usize = 8;

    /// Every lane `x`.
    #[inline(always)]
    pub fn splat(_: Avx2Fma, x: f32) -> F32x8 {
        F32x8(unsafe { _mm256_set1_ps(x) })
    }

    /// The first eight floats of `s`.
    #[inline(always)]
    pub fn load(_: Avx2Fma, s: &[f32]) -> F32x8 {
        assert!(s.len() >= 8);
        F32x8(unsafe { _mm256_loadu_ps(s.as_ptr()) })
    }

    /// Into the first eight floats of `s`.
    #[inline(always)]
    pub fn store(self, s: &mut [f32]) {
        assert!(s.len() >= 8);
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
    }

    /// The lanes as an array.
    #[inline(always)]
    pub fn to_array(self) -> [f32; 8] {
        let mut out = [0.0; 8];
        self.store(&mut out);
        out
    }

    #[inline(always)]
    fn same(self, x: f32) -> F32x8 {
        F32x8(unsafe { _mm256_set1_ps(x) })
    }

    #[inline(always)]
    fn bits(self, x: u32) -> F32x8 {
        self.same(f32::from_bits(x))
    }

    /// `self · a + b`, rounded once.
    #[inline(always)]
    pub fn mul_add(self, a: F32x8, b: F32x8) -> F32x8 {
        F32x8(unsafe { _mm256_fmadd_ps(self.0, a.0, b.0) })
    }

    /// `b - self · a`, rounded once.
    #[inline(always)]
    pub fn mul_neg_add(self, a: F32x8, b: F32x8) -> F32x8 {
        F32x8(unsafe { _mm256_fnmadd_ps(self.0, a.0, b.0) })
    }

    /// The larger of each pair; `self` where `rhs` is NaN (as `wide`).
    #[inline(always)]
    pub fn max(self, rhs: F32x8) -> F32x8 {
        rhs.is_nan().select(self, F32x8(unsafe { _mm256_max_ps(self.0, rhs.0) }))
    }

    /// Square roots, correctly rounded.
    #[inline(always)]
    pub fn sqrt(self) -> F32x8 {
        F32x8(unsafe { _mm256_sqrt_ps(self.0) })
    }

    /// The lanes without their sign bits.
    #[inline(always)]
    pub fn abs(self) -> F32x8 {
        F32x8(unsafe { _mm256_and_ps(self.0, self.bits(i32::MAX as u32).0) })
    }

    /// All ones where `self < rhs` (ordered), else zeros.
    #[inline(always)]
    pub fn simd_lt(self, rhs: F32x8) -> F32x8 {
        F32x8(unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, rhs.0) })
    }

    /// All ones where `self > rhs` (ordered), else zeros.
    #[inline(always)]
    pub fn simd_gt(self, rhs: F32x8) -> F32x8 {
        F32x8(unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, rhs.0) })
    }

    /// All ones where a lane is NaN.
    #[inline(always)]
    fn is_nan(self) -> F32x8 {
        F32x8(unsafe { _mm256_cmp_ps::<_CMP_UNORD_Q>(self.0, self.0) })
    }

    /// `if_true` where the mask's lane has its sign bit set, else `if_false`.
    #[inline(always)]
    pub fn select(self, if_true: F32x8, if_false: F32x8) -> F32x8 {
        F32x8(unsafe { _mm256_blendv_ps(if_false.0, if_true.0, self.0) })
    }

    #[inline(always)]
    fn and(self, rhs: F32x8) -> F32x8 {
        F32x8(unsafe { _mm256_and_ps(self.0, rhs.0) })
    }

    #[inline(always)]
    fn not(self) -> F32x8 {
        F32x8(unsafe { _mm256_xor_ps(self.0, _mm256_castsi256_ps(_mm256_set1_epi32(-1))) })
    }

    #[inline(always)]
    fn all(self) -> bool {
        unsafe { _mm256_movemask_ps(self.0) == 0xff }
    }

    #[inline(always)]
    fn any(self) -> bool {
        unsafe { _mm256_movemask_ps(self.0) != 0 }
    }

    #[inline(always)]
    fn as_i32(self) -> __m256i {
        unsafe { _mm256_castps_si256(self.0) }
    }

    #[inline(always)]
    fn from_i32(v: __m256i) -> F32x8 {
        F32x8(unsafe { _mm256_castsi256_ps(v) })
    }

    /// All ones where a lane's exponent is not all ones (`wide`'s `is_finite`).
    #[inline(always)]
    fn is_finite(self) -> F32x8 {
        unsafe {
            let mask = _mm256_set1_epi32(0xFF00_0000u32 as i32);
            let shifted = _mm256_slli_epi32::<1>(self.as_i32());
            F32x8::from_i32(_mm256_cmpeq_epi32(_mm256_and_si256(shifted, mask), mask)).not()
        }
    }

    /// All ones where a lane's sign bit is set.
    #[inline(always)]
    fn is_sign_negative(self) -> F32x8 {
        unsafe {
            let sign = _mm256_set1_epi32(i32::MIN);
            F32x8::from_i32(_mm256_cmpeq_epi32(_mm256_and_si256(self.as_i32(), sign), sign))
        }
    }

    #[inline(always)]
    fn round_ties_even(self) -> F32x8 {
        F32x8(unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
    }

    /// `2^n` for integral `n` (`wide`'s `vm_pow2n`, subnormal results included).
    #[inline(always)]
    fn pow2n(self) -> F32x8 {
        let a = self + self.same(127.0 + 8_388_608.0);
        let std_result = F32x8::from_i32(unsafe { _mm256_slli_epi32::<23>(a.as_i32()) });
        let is_sub = self.simd_lt(self.same(-126.0));
        if !is_sub.any() {
            return std_result;
        }
        let valid = F32x8(unsafe { _mm256_cmp_ps::<_CMP_GE_OQ>(self.0, self.same(-149.0).0) });
        let shift_f = self + self.same(149.0);
        let shift_i = unsafe {
            // wide's `trunc_int`: NaN lanes as 0, lanes >= 2^31 flipped to i32::MAX.
            let non_nan = shift_f.and(F32x8(_mm256_cmp_ps::<_CMP_EQ_OQ>(shift_f.0, shift_f.0)));
            let flip = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(shift_f.0, _mm256_set1_ps(2_147_483_648.0)));
            _mm256_xor_si256(flip, _mm256_cvttps_epi32(non_nan.0))
        };
        let shift_i = unsafe { _mm256_blendv_epi8(_mm256_setzero_si256(), shift_i, valid.as_i32()) };
        let mantissa = unsafe { _mm256_sllv_epi32(_mm256_set1_epi32(1), shift_i) };
        let sub_result = valid.select(F32x8::from_i32(mantissa), self.same(0.0));
        is_sub.select(sub_result, std_result)
    }

    /// `e^x` per lane: `wide`'s algorithm (range reduction by ln 2 in two parts, a degree-5
    /// polynomial, scaling by `2^r`), operation for operation.
    #[inline(always)]
    pub fn exp(self) -> F32x8 {
        let c = |x: f32| self.same(x);
        let (p0, p1, p2, p3, p4, p5) =
            (c(1.0 / 2.0), c(1.0 / 6.0), c(1.0 / 24.0), c(1.0 / 120.0), c(1.0 / 720.0), c(1.0 / 5040.0));
        let (ln2d_hi, ln2d_lo) = (c(0.693_359_4), c(-2.121_944_4e-4));
        let (max_x, min_x) = (c(88.723), c(-103.63));
        let zero = c(0.0);
        let finite = self.is_finite();
        let neg_underflow = self.simd_lt(min_x).and(finite);
        if neg_underflow.all() {
            return zero;
        }
        let max_r = c(127.0);
        let r = (self * c(core::f32::consts::LOG2_E)).round_ties_even();
        let big = r.simd_gt(max_r);
        let r_safe = big.select(max_r, r);
        let excess = big.select(r - max_r, zero);
        let scale = excess.pow2n();
        let x = r.mul_neg_add(ln2d_hi, self);
        let x = r.mul_neg_add(ln2d_lo, x);
        // wide's polynomial_5!
        let x2 = x * x;
        let x4 = x2 * x2;
        let z = p3.mul_add(x, p2).mul_add(x2, p5.mul_add(x, p4).mul_add(x4, p1.mul_add(x, p0)));
        let x2 = x * x;
        let z = z.mul_add(x2, x);
        let n2 = r_safe.pow2n();
        let z = (z + c(1.0)) * scale * n2;
        let nan_mask = self.is_nan();
        let infinity = self.bits(0x7F80_0000);
        let mut result = nan_mask.select(self.bits(0x7FC0_0000 | 0x101 & 0x003F_FFFF), z);
        let pos_overflow = self.simd_gt(max_x).and(finite);
        result = pos_overflow.select(infinity, result);
        result = neg_underflow.select(zero, result);
        let not_finite_not_nan = finite.not().and(nan_mask.not());
        let pos_inf = not_finite_not_nan.and(self.is_sign_negative().not());
        result = pos_inf.select(infinity, result);
        let neg_inf = not_finite_not_nan.and(self.is_sign_negative());
        neg_inf.select(zero, result)
    }
}

#[cfg(target_arch = "x86_64")]
macro_rules! binary {
    ($trait:ident, $method:ident, $intrinsic:ident) => {
        impl $trait for F32x8 {
            type Output = F32x8;
            #[inline(always)]
            fn $method(self, rhs: F32x8) -> F32x8 {
                F32x8(unsafe { $intrinsic(self.0, rhs.0) })
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
binary!(Add, add, _mm256_add_ps);
#[cfg(target_arch = "x86_64")]
binary!(Sub, sub, _mm256_sub_ps);
#[cfg(target_arch = "x86_64")]
binary!(Mul, mul, _mm256_mul_ps);
#[cfg(target_arch = "x86_64")]
binary!(Div, div, _mm256_div_ps);

#[cfg(target_arch = "x86_64")]
impl Neg for F32x8 {
    type Output = F32x8;
    /// The sign bit flipped (as `wide`: XOR with -0.0).
    #[inline(always)]
    fn neg(self) -> F32x8 {
        F32x8(unsafe { _mm256_xor_ps(self.0, _mm256_set1_ps(-0.0)) })
    }
}

#[cfg(all(test, target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
mod tests {
    //! Each operation against `wide::f32x8` of this build, which enables AVX2 and FMA: the
    //! same bits on random, special and edge values.
    use super::*;
    use wide::f32x8;

    /// Values of every kind: random bit patterns, normal numbers of every scale, the exp's
    /// edges, zeros, subnormals, infinities and NaNs.
    fn values() -> Vec<f32> {
        let mut out = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-40,
            -1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MAX,
            f32::MIN,
            88.72,
            88.73,
            -87.3,
            -103.6,
            -103.7,
            -150.0,
            127.0 * core::f32::consts::LN_2,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let bits = (state >> 32) as u32;
            out.push(if i % 2 == 0 { f32::from_bits(bits) } else { (bits as f32 / u32::MAX as f32 - 0.5) * 240.0 });
        }
        out
    }

    fn same(a: [f32; 8], b: [f32; 8], what: &str, input: &[f32]) {
        let (a, b) = (a.map(f32::to_bits), b.map(f32::to_bits));
        assert_eq!(a, b, "{what} of {input:?}");
    }

    #[test]
    fn every_operation_has_wides_bits() {
        let t = Avx2Fma::detect().expect("this build enables AVX2 and FMA");
        let v = values();
        for (i, chunk) in v.chunks_exact(8).enumerate() {
            let other = &v[(i * 8 + 13) % (v.len() - 8)..][..8];
            let third = &v[(i * 8 + 29) % (v.len() - 8)..][..8];
            let (x, y, z) = (F32x8::load(t, chunk), F32x8::load(t, other), F32x8::load(t, third));
            let w = |s: &[f32]| f32x8::from(<[f32; 8]>::try_from(s).unwrap());
            let (wx, wy, wz) = (w(chunk), w(other), w(third));
            same((x + y).to_array(), (wx + wy).to_array(), "+", chunk);
            same((x - y).to_array(), (wx - wy).to_array(), "-", chunk);
            same((x * y).to_array(), (wx * wy).to_array(), "*", chunk);
            same((x / y).to_array(), (wx / wy).to_array(), "/", chunk);
            same((-x).to_array(), (-wx).to_array(), "neg", chunk);
            same(x.mul_add(y, z).to_array(), wx.mul_add(wy, wz).to_array(), "mul_add", chunk);
            same(x.mul_neg_add(y, z).to_array(), wx.mul_neg_add(wy, wz).to_array(), "mul_neg_add", chunk);
            same(x.max(y).to_array(), wx.max(wy).to_array(), "max", chunk);
            same(x.sqrt().to_array(), wx.sqrt().to_array(), "sqrt", chunk);
            same(x.abs().to_array(), wx.abs().to_array(), "abs", chunk);
            same(x.simd_lt(y).to_array(), wx.simd_lt(wy).to_array(), "<", chunk);
            same(x.simd_gt(y).to_array(), wx.simd_gt(wy).to_array(), ">", chunk);
            let mask = x.simd_lt(y);
            same(mask.select(y, z).to_array(), wx.simd_lt(wy).select(wy, wz).to_array(), "select", chunk);
            same(x.exp().to_array(), wx.exp().to_array(), "exp", chunk);
            let neg = -x.abs();
            same(neg.exp().to_array(), (-wx.abs()).exp().to_array(), "exp of a negative", chunk);
        }
    }
}

/// A path of the f32 kernels: a token that proves the CPU runs it, its vector type, and a
/// way into code compiled with its target features.
pub trait Isa: Copy + Send + Sync + 'static {
    /// The vector type of the path.
    type V: Vector;
    /// Every lane `x`.
    fn splat(self, x: f32) -> Self::V;
    /// The first lanes of `s`.
    fn load(self, s: &[f32]) -> Self::V;
    /// `v` into the first lanes of `s`.
    fn store(self, s: &mut [f32], v: Self::V);
    /// `a · b + c`, rounded as the path rounds it.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a · b + c` for one float, rounded as the path's vectors round it.
    fn fma(self, a: f32, b: f32, c: f32) -> f32;
    /// Runs `f` compiled with the path's target features: every parallel closure of a
    /// kernel enters its path here (the closure inlines into a `#[target_feature]`
    /// function, and the intrinsics into it).
    fn run<R>(self, f: impl FnOnce() -> R) -> R;
}

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2Fma {
    type V = F32x8;
    #[inline(always)]
    fn splat(self, x: f32) -> F32x8 {
        F32x8::splat(self, x)
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> F32x8 {
        F32x8::load(self, s)
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], v: F32x8) {
        v.store(s)
    }
    #[inline(always)]
    fn mul_add(self, a: F32x8, b: F32x8, c: F32x8) -> F32x8 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn run<R>(self, f: impl FnOnce() -> R) -> R {
        #[target_feature(enable = "avx2,fma")]
        fn enter<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: `self` exists, so the CPU has AVX2 and FMA.
        unsafe { enter(f) }
    }
}

/// The baseline path: `wide`'s vectors as the build compiles them.
#[derive(Clone, Copy, Debug)]
pub struct Baseline;

impl Isa for Baseline {
    type V = crate::kernels::lanes::V;
    #[inline(always)]
    fn splat(self, x: f32) -> Self::V {
        Self::V::splat(x)
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> Self::V {
        crate::kernels::lanes::load(s)
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], v: Self::V) {
        crate::kernels::lanes::store(s, v)
    }
    #[inline(always)]
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        crate::kernels::lanes::mul_add(a, b, c)
    }
    #[inline(always)]
    fn run<R>(self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// The operations the kernels use on a path's vectors (a value exists only where its path
/// runs, so the methods need no token).
pub trait Vector:
    Copy
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// Every lane `x`.
    fn splat_like(self, x: f32) -> Self;
    /// `self · a + b`, rounded as the path rounds it.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// `b - self · a`, rounded as the path rounds it.
    fn mul_neg_add(self, a: Self, b: Self) -> Self;
    /// The larger of each pair; `self` where `rhs` is NaN.
    fn max(self, rhs: Self) -> Self;
    /// Square roots.
    fn sqrt(self) -> Self;
    /// Without sign bits.
    fn abs(self) -> Self;
    /// All ones where `self < rhs`.
    fn simd_lt(self, rhs: Self) -> Self;
    /// All ones where `self > rhs`.
    fn simd_gt(self, rhs: Self) -> Self;
    /// `t` where the mask `self` is set, else `f`.
    fn select(self, t: Self, f: Self) -> Self;
    /// `e^x`, as `wide` computes it.
    fn exp(self) -> Self;
    /// Into the first lanes of `s`.
    fn write(self, s: &mut [f32]);
}

#[cfg(target_arch = "x86_64")]
impl Vector for F32x8 {
    #[inline(always)]
    fn splat_like(self, x: f32) -> F32x8 {
        self.same(x)
    }
    #[inline(always)]
    fn mul_add(self, a: F32x8, b: F32x8) -> F32x8 {
        F32x8::mul_add(self, a, b)
    }
    #[inline(always)]
    fn mul_neg_add(self, a: F32x8, b: F32x8) -> F32x8 {
        F32x8::mul_neg_add(self, a, b)
    }
    #[inline(always)]
    fn max(self, rhs: F32x8) -> F32x8 {
        F32x8::max(self, rhs)
    }
    #[inline(always)]
    fn sqrt(self) -> F32x8 {
        F32x8::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> F32x8 {
        F32x8::abs(self)
    }
    #[inline(always)]
    fn simd_lt(self, rhs: F32x8) -> F32x8 {
        F32x8::simd_lt(self, rhs)
    }
    #[inline(always)]
    fn simd_gt(self, rhs: F32x8) -> F32x8 {
        F32x8::simd_gt(self, rhs)
    }
    #[inline(always)]
    fn select(self, t: F32x8, f: F32x8) -> F32x8 {
        F32x8::select(self, t, f)
    }
    #[inline(always)]
    fn exp(self) -> F32x8 {
        F32x8::exp(self)
    }
    #[inline(always)]
    fn write(self, s: &mut [f32]) {
        self.store(s)
    }
}

impl Vector for wide::f32x8 {
    #[inline(always)]
    fn splat_like(self, x: f32) -> Self {
        wide::f32x8::splat(x)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        wide::f32x8::mul_add(self, a, b)
    }
    #[inline(always)]
    fn mul_neg_add(self, a: Self, b: Self) -> Self {
        wide::f32x8::mul_neg_add(self, a, b)
    }
    #[inline(always)]
    fn max(self, rhs: Self) -> Self {
        wide::f32x8::max(self, rhs)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        wide::f32x8::sqrt(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        wide::f32x8::abs(self)
    }
    #[inline(always)]
    fn simd_lt(self, rhs: Self) -> Self {
        wide::f32x8::simd_lt(self, rhs)
    }
    #[inline(always)]
    fn simd_gt(self, rhs: Self) -> Self {
        wide::f32x8::simd_gt(self, rhs)
    }
    #[inline(always)]
    fn select(self, t: Self, f: Self) -> Self {
        wide::f32x8::select(self, t, f)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        wide::f32x8::exp(self)
    }
    #[inline(always)]
    fn write(self, s: &mut [f32]) {
        s[..8].copy_from_slice(&self.to_array());
    }
}

/// Work that runs on whichever path this CPU takes: what [`dispatch`] runs.
pub trait Job {
    /// What the work gives back.
    type Out;
    /// The work on `isa`'s path.
    fn run<I: Isa>(self, isa: I) -> Self::Out;
}

/// The environment variable that names the f32 path: `auto` (or unset: the best this CPU
/// has), `avx2` or `baseline`; read once per process.
pub const PATH_ENV: &str = "FMLP_F32_PATH";

/// An f32 path by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// AVX2 + FMA through [`F32x8`], whatever the build's flags.
    Avx2Fma,
    /// `wide`'s vectors as the build compiles them.
    Baseline,
}

impl Path {
    /// The best path this CPU runs.
    pub fn best() -> Path {
        #[cfg(target_arch = "x86_64")]
        if Avx2Fma::detect().is_some() {
            return Path::Avx2Fma;
        }
        Path::Baseline
    }

    /// Whether this CPU runs the path.
    pub fn runs(self) -> bool {
        self == Path::Baseline || Path::best() == Path::Avx2Fma
    }

    /// The path named `name` (`auto`, `avx2`, `baseline`, any case, blank meaning `auto`),
    /// or an error that says what to write instead.
    pub fn named(name: &str) -> Result<Path, String> {
        let path = match name.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => return Ok(Path::best()),
            "avx2" => Path::Avx2Fma,
            "baseline" => Path::Baseline,
            other => {
                return Err(format!(
                    "{PATH_ENV}={other:?} names no f32 path: write auto, avx2 or baseline, or unset it"
                ));
            }
        };
        if !path.runs() {
            return Err(format!(
                "{PATH_ENV}={name:?}: this CPU lacks AVX2 or FMA; write auto or baseline, or unset it"
            ));
        }
        Ok(path)
    }

    /// [`Path::named`] for the value of [`PATH_ENV`] (unset: the best).
    pub fn from_env() -> Result<Path, String> {
        Path::named(&std::env::var(PATH_ENV).unwrap_or_default())
    }

    /// The path the kernels take in this process: [`Path::from_env`] on first use, the best
    /// path if that fails (programs check [`Path::from_env`] first to report the error).
    pub fn chosen() -> Path {
        static CHOSEN: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| Path::from_env().unwrap_or_else(|_| Path::best()))
    }

    /// For logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Path::Avx2Fma if self == Path::best() => "AVX2+FMA (f32x8, chosen at run time)",
            Path::Avx2Fma => "AVX2+FMA (f32x8)",
            Path::Baseline => crate::kernels::lanes::isa(),
        }
    }
}

/// The AVX2 + FMA token when that is the [`Path::chosen`] path.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn avx2_chosen() -> Option<Avx2Fma> {
    if Path::chosen() == Path::Avx2Fma { Avx2Fma::detect() } else { None }
}

/// Runs `job` on the [`Path::chosen`] path: AVX2 + FMA where this CPU has them (unless
/// [`PATH_ENV`] says `baseline`), else the baseline.
#[inline]
pub fn dispatch<J: Job>(job: J) -> J::Out {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = avx2_chosen() {
        return job.run(t);
    }
    job.run(Baseline)
}

/// The path [`dispatch`] takes in this process, for logs and reports.
pub fn path() -> &'static str {
    Path::chosen().name()
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn paths_are_named_checked_and_chosen() {
        // CI runs these tests on emulated CPUs and names the path each must choose.
        if let Ok(want) = std::env::var("FMLP_EXPECT_F32_PATH") {
            let got = Path::best().name();
            assert!(got.contains(&want), "FMLP_EXPECT_F32_PATH={want}, but {got} was chosen");
        }
        assert_eq!(Path::named("baseline"), Ok(Path::Baseline));
        assert_eq!(Path::named(" Auto "), Ok(Path::best()));
        assert_eq!(Path::named(""), Ok(Path::best()));
        assert!(Path::Baseline.runs());
        let avx2 = Path::named("AVX2");
        #[cfg(target_arch = "x86_64")]
        let has = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let has = false;
        match avx2 {
            Ok(path) => assert!(has && path == Path::Avx2Fma && Path::best() == Path::Avx2Fma),
            Err(e) => assert!(!has && e.contains("lacks AVX2"), "{e}"),
        }
        let e = Path::named("avx512").unwrap_err();
        assert!(e.contains("FMLP_F32_PATH=\"avx512\"") && e.contains("auto, avx2 or baseline"), "{e}");
        // The process's choice is one this CPU runs and the one the environment asked for.
        assert!(Path::chosen().runs());
        if let Ok(asked) = Path::from_env() {
            assert_eq!(Path::chosen(), asked);
        }
    }
}
