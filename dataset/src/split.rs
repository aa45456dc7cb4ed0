//! Splits of a dataset by seed: stratified by class, so that each part holds each class
//! in proportion.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The SplitMix64 finalizer: decorrelates nearby keys such as (seed, step, layer, row).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Holds `n` of the examples with these `labels` out, stratified by class: each class gives
/// its share of `n` (largest remainders first), its examples chosen by `seed`. Returns the
/// indices kept and the held-out ones, both ascending.
pub fn stratified_holdout(labels: &[u8], n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let n = n.min(labels.len());
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); 256];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y as usize].push(i as u32);
    }
    // Quotas: floor of the exact share, then one more for the largest remainders (ties to
    // the lower class).
    let total = labels.len().max(1);
    let mut quota: Vec<usize> = by_class.iter().map(|c| c.len() * n / total).collect();
    let mut order: Vec<usize> = (0..by_class.len()).filter(|&c| !by_class[c].is_empty()).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(by_class[c].len() * n % total), c));
    let short = n - quota.iter().sum::<usize>();
    for &c in order.iter().take(short) {
        quota[c] += 1;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ 0x0068_6f6c_646f_7574));
    let mut held = Vec::with_capacity(n);
    for (class, mut members) in by_class.into_iter().enumerate() {
        members.shuffle(&mut rng);
        held.extend_from_slice(&members[..quota[class]]);
    }
    held.sort_unstable();
    let mut is_held = vec![false; labels.len()];
    for &i in &held {
        is_held[i as usize] = true;
    }
    let kept = (0..labels.len() as u32).filter(|&i| !is_held[i as usize]).collect();
    (kept, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holdout_is_disjoint_stratified_and_deterministic() {
        // 10 classes of unequal sizes: 300, 330, ..., 570.
        let labels: Vec<u8> = (0..10u8).flat_map(|c| std::iter::repeat_n(c, 300 + 30 * c as usize)).collect();
        let mut shuffled = labels.clone();
        shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(1));
        let (train, held) = stratified_holdout(&shuffled, 1000, 7);
        assert_eq!(held.len(), 1000);
        assert_eq!(train.len() + held.len(), shuffled.len());
        let mut all: Vec<u32> = train.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..shuffled.len() as u32).collect::<Vec<_>>(), "disjoint and complete");
        assert!(train.windows(2).all(|w| w[0] < w[1]) && held.windows(2).all(|w| w[0] < w[1]));
        for c in 0..10u8 {
            let share = (300 + 30 * c as usize) as f64 * 1000.0 / shuffled.len() as f64;
            let got = held.iter().filter(|&&i| shuffled[i as usize] == c).count() as f64;
            assert!((got - share).abs() < 1.0, "class {c}: {got} held, share {share}");
        }
        assert_eq!(stratified_holdout(&shuffled, 1000, 7), (train.clone(), held.clone()), "same seed, same split");
        let (_, other) = stratified_holdout(&shuffled, 1000, 8);
        assert!(other.iter().filter(|i| held.binary_search(i).is_ok()).count() < 400, "another seed, another split");
    }
}
