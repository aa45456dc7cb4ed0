//! Cortex-M firmware that classifies images with `infer-core`: one source for every board
//! `firmware-sim qemu` knows (Cortex-M4F, M3, M0; see `build.rs`).
//!
//! The int8 model named by `FIRMWARE_MODEL` at build time is a 64-byte-aligned `static` in
//! flash, parsed and read in place; `build.rs` reads its header and sizes the scratch
//! buffer and the records for it (`MODEL_INPUTS`, `MODEL_FEATURES`, `MODEL_CLASSES`,
//! `MODEL_SCRATCH`). Over Arm semihosting (QEMU's `-semihosting`) the firmware reads
//! examples from `inputs.bin` in the host's working directory, a few at a time: raw images
//! of `MODEL_INPUTS` bytes, or for a model with an input quantizer (`MODEL_FEATURES`) the
//! raw values of `MODEL_INPUTS` features as little-endian f32, which it classifies with
//! `predict_features`. It writes one record per example to `results.bin`:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | predicted class |
//! | 1..4 | zero |
//! | 4..4 + 4 · classes | the i32 scores, little-endian |
//! | last 4 | SysTick ticks the inference took (u32) |
//!
//! At the end it prints one line, `firmware images=N calibration_instructions=I
//! calibration_ticks=T stack_bytes=S`, and exits through semihosting. `firmware-sim qemu`
//! builds, runs and checks it.
//!
//! - **Instructions**: under `qemu -icount shift=0` every instruction advances virtual time
//!   by 1 ns, and SysTick (on the core clock) counts virtual time. A loop of a known number
//!   of instructions gives the instructions per tick, so ticks become instructions.
//! - **Stack**: the free RAM between the statics and the stack pointer is painted at boot;
//!   the lowest overwritten word at the end is the stack's high-water mark.
#![no_std]
#![no_main]

use core::arch::asm;

use cortex_m::peripheral::{SYST, syst::SystClkSource};
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hprintln, syscall};
use infer_core::{Int8Model, Int8Scratch};
use panic_semihosting as _;

// MODEL_INPUTS, MODEL_FEATURES, MODEL_CLASSES, MODEL_SCRATCH: from the model, by build.rs.
include!(concat!(env!("OUT_DIR"), "/model.rs"));

const MODEL_BYTES: usize = include_bytes!(concat!(env!("OUT_DIR"), "/model.fmlp")).len();

/// A value on a 64-byte boundary: the model file's payload starts 64 bytes in, so its
/// weights are aligned too.
#[repr(C, align(64))]
struct Aligned<T>(T);

/// The model file, as `trainer` exported it. The symbol's size in the ELF (the file,
/// rounded up to 64 bytes) is what `firmware-sim` reports as model flash.
#[unsafe(no_mangle)]
static FIRMWARE_MODEL: Aligned<[u8; MODEL_BYTES]> = Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.fmlp")));

/// Examples read per semihosting call.
const CHUNK: usize = 4;
/// Bytes of one example in `inputs.bin`.
const INPUT_BYTES: usize = if MODEL_FEATURES { 4 * MODEL_INPUTS } else { MODEL_INPUTS };
/// Features of one example as f32 (none for a model of bytes, so that it takes no RAM).
const FEATURES: usize = if MODEL_FEATURES { MODEL_INPUTS } else { 0 };
/// Bytes of one record in `results.bin`.
const RECORD: usize = 8 + 4 * MODEL_CLASSES;
/// Iterations of the calibration loop (two instructions each).
const CALIBRATION_LOOPS: u32 = 1_000_000;
/// SysTick's counter is 24 bits wide.
const SYST_MASK: u32 = 0x00ff_ffff;
/// What unused stack holds.
const PAINT: u32 = 0x5afe_c0de;

unsafe extern "C" {
    /// First free byte after the statics (cortex-m-rt's link.x).
    static __sheap: u32;
    /// Initial stack pointer: the stack grows down from here (cortex-m-rt's link.x).
    static _stack_start: u32;
}

#[entry]
fn main() -> ! {
    paint_stack();
    match run() {
        Ok(()) => debug::exit(debug::EXIT_SUCCESS),
        Err(message) => {
            hprintln!("firmware error: {}", message);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    loop {
        cortex_m::asm::bkpt();
    }
}

fn run() -> Result<(), &'static str> {
    let model = Int8Model::from_bytes(&FIRMWARE_MODEL.0).map_err(|_| "the embedded model is not a valid int8 model")?;
    // Refused at boot if the model needs more RAM than this build gives it.
    let mut scratch = Int8Scratch::<MODEL_SCRATCH>::for_model(&model).map_err(|_| "the scratch is too small")?;

    let mut syst = cortex_m::Peripherals::take().ok_or("peripherals taken twice")?.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYST_MASK);
    syst.clear_current();
    syst.enable_counter();

    let t0 = SYST::get_current();
    let mut n = CALIBRATION_LOOPS;
    // SAFETY: a register-only countdown loop; it touches no memory and no flags outside it.
    unsafe { asm!("2:", "subs {n}, #1", "bne 2b", n = inout(reg) n, options(nomem, nostack)) };
    let calibration_ticks = t0.wrapping_sub(SYST::get_current()) & SYST_MASK;
    let _ = n;

    let images = open(c"inputs.bin", OPEN_READ_BINARY)?;
    let len = unsafe { syscall!(FLEN, images) };
    if len == usize::MAX || len % INPUT_BYTES != 0 {
        return Err("inputs.bin is not a whole number of examples of the model's input size");
    }
    let count = len / INPUT_BYTES;
    let results = open(c"results.bin", OPEN_WRITE_BINARY)?;

    let mut inputs = [0u8; CHUNK * INPUT_BYTES];
    let mut features = [0f32; FEATURES];
    let mut records = [0u8; CHUNK * RECORD];
    let mut scores = [0i32; MODEL_CLASSES];
    let mut done = 0;
    while done < count {
        let n = CHUNK.min(count - done);
        read_exact(images, &mut inputs[..n * INPUT_BYTES])?;
        for (input, record) in inputs.chunks_exact(INPUT_BYTES).zip(records.chunks_exact_mut(RECORD)).take(n) {
            if MODEL_FEATURES {
                for (f, b) in features.iter_mut().zip(input.chunks_exact(4)) {
                    *f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            let start = SYST::get_current();
            let class = match MODEL_FEATURES {
                true => model.predict_features(&features, &mut scratch, &mut scores),
                false => model.predict(input, &mut scratch, &mut scores),
            };
            let class = class.map_err(|_| "predict refused its buffers")?;
            let ticks = start.wrapping_sub(SYST::get_current()) & SYST_MASK;
            record[0] = class as u8;
            for (k, s) in scores.iter().enumerate() {
                record[4 + 4 * k..8 + 4 * k].copy_from_slice(&s.to_le_bytes());
            }
            record[RECORD - 4..].copy_from_slice(&ticks.to_le_bytes());
        }
        write_all(results, &records[..n * RECORD])?;
        done += n;
    }
    unsafe {
        syscall!(CLOSE, images);
        syscall!(CLOSE, results);
    }
    hprintln!(
        "firmware images={} calibration_instructions={} calibration_ticks={} stack_bytes={}",
        count,
        2 * CALIBRATION_LOOPS,
        calibration_ticks,
        stack_high_water()
    );
    Ok(())
}

/// Semihosting `SYS_OPEN` modes (ISO C `fopen` modes by index).
const OPEN_READ_BINARY: usize = 1;
const OPEN_WRITE_BINARY: usize = 5;

fn open(path: &core::ffi::CStr, mode: usize) -> Result<usize, &'static str> {
    let bytes = path.to_bytes();
    // SAFETY: the host reads `bytes.len()` bytes of a NUL-terminated string that outlives the call.
    let fd = unsafe { syscall!(OPEN, bytes.as_ptr(), mode, bytes.len()) };
    if fd == usize::MAX { Err("semihosting could not open inputs.bin or results.bin in the host's directory") } else { Ok(fd) }
}

fn read_exact(fd: usize, buf: &mut [u8]) -> Result<(), &'static str> {
    // SAFETY: the host writes at most `buf.len()` bytes into `buf`. SYS_READ returns the
    // number of bytes it did not read.
    let missing = unsafe { syscall!(READ, fd, buf.as_mut_ptr(), buf.len()) };
    if missing == 0 { Ok(()) } else { Err("short read from inputs.bin") }
}

fn write_all(fd: usize, buf: &[u8]) -> Result<(), &'static str> {
    // SAFETY: the host reads `buf.len()` bytes from `buf`. SYS_WRITE returns the number of
    // bytes it did not write.
    let missing = unsafe { syscall!(WRITE, fd, buf.as_ptr(), buf.len()) };
    if missing == 0 { Ok(()) } else { Err("short write to results.bin") }
}

/// Fills the RAM between the statics and the current stack pointer with `PAINT`.
#[inline(never)]
fn paint_stack() {
    let bottom = core::ptr::addr_of!(__sheap) as usize;
    // The stack pointer may be read before this function pushes its own frame: stop short
    // of it by more than that frame.
    let end = cortex_m::register::msp::read() as usize - 64;
    let mut p = bottom;
    while p + 4 <= end {
        // SAFETY: [bottom, end) is RAM that no static and no live stack frame uses (nothing
        // runs below this function's frame, and there are no interrupts).
        unsafe { (p as *mut u32).write_volatile(PAINT) };
        p += 4;
    }
}

/// Bytes of stack used so far: from the initial stack pointer down to the lowest word
/// that no longer holds `PAINT`.
fn stack_high_water() -> usize {
    let bottom = core::ptr::addr_of!(__sheap) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut p = bottom;
    // SAFETY: reads of RAM between the statics and the top of the stack.
    while p < top && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    top - p
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("firmware error: hard fault at pc {:#010x}", frame.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
