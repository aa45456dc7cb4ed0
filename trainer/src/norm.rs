//! Batch normalization (Ioffe & Szegedy, 2015) of a hidden layer, between its dense product
//! and its activation, as Keras's `Dense(use_bias=False) > BatchNormalization > Activation`
//! computes it.
//!
//! In training each unit's pre-activations `z` are normalized with the batch's mean and
//! variance, `ẑ = (z - μ) / √(σ² + ε)`, then scaled and shifted by learned `γ` and `β`:
//! `y = γ·ẑ + β`. Running averages of μ and σ² stand in for the batch's at inference, where a
//! norm is one affine map per unit; [`Norm::fold`] multiplies it into the dense layer before
//! it. The exported network is then a plain stack of dense layers: int8 calibration, the
//! model files, infer-core and the firmware never see a norm.
//!
//! The batch statistics and the backward pass sum over the rows of a batch. Each column's sums
//! run top to bottom on one thread (the columns are split into strips among threads), so a
//! run has the same bits at any thread count.

use rayon::prelude::*;

use crate::kernels::Act;
use crate::kernels::lanes::LANES;
use crate::kernels::simd::{self, Isa, Job, Vector};

/// Added to the variance before its square root (Keras's default).
pub const EPSILON: f32 = 1e-3;
/// Weight of the old value in the running averages (Keras's default; PyTorch's default,
/// `momentum=0.1`, is 0.9 in this form).
pub const MOMENTUM: f32 = 0.99;

/// One hidden layer's norm: learned scale and shift, and the running statistics.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Norm {
    /// γ, one per unit.
    pub gamma: Vec<f32>,
    /// β, one per unit.
    pub beta: Vec<f32>,
    /// Running mean of each unit's pre-activation.
    pub mean: Vec<f32>,
    /// Running variance of each unit's pre-activation (unbiased batch variances averaged).
    pub var: Vec<f32>,
}

impl Norm {
    /// γ = 1, β = 0, mean 0, variance 1: Keras's initial values.
    pub fn new(width: usize) -> Norm {
        Norm { gamma: vec![1.0; width], beta: vec![0.0; width], mean: vec![0.0; width], var: vec![1.0; width] }
    }

    /// Units normalized.
    pub fn width(&self) -> usize {
        self.gamma.len()
    }

    /// Whether all four vectors have `width` values.
    pub fn has_width(&self, width: usize) -> bool {
        [&self.gamma, &self.beta, &self.mean, &self.var].iter().all(|v| v.len() == width)
    }

    /// True when no value is NaN or infinite and every running variance is >= 0.
    pub fn is_finite(&self) -> bool {
        let values = self.gamma.iter().chain(&self.beta).chain(&self.mean).chain(&self.var);
        values.copied().all(f32::is_finite) && self.var.iter().all(|&v| v >= 0.0)
    }

    /// The inference map per unit, `y = z·scale + shift`: `scale = γ / √(var + ε)`,
    /// `shift = β - mean·scale`, computed in f64.
    pub fn affine(&self) -> (Vec<f64>, Vec<f64>) {
        let scale: Vec<f64> = self
            .gamma
            .iter()
            .zip(&self.var)
            .map(|(&g, &v)| f64::from(g) / (f64::from(v) + f64::from(EPSILON)).sqrt())
            .collect();
        let shift = self.beta.iter().zip(&self.mean).zip(&scale).map(|((&b, &m), s)| f64::from(b) - f64::from(m) * s);
        let shift = shift.collect();
        (scale, shift)
    }

    /// Multiplies the inference map into the dense layer before the norm, of weights `w`
    /// ((inputs, width) row-major) and biases `b`: `w[i][j] *= scale[j]`, `b[j] = shift[j]`.
    /// The layer has no bias of its own in training (the batch mean would cancel it), so its
    /// `b` is replaced.
    pub fn fold(&self, w: &mut [f32], b: &mut [f32]) {
        let width = self.width();
        assert!(b.len() == width && w.len().is_multiple_of(width.max(1)), "a norm of the layer's width");
        let (scale, shift) = self.affine();
        for row in w.chunks_exact_mut(width) {
            for (w, s) in row.iter_mut().zip(&scale) {
                *w = (f64::from(*w) * s) as f32;
            }
        }
        for (b, &s) in b.iter_mut().zip(&shift) {
            *b = s as f32;
        }
    }

    /// Moves the running statistics towards a batch's of `rows` rows.
    pub fn track(&mut self, batch: &BatchStats, rows: usize) {
        let unbiased = rows as f32 / (rows.max(2) - 1) as f32;
        for (m, &b) in self.mean.iter_mut().zip(&batch.mean) {
            *m = MOMENTUM * *m + (1.0 - MOMENTUM) * b;
        }
        for (v, &b) in self.var.iter_mut().zip(&batch.var) {
            *v = MOMENTUM * *v + (1.0 - MOMENTUM) * b * unbiased;
        }
    }
}

/// One batch's statistics per unit, kept by the forward pass for the backward pass.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    /// μ.
    pub mean: Vec<f32>,
    /// σ² (biased: divided by the rows).
    pub var: Vec<f32>,
    /// `1 / √(σ² + ε)`.
    pub inv: Vec<f32>,
}

impl BatchStats {
    fn resize(&mut self, n: usize) {
        for v in [&mut self.mean, &mut self.var, &mut self.inv] {
            v.resize(n, 0.0);
        }
    }
}

/// Columns of one task of the column sums: four cache lines of a row.
const STRIP: usize = 64;

/// `LANES` values of `s` from `at`, zeros past its end.
#[inline(always)]
fn get<I: Isa>(isa: I, s: &[f32], at: usize) -> I::V {
    if at + LANES <= s.len() {
        return isa.load(&s[at..]);
    }
    let mut v = [0.0f32; LANES];
    let n = LANES.min(s.len() - at);
    v[..n].copy_from_slice(&s[at..at + n]);
    isa.load(&v)
}

/// Stores the lanes of `v` that fall inside `s`, from `at`.
#[inline(always)]
fn put<I: Isa>(isa: I, s: &mut [f32], at: usize, v: I::V) {
    if at + LANES <= s.len() {
        return isa.store(&mut s[at..], v);
    }
    let mut all = [0.0f32; LANES];
    isa.store(&mut all, v);
    let n = LANES.min(s.len() - at);
    s[at..at + n].copy_from_slice(&all[..n]);
}

/// The training forward pass of a norm and the activation after it, for a batch of `rows`:
/// from `z` (rows, n) row-major, the dense layer's products, `h` gets `act(γ·ẑ + β)` and
/// `stats` the batch's μ, σ² and `1/√(σ² + ε)`. (ẑ is not stored: the backward pass
/// recomputes it from `z` and `stats`, which costs less than writing and reading it.)
/// Runs on the vector path [`simd::dispatch`] chooses.
pub fn forward(z: &[f32], h: &mut [f32], n: usize, norm: &Norm, act: Act, stats: &mut BatchStats) {
    let rows = z.len() / n.max(1);
    assert!(z.len() == rows * n && h.len() == rows * n && norm.has_width(n), "(rows, {n}) matrices");
    stats.resize(n);
    simd::dispatch(Forward { z, h, n, norm, act, stats });
}

/// [`forward`]'s work, on one vector path.
struct Forward<'a> {
    z: &'a [f32],
    h: &'a mut [f32],
    n: usize,
    norm: &'a Norm,
    act: Act,
    stats: &'a mut BatchStats,
}

impl Job for Forward<'_> {
    type Out = ();
    fn run<I: Isa>(self, isa: I) {
        let Forward { z, h, n, norm, act, stats } = self;
        let rows = z.len() / n.max(1);
        let inv_rows = 1.0 / rows.max(1) as f32;
        let BatchStats { mean, var, inv } = stats;
        // Sums of `z - c` and its squares in one pass, `c` being the first row: shifted by a
        // value of the column, the squares do not cancel as raw ones would.
        let first = &z[..n];
        let strips = mean.par_chunks_mut(STRIP).zip(var.par_chunks_mut(STRIP)).zip(inv.par_chunks_mut(STRIP));
        strips.enumerate().for_each(|(s, ((m, v), i))| {
            isa.run(
                #[inline(always)]
                || {
                    let (j0, width) = (s * STRIP, m.len());
                    let c = &first[j0..j0 + width];
                    let zero = isa.splat(0.0);
                    let (mut s1, mut s2) = ([zero; STRIP / LANES], [zero; STRIP / LANES]);
                    for row in z.chunks_exact(n) {
                        let row = &row[j0..j0 + width];
                        for (k, at) in (0..width).step_by(LANES).enumerate() {
                            let d = get(isa, row, at) - get(isa, c, at);
                            s1[k] = s1[k] + d;
                            s2[k] = d.mul_add(d, s2[k]);
                        }
                    }
                    let inv_rows = isa.splat(inv_rows);
                    for (k, at) in (0..width).step_by(LANES).enumerate() {
                        let shifted_mean = s1[k] * inv_rows;
                        let variance = shifted_mean.mul_neg_add(shifted_mean, s2[k] * inv_rows).max(zero);
                        put(isa, m, at, get(isa, c, at) + shifted_mean);
                        put(isa, v, at, variance);
                        put(isa, i, at, isa.splat(1.0) / (variance + isa.splat(EPSILON)).sqrt());
                    }
                },
            )
        });
        let (mean, inv, gamma, beta) = (&*mean, &*inv, &norm.gamma, &norm.beta);
        h.par_chunks_mut(n).zip(z.par_chunks(n)).with_min_len(16).for_each(|(h, z)| {
            isa.run(
                #[inline(always)]
                || {
                    for at in (0..n).step_by(LANES) {
                        let hat = (get(isa, z, at) - get(isa, mean, at)) * get(isa, inv, at);
                        put(isa, h, at, act.apply(hat.mul_add(get(isa, gamma, at), get(isa, beta, at))));
                    }
                },
            )
        });
    }
}

/// The backward pass of a norm whose forward pass read `z` and wrote `stats`: `dy` (rows,
/// n), the gradient with respect to its output `y`, becomes the gradient with respect to
/// its input `z`:
/// `dz = γ/√(σ² + ε) · (dy - (Σdy + ẑ·Σ(dy·ẑ)) / rows)`, sums over the batch per unit.
/// `dgamma` gets `Σ(dy·ẑ)`, `dbeta` gets `Σdy`. Runs on the vector path
/// [`simd::dispatch`] chooses.
pub fn backward(
    dy: &mut [f32],
    z: &[f32],
    n: usize,
    gamma: &[f32],
    stats: &BatchStats,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let rows = dy.len() / n.max(1);
    assert!(dy.len() == rows * n && z.len() == rows * n, "(rows, {n}) matrices");
    assert!(gamma.len() == n && dgamma.len() == n && dbeta.len() == n && stats.inv.len() == n);
    simd::dispatch(Backward { dy, z, n, gamma, stats, dgamma, dbeta });
}

/// [`backward`]'s work, on one vector path.
struct Backward<'a> {
    dy: &'a mut [f32],
    z: &'a [f32],
    n: usize,
    gamma: &'a [f32],
    stats: &'a BatchStats,
    dgamma: &'a mut [f32],
    dbeta: &'a mut [f32],
}

impl Job for Backward<'_> {
    type Out = ();
    fn run<I: Isa>(self, isa: I) {
        let Backward { dy, z, n, gamma, stats, dgamma, dbeta } = self;
        let rows = dy.len() / n.max(1);
        let (mean, inv) = (&stats.mean, &stats.inv);
        dgamma.par_chunks_mut(STRIP).zip(dbeta.par_chunks_mut(STRIP)).enumerate().for_each(|(s, (g, b))| {
            isa.run(
                #[inline(always)]
                || {
                    let (j0, width) = (s * STRIP, g.len());
                    let zero = isa.splat(0.0);
                    let (mut sg, mut sb) = ([zero; STRIP / LANES], [zero; STRIP / LANES]);
                    let (mean, inv) = (&mean[j0..j0 + width], &inv[j0..j0 + width]);
                    for (d, z) in dy.chunks_exact(n).zip(z.chunks_exact(n)) {
                        let (d, z) = (&d[j0..j0 + width], &z[j0..j0 + width]);
                        for (k, at) in (0..width).step_by(LANES).enumerate() {
                            let (dv, hat) =
                                (get(isa, d, at), (get(isa, z, at) - get(isa, mean, at)) * get(isa, inv, at));
                            sg[k] = dv.mul_add(hat, sg[k]);
                            sb[k] = sb[k] + dv;
                        }
                    }
                    for (k, at) in (0..width).step_by(LANES).enumerate() {
                        put(isa, g, at, sg[k]);
                        put(isa, b, at, sb[k]);
                    }
                },
            )
        });
        let inv_rows = 1.0 / rows.max(1) as f32;
        let (dgamma, dbeta) = (&*dgamma, &*dbeta);
        dy.par_chunks_mut(n).zip(z.par_chunks(n)).with_min_len(16).for_each(|(d, z)| {
            isa.run(
                #[inline(always)]
                || {
                    let inv_rows = isa.splat(inv_rows);
                    for at in (0..n).step_by(LANES) {
                        let hat = (get(isa, z, at) - get(isa, mean, at)) * get(isa, inv, at);
                        let mean_part = hat.mul_add(get(isa, dgamma, at), get(isa, dbeta, at)) * inv_rows;
                        put(isa, d, at, (get(isa, d, at) - mean_part) * get(isa, gamma, at) * get(isa, inv, at));
                    }
                },
            )
        });
    }
}

/// Plain scalar forms of [`forward`] and [`backward`], in f64: the oracle the fast ones are
/// tested against.
pub mod reference {
    use super::{EPSILON, Norm};

    /// `z` (rows, n) becomes `y = γ·ẑ + β` (no activation); returns ẑ and `1/√(σ² + ε)`.
    pub fn forward(z: &mut [f32], n: usize, norm: &Norm) -> (Vec<f64>, Vec<f64>) {
        let rows = z.len() / n;
        let mut hat = vec![0.0; z.len()];
        let mut invs = vec![0.0; n];
        for j in 0..n {
            let col = || (0..rows).map(|r| f64::from(z[r * n + j]));
            let mean = col().sum::<f64>() / rows as f64;
            let var = col().map(|v| (v - mean) * (v - mean)).sum::<f64>() / rows as f64;
            let inv = 1.0 / (var + f64::from(EPSILON)).sqrt();
            invs[j] = inv;
            for r in 0..rows {
                let h = (f64::from(z[r * n + j]) - mean) * inv;
                hat[r * n + j] = h;
                z[r * n + j] = (f64::from(norm.gamma[j]) * h + f64::from(norm.beta[j])) as f32;
            }
        }
        (hat, invs)
    }

    /// The gradient with respect to `z` from `dy`, and `(Σdy·ẑ, Σdy)` per unit.
    pub fn backward(dy: &[f32], hat: &[f64], inv: &[f64], n: usize, gamma: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let rows = dy.len() / n;
        let (mut dz, mut dg, mut db) = (vec![0.0; dy.len()], vec![0.0; n], vec![0.0; n]);
        for j in 0..n {
            for r in 0..rows {
                dg[j] += f64::from(dy[r * n + j]) * hat[r * n + j];
                db[j] += f64::from(dy[r * n + j]);
            }
            for r in 0..rows {
                let d = f64::from(dy[r * n + j]);
                dz[r * n + j] = f64::from(gamma[j]) * inv[j] * (d - (db[j] + hat[r * n + j] * dg[j]) / rows as f64);
            }
        }
        (dz, dg, db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values around `offset`, spread about ±1, different in every column.
    fn values(len: usize, seed: u32, offset: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9) | 1;
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                offset + (s % 2001) as f32 / 1000.0 - 1.0 + (i % 7) as f32 * 0.1
            })
            .collect()
    }

    fn norm(n: usize) -> Norm {
        let gamma = values(n, 3, 1.0);
        Norm { gamma, beta: values(n, 4, 0.0), ..Norm::new(n) }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn forward_and_backward_match_the_scalar_reference_on_every_path() {
        // `None`: the public functions, on the path they choose.
        forward_and_backward_on(None::<simd::Baseline>);
        forward_and_backward_on(Some(simd::Baseline));
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = simd::Avx2Fma::detect() {
            forward_and_backward_on(Some(t));
        }
    }

    fn forward_and_backward_on<I: Isa + std::fmt::Debug>(path: Option<I>) {
        // Widths of whole vectors and not, batches of one strip and of several, and
        // pre-activations far from 0 (the variance must not cancel).
        for (rows, n, offset) in [(50, 37, 0.0), (256, 130, 40.0), (7, 64, -3.0), (1, 5, 0.0)] {
            let z = values(rows * n, n as u32, offset);
            let norm = norm(n);
            let mut h = vec![f32::NAN; rows * n];
            let mut stats = BatchStats::default();
            match path {
                None => forward(&z, &mut h, n, &norm, Act::Relu, &mut stats),
                Some(isa) => {
                    stats.resize(n);
                    Forward { z: &z, h: &mut h, n, norm: &norm, act: Act::Relu, stats: &mut stats }.run(isa)
                }
            }
            let mut y = z.clone();
            let (hat, inv) = reference::forward(&mut y, n, &norm);
            for (i, (&h, &y)) in h.iter().zip(&y).enumerate() {
                assert!(
                    close(f64::from(h), f64::from(y.max(0.0)), 1e-4),
                    "{path:?} {rows}x{n} [{i}]: {h} vs relu({y})"
                );
            }
            for (j, (&fast, &slow)) in stats.inv.iter().zip(&inv).enumerate() {
                assert!(close(f64::from(fast), slow, 1e-4), "{rows}x{n} inv[{j}]");
            }

            let dy = values(rows * n, 9, 0.0);
            let mut dz = dy.clone();
            let (mut dg, mut db) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            let (dgamma, dbeta, gamma, stats) = (&mut dg, &mut db, &norm.gamma, &stats);
            match path {
                None => backward(&mut dz, &z, n, gamma, stats, dgamma, dbeta),
                Some(isa) => Backward { dy: &mut dz, z: &z, n, gamma, stats, dgamma, dbeta }.run(isa),
            }
            let (dz_ref, dg_ref, db_ref) = reference::backward(&dy, &hat, &inv, n, &norm.gamma);
            for j in 0..n {
                assert!(close(f64::from(dg[j]), dg_ref[j], 1e-3), "{rows}x{n} dgamma[{j}]: {} vs {}", dg[j], dg_ref[j]);
                assert!(close(f64::from(db[j]), db_ref[j], 1e-4), "{rows}x{n} dbeta[{j}]");
            }
            for (i, (&a, &b)) in dz.iter().zip(&dz_ref).enumerate() {
                assert!(close(f64::from(a), b, 1e-3), "{rows}x{n} dz[{i}]: {a} vs {b}");
            }
        }
    }

    #[test]
    fn the_running_statistics_move_one_hundredth_of_the_way_to_the_unbiased_batch_ones() {
        let mut norm = Norm::new(2);
        let batch = BatchStats { mean: vec![2.0, -1.0], var: vec![3.0, 0.0], inv: vec![0.0; 2] };
        norm.track(&batch, 4);
        assert!(close(f64::from(norm.mean[0]), 0.02, 1e-6) && close(f64::from(norm.mean[1]), -0.01, 1e-6));
        // 3·4/3 = 4 unbiased; 0.99·1 + 0.01·4.
        assert!(close(f64::from(norm.var[0]), 1.03, 1e-6) && close(f64::from(norm.var[1]), 0.99, 1e-6));
    }

    #[test]
    fn a_folded_layer_computes_the_norm_of_its_product() {
        let (inputs, n) = (5, 3);
        let (mut w, mut b) = (values(inputs * n, 1, 0.0), vec![0.0; n]);
        let norm = Norm { mean: vec![0.5, -2.0, 0.0], var: vec![0.25, 4.0, 1e-4], ..norm(n) };
        let x = values(inputs, 2, 0.5);
        let z: Vec<f64> = (0..n).map(|j| (0..inputs).map(|i| f64::from(x[i] * w[i * n + j])).sum()).collect();
        norm.fold(&mut w, &mut b);
        for (j, z) in z.iter().enumerate() {
            let expected = (z - f64::from(norm.mean[j])) / (f64::from(norm.var[j]) + f64::from(EPSILON)).sqrt()
                * f64::from(norm.gamma[j])
                + f64::from(norm.beta[j]);
            let folded: f64 = (0..inputs).map(|i| f64::from(x[i] * w[i * n + j])).sum::<f64>() + f64::from(b[j]);
            assert!(close(folded, expected, 1e-5), "unit {j}: {folded} vs {expected}");
        }
    }
}
