//! What the int8 tests share: a small generator, random in-range models built with the
//! codec (and the scheme's naive reference over them), images like Fashion-MNIST's.
#![allow(dead_code)]

use infer_core::arch::Architecture;
use infer_core::int8net::INT8_SCRATCH_MAX;
use infer_core::int8net::{self, Int8Layer, Kernel};
use infer_core::{Activation, Int8Model, Int8Scratch};

/// The architecture of `widths` (valid ones only).
pub fn arch(widths: &[usize]) -> Architecture {
    Architecture::new(widths).unwrap()
}

/// xorshift64*: enough randomness for test data, no dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An index below `n` (0 for `n = 0`).
    pub fn pick(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Random parameters in the format's ranges, in the natural layout, owned.
pub struct Params {
    pub arch: Architecture,
    pub activation: Activation,
    pub weights: Vec<Vec<i8>>,
    pub biases: Vec<Vec<i16>>,
    pub mults: Vec<Vec<i16>>,
    pub shifts: Vec<[u8; 3]>,
    pub table: [u8; 256],
    /// Which layers the file stores sparse.
    pub sparse: Vec<bool>,
    /// Which layers the file stores as int4.
    pub int4: Vec<bool>,
}

impl Params {
    pub fn random(rng: &mut Rng, arch: Architecture, activation: Activation) -> Params {
        let n = arch.layers();
        let mut p = Params {
            arch,
            activation,
            weights: vec![],
            biases: vec![],
            mults: vec![],
            shifts: vec![],
            table: std::array::from_fn(|_| rng.next() as u8),
            sparse: vec![false; n],
            int4: vec![false; n],
        };
        for l in 0..n {
            let (i, o) = arch.layer(l);
            p.weights.push((0..i * o).map(|_| rng.next() as i8).collect());
            // Small biases, so that inputs, not biases, decide the class.
            p.biases.push((0..o).map(|_| (rng.below(64) as i16) - 32).collect());
            p.mults.push((0..o).map(|_| (rng.next() as i16) & 0x7fff).collect());
            let zero_point =
                if activation == Activation::Sigmoid && l + 1 < n { (rng.below(33) as i8 - 16) as u8 } else { 0 };
            p.shifts.push([0, 14 + rng.below(3) as u8, zero_point]);
        }
        // Rounding shifts calibrated on noise images, layer by layer, so that the 16-bit
        // pre-activations span about 9 bits: activations neither always saturate nor die
        // out, however deep or wide the network, and the kernels do real work.
        let images: Vec<Vec<u8>> = (0..16).map(|_| random_image(rng, arch.inputs())).collect();
        for l in 0..n {
            let most = images.iter().flat_map(|img| p.accumulators(l, img)).map(i32::unsigned_abs).max().unwrap_or(0);
            let bits = (u32::BITS - most.leading_zeros()) as u8;
            p.shifts[l][0] = bits.saturating_sub(9).min(24);
        }
        p
    }

    pub fn layers(&self) -> Vec<Int8Layer<'_>> {
        (0..self.arch.layers())
            .map(|l| Int8Layer {
                weights: &self.weights[l],
                biases: &self.biases[l],
                multipliers: &self.mults[l],
                rounding_shift: self.shifts[l][0],
                multiplier_shift: self.shifts[l][1],
                zero_point: self.shifts[l][2] as i8,
                sparse: self.sparse[l],
                int4: self.int4[l],
            })
            .collect()
    }

    pub fn table(&self) -> Option<&[u8; 256]> {
        (self.activation == Activation::Sigmoid).then_some(&self.table)
    }

    pub fn encode(&self) -> Vec<u8> {
        let extras = infer_core::format::Extras::NONE;
        let mut out = vec![0u8; int8net::encoded_len(&self.arch, self.activation, &self.layers(), &extras).unwrap()];
        let len = int8net::encode(&self.arch, self.activation, &self.layers(), 0.01, self.table(), &extras, &mut out)
            .unwrap();
        assert_eq!(len, out.len());
        out
    }

    /// Layer `l` stored sparse, with each block of four weights (four consecutive inputs of
    /// one output) zeroed with probability `cut` (0 to 1); `empty` outputs have every block
    /// zeroed (outputs with nothing kept).
    pub fn prune(&mut self, rng: &mut Rng, l: usize, cut: f64, empty: usize) {
        let (i, o) = self.arch.layer(l);
        let empty: Vec<usize> = (0..empty).map(|_| rng.pick(o)).collect();
        for g in 0..i.div_ceil(4) {
            for j in 0..o {
                if empty.contains(&j) || (rng.below(1 << 20) as f64) < cut * f64::from(1 << 20) {
                    for input in 4 * g..i.min(4 * g + 4) {
                        self.weights[l][input * o + j] = 0;
                    }
                }
            }
        }
        self.sparse[l] = true;
    }

    /// Layer `l` stored as int4: each weight rounded down to a multiple of 16 (its int4 value
    /// times 16). Rounds the weights that [`Params::random`]'s calibration saw, so that some
    /// activations may saturate more; the kernels' work is the same.
    pub fn make_int4(&mut self, l: usize) {
        for w in self.weights[l].iter_mut() {
            *w &= -16;
        }
        self.int4[l] = true;
    }

    /// Layer `l`'s accumulators for `image`, by the scheme as the module documentation
    /// defines it, over the natural layout.
    pub fn accumulators(&self, l: usize, image: &[u8]) -> Vec<i32> {
        let mut x: Vec<u8> = image.to_vec();
        for k in 0..=l {
            let (i, o) = self.arch.layer(k);
            let acc: Vec<i32> =
                (0..o).map(|j| (0..i).map(|m| i32::from(x[m]) * i32::from(self.weights[k][m * o + j])).sum()).collect();
            if k == l {
                return acc;
            }
            let [r, s, zp] = self.shifts[k];
            let v = acc
                .iter()
                .enumerate()
                .map(|(j, &a)| int8net::requantize(a, self.biases[k][j], self.mults[k][j], r, s).unwrap());
            x = match self.activation {
                Activation::Relu => v.map(|v| v.clamp(0, 255) as u8).collect(),
                Activation::Sigmoid => {
                    v.map(|v| self.table[((v + i32::from(zp as i8)).clamp(-128, 127) + 128) as usize]).collect()
                }
            };
        }
        unreachable!("l is a layer")
    }

    /// The scores, by the scheme over the natural layout.
    pub fn naive(&self, image: &[u8]) -> Vec<i32> {
        let l = self.arch.layers() - 1;
        let [r, s, _] = self.shifts[l];
        let acc = self.accumulators(l, image);
        acc.iter()
            .enumerate()
            .map(|(j, &a)| int8net::requantize(a, self.biases[l][j], self.mults[l][j], r, s).unwrap())
            .collect()
    }
}

/// `model` on every kernel, one image at a time and batched, against the reference and the
/// naive loop over `params`.
pub fn check_every_kernel(params: &Params, model: &Int8Model<'_>, images: &[Vec<u8>], what: &str) {
    let classes = params.arch.classes();
    let mut scratch = Int8Scratch::<INT8_SCRATCH_MAX>::zeroed();
    let mut expected = Vec::new();
    for img in images {
        let mut slow = vec![0; classes];
        let b = model.predict_scalar(img, &mut scratch, &mut slow).unwrap();
        assert_eq!(slow, params.naive(img), "{what}: the reference against the naive loop");
        for kernel in kernels() {
            let mut fast = vec![0; classes];
            let a = model.predict_with(kernel, img, &mut scratch, &mut fast).unwrap();
            assert_eq!((a, &fast), (b, &slow), "{what} on {kernel}");
        }
        expected.push((b as u16, slow));
    }
    for kernel in kernels() {
        let n = images.len();
        let flat: Vec<u8> = images.concat();
        let mut batch_scratch = vec![0u8; model.batch_scratch_bytes(n)];
        let (mut scores, mut got) = (vec![0; n * classes], vec![0u16; n]);
        model.predict_batch_with(kernel, &flat, &mut batch_scratch, &mut scores, &mut got).unwrap();
        for (i, (class, want)) in expected.iter().enumerate() {
            let at = i * classes;
            assert_eq!(
                (got[i], &scores[at..at + classes]),
                (*class, &want[..]),
                "{what}: image {i} batched on {kernel}"
            );
        }
    }
}

/// An image with dark borders and zero runs, like Fashion-MNIST's.
pub fn random_image(rng: &mut Rng, len: usize) -> Vec<u8> {
    let density = rng.below(100);
    (0..len).map(|_| if rng.below(100) < density { rng.next() as u8 } else { 0 }).collect()
}

/// Every byte of `file` flipped (by 0x01, 0x80 and 0xff in turn) makes it an error; the
/// file as given loads.
pub fn every_flipped_byte_is_an_error(file: &[u8]) {
    let mut bytes = file.to_vec();
    for at in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            bytes[at] ^= flip;
            assert!(infer_core::Model::from_bytes(&bytes).is_err(), "flip {flip:#x} at {at}");
            bytes[at] ^= flip;
        }
    }
    assert!(infer_core::Model::from_bytes(&bytes).is_ok());
}

/// Every kernel this build and CPU run, AMX included where the CPU has it (the test process
/// first asks Linux for the tile registers, as `infer-host` does).
pub fn kernels() -> impl Iterator<Item = Kernel> {
    request_amx();
    Kernel::ALL.into_iter().filter(|k| k.runs())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unsafe_code)]
fn request_amx() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA: see infer-host's `request_amx`.
        // SAFETY: this request reads and writes no memory of ours.
        if unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1023 as libc::c_ulong, 18 as libc::c_ulong) } == 0 {
            // SAFETY: the OS has just given this process the tile data.
            unsafe { int8net::assume_amx_permitted() };
        }
    });
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_amx() {}
