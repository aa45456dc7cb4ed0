//! The Armv7E-M kernel (Cortex-M4/M7): `SMLAD`, two 16-bit multiply-accumulates per
//! instruction, on weights and inputs widened with `SXTB16`/`UXTB16`.
//!
//! For each block of up to 128 outputs the accumulators live in a stack array, and each
//! non-zero group of four inputs sweeps the block's 128 weight words in storage order:
//! per output, one load of four weights, two `SXTB16`, two `SMLAD`, and the accumulator's
//! load and store (about 1.4 instructions per multiply-accumulate with the loop unrolled).
//! `core::arch::arm`'s DSP intrinsics are unstable, hence one-instruction `asm!` blocks;
//! they cut the instructions per inference about fourfold against the scalar loop.

use super::layer::{Layer, Sparse, emit, emit_block, requant};
use crate::spec::{BLOCK, GROUP};
use core::arch::asm;

/// `acc + lo(a)·lo(b) + hi(a)·hi(b)` on signed 16-bit halves.
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let out: i32;
    // SAFETY: register-only arithmetic (it may set the Q flag, which nothing reads).
    unsafe {
        asm!("smlad {0}, {1}, {2}, {3}", lateout(reg) out, in(reg) a, in(reg) b, in(reg) acc, options(pure, nomem, nostack))
    };
    out
}

/// One-instruction byte-pair extensions: `$op {out}, {x}[, ror #8]`.
macro_rules! extend16 {
    ($($(#[$doc:meta])* $name:ident => $insn:literal;)*) => {$(
        $(#[$doc])*
        #[inline(always)]
        fn $name(x: u32) -> u32 {
            let out: u32;
            // SAFETY: register-only arithmetic.
            unsafe { asm!($insn, out = lateout(reg) out, x = in(reg) x, options(pure, nomem, nostack)) };
            out
        }
    )*};
}

extend16! {
    /// Bytes 0 and 2 of `x`, sign-extended to 16-bit halves.
    sxtb16 => "sxtb16 {out}, {x}";
    /// Bytes 1 and 3 of `x`, sign-extended to 16-bit halves.
    sxtb16_ror8 => "sxtb16 {out}, {x}, ror #8";
    /// Bytes 0 and 2 of `x`, zero-extended to 16-bit halves.
    uxtb16 => "uxtb16 {out}, {x}";
    /// Bytes 1 and 3 of `x`, zero-extended to 16-bit halves.
    uxtb16_ror8 => "uxtb16 {out}, {x}, ror #8";
}

/// `acc + Σ_{i<4} x[i] · w[i]`, with the four inputs given as `uxtb16` halves `x02`, `x13`.
#[inline(always)]
fn dot4(acc: i32, (x02, x13): (u32, u32), w: u32) -> i32 {
    smlad(x13, sxtb16_ror8(w), smlad(x02, sxtb16(w), acc))
}

/// Inputs `4g..4g + 4`, widened for [`dot4`].
#[inline(always)]
fn inputs(x: &[u8], g: u16) -> (u32, u32) {
    let g = g as usize * GROUP;
    let xs = u32::from_le_bytes(x[g..g + GROUP].try_into().unwrap());
    (uxtb16(xs), uxtb16_ror8(xs))
}

#[inline(always)]
fn word(w: &[u8]) -> u32 {
    u32::from_le_bytes(w[..GROUP].try_into().unwrap())
}

/// One output of [`sweep2`]: the next weight words of both groups (`wh[k]`, then
/// `wg[k]`, which advances `wg`) widened and multiply-accumulated into register `$a`.
macro_rules! output {
    ($a:literal) => {
        concat!(
            "ldr {w}, [{wg}, {apart}]\n",
            "sxtb16 {t}, {w}, ror #8\n",
            "sxtb16 {w}, {w}\n",
            "smlad {",
            $a,
            "}, {xh02}, {w}, {",
            $a,
            "}\n",
            "smlad {",
            $a,
            "}, {xh13}, {t}, {",
            $a,
            "}\n",
            "ldr {w}, [{wg}], #4\n",
            "sxtb16 {t}, {w}, ror #8\n",
            "sxtb16 {w}, {w}\n",
            "smlad {",
            $a,
            "}, {xg02}, {w}, {",
            $a,
            "}\n",
            "smlad {",
            $a,
            "}, {xg13}, {t}, {",
            $a,
            "}",
        )
    };
}

/// `acc[k] += dot4(xg, wg[k]) + dot4(xh, wh[k])` for every `k`: the inner loop, four
/// outputs per iteration. In assembly because LLVM spills the eight live values it
/// needs (measured: 1.69 instructions per multiply-accumulate as Rust, 1.44 here).
#[inline(always)]
fn sweep2(acc: &mut [i32], xg: (u32, u32), xh: (u32, u32), wg: &[u8], wh: &[u8]) {
    assert!(acc.len() % 4 == 0 && wg.len() == GROUP * acc.len() && wh.len() == wg.len());
    if acc.is_empty() {
        return;
    }
    let end = acc.as_mut_ptr_range().end;
    // The offset of `wh` from `wg`; both advance together.
    let apart = (wh.as_ptr() as usize).wrapping_sub(wg.as_ptr() as usize);
    // SAFETY: the loop reads `acc.len()` words from `wg` and `wh` (unaligned single-word
    // loads, which Armv7E-M allows) and reads and writes the `acc.len()` words of `acc`,
    // which is 4-aligned as LDRD/STRD need; the lengths are checked above.
    unsafe {
        asm!(
            "2:",
            "ldrd {a0}, {a1}, [{acc}]",
            output!("a0"),
            output!("a1"),
            "strd {a0}, {a1}, [{acc}], #8",
            "ldrd {a0}, {a1}, [{acc}]",
            output!("a0"),
            output!("a1"),
            "strd {a0}, {a1}, [{acc}], #8",
            "cmp {acc}, {end}",
            "bne 2b",
            acc = inout(reg) acc.as_mut_ptr() => _,
            end = in(reg) end,
            wg = inout(reg) wg.as_ptr() => _,
            apart = in(reg) apart,
            xg02 = in(reg) xg.0,
            xg13 = in(reg) xg.1,
            xh02 = in(reg) xh.0,
            xh13 = in(reg) xh.1,
            a0 = out(reg) _,
            a1 = out(reg) _,
            w = out(reg) _,
            t = out(reg) _,
            options(nostack),
        );
    }
}

pub(super) fn dense(layer: &Layer<'_>, x: &[u8], groups: &[u16], act: &mut [u8], scores: &mut [i32]) {
    let mut j0 = 0;
    while j0 < layer.outputs {
        let width = BLOCK.min(layer.outputs - j0);
        let block = &layer.weights[j0 * layer.inputs..][..width * layer.inputs];
        let row = |g: u16| &block[g as usize * width * GROUP..][..width * GROUP];
        let mut acc = [0i32; BLOCK];
        let acc = &mut acc[..width];
        // Two groups per sweep, so each accumulator is loaded and stored once per
        // eight multiply-accumulates; four outputs per step.
        let (pairs, odd) = groups.as_chunks::<2>();
        for &[g, h] in pairs {
            let (xg, xh) = (inputs(x, g), inputs(x, h));
            let (wg, wh) = (row(g), row(h));
            let quads = width / 4 * 4;
            sweep2(&mut acc[..quads], xg, xh, &wg[..quads * GROUP], &wh[..quads * GROUP]);
            let tail = acc[quads..].iter_mut();
            for ((a, wg), wh) in
                tail.zip(wg[quads * GROUP..].chunks_exact(GROUP)).zip(wh[quads * GROUP..].chunks_exact(GROUP))
            {
                *a = dot4(dot4(*a, xg, word(wg)), xh, word(wh));
            }
        }
        for &g in odd {
            let xg = inputs(x, g);
            for (a, w) in acc.iter_mut().zip(row(g).chunks_exact(GROUP)) {
                *a = dot4(*a, xg, word(w));
            }
        }
        for (k, &sum) in acc.iter().enumerate() {
            let j = j0 + k;
            emit(layer, j, requant(sum, layer.bias(j), layer.mult(j), layer.r, layer.s), act, scores);
        }
        j0 += width;
    }
}

/// One kept block of [`scatter`]: the next index `k` and, already in `$w`, its four weights;
/// `acc[k] += dot4(x, w)`.
macro_rules! kept {
    ($w:literal) => {
        concat!(
            "ldrb {k}, [{ip}], #1\n",
            "ldr {a}, [{acc}, {k}, lsl #2]\n",
            "sxtb16 {t}, {",
            $w,
            "}, ror #8\n",
            "sxtb16 {",
            $w,
            "}, {",
            $w,
            "}\n",
            "smlad {a}, {x02}, {",
            $w,
            "}, {a}\n",
            "smlad {a}, {x13}, {t}, {a}\n",
            "str {a}, [{acc}, {k}, lsl #2]",
        )
    };
}

/// `acc[k] += dot4(x, w)` for the `n` kept blocks of one group: each block's output `k`
/// (an index below 128) at `*ip`, its four weights at `*wp`; both pointers advance past
/// them. Two blocks per iteration, 9 instructions a block (indices strictly increase
/// within a group, so the two never alias). (Loading two blocks' weights with one `LDRD`
/// saves half an instruction a block, but needs them word-aligned, and a second path for
/// models that are not cost 2.5 KB of code.)
///
/// # Safety
/// `ip` points to `n` readable indices, each below 128, and `wp` to `4n` readable bytes.
#[inline(always)]
unsafe fn scatter(acc: &mut [i32; BLOCK], (x02, x13): (u32, u32), ip: &mut *const u8, wp: &mut *const u8, n: u32) {
    // SAFETY: the caller's contract: the loop reads the `n` indices and `n` weight words
    // (single-word loads, which may be unaligned on Armv7E-M), and reads and writes `acc[k]`
    // for each index `k < 128`. `LSRS` sets Z for no pairs, which the odd block's
    // instructions leave alone.
    unsafe {
        asm!(
            "lsrs {n}, {n}, #1",
            "bcc 3f",
            "ldr {w}, [{wp}], #4",
            kept!("w"),
            "3:",
            "beq 4f",
            "2:",
            "ldr {w}, [{wp}], #4",
            kept!("w"),
            "ldr {w}, [{wp}], #4",
            kept!("w"),
            "subs {n}, {n}, #1",
            "bne 2b",
            "4:",
            n = inout(reg) n => _,
            ip = inout(reg) *ip,
            wp = inout(reg) *wp,
            acc = in(reg) acc.as_mut_ptr(),
            x02 = in(reg) x02,
            x13 = in(reg) x13,
            k = out(reg) _,
            w = out(reg) _,
            t = out(reg) _,
            a = out(reg) _,
            options(nostack),
        );
    }
}

/// A sparse layer: for each block of up to 128 outputs, each group of four inputs that is
/// not all zero adds its products to the outputs of its kept blocks ([`scatter`]).
pub(super) fn sparse(layer: &Layer<'_>, sparse: &Sparse<'_>, x: &[u8], act: &mut [u8], scores: &mut [i32]) {
    let groups = layer.inputs / GROUP;
    assert!(x.len() >= layer.inputs && layer.weights.len() == GROUP * sparse.indices.len());
    let (mut ip, mut wp) = (sparse.indices.as_ptr(), layer.weights.as_ptr());
    let mut j0 = 0;
    for counts in sparse.counts.chunks_exact(groups) {
        let width = BLOCK.min(layer.outputs - j0);
        let mut acc = [0i32; BLOCK];
        let (mut cp, end, mut xp) = (counts.as_ptr(), counts.as_ptr_range().end, x.as_ptr());
        while cp != end {
            // SAFETY: `cp` walks the block's `groups` counts and `xp` the layer's `groups`
            // words of input (`x` holds at least `layer.inputs` bytes, asserted above).
            let (count, xs) = unsafe { (*cp, xp.cast::<u32>().read_unaligned()) };
            // SAFETY: one past the last count and word at most.
            unsafe { (cp, xp) = (cp.add(1), xp.add(GROUP)) };
            if count == 0 {
                continue;
            }
            if xs == 0 {
                // SAFETY: within the indices and weights (the counts add up to them, as
                // `Sparse::check` made sure when the model was read).
                unsafe {
                    ip = ip.add(usize::from(count));
                    wp = wp.add(GROUP * usize::from(count));
                }
            } else {
                // SAFETY: `Sparse::check` made sure, when the model was read, that the
                // counts add up to the indices (and the weights, four bytes each, as
                // asserted above) and that every index is below its block's width.
                unsafe { scatter(&mut acc, (uxtb16(xs), uxtb16_ror8(xs)), &mut ip, &mut wp, count.into()) };
            }
        }
        emit_block(layer, j0, &acc[..width], act, scores);
        j0 += width;
    }
}

/// An int4 layer ([`super`]'s layout: two blocks a word, the even one in the low four bits
/// of each byte): for each block of up to 128 outputs, each group of four inputs that is
/// not all zero adds its blocks' products by [`scatter4`]: a sparse layer's kept blocks
/// ([`sparse`]'s walk), a dense layer's `width` blocks as if it kept every one (9.5
/// instructions a block, against about 6 for a dense int8 one; a sweep of its own would
/// cost another 1.5 KB of code). One function for both, so that the requantization is
/// compiled once.
#[inline(never)]
pub(super) fn int4(layer: &Layer<'_>, x: &[u8], groups: &[u16], act: &mut [u8], scores: &mut [i32]) {
    let n_groups = layer.inputs / GROUP;
    let blocks = layer.sparse.map_or(n_groups * layer.outputs, |s| s.indices.len());
    assert!(x.len() >= layer.inputs && layer.weights.len() >= GROUP * blocks.div_ceil(2));
    let (weights, mut j0) = (layer.weights.as_ptr(), 0);
    // A sparse layer's next group's first kept block.
    let mut at = 0usize;
    while j0 < layer.outputs {
        let width = BLOCK.min(layer.outputs - j0);
        let mut acc = [0i32; BLOCK];
        match layer.sparse {
            Some(sparse) => {
                let counts = &sparse.counts[j0 / BLOCK * n_groups..][..n_groups];
                for (xs, &count) in x.chunks_exact(GROUP).zip(counts) {
                    let xs = word(xs);
                    if count != 0 && xs != 0 {
                        // SAFETY: `Sparse::check` made sure, when the model was read, that
                        // the counts add up to the indices (`at + count <= blocks`) and that
                        // every index is below its block's width; the layout gives the kept
                        // blocks their words (asserted above).
                        unsafe {
                            let (ip, wp) = (sparse.indices.as_ptr().add(at), weights.add(at / 2 * GROUP));
                            scatter4(&mut acc, (uxtb16(xs), uxtb16_ror8(xs)), ip, wp, count.into(), at % 2 == 1);
                        }
                    }
                    at += usize::from(count);
                }
            }
            None => {
                // The output block's first block of four weights: a block per group of
                // each of the `j0` outputs before it.
                let first = j0 * n_groups;
                for &g in groups {
                    let start = first + usize::from(g) * width;
                    // SAFETY: group `g` (below inputs / 4, as `nonzero_groups` lists them)
                    // of this output block holds blocks `start..start + width`, within the
                    // layer's (asserted above); `width` indices of EVERY_OUTPUT, below 128.
                    unsafe {
                        let (ip, wp) = (EVERY_OUTPUT.as_ptr(), weights.add(start / 2 * GROUP));
                        scatter4(&mut acc, inputs(x, g), ip, wp, width as u32, start % 2 == 1);
                    }
                }
            }
        }
        emit_block(layer, j0, &acc[..width], act, scores);
        j0 += width;
    }
}

/// The outputs of a block of 128, in order: the indices of a dense int4 layer's group,
/// whose blocks are every output's.
static EVERY_OUTPUT: [u8; BLOCK] = {
    let mut out = [0u8; BLOCK];
    let mut k = 0;
    while k < BLOCK {
        out[k] = k as u8;
        k += 1;
    }
    out
};

/// `acc[k] += dot4(x, w)` for the `n` kept blocks of one group of an int4 layer: each
/// block's output `k` (an index below 128) at `*ip`, the blocks two to a word from `wp`, the
/// first one the high half of `*wp` if `odd`. 9.5 instructions a block, [`scatter`]'s 9 and
/// the unpacking (a shift and a mask for the low halves, a mask for the high ones).
///
/// # Safety
/// `ip` points to `n` readable indices, each below 128, and `wp` to the `(odd + n + 1) / 2`
/// readable words that hold the blocks.
#[inline(never)]
unsafe fn scatter4(acc: &mut [i32; BLOCK], (x02, x13): (u32, u32), ip: *const u8, wp: *const u8, n: u32, odd: bool) {
    // SAFETY: the caller's contract: the loop reads the `n` indices and the words holding
    // the `n` blocks (single-word loads, which may be unaligned on Armv7E-M), and reads and
    // writes `acc[k]` for each index `k < 128`. `n` arrives doubled with `odd` below: `LSRS`
    // moves `odd` into the carry. Past the pairs `n` is -1 (one block left, the low half of
    // the next word) or -2 (none): `LSLS #31` leaves Z clear for -1.
    unsafe {
        asm!(
            "lsrs {n}, {n}, #1",
            "bcc 5f",
            "ldr {w}, [{wp}], #4",
            "bic {w}, {w}, #0x0F0F0F0F",
            kept!("w"),
            "subs {n}, {n}, #1",
            "5:",
            "subs {n}, {n}, #2",
            "bcc 7f",
            "6:",
            "ldr {w}, [{wp}], #4",
            "lsl {v}, {w}, #4",
            "bic {v}, {v}, #0x0F0F0F0F",
            kept!("v"),
            "bic {w}, {w}, #0x0F0F0F0F",
            kept!("w"),
            "subs {n}, {n}, #2",
            "bcs 6b",
            "7:",
            "lsls {n}, {n}, #31",
            "beq 9f",
            "ldr {w}, [{wp}]",
            "lsl {w}, {w}, #4",
            "bic {w}, {w}, #0x0F0F0F0F",
            kept!("w"),
            "9:",
            n = inout(reg) (n << 1) | u32::from(odd) => _,
            ip = inout(reg) ip => _,
            wp = inout(reg) wp => _,
            acc = in(reg) acc.as_mut_ptr(),
            x02 = in(reg) x02,
            x13 = in(reg) x13,
            k = out(reg) _,
            w = out(reg) _,
            v = out(reg) _,
            t = out(reg) _,
            a = out(reg) _,
            options(nostack),
        );
    }
}
