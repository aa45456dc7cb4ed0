//! A model file with int4 layers rewritten with those layers as int8: the same model (every
//! score the same, bit for bit: an int4 weight `q` is the int8 weight `16q`), for hosts,
//! where memory is plenty and the int8 kernels (AVX-512 VNNI, AMX) run several times faster
//! than the int4 layers' portable loop.

use crate::arch::GROUP;
use crate::error::Error;
use crate::format::{self, HEADER_BYTES, Header};
use crate::int8net::{Int8Model, int4_block};
use crate::layout::{Int8Layout, Span, Storage};

/// The header of the file [`widen`] writes for a file with `header`: every layer int8, the
/// sparse ones still sparse (a file without int4 layers: the same header).
pub fn widened_header(header: &Header) -> Header {
    let storage = header.storage();
    let int8 = (0..header.architecture().layers()).fold(Storage::DENSE, |wide, l| match storage.kept(l) {
        Some(kept) => wide.with_sparse(l, kept),
        None => wide,
    });
    header.with_storage(int8)
}

/// Writes the int8 model file `bytes` with its int4 layers as int8 layers into `out` (at
/// least [`Header::file_len`] of [`widened_header`]); returns the bytes used. A file
/// without int4 layers is copied unchanged. Errors as [`Int8Model::from_bytes`] does for a
/// file that is not a valid int8 model, and for `out` too short.
pub fn widen(bytes: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let file = format::read(bytes)?;
    // Validated as a model: every layer's parameters, counts and indices.
    Int8Model::from_file(file)?;
    let (header, payload) = (*file.header(), file.payload());
    let wide = widened_header(&header);
    let (arch, activation) = (header.architecture(), header.activation());
    let (from, to) = (
        Int8Layout::with_storage(&arch, activation, &header.storage()),
        Int8Layout::with_storage(&arch, activation, &wide.storage()),
    );
    let (len, found) = (wide.file_len(), out.len());
    let out = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len, found })?;
    let wide_payload = &mut out[HEADER_BYTES..HEADER_BYTES + to.len()];
    wide_payload.fill(0);
    let copy = |wide: &mut [u8], from: Span, to: Span| wide[to.range()].copy_from_slice(&payload[from.range()]);
    for l in 0..arch.layers() {
        copy(wide_payload, from.counts(l), to.counts(l));
        copy(wide_payload, from.indices(l), to.indices(l));
        copy(wide_payload, from.biases(l), to.biases(l));
        copy(wide_payload, from.multipliers(l), to.multipliers(l));
        copy(wide_payload, from.shifts(l), to.shifts(l));
        if !header.storage().int4(l) {
            copy(wide_payload, from.weights(l), to.weights(l));
            continue;
        }
        let int4 = &payload[from.weights(l).range()];
        let weights = &mut wide_payload[to.weights(l).range()];
        for (t, block) in weights.chunks_exact_mut(GROUP).enumerate() {
            for (b, w) in block.iter_mut().zip(int4_block(int4, t)) {
                *b = w as u8;
            }
        }
    }
    copy(wide_payload, from.score_scale(), to.score_scale());
    if let (Some(a), Some(b)) = (from.table(), to.table()) {
        copy(wide_payload, a, b);
    }
    format::seal(&wide, file.extras(), out)
}
