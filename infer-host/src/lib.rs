//! infer-core on a workstation: many int8 inputs per call, over threads.
//!
//! `infer-core` classifies one input with no allocation and no threads, as firmware does,
//! and [`Int8Model::predict_batch_in`] a block of them on one thread. This crate splits a
//! batch into tasks for rayon's pool (the caller's thread count: run it inside
//! `ThreadPool::install`), each with scratch of its own, and picks the kernel: the one the
//! CPU runs best, or the one named in `FMLP_INT8_KERNEL` to measure or test another. On
//! Linux it first asks the OS for the AMX tile registers ([`request_amx`]), which the
//! `no_std` core cannot do. Every input gets the same bits as [`Int8Model::predict`] gives
//! it alone.

use infer_core::int8net::{BATCH_BLOCK, Kernel};
use infer_core::{Error, Int8Model};
use rayon::prelude::*;
use std::sync::OnceLock;

/// The environment variable that names the int8 kernel (see [`kernel`]).
pub const KERNEL_ENV: &str = "FMLP_INT8_KERNEL";

/// Images per task at most: enough to pay for a task's scratch and scheduling, few enough
/// that a batch of a few thousand spreads over every thread.
const MAX_TASK: usize = 256;
const _: () = assert!(MAX_TASK.is_multiple_of(BATCH_BLOCK));

/// The short name of a kernel, as [`KERNEL_ENV`] takes it.
pub fn short_name(kernel: Kernel) -> &'static str {
    match kernel {
        Kernel::X86Amx => "amx",
        Kernel::X86Vnni => "vnni",
        Kernel::X86Avx2 => "avx2",
        Kernel::X86Baseline => "baseline",
        Kernel::ArmDsp => "dsp",
        Kernel::Portable => "portable",
    }
}

/// Asks the operating system, once, for the use of AMX's tile registers in this process, and
/// tells `infer-core` when it is granted, so that [`Kernel::X86Amx`] runs on a CPU that
/// has AMX-INT8. Returns whether it was granted (false on a CPU without AMX, an older
/// kernel, or another OS). [`kernel`] and [`kernel_named`] call it.
pub fn request_amx() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(amx_permission)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unsafe_code)]
fn amx_permission() -> bool {
    // <asm/prctl.h> and the kernel's x86 feature numbers (Linux 5.16 and later).
    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;
    // Ask only where the CPU has AMX: the call is harmless elsewhere, but says nothing.
    if !infer_core::int8net::amx_in_cpu() {
        return false;
    }
    // SAFETY: arch_prctl with this request reads and writes no memory of ours.
    let granted = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } == 0;
    if granted {
        // SAFETY: the OS has just given this process the tile data.
        unsafe { infer_core::int8net::assume_amx_permitted() };
    }
    granted
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn amx_permission() -> bool {
    false
}

/// The kernel to run: [`Kernel::detected`] (after [`request_amx`]), unless [`KERNEL_ENV`]
/// names another (`amx`, `vnni`, `avx2`, `baseline`, `dsp`, `portable`, or `auto`); an
/// error that says what this CPU runs when the name is unknown or the CPU lacks it.
pub fn kernel() -> Result<Kernel, String> {
    request_amx();
    match std::env::var(KERNEL_ENV) {
        Ok(name) if !name.is_empty() && name != "auto" => kernel_named(&name),
        _ => Ok(Kernel::detected()),
    }
}

/// The kernel whose [`short_name`] is `name`, if this CPU runs it.
pub fn kernel_named(name: &str) -> Result<Kernel, String> {
    request_amx();
    let runs: Vec<&str> = Kernel::ALL.into_iter().filter(|k| k.runs()).map(short_name).collect();
    let runs = runs.join(", ");
    match Kernel::ALL.into_iter().find(|&k| short_name(k) == name) {
        Some(k) if k.runs() => Ok(k),
        Some(k) => Err(format!("{KERNEL_ENV}={name}: this CPU or build lacks the {k} kernel; it runs: {runs}, auto")),
        None => Err(format!("{KERNEL_ENV}={name}: no such int8 kernel; this CPU runs: {runs}, auto")),
    }
}

/// Images per task for a batch of `n` on `threads` threads with `kernel`: about four tasks a
/// thread so that none waits long for another, in whole blocks, at most [`MAX_TASK`]; a
/// batch too small for a block a thread is shared out evenly instead, in whole tiles of 16
/// images on AMX (whose tiles are 16 images: 16 images on two threads of 8 would both run
/// on VNNI, 2.9 times slower than one thread's tile).
fn task_images(n: usize, threads: usize, kernel: Kernel) -> usize {
    let threads = threads.max(1);
    let task = n.div_ceil(4 * threads).next_multiple_of(BATCH_BLOCK).clamp(BATCH_BLOCK, MAX_TASK);
    let tile = if kernel == Kernel::X86Amx { AMX_TILE } else { 1 };
    if n.div_ceil(task) < threads { n.div_ceil(threads).next_multiple_of(tile).max(1) } else { task }
}

/// Images in an AMX tile.
const AMX_TILE: usize = 16;
const _: () = assert!(BATCH_BLOCK.is_multiple_of(AMX_TILE));

/// The model file `bytes` as the host runs it: with its int4 layers widened to int8
/// ([`infer_core::widen::widen`]: the same scores, bit for bit, on the fast int8 kernels,
/// several times faster than int4 layers' portable loop); borrowed as it is otherwise
/// (an f32 or an int8 file without int4 layers, or one that does not load, which the
/// caller's reading reports).
pub fn host_bytes(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let Ok(file) = infer_core::format::read(bytes) else { return std::borrow::Cow::Borrowed(bytes) };
    if !file.header().storage().any_int4() {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = vec![0u8; infer_core::widen::widened_header(file.header()).file_len()];
    match infer_core::widen::widen(bytes, &mut out) {
        Ok(len) => {
            out.truncate(len);
            std::borrow::Cow::Owned(out)
        }
        Err(_) => std::borrow::Cow::Borrowed(bytes),
    }
}

/// Classifies every input of `images` (whole inputs of raw bytes one after another) on
/// `kernel`, over the current rayon pool: image `i`'s scores go to
/// `scores[i * classes..][..classes]` and its class to `classes_out[i]`. Errors, and writes
/// nothing, as [`Int8Model::predict_batch_in`] does.
pub fn classify(
    model: &Int8Model<'_>,
    kernel: Kernel,
    images: &[u8],
    scores: &mut [i32],
    classes_out: &mut [u16],
) -> Result<(), Error> {
    let (inputs, classes) = (model.architecture().inputs(), model.architecture().classes());
    let n = images.len() / inputs;
    if !images.len().is_multiple_of(inputs) || scores.len() < n * classes || classes_out.len() < n || !kernel.runs() {
        // The error the one-thread call gives, before any task writes anything.
        let mut scratch = vec![0u8; model.batch_scratch_bytes(n)];
        return model.predict_batch_with(kernel, images, &mut scratch, scores, classes_out);
    }
    if n == 0 {
        return Ok(());
    }
    let task = task_images(n, rayon::current_num_threads(), kernel);
    let tasks = images.par_chunks(task * inputs).zip(scores[..n * classes].par_chunks_mut(task * classes));
    tasks.zip(classes_out[..n].par_chunks_mut(task)).try_for_each_init(
        || vec![0u8; model.batch_scratch_bytes(task)],
        |scratch, ((images, scores), classes_out)| {
            model.predict_batch_with(kernel, images, scratch, scores, classes_out)
        },
    )
}

/// The bytes each row of `features` (whole rows of real values, one after another) becomes
/// through the model's input quantizer: what [`classify`] takes for a table's model.
pub fn quantize_rows(model: &Int8Model<'_>, features: &[f32]) -> Result<Vec<u8>, Error> {
    let inputs = model.architecture().inputs();
    if !features.len().is_multiple_of(inputs) {
        return Err(Error::InputSize { expected: features.len().next_multiple_of(inputs), found: features.len() });
    }
    let mut bytes = vec![0u8; features.len()];
    for (row, out) in features.chunks_exact(inputs).zip(bytes.chunks_exact_mut(inputs)) {
        model.quantize_features(row, out)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_whole_blocks_and_spread_over_the_threads() {
        let vnni = Kernel::X86Vnni;
        assert_eq!(task_images(1, 2, vnni), 1);
        assert_eq!(task_images(16, 2, vnni), 8);
        assert_eq!(task_images(16, 1, vnni), BATCH_BLOCK);
        assert_eq!(task_images(10_000, 1, vnni), MAX_TASK);
        assert_eq!(task_images(2_000, 2, vnni), 256);
        // On AMX a small batch is shared in whole tiles of 16: one thread takes 16 images.
        let amx = Kernel::X86Amx;
        assert_eq!(task_images(16, 2, amx), 16);
        assert_eq!(task_images(40, 2, amx), 32);
        assert_eq!(task_images(1, 2, amx), 16);
        assert_eq!(task_images(2_000, 2, amx), 256);
        for (n, threads) in [(100, 2), (10_000, 16), (7, 1), (4_096, 2)] {
            let t = task_images(n, threads, vnni);
            assert!(t.is_multiple_of(BATCH_BLOCK) && t <= MAX_TASK, "{n} {threads}: {t}");
            assert!(n.div_ceil(t) >= threads, "{n} {threads}: {t}");
        }
    }

    #[test]
    fn kernel_names_round_trip_and_unknown_ones_are_refused() {
        for k in Kernel::ALL.into_iter().filter(|k| k.runs()) {
            assert_eq!(kernel_named(short_name(k)), Ok(k));
        }
        let err = kernel_named("sse9").unwrap_err();
        assert!(err.contains("no such int8 kernel") && err.contains("portable"), "{err}");
    }
}
