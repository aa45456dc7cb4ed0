//! Counter-based hashes: randomness drawn from (seed, step, index) keys, so that what a
//! thread or a resumed run draws does not depend on what ran before it.

/// The SplitMix64 finalizer: decorrelates nearby keys such as (seed, step, layer, row).
/// (The data's splits draw from it too, below the trainer.)
pub use crate::data::split::mix;

/// lowbias32 (C. Wellons): a 32-bit integer hash whose output bits each flip with
/// probability 1/2 when any input bit flips.
#[inline(always)]
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}
