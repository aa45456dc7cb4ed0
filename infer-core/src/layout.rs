//! Where every parameter lies in a payload, computed once from the [`Architecture`].
//!
//! The reader ([`crate::F32Model`], [`crate::Int8Model`]), the writers
//! ([`crate::f32net::encode`], [`crate::int8net::encode`]), the tests and the fuzz targets
//! all take their offsets from here, so that the layout is written down in one place.

use crate::arch::{Architecture, BLOCK, GROUP, MAX_LAYERS, SIGMOID_TABLE_BYTES, pad_to_group};
use crate::spec::Activation;

/// Bytes from `start`, `len` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// Bytes.
    pub len: usize,
}

impl Span {
    const EMPTY: Span = Span { start: 0, len: 0 };

    /// One past the last byte.
    pub const fn end(&self) -> usize {
        self.start + self.len
    }

    /// The span as a range, for slicing.
    pub const fn range(&self) -> core::ops::Range<usize> {
        self.start..self.end()
    }
}

/// Each int8 layer's weights start on a multiple of this many bytes of the payload, which
/// itself starts on a 64-byte boundary of the file: a 64-byte vector load of a block whose
/// width is a multiple of 16 outputs is then aligned.
pub const INT8_WEIGHTS_ALIGN: usize = 64;

/// The f32 payload: `W1, b1, W2, b2, ...` as little-endian f32, each weight matrix
/// row-major with shape (inputs, outputs), as Keras stores a Dense kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct F32Layout {
    layers: usize,
    weights: [Span; MAX_LAYERS],
    biases: [Span; MAX_LAYERS],
    len: usize,
}

impl F32Layout {
    /// The layout of `arch`'s f32 payload.
    pub const fn new(arch: &Architecture) -> F32Layout {
        let mut out = F32Layout {
            layers: arch.layers(),
            weights: [Span::EMPTY; MAX_LAYERS],
            biases: [Span::EMPTY; MAX_LAYERS],
            len: 0,
        };
        let mut at = 0;
        let mut l = 0;
        while l < arch.layers() {
            let (i, o) = arch.layer(l);
            out.weights[l] = Span { start: at, len: 4 * i * o };
            at += 4 * i * o;
            out.biases[l] = Span { start: at, len: 4 * o };
            at += 4 * o;
            l += 1;
        }
        out.len = at;
        out
    }

    /// Layer `l`'s weights, (inputs, outputs) row-major.
    pub const fn weights(&self, l: usize) -> Span {
        self.weights[l]
    }

    /// Layer `l`'s biases.
    pub const fn biases(&self, l: usize) -> Span {
        self.biases[l]
    }

    /// Dense layers.
    pub const fn layers(&self) -> usize {
        self.layers
    }

    /// Bytes of the payload.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True for no bytes (never, for a valid architecture).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How each layer of an int8 model stores its weights: dense or sparse (only its kept blocks
/// of four weights, and how many), int8 or int4 (two weights a byte). Part of a version-4
/// or 5 header; see [`crate::int8net`] for the layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Storage {
    kept: [Option<u32>; MAX_LAYERS],
    int4: [bool; MAX_LAYERS],
}

impl Storage {
    /// Every layer dense, int8.
    pub const DENSE: Storage = Storage { kept: [None; MAX_LAYERS], int4: [false; MAX_LAYERS] };

    /// This with layer `l` stored sparse, keeping `kept` blocks of four weights.
    pub const fn with_sparse(mut self, l: usize, kept: u32) -> Storage {
        self.kept[l] = Some(kept);
        self
    }

    /// This with layer `l`'s weights stored as int4, two a byte.
    pub const fn with_int4(mut self, l: usize) -> Storage {
        self.int4[l] = true;
        self
    }

    /// The blocks layer `l` keeps, if it is stored sparse.
    pub const fn kept(&self, l: usize) -> Option<u32> {
        if l < MAX_LAYERS { self.kept[l] } else { None }
    }

    /// Whether layer `l`'s weights are int4.
    pub const fn int4(&self, l: usize) -> bool {
        l < MAX_LAYERS && self.int4[l]
    }

    /// Whether any layer is stored sparse.
    pub const fn any(&self) -> bool {
        let mut l = 0;
        while l < MAX_LAYERS {
            if self.kept[l].is_some() {
                return true;
            }
            l += 1;
        }
        false
    }

    /// Whether any layer's weights are int4.
    pub const fn any_int4(&self) -> bool {
        let mut l = 0;
        while l < MAX_LAYERS {
            if self.int4[l] {
                return true;
            }
            l += 1;
        }
        false
    }

    /// Checks the storage against the network: only its layers, each sparse one keeping at
    /// most all of its blocks (`groups × outputs`).
    pub const fn fits(&self, arch: &Architecture) -> bool {
        let mut l = 0;
        while l < MAX_LAYERS {
            if l >= arch.layers() && (self.kept[l].is_some() || self.int4[l]) {
                return false;
            }
            if let Some(kept) = self.kept[l] {
                let (i, o) = arch.layer(l);
                if kept as usize > groups(i) * o {
                    return false;
                }
            }
            l += 1;
        }
        true
    }
}

/// The int8 payload, as [`crate::int8net`] documents it: every layer's weights (each dense
/// layer's starting on a multiple of [`INT8_WEIGHTS_ALIGN`], a sparse layer's on a multiple
/// of 4, zero bytes between), every sparse layer's counts and indices, every layer's biases
/// and multipliers (on a multiple of 64 without a sparse layer, of 4 with one), every
/// layer's shifts and zero point, the score scale, and a sigmoid model's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int8Layout {
    layers: usize,
    weights: [Span; MAX_LAYERS],
    counts: [Span; MAX_LAYERS],
    indices: [Span; MAX_LAYERS],
    biases: [Span; MAX_LAYERS],
    multipliers: [Span; MAX_LAYERS],
    shifts: Span,
    score_scale: Span,
    table: Option<Span>,
    len: usize,
}

impl Int8Layout {
    /// The layout of the int8 payload of `arch` with hidden `activation`, every layer dense.
    pub const fn new(arch: &Architecture, activation: Activation) -> Int8Layout {
        Int8Layout::with_storage(arch, activation, &Storage::DENSE)
    }

    /// The layout of the int8 payload of `arch` with hidden `activation` and the layers
    /// `storage` names stored sparse (a storage that [`Storage::fits`] the network).
    pub const fn with_storage(arch: &Architecture, activation: Activation, storage: &Storage) -> Int8Layout {
        let mut out = Int8Layout {
            layers: arch.layers(),
            weights: [Span::EMPTY; MAX_LAYERS],
            counts: [Span::EMPTY; MAX_LAYERS],
            indices: [Span::EMPTY; MAX_LAYERS],
            biases: [Span::EMPTY; MAX_LAYERS],
            multipliers: [Span::EMPTY; MAX_LAYERS],
            shifts: Span::EMPTY,
            score_scale: Span::EMPTY,
            table: None,
            len: 0,
        };
        let mut at: usize = 0;
        let mut l = 0;
        while l < arch.layers() {
            let (i, o) = arch.layer(l);
            // A sparse or int4 layer's weights are read a word at a time: four bytes will do.
            // Int4 blocks go two to a word.
            let (align, len) = match (storage.kept(l), storage.int4(l)) {
                (Some(kept), false) => (GROUP, GROUP * kept as usize),
                (Some(kept), true) => (GROUP, GROUP * (kept as usize).div_ceil(2)),
                (None, true) => (GROUP, GROUP * (groups(i) * o).div_ceil(2)),
                (None, false) => (INT8_WEIGHTS_ALIGN, pad_to_group(i) * o),
            };
            at = at.next_multiple_of(align);
            out.weights[l] = Span { start: at, len };
            at += len;
            l += 1;
        }
        l = 0;
        while l < arch.layers() {
            let (i, o) = arch.layer(l);
            if let Some(kept) = storage.kept(l) {
                out.counts[l] = Span { start: at, len: o.div_ceil(BLOCK) * groups(i) };
                at += out.counts[l].len;
                out.indices[l] = Span { start: at, len: kept as usize };
                at += kept as usize;
            }
            l += 1;
        }
        // Version 3 starts the biases on 64 bytes; a version-4 or 5 file (with a sparse or
        // int4 layer) spares those bytes: the biases are read two bytes at a time.
        let compact = storage.any() || storage.any_int4();
        at = at.next_multiple_of(if compact { GROUP } else { INT8_WEIGHTS_ALIGN });
        l = 0;
        while l < arch.layers() {
            let o = arch.layer(l).1;
            out.biases[l] = Span { start: at, len: 2 * o };
            out.multipliers[l] = Span { start: at + 2 * o, len: 2 * o };
            at += 4 * o;
            l += 1;
        }
        out.shifts = Span { start: at, len: 3 * arch.layers() };
        at += 3 * arch.layers();
        out.score_scale = Span { start: at, len: 4 };
        at += 4;
        if matches!(activation, Activation::Sigmoid) {
            out.table = Some(Span { start: at, len: SIGMOID_TABLE_BYTES });
            at += SIGMOID_TABLE_BYTES;
        }
        out.len = at;
        out
    }

    /// Layer `l`'s weights: `[outputs / 128][groups][128][4]` for a dense layer, the kept
    /// blocks' four bytes each for a sparse one (see [`crate::int8net`]).
    pub const fn weights(&self, l: usize) -> Span {
        self.weights[l]
    }

    /// A sparse layer `l`'s kept blocks per output block and group, `[outputs / 128][groups]`
    /// (empty for a dense layer).
    pub const fn counts(&self, l: usize) -> Span {
        self.counts[l]
    }

    /// A sparse layer `l`'s kept blocks' outputs within their block of 128, one byte each
    /// (empty for a dense layer).
    pub const fn indices(&self, l: usize) -> Span {
        self.indices[l]
    }

    /// Layer `l`'s i16 biases.
    pub const fn biases(&self, l: usize) -> Span {
        self.biases[l]
    }

    /// Layer `l`'s i16 multipliers.
    pub const fn multipliers(&self, l: usize) -> Span {
        self.multipliers[l]
    }

    /// Layer `l`'s rounding shift, multiplier shift and zero point (three bytes).
    pub const fn shifts(&self, l: usize) -> Span {
        Span { start: self.shifts.start + 3 * l, len: 3 }
    }

    /// The f32 score scale.
    pub const fn score_scale(&self) -> Span {
        self.score_scale
    }

    /// The sigmoid table, for a sigmoid model.
    pub const fn table(&self) -> Option<Span> {
        self.table
    }

    /// Dense layers.
    pub const fn layers(&self) -> usize {
        self.layers
    }

    /// Bytes of the payload.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True for no bytes (never, for a valid architecture).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Groups of four inputs of a layer with `inputs` inputs (the last one padded with zeros).
pub const fn groups(inputs: usize) -> usize {
    pad_to_group(inputs) / GROUP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_study_layouts_are_version_1s() {
        // Version 1 had these sizes and no padding; every weight block of the study's
        // network is a multiple of 64 bytes, so version 2 lays it out identically.
        let a = Architecture::FMNIST;
        assert_eq!(F32Layout::new(&a).len(), 4 * 535_818);
        let relu = Int8Layout::new(&a, Activation::Relu);
        assert_eq!(relu.len(), 538_165);
        assert_eq!(relu.weights(2), Span { start: 401_408 + 131_072, len: 2_560 });
        assert_eq!(relu.biases(0).start, 535_040);
        assert_eq!(relu.shifts(0).start, 535_040 + 4 * (512 + 256 + 10));
        assert_eq!(Int8Layout::new(&a, Activation::Sigmoid).len(), 538_165 + 256);
    }

    #[test]
    fn at_least_60_bytes_of_payload_follow_every_layers_weights() {
        // The x86 kernel's 64-byte loads of a layer's last outputs reach up to 60 bytes
        // past its weights; in every payload those bytes exist (the kernel copies them
        // otherwise). Small layers are the tight cases: a padded weight block ends on 64
        // bytes only when it is large enough that the biases and multipliers after it
        // (4 bytes an output) pass 60.
        let mut tightest = usize::MAX;
        for inputs in [4, 8, 12, 64] {
            for h in 1..=80 {
                for o in 1..=40 {
                    for widths in [&[inputs, h, o][..], &[inputs, o, h, o][..]] {
                        let a = Architecture::new(widths).unwrap();
                        let l = Int8Layout::new(&a, Activation::Relu);
                        for k in 0..l.layers() {
                            tightest = tightest.min(l.len() - l.weights(k).end());
                        }
                    }
                }
            }
        }
        assert!(tightest >= 60, "{tightest}");
    }

    #[test]
    fn int8_weights_are_padded_to_groups_and_aligned() {
        let a = Architecture::new(&[8, 5, 3, 2]).unwrap();
        let l = Int8Layout::new(&a, Activation::Relu);
        assert_eq!(l.weights(0), Span { start: 0, len: 8 * 5 });
        assert_eq!(l.weights(1), Span { start: 64, len: 8 * 3 });
        assert_eq!(l.weights(2), Span { start: 128, len: 4 * 2 });
        assert_eq!(l.biases(0).start, 192);
        assert_eq!(l.len(), 192 + 4 * (5 + 3 + 2) + 9 + 4);
    }
}
