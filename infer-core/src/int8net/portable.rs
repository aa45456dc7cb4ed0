//! The portable kernel, for targets without a SIMD one (a Cortex-M0 or M3, for example):
//! the scalar loop over the groups of four inputs that are not all zero.

use super::*;

pub(super) fn dense(layer: &Layer<'_>, x: &[u8], groups: &[u8], act: &mut [u8], scores: &mut [i32]) {
    dense_scalar(layer, x, groups.iter().map(|&g| g as usize), act, scores);
}
