//! Plain scalar kernels: the oracle every fast kernel is tested against, and the fallback.

use super::MatRef;

/// `c = a · b` (or `c += a · b` when `accumulate`), with `c` of shape (m, n) row-major.
///
/// `a` has logical shape (m, k) and `b` (k, n); either may be a transposed view.
/// Sums run over `k` in order, one product at a time, with no fused multiply-add.
pub fn gemm(m: usize, n: usize, k: usize, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], accumulate: bool) {
    assert!(c.len() >= m * n, "output holds {} values, needs {}", c.len(), m * n);
    a.check(m, k);
    b.check(k, n);
    for i in 0..m {
        for j in 0..n {
            let mut sum = if accumulate { c[i * n + j] } else { 0.0 };
            for p in 0..k {
                sum += a.at(i, p) * b.at(p, j);
            }
            c[i * n + j] = sum;
        }
    }
}

/// Adds `bias` to every row of `c` (shape (rows, bias.len()) row-major).
pub fn add_bias(c: &mut [f32], bias: &[f32]) {
    for row in c.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Column sums of `x` (shape (rows, out.len()) row-major), summed top to bottom.
pub fn column_sums(x: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in x.chunks_exact(out.len()) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}
