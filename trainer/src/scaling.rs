//! Real-valued features are standardized for training, `(x - mean) / std` with statistics of
//! the training examples only, and the map is folded into the first layer when training
//! ends: the exported f32 model takes the raw values a sensor gives.

use crate::model::Mlp;

/// Each feature's mean and `1 / std` over the training examples. A feature that never
/// varies there is mapped to 0 (`inv_std` 0): it tells the classes nothing, and dividing by
/// its zero spread would make infinities.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// Mean of each feature.
    pub mean: Vec<f32>,
    /// One over each feature's standard deviation (population), 0 for a constant one.
    pub inv_std: Vec<f32>,
}

impl Standardizer {
    /// The statistics of `values` ((rows, width) row-major), summed in f64.
    pub fn fit(values: &[f32], width: usize) -> Standardizer {
        let rows = values.len() / width.max(1);
        let (mut sum, mut sq) = (vec![0.0f64; width], vec![0.0f64; width]);
        for row in values.chunks_exact(width) {
            for (j, &v) in row.iter().enumerate() {
                sum[j] += f64::from(v);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / rows.max(1) as f64).collect();
        for row in values.chunks_exact(width) {
            for (j, &v) in row.iter().enumerate() {
                let d = f64::from(v) - mean[j];
                sq[j] += d * d;
            }
        }
        let inv_std = sq
            .iter()
            .zip(&mean)
            .map(|(&s, &m)| {
                let std = (s / rows.max(1) as f64).sqrt();
                // Spread within rounding of the mean's magnitude is no spread.
                if std > 1e-6 * m.abs().max(1e-30) && std > 0.0 { (1.0 / std) as f32 } else { 0.0 }
            })
            .collect();
        Standardizer { mean: mean.iter().map(|&m| m as f32).collect(), inv_std }
    }

    /// `values` standardized ((rows, width) row-major).
    pub fn apply(&self, values: &[f32]) -> Vec<f32> {
        let w = self.mean.len();
        let mut out = values.to_vec();
        for row in out.chunks_exact_mut(w.max(1)) {
            for ((v, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.inv_std) {
                *v = (*v - m) * s;
            }
        }
        out
    }

    /// Folds the map into `model`'s first layer (no norms left to fold), which then takes
    /// raw values: `w'[i][j] = w[i][j]·inv_std[i]`, `b'[j] = b[j] - Σ_i mean[i]·inv_std[i]·w[i][j]`,
    /// computed in f64.
    pub fn fold(&self, model: &mut Mlp) {
        let layer = &mut model.layers[0];
        let n = layer.outputs;
        let mut shift = vec![0.0f64; n];
        for (i, row) in layer.w.chunks_exact_mut(n).enumerate() {
            let (m, s) = (f64::from(self.mean[i]), f64::from(self.inv_std[i]));
            for (j, w) in row.iter_mut().enumerate() {
                let scaled = f64::from(*w) * s;
                shift[j] += m * scaled;
                *w = scaled as f32;
            }
        }
        for (b, s) in layer.b.iter_mut().zip(shift) {
            *b = (f64::from(*b) - s) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Dense;

    #[test]
    fn standardized_features_have_mean_zero_and_unit_spread_and_a_constant_one_is_zero() {
        // Three features: spread, an offset and scaled one, a constant.
        let values: Vec<f32> = (0..100).flat_map(|i| [i as f32, 1000.0 + 3.0 * i as f32, 7.5]).collect();
        let s = Standardizer::fit(&values, 3);
        assert_eq!(s.inv_std[2], 0.0);
        let z = s.apply(&values);
        for j in 0..2 {
            let col: Vec<f64> = z.iter().skip(j).step_by(3).map(|&v| f64::from(v)).collect();
            let mean = col.iter().sum::<f64>() / 100.0;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 100.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "feature {j}: {mean} {var}");
        }
        assert!(z.iter().skip(2).step_by(3).all(|&v| v == 0.0));
    }

    #[test]
    fn a_folded_first_layer_on_raw_values_computes_the_layer_on_standardized_ones() {
        let values: Vec<f32> = (0..40).flat_map(|i| [i as f32 * 0.5 - 3.0, 200.0 - i as f32 * 7.0, 1.0]).collect();
        let s = Standardizer::fit(&values, 3);
        let layer = Dense { inputs: 3, outputs: 2, w: vec![0.3, -1.2, 0.8, 0.5, 2.0, -4.0], b: vec![0.1, -0.2] };
        let mut model =
            Mlp { activation: infer_core::Activation::Relu, layers: vec![layer.clone()], norms: Vec::new() };
        s.fold(&mut model);
        let z = s.apply(&values);
        for (raw, std) in values.chunks(3).zip(z.chunks(3)) {
            for j in 0..2 {
                let want: f64 =
                    (0..3).map(|i| f64::from(std[i] * layer.w[i * 2 + j])).sum::<f64>() + f64::from(layer.b[j]);
                let got: f64 = (0..3).map(|i| f64::from(raw[i]) * f64::from(model.layers[0].w[i * 2 + j])).sum::<f64>()
                    + f64::from(model.layers[0].b[j]);
                assert!((want - got).abs() < 1e-4 * want.abs().max(1.0), "{want} vs {got}");
            }
        }
    }
}
