//! Random shifts and flips of training images, for a recipe beyond the study's.
//!
//! Deterministic for a seed: each image's transform is drawn from a counter-based hash of
//! (seed, step, image), so it does not depend on threads or on where a run was resumed, and
//! is applied as the batch is gathered: no augmented copy of the training set is ever
//! stored. Images only: a table's columns have no left and right.

use crate::hash::mix;

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
    /// `dst = transform(src)`, both images of `[rows, cols]` row-major.
    pub fn apply(&self, src: &[u8], dst: &mut [u8], [rows, cols]: [usize; 2]) {
        assert!(src.len() == rows * cols && dst.len() == rows * cols, "images of {rows}x{cols}");
        let (h, w) = (rows as i32, cols as i32);
        for (r, row) in dst.chunks_exact_mut(cols).enumerate() {
            let sr = r as i32 - self.dy;
            for (c, d) in row.iter_mut().enumerate() {
                let moved = c as i32 - self.dx;
                let sc = if self.flip { w - 1 - moved } else { moved };
                *d = match (0..h).contains(&sr) && (0..w).contains(&sc) {
                    true => src[(sr * w + sc) as usize],
                    false => 0,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDE: usize = 28;
    const PIXELS: usize = SIDE * SIDE;

    fn image(seed: u32) -> Vec<u8> {
        (0..PIXELS as u32).map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8 | 1).collect()
    }

    #[test]
    fn a_flipped_image_flips_back_and_mirrors_each_row() {
        let src = image(3);
        let flip = Transform { dx: 0, dy: 0, flip: true };
        let mut once = vec![0; PIXELS];
        let mut twice = vec![0; PIXELS];
        flip.apply(&src, &mut once, [SIDE, SIDE]);
        flip.apply(&once, &mut twice, [SIDE, SIDE]);
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
        Transform { dx: 2, dy: -1, flip: false }.apply(&src, &mut dst, [SIDE, SIDE]);
        for r in 0..SIDE {
            for c in 0..SIDE {
                let want = if c < 2 || r == SIDE - 1 { 0 } else { src[(r + 1) * SIDE + c - 2] };
                assert_eq!(dst[r * SIDE + c], want, "({r}, {c})");
            }
        }
        let mut back = vec![0; PIXELS];
        Transform { dx: -2, dy: 1, flip: false }.apply(&dst, &mut back, [SIDE, SIDE]);
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
}
