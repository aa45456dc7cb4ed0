//! What every forward pass checks of the buffers it is given, and how it lays out the hidden
//! layers in its scratch.

use crate::arch;
use crate::error::Error;

/// `Ok` when a scratch of `capacity` holds the `needed` of a model.
pub(crate) fn fits(needed: usize, capacity: usize) -> Result<(), Error> {
    if needed > capacity {
        return Err(Error::ScratchTooSmall { needed, capacity });
    }
    Ok(())
}

/// What every `predict` checks before it writes anything: `inputs` values for `arch`,
/// room for its classes in `out` (whose first `classes` values it returns), and a scratch
/// of `capacity` for the `needed` of the model.
pub(crate) fn check_buffers<'o, T>(
    arch: &arch::Architecture,
    inputs: usize,
    out: &'o mut [T],
    needed: usize,
    capacity: usize,
) -> Result<&'o mut [T], Error> {
    if inputs != arch.inputs() {
        return Err(Error::InputSize { expected: arch.inputs(), found: inputs });
    }
    let (classes, found) = (arch.classes(), out.len());
    let out = out.get_mut(..classes).ok_or(Error::OutputSize { expected: classes, found })?;
    fits(needed, capacity)?;
    Ok(out)
}

/// The input (hidden layer `l - 1`, `k` wide) and the output (hidden layer `l`, `n` wide;
/// `n = 0` for the last layer) of dense layer `l >= 1` in one activation buffer.
///
/// Even hidden layers live at the buffer's start, odd ones at its end, so a layer's input
/// and output never overlap: the buffer holds any two consecutive hidden layers
/// ([`arch::Architecture::int8_scratch_bytes`] sizes it so).
#[inline(always)]
pub(crate) fn layer_io<T>(buf: &mut [T], l: usize, k: usize, n: usize) -> (&[T], &mut [T]) {
    let len = buf.len();
    if (l - 1).is_multiple_of(2) {
        let (lo, hi) = buf.split_at_mut(len - n);
        (&lo[..k], hi)
    } else {
        let (lo, hi) = buf.split_at_mut(len - k);
        (&*hi, &mut lo[..n])
    }
}
