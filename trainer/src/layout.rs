//! How training lays out Fashion-MNIST's pixels and gathers its batches.
//!
//! None of it changes what is learned: the first layer's weight rows move with the pixels,
//! and a batch holds the same images in another order. It lets the first layer's products
//! skip more zeros: pixels in 3x4 patches ([`patch_order`]), batches of similar images
//! ([`silhouette_keys`]), and mirrored images read straight from the laid-out pixels.

use rayon::prelude::*;

use crate::augment::{Augment, SIDE};
use crate::data::{PIXELS, Split};
use crate::model::Mlp;

/// The order in which training lays out an image's pixels: 3x4 patches, row by row of
/// patches, then the last image row. Returns the image pixel at each position.
///
/// The weight gradient of the first layer is `Xᵀ·dZ`, whose micro-tiles are twelve
/// consecutive pixels of this order; a patch of background is all zero, and the product
/// skips it: 32% of the (pixel tile, image) steps, against 20% for twelve pixels of a row.
pub fn patch_order() -> [u16; PIXELS] {
    let mut order = [0u16; PIXELS];
    let mut at = 0;
    for r0 in (0..SIDE - 1).step_by(3) {
        for c0 in (0..SIDE).step_by(4) {
            for r in r0..r0 + 3 {
                for c in c0..c0 + 4 {
                    order[at] = (r * SIDE + c) as u16;
                    at += 1;
                }
            }
        }
    }
    for p in (SIDE - 1) * SIDE..PIXELS {
        order[at] = p as u16;
        at += 1;
    }
    order
}

/// A sort key per image that puts images with similar backgrounds next to each other:
/// the class, then the count of zero pixels.
///
/// Each batch is ordered by it (the batch holds the same images, so the gradient is the
/// same sum, in another order). The first layer's product then finds more pixels that are
/// zero in all twelve images of a micro-tile, and skips them: 27% of the steps instead of
/// 10% in random order.
pub fn silhouette_keys(split: &Split) -> Vec<u16> {
    split
        .pixels
        .par_chunks(PIXELS)
        .zip(split.labels.par_iter())
        .map(|(img, &label)| u16::from(label) << 10 | img.iter().filter(|&&p| p == 0).count() as u16)
        .collect()
}

/// Training's pixel order ([`patch_order`]), and where each pixel of a mirrored image is in
/// it.
pub struct Layout {
    /// The image pixel at each position.
    order: [u16; PIXELS],
    /// Position `j` of a mirrored image laid out in `order` holds position `mirrored[j]` of
    /// the image laid out in `order`.
    mirrored: [u16; PIXELS],
}

impl Default for Layout {
    fn default() -> Layout {
        Layout::new(patch_order())
    }
}

impl Layout {
    /// Pixels laid out in `order` (the image pixel at each position).
    pub fn new(order: [u16; PIXELS]) -> Layout {
        let mut at = [0u16; PIXELS];
        for (j, &p) in order.iter().enumerate() {
            at[p as usize] = j as u16;
        }
        let mirrored = order.map(|p| {
            let (r, c) = (p as usize / SIDE, p as usize % SIDE);
            at[r * SIDE + SIDE - 1 - c]
        });
        Layout { order, mirrored }
    }

    /// The 8-bit pixels of `split`'s images, in `images` order, each laid out.
    pub fn pixels(&self, split: &Split, images: &[u32]) -> Vec<u8> {
        let mut pixels = vec![0u8; images.len() * PIXELS];
        pixels.par_chunks_mut(PIXELS).zip(images.par_iter()).for_each(|(dst, &i)| {
            let img = &split.pixels[i as usize * PIXELS..][..PIXELS];
            for (d, &p) in dst.iter_mut().zip(&self.order) {
                *d = img[p as usize];
            }
        });
        pixels
    }

    /// Moves the first layer's weight rows from image order into this layout.
    pub fn into_layout(&self, model: &mut Mlp) {
        self.move_rows(model, false);
    }

    /// Moves the first layer's weight rows from this layout back into image order.
    pub fn into_image_order(&self, model: &mut Mlp) {
        self.move_rows(model, true);
    }

    /// Row `j` of the result is row `order[j]` of the first layer's weights (`back = false`),
    /// or the reverse.
    fn move_rows(&self, model: &mut Mlp, back: bool) {
        let layer = &mut model.layers[0];
        let n = layer.outputs;
        let mut w = vec![0.0f32; layer.w.len()];
        for (j, &p) in self.order.iter().enumerate() {
            let (dst, src) = if back { (p as usize, j) } else { (j, p as usize) };
            w[dst * n..(dst + 1) * n].copy_from_slice(&layer.w[src * n..(src + 1) * n]);
        }
        layer.w = w;
    }

    /// The batch of images `idx` into `x` ((rows, 784), this layout, /255).
    ///
    /// On every thread (serial, it left one core idle), from 8-bit pixels: a quarter of the
    /// bytes to fetch from scattered images, and the same division by 255 as `Split::images`,
    /// so the same values. With augmentation, each image is transformed first (into
    /// `scratch`, in image order) by the transform drawn for it at global step `t` of a run
    /// seeded with `seed`, from `split`; a mirror alone is read straight from `laid_out`
    /// (the split's pixels laid out, [`Layout::pixels`]).
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        idx: &[u32],
        split: &Split,
        laid_out: &[u8],
        augment: Augment,
        seed: u64,
        t: usize,
    ) {
        let rows = x.par_chunks_mut(PIXELS).zip(scratch.par_chunks_mut(PIXELS)).zip(idx.par_iter()).with_min_len(50);
        if augment.shift == 0 {
            // No transform, or a mirror alone: straight from the laid-out pixels.
            rows.for_each(|((dst, _), &i)| {
                let src = &laid_out[i as usize * PIXELS..][..PIXELS];
                if augment.flip && augment.draw(seed, t as u64, i).flip {
                    for (d, &j) in dst.iter_mut().zip(&self.mirrored) {
                        *d = f32::from(src[j as usize]) / 255.0;
                    }
                } else {
                    for (d, &p) in dst.iter_mut().zip(src) {
                        *d = f32::from(p) / 255.0;
                    }
                }
            });
            return;
        }
        rows.for_each(|((dst, moved), &i)| {
            let transform = augment.draw(seed, t as u64, i);
            transform.apply(&split.pixels[i as usize * PIXELS..][..PIXELS], moved, SIDE);
            for (d, &p) in dst.iter_mut().zip(&self.order) {
                *d = f32::from(moved[p as usize]) / 255.0;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::Transform;

    #[test]
    fn a_mirror_read_through_the_mirrored_layout_is_the_mirrored_image_laid_out() {
        let image: Vec<u8> = (0..PIXELS).map(|p| (p * 7 % 251) as u8).collect();
        let layout = Layout::default();
        let laid_out: Vec<u8> = layout.order.iter().map(|&p| image[p as usize]).collect();
        let mut flipped = vec![0u8; PIXELS];
        Transform { dx: 0, dy: 0, flip: true }.apply(&image, &mut flipped, SIDE);
        let expected: Vec<u8> = layout.order.iter().map(|&p| flipped[p as usize]).collect();
        let read: Vec<u8> = layout.mirrored.iter().map(|&j| laid_out[j as usize]).collect();
        assert_eq!(read, expected);
    }
}
