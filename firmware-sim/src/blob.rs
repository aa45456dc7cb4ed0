//! Model files as firmware holds them.

use std::path::Path;

use anyhow::{Context, Result};

/// Reads a model file into a 64-byte-aligned buffer that lives as long as the program, as
/// firmware holds its model in a static: the payload starts 64 bytes into the file, so
/// its weights are aligned too.
pub fn read_aligned(path: &Path) -> Result<&'static [u8]> {
    let max = infer_core::format::MAX_FILE_BYTES as u64;
    let bytes = runio::fsutil::read_bounded(path, max).with_context(|| format!("reading {}", path.display()))?;
    Ok(aligned(&bytes))
}

/// `bytes` copied into a 64-byte-aligned buffer that lives as long as the program.
pub fn aligned(bytes: &[u8]) -> &'static [u8] {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C, align(64))]
    struct Line([u8; 64]);
    let mut lines = vec![Line([0; 64]); bytes.len().div_ceil(64)];
    for (line, chunk) in lines.iter_mut().zip(bytes.chunks(64)) {
        line.0[..chunk.len()].copy_from_slice(chunk);
    }
    let lines: &'static [Line] = Box::leak(lines.into_boxed_slice());
    &bytemuck::cast_slice::<Line, u8>(lines)[..bytes.len()]
}

/// The model `file` as the host runs it: int4 layers widened to int8 (the same scores, on
/// the fast kernels; [`infer_host::host_bytes`]), in an aligned buffer of its own; `file`
/// itself otherwise.
pub fn for_host(file: &'static [u8]) -> &'static [u8] {
    match infer_host::host_bytes(file) {
        std::borrow::Cow::Borrowed(file) => file,
        std::borrow::Cow::Owned(wide) => aligned(&wide),
    }
}
