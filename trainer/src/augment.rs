//! Data for a recipe beyond the study's: a stratified validation split held out of the
//! training set, and random shifts and flips of training images.
//!
//! Both are deterministic for a seed. Augmentation draws each image's transform from a
//! counter-based hash of (seed, step, image), so it does not depend on threads or on where
//! a run was resumed, and is applied as the batch is gathered: no augmented copy of the
//! training set is ever stored.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::hash::mix;

/// Side of a Fashion-MNIST image.
pub const SIDE: usize = 28;

/// Random transforms of training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Largest shift, in pixels, along each axis (uniform in `-shift..=shift`; 0 for none).
    pub shift: u8,
    /// Mirror half of the images left to right.
    pub flip: bool,
}

impl Augment {
    /// True when it changes nothing.
    pub fn is_none(&self) -> bool {
        self.shift == 0 && !self.flip
    }

    /// The transform of image `image` at global step `step` of a run seeded with `seed`.
    pub fn draw(&self, seed: u64, step: u64, image: u32) -> Transform {
        let key = mix(mix(seed ^ 0x0061_7567_6d65_6e74) ^ step) ^ u64::from(image);
        let r = mix(key);
        let span = 2 * u64::from(self.shift) + 1;
        let dx = (r % span) as i32 - i32::from(self.shift);
        let dy = ((r >> 16) % span) as i32 - i32::from(self.shift);
        let flip = self.flip && (r >> 63) == 1;
        Transform { dx, dy, flip }
    }

    /// `none`, `shifts up to 2 px, horizontal flips`.
    pub fn describe(&self) -> String {
        match (self.shift, self.flip) {
            (0, false) => "none".into(),
            (0, true) => "horizontal flips".into(),
            (s, false) => format!("shifts up to {s} px"),
            (s, true) => format!("shifts up to {s} px, horizontal flips"),
        }
    }
}

/// One image's transform: mirror (when `flip`), then move `dx` pixels right and `dy` down,
/// filling with background (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform {
    /// Columns to the right (negative: left).
    pub dx: i32,
    /// Rows down (negative: up).
    pub dy: i32,
    /// Mirror left to right first.
    pub flip: bool,
}

impl Transform {
    /// `dst = transform(src)`, both `side x side` row-major.
    pub fn apply(&self, src: &[u8], dst: &mut [u8], side: usize) {
        assert!(src.len() == side * side && dst.len() == side * side, "images of {side}x{side}");
        let s = side as i32;
        for (r, row) in dst.chunks_exact_mut(side).enumerate() {
            let sr = r as i32 - self.dy;
            for (c, d) in row.iter_mut().enumerate() {
                let moved = c as i32 - self.dx;
                let sc = if self.flip { s - 1 - moved } else { moved };
                *d = match (0..s).contains(&sr) && (0..s).contains(&sc) {
                    true => src[(sr * s + sc) as usize],
                    false => 0,
                };
            }
        }
    }
}

/// Holds `n` of the images with these `labels` out for validation, stratified by class:
/// each class gives its share of `n` (largest remainders first), its images chosen by
/// `seed`. Returns the indices to train on and the held-out ones, both ascending.
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
    use crate::data::PIXELS;

    fn image(seed: u32) -> Vec<u8> {
        (0..PIXELS as u32).map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8 | 1).collect()
    }

    #[test]
    fn a_flipped_image_flips_back_and_mirrors_each_row() {
        let src = image(3);
        let flip = Transform { dx: 0, dy: 0, flip: true };
        let mut once = vec![0; PIXELS];
        let mut twice = vec![0; PIXELS];
        flip.apply(&src, &mut once, SIDE);
        flip.apply(&once, &mut twice, SIDE);
        assert_eq!(twice, src);
        assert_ne!(once, src);
        for r in 0..SIDE {
            for c in 0..SIDE {
                assert_eq!(once[r * SIDE + c], src[r * SIDE + SIDE - 1 - c]);
            }
        }
    }

    #[test]
    fn a_shift_moves_pixels_and_fills_the_border_with_background() {
        let src = image(5);
        let mut dst = vec![7; PIXELS];
        Transform { dx: 2, dy: -1, flip: false }.apply(&src, &mut dst, SIDE);
        for r in 0..SIDE {
            for c in 0..SIDE {
                let want = if c < 2 || r == SIDE - 1 { 0 } else { src[(r + 1) * SIDE + c - 2] };
                assert_eq!(dst[r * SIDE + c], want, "({r}, {c})");
            }
        }
        let mut back = vec![0; PIXELS];
        Transform { dx: -2, dy: 1, flip: false }.apply(&dst, &mut back, SIDE);
        for r in 1..SIDE {
            for c in 0..SIDE - 2 {
                assert_eq!(back[r * SIDE + c], src[r * SIDE + c], "({r}, {c}) comes back");
            }
        }
    }

    #[test]
    fn draws_are_deterministic_in_range_and_varied() {
        let a = Augment { shift: 2, flip: true };
        let draws: Vec<Transform> = (0..2000).map(|i| a.draw(42, i / 100, i as u32 % 100)).collect();
        let again: Vec<Transform> = (0..2000).map(|i| a.draw(42, i / 100, i as u32 % 100)).collect();
        assert_eq!(draws, again);
        assert!(draws.iter().all(|t| (-2..=2).contains(&t.dx) && (-2..=2).contains(&t.dy)));
        for v in -2..=2 {
            let dx = draws.iter().filter(|t| t.dx == v).count();
            let dy = draws.iter().filter(|t| t.dy == v).count();
            assert!((300..500).contains(&dx) && (300..500).contains(&dy), "shift {v}: {dx} and {dy} of 2000");
        }
        let flips = draws.iter().filter(|t| t.flip).count();
        assert!((900..1100).contains(&flips), "{flips} flips of 2000");
        let other: Vec<Transform> = (0..2000).map(|i| a.draw(43, i / 100, i as u32 % 100)).collect();
        assert!(draws.iter().zip(&other).filter(|(x, y)| x == y).count() < 400, "another seed, other draws");
        let none = Augment::default();
        assert!((0..100).all(|i| none.draw(1, i, 3) == Transform { dx: 0, dy: 0, flip: false }));
    }

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
