//! Matrix kernels for dense layers: `C = A·B` where either operand may be a transposed
//! view, so one routine serves the forward pass (X·W), the weight gradient (Xᵀ·dZ) and
//! the input gradient (dZ·Wᵀ).
//!
//! The SIMD path packs B into column panels of `NR` floats and A into row panels of `MR`
//! floats (packing absorbs the transposes), then runs one register-blocked micro-kernel
//! over `MR x NR` tiles. Rayon splits the output into row blocks; every output element is
//! summed over `k` in the same order whatever the thread count, so results are
//! bit-identical with 1 or N threads.

pub mod lanes;
pub mod reference;
pub mod simd;

use std::cell::RefCell;

use rayon::prelude::*;

use lanes::{LANES, MR, NR, NV, V, load};

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn row_major(data: &'a [f32], cols: usize) -> MatRef<'a> {
        MatRef { data, rs: cols, cs: 1 }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> MatRef<'a> {
        MatRef { data: self.data, rs: self.cs, cs: self.rs }
    }

    #[inline(always)]
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    /// Panics unless a (rows, cols) matrix fits the backing storage.
    pub(crate) fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view of {rows}x{cols} overruns its {} values", self.data.len());
        }
    }
}

/// What the kernel does with the output it computes.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// `C = A·B`
    Store,
    /// `C += A·B`
    Accumulate,
    /// `C = A·B + bias`, bias broadcast over rows (the dense layer's `x·W + b`).
    Bias(&'a [f32]),
    /// `C = act(A·B + bias)`: a hidden layer's output in one pass.
    BiasAct(&'a [f32], Act),
    /// `C = fma(A·B, -lr, C)`: an SGD step with the gradient `A·B` applied as it is computed
    /// (the same bits as storing the gradient and then calling [`sgd_step`]).
    Descend(f32),
}

/// An elementwise rule that steps parameters with their gradient as the weight-gradient
/// product computes it, tile by tile: an optimizer's step. The kernels know only its shape
/// (up to two state arrays laid out like the parameters); the optimizers, above them,
/// implement it. Applied to a stored gradient, a rule must give the same bits as here.
pub trait ParamUpdate: Copy + Send + Sync {
    /// State arrays per parameter that the rule reads and writes: 0, 1 or 2.
    fn slots(&self) -> usize;
    /// `Some(lr)` when the rule is plain descent, `w -= lr·g` without state: the product then
    /// applies it with [`Epilogue::Descend`]'s code and bits.
    fn descent(&self) -> Option<f32>;
    /// The new `(w, s1, s2)` of a vector of parameters `w` with gradient `g` and state `s1`,
    /// `s2`; slots the rule does not use come back unchanged.
    fn apply<W: simd::Vector>(&self, g: W, w: W, s1: W, s2: W) -> (W, W, W);
}

/// The products without an update: no rule is ever applied.
#[derive(Clone, Copy)]
struct NoUpdate;

impl ParamUpdate for NoUpdate {
    fn slots(&self) -> usize {
        0
    }
    fn descent(&self) -> Option<f32> {
        None
    }
    fn apply<W: simd::Vector>(&self, _: W, w: W, s1: W, s2: W) -> (W, W, W) {
        (w, s1, s2)
    }
}

/// A hidden-layer activation, applied by [`Epilogue::BiasAct`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// `max(x, 0)`
    Relu,
    /// `1 / (1 + e^-x)`
    Sigmoid,
}

impl Act {
    /// The activation of each lane; every path that applies it goes through here, so a value
    /// gets the same bits wherever it is computed.
    #[inline(always)]
    pub fn apply<W: simd::Vector>(self, v: W) -> W {
        use simd::Vector;
        match self {
            Act::Relu => Vector::max(v, v.splat_like(0.0)),
            Act::Sigmoid => v.splat_like(1.0) / (v.splat_like(1.0) + Vector::exp(-v)),
        }
    }
}

thread_local! {
    static PACKED_B: RefCell<Vec<V>> = const { RefCell::new(Vec::new()) };
    static PACKED_A: RefCell<PackedA> = const { RefCell::new(PackedA::new()) };
}

/// A task's rows of A, packed one micro-tile after another, and each tile's steps with a
/// nonzero value (see [`note_step`]).
#[derive(Default)]
struct PackedA {
    /// Per micro-tile: `k * MR` floats.
    vals: Vec<f32>,
    /// Per micro-tile: `k` step numbers, of which the first `kept` are used.
    steps: Vec<u32>,
    /// Per micro-tile: steps kept.
    kept: Vec<usize>,
}

impl PackedA {
    const fn new() -> PackedA {
        PackedA { vals: Vec::new(), steps: Vec::new(), kept: Vec::new() }
    }
}

/// Splits the `m` output rows into rayon tasks: returns each task's first row, ascending.
///
/// Each task packs its rows of A once and sweeps every packed B panel over them, so a
/// task should span several micro-tiles (a B panel is read from L3 once and then reused
/// from L2) but not so many that its A block leaves L2. The count of tasks matters as much:
/// the same number per thread (three), so that no thread is left with one task more than
/// another (7 tasks of 72 rows on 2 threads cost 13% of the time), and micro-tiles spread
/// so that tasks differ by at most one (512 rows as five tasks of 96 and one of 32 left
/// one thread with 288 rows and the other 224: 2 threads ran 1.7x one, not 1.9x).
fn row_tasks(m: usize) -> impl Iterator<Item = usize> {
    const TASKS_PER_THREAD: usize = 3;
    const MAX_MICRO_TILES: usize = 12;
    let threads = rayon::current_num_threads().max(1);
    let micro = m.div_ceil(MR);
    let tasks = (TASKS_PER_THREAD * threads).max(micro.div_ceil(MAX_MICRO_TILES)).min(micro);
    (0..tasks).map(move |t| t * micro / tasks * MR)
}

/// Values of B up to which it is packed without the pool.
const SMALL_B: usize = 16 * 1024;

/// `C (m x n, row-major) = A (m x k) · B (k x n)`, then the epilogue; SIMD and parallel.
pub fn gemm(m: usize, n: usize, k: usize, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], epilogue: Epilogue<'_>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = simd::avx2_chosen() {
        return gemm_with_state::<_, NoUpdate, false>(t, m, n, k, a, b, c, [&mut [], &mut []], epilogue, NoUpdate);
    }
    gemm_with_state::<_, NoUpdate, false>(simd::Baseline, m, n, k, a, b, c, [&mut [], &mut []], epilogue, NoUpdate);
}

/// A step of `update` on `w` (m x n, row-major) with the gradient `A (m x k) · B (k x n)`:
/// each tile of the gradient updates its tile of `w` and of the state arrays (`state[s]` is
/// empty where `update` has no slot `s`, else laid out like `w`) as soon as it is computed.
#[allow(clippy::too_many_arguments)]
pub fn gemm_update<U: ParamUpdate>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    w: &mut [f32],
    state: [&mut [f32]; 2],
    update: U,
) {
    for (s, slot) in state.iter().enumerate() {
        let want = if s < update.slots() { m * n } else { 0 };
        assert_eq!(slot.len(), want, "optimizer state slot {s}");
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = simd::avx2_chosen() {
        return gemm_update_on(t, m, n, k, a, b, w, state, update);
    }
    gemm_update_on(simd::Baseline, m, n, k, a, b, w, state, update)
}

#[allow(clippy::too_many_arguments)]
fn gemm_update_on<I: simd::Isa, U: ParamUpdate>(
    isa: I,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    w: &mut [f32],
    state: [&mut [f32]; 2],
    update: U,
) {
    match update.descent() {
        // The study's SGD step, with its own epilogue's bits and code.
        Some(lr) => {
            gemm_with_state::<_, NoUpdate, false>(isa, m, n, k, a, b, w, state, Epilogue::Descend(lr), NoUpdate)
        }
        // (The epilogue is not read: `UPDATE` stores every tile through `update`.)
        None => gemm_with_state::<_, U, true>(isa, m, n, k, a, b, w, state, Epilogue::Store, update),
    }
}

/// Splits `s` after `at` values, or gives two empty slices when `s` is empty (an unused slot).
fn split_slot(s: &mut [f32], at: usize) -> (&mut [f32], &mut [f32]) {
    if s.is_empty() { (&mut [], &mut []) } else { s.split_at_mut(at) }
}

/// The product; `UPDATE` compiles the step of `update` in as the epilogue (and only it),
/// else `epilogue` is applied. The products without state get code of their own: with the
/// update's branch compiled into the same micro-kernel loop, LLVM allocated registers worse
/// and every epoch of the study's models took 1.6-1.8x as long.
#[allow(clippy::too_many_arguments)]
fn gemm_with_state<I: simd::Isa, U: ParamUpdate, const UPDATE: bool>(
    isa: I,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    state: [&mut [f32]; 2],
    epilogue: Epilogue<'_>,
    update: U,
) {
    assert!(c.len() >= m * n, "output holds {} values, needs {}", c.len(), m * n);
    a.check(m, k);
    b.check(k, n);
    if let Epilogue::Bias(bias) | Epilogue::BiasAct(bias, _) = epilogue {
        assert_eq!(bias.len(), n, "bias length");
    }
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    let mut local = Vec::new();
    PACKED_B.with(|cell| {
        // Re-entrant use (a gemm inside a parallel closure on this thread) gets its own buffer.
        let mut borrowed = cell.try_borrow_mut();
        let packed: &mut Vec<V> = match borrowed.as_mut() {
            Ok(v) => v,
            Err(_) => &mut local,
        };
        let need = panels * k.max(1) * NV;
        if packed.len() < need {
            packed.resize(need, V::ZERO);
        }
        let packed = &mut packed[..need];
        // A full panel of a row-major B is read where it lies: its NR floats of a k step
        // are contiguous, and each row task streams it from L2 either way. Not packing it
        // saves a parallel pass and its barrier, a tenth of the 131-MFLOP products on two
        // threads. Transposed B and a ragged last panel are packed.
        let direct = |jp: usize| b.cs == 1 && n - jp * NR >= NR;
        // A small B (the output layer's 10 columns) is packed on this thread: handing it to
        // the pool costs more than packing it.
        let serial = if k * n <= SMALL_B { panels } else { 1 };
        let panels_iter = packed.par_chunks_mut(k.max(1) * NV).with_min_len(serial).enumerate();
        panels_iter.filter(|&(jp, _)| !direct(jp)).for_each(|(jp, panel)| pack_b(b, k, n, jp * NR, panel));
        let packed: &[f32] = bytemuck::cast_slice(packed);

        let mut blocks = Vec::new();
        let mut rest = &mut c[..m * n];
        let [mut rest1, mut rest2] = state;
        let mut i0 = 0;
        for end in row_tasks(m).skip(1).chain([m]) {
            let (blk, tail) = rest.split_at_mut((end - i0) * n);
            let (s1, tail1) = split_slot(rest1, (end - i0) * n);
            let (s2, tail2) = split_slot(rest2, (end - i0) * n);
            blocks.push((i0, blk, s1, s2));
            (rest, rest1, rest2, i0) = (tail, tail1, tail2, end);
        }
        blocks.into_par_iter().for_each(|(i0, c_blk, s1_blk, s2_blk)| {
            let rows = c_blk.len() / n;
            PACKED_A.with(|cell| {
                let mut own = PackedA::new();
                let mut borrowed = cell.try_borrow_mut();
                let pa: &mut PackedA = match borrowed.as_mut() {
                    Ok(v) => v,
                    Err(_) => &mut own,
                };
                // Entered here, inside the thread-local's closure: code the path's
                // intrinsics inline into must be compiled inside `run`, and `LocalKey::with`
                // is not inlined into its caller.
                isa.run(
                    #[inline(always)]
                    || {
                        let micro = rows.div_ceil(MR);
                        if pa.vals.len() < micro * k * MR {
                            pa.vals.resize(micro * k * MR, 0.0);
                            pa.steps.resize(micro * k, 0);
                        }
                        pa.kept.clear();
                        for ip in 0..micro {
                            let vals = &mut pa.vals[ip * k * MR..(ip + 1) * k * MR];
                            let steps = &mut pa.steps[ip * k..(ip + 1) * k];
                            pa.kept.push(pack_a(a, k, i0 + ip * MR, (rows - ip * MR).min(MR), vals, steps));
                        }
                        for jp in 0..panels {
                            let j0 = jp * NR;
                            let (b_panel, ldb) = match direct(jp) {
                                true => (&b.data[j0..], b.rs),
                                false => (&packed[jp * k * NR..(jp + 1) * k * NR], NR),
                            };
                            let cols = (n - j0).min(NR);
                            for (ip, &kept) in pa.kept.iter().enumerate() {
                                let r0 = ip * MR;
                                let a_panel = &pa.vals[ip * k * MR..][..k * MR];
                                let steps = &pa.steps[ip * k..][..kept];
                                let at = r0 * n + j0;
                                let tile = &mut c_blk[at..];
                                let state = [slot_tail(s1_blk, at), slot_tail(s2_blk, at)];
                                micro_kernel::<I, U, UPDATE>(
                                    isa,
                                    k,
                                    a_panel,
                                    steps,
                                    b_panel,
                                    ldb,
                                    tile,
                                    state,
                                    n,
                                    (rows - r0).min(MR),
                                    cols,
                                    j0,
                                    epilogue,
                                    update,
                                );
                            }
                        }
                    },
                );
            })
        });
    });
}

/// `&mut s[at..]`, or an empty slice for an unused slot.
fn slot_tail(s: &mut [f32], at: usize) -> &mut [f32] {
    if s.is_empty() { s } else { &mut s[at..] }
}

/// Packs columns `j0..j0+NR` of B (all k rows) as `k` groups of `NV` vectors, zero-padded.
fn pack_b(b: MatRef<'_>, k: usize, n: usize, j0: usize, out: &mut [V]) {
    let cols = (n - j0).min(NR);
    if b.cs == 1 && cols == NR {
        // Row-major B, a full panel: NV vector copies per row (no per-row memcpy call).
        for (p, dst) in out.chunks_exact_mut(NV).enumerate().take(k) {
            let src = &b.data[p * b.rs + j0..][..NR];
            for (v, d) in dst.iter_mut().enumerate() {
                *d = load(&src[v * LANES..]);
            }
        }
        return;
    }
    let flat: &mut [f32] = bytemuck::cast_slice_mut(out);
    if cols < NR {
        flat[..k * NR].fill(0.0);
    }
    if b.cs == 1 {
        for (p, dst) in flat.chunks_exact_mut(NR).enumerate().take(k) {
            dst[..cols].copy_from_slice(&b.data[p * b.rs + j0..][..cols]);
        }
    } else {
        // Transposed B. Where its columns are contiguous along k (W2ᵀ in the backward
        // pass), in 8x8 squares: eight 8-float loads, `wide`'s register transpose (eight
        // unpacks, eight shuffles and eight lane permutes on AVX), eight 8-float stores. The
        // element-by-element loop took 2 cycles per value, so packing W2ᵀ cost as much as a
        // tenth of the product on two threads.
        use wide::f32x8;
        let full = if b.rs == 1 && cols == NR { k / 8 * 8 } else { 0 };
        for p0 in (0..full).step_by(8) {
            for c in (0..NR).step_by(8) {
                let columns: [f32x8; 8] = core::array::from_fn(|j| {
                    let src: [f32; 8] = b.data[(j0 + c + j) * b.cs + p0..][..8].try_into().unwrap();
                    f32x8::from(src)
                });
                for (p, row) in f32x8::transpose(columns).into_iter().enumerate() {
                    flat[(p0 + p) * NR + c..][..8].copy_from_slice(&row.to_array());
                }
            }
        }
        for j in 0..cols {
            let base = (j0 + j) * b.cs;
            for p in full..k {
                flat[p * NR + j] = b.data[base + p * b.rs];
            }
        }
    }
}

/// Packs rows `i0..i0+rows` of A (all k columns) as `k` groups of `MR` floats, zero-padded.
fn pack_a(a: MatRef<'_>, k: usize, i0: usize, rows: usize, out: &mut [f32], steps: &mut [u32]) -> usize {
    let out = &mut out[..k * MR];
    let mut kept = 0;
    if rows == MR && a.rs == 1 {
        // Transposed A, a full tile: the MR values of one k step are contiguous.
        for (p, dst) in out.chunks_exact_mut(MR).enumerate() {
            let src: &[f32; MR] = a.data[p * a.cs + i0..][..MR].try_into().unwrap();
            dst.copy_from_slice(src);
            note_step(src, p, steps, &mut kept);
        }
        return kept;
    }
    if rows == MR {
        // Row-major A, a full tile: one k step at a time, so that the writes are
        // contiguous and the MR row streams are read in step.
        let rows: [&[f32]; MR] = core::array::from_fn(|r| &a.data[(i0 + r) * a.rs..]);
        for (p, dst) in out.chunks_exact_mut(MR).enumerate() {
            let vals: [f32; MR] = core::array::from_fn(|r| rows[r][p * a.cs]);
            dst.copy_from_slice(&vals);
            note_step(&vals, p, steps, &mut kept);
        }
        return kept;
    }
    out.fill(0.0);
    for r in 0..rows {
        for p in 0..k {
            out[p * MR + r] = a.data[(i0 + r) * a.rs + p * a.cs];
        }
    }
    for (p, vals) in out.chunks_exact(MR).enumerate() {
        note_step(vals.try_into().unwrap(), p, steps, &mut kept);
    }
    kept
}

/// Adds step `p` to `steps` if one of its `MR` values is nonzero.
///
/// The micro-kernel skips the other steps: a zero step would add `0·b` to every
/// accumulator, which changes nothing, so the result has the same bits (unless that row of
/// B holds an infinity or NaN, whose product with zero is NaN; training checks its outputs
/// and weights for those itself). Inputs are often zero: half of Fashion-MNIST's pixels are
/// background, and a ReLU zeroes about half of its outputs.
#[inline(always)]
fn note_step(vals: &[f32; MR], p: usize, steps: &mut [u32], kept: &mut usize) {
    // The step is written at the next free slot, which moves on only if the step has a
    // nonzero value: no branch on the data. The OR of the bit patterns without sign bits is
    // zero for ±0 only (NaN is kept), and folds into a few vector instructions.
    steps[*kept] = p as u32;
    let bits = vals.iter().fold(0u32, |any, &v| any | v.to_bits()) & 0x7fff_ffff;
    *kept += usize::from(bits != 0);
}

/// One `MR x NR` output tile: `acc = Σ_p a[p, :]ᵀ b[p, :]`, then written with the epilogue.
///
/// `a`: the `k` packed steps of A, `MR` floats each, and `steps`: those to compute;
/// `b`: k rows of NR floats, `ldb` apart (packed, or B itself); `c`: tile's top-left, row
/// stride `ldc`; only `rows x cols` of the tile are written. `j0` is the tile's first
/// column (for bias).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn micro_kernel<I: simd::Isa, U: ParamUpdate, const UPDATE: bool>(
    isa: I,
    k: usize,
    a: &[f32],
    steps: &[u32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    state: [&mut [f32]; 2],
    ldc: usize,
    rows: usize,
    cols: usize,
    j0: usize,
    epilogue: Epilogue<'_>,
    update: U,
) {
    use simd::Vector;
    let mut acc = [[isa.splat(0.0); NV]; MR];
    #[inline(always)]
    fn step<I: simd::Isa>(isa: I, acc: &mut [[I::V; NV]; MR], ap: &[f32], bp: &[f32]) {
        let bv: [I::V; NV] = [isa.load(bp), isa.load(&bp[LANES..NR])];
        for r in 0..MR {
            let av = isa.splat(ap[r]);
            for v in 0..NV {
                acc[r][v] = av.mul_add(bv[v], acc[r][v]);
            }
        }
    }
    if steps.len() == k {
        // No step left out: B's rows in order, without the indirection (3-7% faster).
        for (ap, bp) in a.chunks_exact(MR).zip(b.chunks(ldb.max(1))) {
            step(isa, &mut acc, ap, bp);
        }
    } else {
        for &p in steps {
            let p = p as usize;
            step(isa, &mut acc, &a[p * MR..], &b[p * ldb..]);
        }
    }
    if UPDATE {
        store_update(isa, acc, update, c, state, ldc, rows, cols);
        return;
    }
    if rows == MR && cols == NR {
        // One loop per epilogue, each small enough to unroll completely: `acc` is then only
        // indexed by constants and stays in registers (a loop with the `match` inside is
        // not unrolled, and LLVM keeps `acc` in memory, zeroed by a memset per call).
        let dst = |r: usize, v: usize| r * ldc + v * LANES;
        match epilogue {
            Epilogue::Store => {
                for r in 0..MR {
                    for v in 0..NV {
                        isa.store(&mut c[dst(r, v)..], acc[r][v]);
                    }
                }
            }
            Epilogue::Accumulate => {
                for r in 0..MR {
                    for v in 0..NV {
                        let out = isa.load(&c[dst(r, v)..]) + acc[r][v];
                        isa.store(&mut c[dst(r, v)..], out);
                    }
                }
            }
            Epilogue::Bias(bias) => {
                let b: [I::V; NV] = core::array::from_fn(|v| isa.load(&bias[j0 + v * LANES..]));
                for r in 0..MR {
                    for v in 0..NV {
                        isa.store(&mut c[dst(r, v)..], acc[r][v] + b[v]);
                    }
                }
            }
            Epilogue::BiasAct(bias, act) => store_bias_act(isa, acc, &bias[j0..j0 + NR], act, c, ldc),
            Epilogue::Descend(lr) => {
                let neg = isa.splat(-lr);
                for r in 0..MR {
                    for v in 0..NV {
                        let out = acc[r][v].mul_add(neg, isa.load(&c[dst(r, v)..]));
                        isa.store(&mut c[dst(r, v)..], out);
                    }
                }
            }
        }
    } else {
        store_edge(isa, acc, c, ldc, rows, cols, j0, epilogue);
    }
}

/// A step of `update` on a tile (`rows x cols` of it) of the parameters `c` and their state
/// (row stride `ldc`) with the gradient `acc`.
///
/// Whole vectors always (a partial tile's rows go through a padded copy), so a parameter
/// gets the same bits wherever its tile falls. A rule's `match` on its kind is inside the
/// vector loop, but the rule is the same for the whole product and the branch predicts. Out
/// of line, and `acc` by value, like [`store_edge`].
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn store_update<I: simd::Isa, U: ParamUpdate>(
    isa: I,
    acc: [[I::V; NV]; MR],
    update: U,
    c: &mut [f32],
    state: [&mut [f32]; 2],
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    isa.run(
        #[inline(always)]
        || {
            let slots = update.slots();
            let [s1, s2] = state;
            let zero = isa.splat(0.0);
            if cols == NR {
                // Whole rows of the tile: straight from and to the arrays.
                for (r, g) in acc.iter().enumerate().take(rows) {
                    for (x, &g) in g.iter().enumerate() {
                        let at = r * ldc + x * LANES;
                        let m = if slots >= 1 { isa.load(&s1[at..]) } else { zero };
                        let v = if slots >= 2 { isa.load(&s2[at..]) } else { zero };
                        let (nw, nm, nv) = update.apply(g, isa.load(&c[at..]), m, v);
                        isa.store(&mut c[at..], nw);
                        if slots >= 1 {
                            isa.store(&mut s1[at..], nm);
                        }
                        if slots >= 2 {
                            isa.store(&mut s2[at..], nv);
                        }
                    }
                }
                return;
            }
            for (r, g) in acc.iter().enumerate().take(rows) {
                let at = r * ldc;
                let mut w = [0.0f32; NR];
                let mut m = [0.0f32; NR];
                let mut v = [0.0f32; NR];
                w[..cols].copy_from_slice(&c[at..at + cols]);
                if slots >= 1 {
                    m[..cols].copy_from_slice(&s1[at..at + cols]);
                }
                if slots >= 2 {
                    v[..cols].copy_from_slice(&s2[at..at + cols]);
                }
                for (x, &g) in g.iter().enumerate() {
                    let lane = x * LANES;
                    let (nw, nm, nv) =
                        update.apply(g, isa.load(&w[lane..]), isa.load(&m[lane..]), isa.load(&v[lane..]));
                    isa.store(&mut w[lane..], nw);
                    isa.store(&mut m[lane..], nm);
                    isa.store(&mut v[lane..], nv);
                }
                c[at..at + cols].copy_from_slice(&w[..cols]);
                if slots >= 1 {
                    s1[at..at + cols].copy_from_slice(&m[..cols]);
                }
                if slots >= 2 {
                    s2[at..at + cols].copy_from_slice(&v[..cols]);
                }
            }
        },
    )
}

/// A partial tile (`rows x cols` of it) into `c` (row stride `ldc`), with the epilogue.
///
/// Out of line, and `acc` by value: code here that takes the accumulators' address or
/// indexes them at run time would otherwise put them in memory in the micro-kernel's main
/// loop too (that ran the products at 40% of their speed).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn store_edge<I: simd::Isa>(
    isa: I,
    mut acc: [[I::V; NV]; MR],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    j0: usize,
    epilogue: Epilogue<'_>,
) {
    isa.run(
        #[inline(always)]
        || {
            use simd::Vector;
            if let Epilogue::BiasAct(bias, act) = epilogue {
                // On whole vectors, as in a full tile (the activation's bits are the vector's).
                let mut padded = [0.0f32; NR];
                padded[..cols].copy_from_slice(&bias[j0..j0 + cols]);
                let b: [I::V; NV] = core::array::from_fn(|v| isa.load(&padded[v * LANES..]));
                for row in acc.iter_mut() {
                    for (x, b) in row.iter_mut().zip(b) {
                        *x = act.apply(*x + b);
                    }
                }
            }
            for (r, acc_row) in acc.iter().enumerate().take(rows) {
                let mut vals = [0.0f32; NR];
                for (v, x) in acc_row.iter().enumerate() {
                    x.write(&mut vals[v * LANES..(v + 1) * LANES]);
                }
                let row = &mut c[r * ldc..r * ldc + cols];
                for (j, (dst, &val)) in row.iter_mut().zip(&vals).enumerate() {
                    *dst = match epilogue {
                        Epilogue::Store | Epilogue::BiasAct(..) => val,
                        Epilogue::Accumulate => *dst + val,
                        Epilogue::Bias(bias) => val + bias[j0 + j],
                        Epilogue::Descend(lr) => isa.fma(val, -lr, *dst),
                    };
                }
            }
        },
    )
}

/// A full tile's `act(acc + bias)` into `c` (row stride `ldc`).
///
/// Out of line, and `acc` by value, like [`store_edge`].
#[inline(never)]
fn store_bias_act<I: simd::Isa>(isa: I, acc: [[I::V; NV]; MR], bias: &[f32], act: Act, c: &mut [f32], ldc: usize) {
    isa.run(
        #[inline(always)]
        || {
            let b: [I::V; NV] = core::array::from_fn(|v| isa.load(&bias[v * LANES..]));
            for (r, row) in acc.iter().enumerate() {
                for (v, (&x, &b)) in row.iter().zip(&b).enumerate() {
                    isa.store(&mut c[r * ldc + v * LANES..], act.apply(x + b));
                }
            }
        },
    )
}

/// Column sums of `x` (shape (rows, out.len()) row-major), top to bottom: the bias gradient.
///
/// Parallel over column strips; each sum runs over rows in order, so the result does not
/// depend on the thread count.
pub fn column_sums(x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = simd::avx2_chosen() {
        return column_sums_on(t, x, out);
    }
    column_sums_on(simd::Baseline, x, out)
}

#[inline(always)]
fn column_sums_on<I: simd::Isa>(isa: I, x: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert_eq!(x.len() % n.max(1), 0, "x is not a whole number of rows");
    const STRIP: usize = 64;
    out.par_chunks_mut(STRIP).enumerate().for_each(|(s, o)| {
        isa.run(
            #[inline(always)]
            || {
                let j0 = s * STRIP;
                o.fill(0.0);
                for row in x.chunks_exact(n) {
                    let src = &row[j0..j0 + o.len()];
                    let mut oc = o.chunks_exact_mut(LANES);
                    let mut sc = src.chunks_exact(LANES);
                    for (ov, sv) in (&mut oc).zip(&mut sc) {
                        let sum = isa.load(ov) + isa.load(sv);
                        isa.store(ov, sum);
                    }
                    for (ov, sv) in oc.into_remainder().iter_mut().zip(sc.remainder()) {
                        *ov += sv;
                    }
                }
            },
        )
    });
}

/// `w -= lr * g`, elementwise: the SGD step.
pub fn sgd_step(w: &mut [f32], g: &[f32], lr: f32) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = simd::avx2_chosen() {
        // Fused, vectors and tail alike, as a build with FMA rounds them.
        return sgd_step_on(t, w, g, lr, f32::mul_add);
    }
    sgd_step_on(simd::Baseline, w, g, lr, lanes::mul_add)
}

#[inline(always)]
fn sgd_step_on<I: simd::Isa>(isa: I, w: &mut [f32], g: &[f32], lr: f32, fma: fn(f32, f32, f32) -> f32) {
    assert_eq!(w.len(), g.len());
    const CHUNK: usize = 16 * 1024;
    w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(w, g)| {
        isa.run(
            #[inline(always)]
            || {
                let neg = isa.splat(-lr);
                let mut wc = w.chunks_exact_mut(LANES);
                let mut gc = g.chunks_exact(LANES);
                for (wv, gv) in (&mut wc).zip(&mut gc) {
                    let out = isa.mul_add(isa.load(gv), neg, isa.load(wv));
                    isa.store(wv, out);
                }
                for (wv, gv) in wc.into_remainder().iter_mut().zip(gc.remainder()) {
                    *wv = fma(*gv, -lr, *wv);
                }
            },
        )
    });
}
