//! The model file: one format for the trainer (which writes it) and firmware (which reads it).
//!
//! # Version 5 (written by this build for a model with an int4 layer)
//!
//! As version 3, with one more header field after the extras length: per layer, input
//! first, whether its weights are int4 and, if it is stored sparse, how many blocks of four
//! weights it keeps (postcard: a varint count, equal to the layers, then per layer a bool
//! byte, then `0` for dense or `1` and the kept blocks as a varint u32). At least one layer
//! is int4. Only int8 models have int4 layers (an "int8 model" with some layers' weights
//! stored at four bits); [`crate::int8net`] gives their layout.
//!
//! # Version 4 (written by this build for a model with a sparse layer and no int4 layer)
//!
//! As version 3, with one more header field after the extras length: per layer, input
//! first, whether it is stored sparse and how many blocks of four weights it keeps
//! (postcard: a varint count, equal to the layers, then per layer `0` for dense or `1` and
//! the kept blocks as a varint u32). At least one layer is sparse. Only int8 layers are
//! stored sparse; [`crate::int8net`] gives the layout of their weights, counts and indices.
//!
//! # Version 3 (written by this build for a model whose layers are all dense)
//!
//! | bytes | field | encoding |
//! |---|---|---|
//! | 0..4 | magic | `FMLP` |
//! | | version | postcard varint u16, `3` |
//! | | layer widths | varint count (3 to 6), then each width as a varint u32, input first |
//! | | activation | varint enum tag ([`Activation`]: sigmoid 0, ReLU 1) |
//! | | quantization | varint enum tag ([`Quant`]: f32 0, int8 1) |
//! | | payload length | varint u32 |
//! | | extras length | varint u32 |
//! | ..64 | padding | zero bytes up to [`HEADER_BYTES`] |
//! | 64.. | payload | the parameters ([`crate::layout`]) |
//! | | extras | [`Extras`]: two byte strings, each a varint length and its bytes (empty: absent) |
//! | last 4 | checksum | CRC-32 (ISO-HDLC, as zlib) of everything before it, u32 LE |
//!
//! The header is padded so that the payload starts 64 bytes into the file: a model
//! embedded in a 64-byte-aligned static, or read into an aligned buffer, has aligned
//! weights (the x86 int8 kernel loads 64 weight bytes at a time, and a load that straddles
//! two cache lines costs two).
//!
//! The extras, both optional:
//! - **class names**, in label order, each followed by `\n` (UTF-8, one per class, none
//!   empty, at most [`MAX_NAMES_BYTES`] in all);
//! - **an input quantizer** (int8 models of real-valued features only): per input, two
//!   little-endian f32, a gain and an offset; input `x` becomes the byte
//!   [`quantize_input`]`(x, gain, offset)`. Standardizing the features and the first layer's
//!   zero points are folded into them and into its biases, so firmware hands the model the
//!   raw sensor values.
//!
//! # Version 2
//!
//! As version 3 without the extras length and the extras (and version `2`).
//!
//! # Version 1
//!
//! Magic, version `1`, four varint u32 widths, activation, quantization, the payload as
//! a varint length and its bytes (no padding), the checksum. Version 1 only ever held
//! the 784-512-256-10 network, whose payloads are laid out exactly as in version 2;
//! [`read`] loads such files.

use serde::{Deserialize, Serialize};

use crate::arch::{Architecture, MAX_HIDDEN, MAX_INPUT, MAX_WIDTH};
use crate::error::Error;
use crate::layout::{F32Layout, Int8Layout, Storage};
pub use crate::spec::{
    Activation, DENSE_FORMAT_VERSION, FORMAT_VERSION, MAX_NAMES_BYTES, Quant, SPARSE_FORMAT_VERSION,
};

/// First four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"FMLP";
/// Bytes before the payload in a version-2 or 3 file (header fields, then zero padding).
pub const HEADER_BYTES: usize = 64;
/// Bytes a file adds around its payload and extras: the header and the checksum.
pub const MAX_OVERHEAD: usize = HEADER_BYTES + 4;

/// Bytes of the extras block of the most input features and class names there can be: two
/// length varints, the names and a quantizer pair per input.
pub const MAX_EXTRAS_BYTES: usize = 2 * 5 + MAX_NAMES_BYTES + 8 * MAX_INPUT;

/// Bytes of the largest model file there can be: f32, an input of 4096 and five layers of
/// 1024 by 1024, with the most extras (25 MB). A reader may refuse a larger file unread.
pub const MAX_FILE_BYTES: usize = {
    let mut widths = [MAX_WIDTH; MAX_HIDDEN + 2];
    widths[0] = MAX_INPUT;
    let widest = match Architecture::new(&widths) {
        Ok(a) => a,
        Err(_) => panic!("the widest architecture is valid"),
    };
    Header::new(widest, Activation::Relu, Quant::F32).file_len() + MAX_EXTRAS_BYTES
};

/// The byte an int8 model with an input quantizer makes of input value `x`:
/// `x · gain + offset` (two roundings, no fused multiply-add, so that every target computes
/// the same), rounded half up and clamped to 0..=255; NaN gives 0.
#[inline]
pub fn quantize_input(x: f32, gain: f32, offset: f32) -> u8 {
    let v = x * gain + offset;
    if v >= 255.0 {
        255
    } else if v >= 0.0 {
        // v + 0.5 in [0.5, 255.5): truncation is the floor, so this rounds half up.
        (v + 0.5) as u8
    } else {
        0
    }
}

/// What a version-3 file holds besides its parameters (see the module documentation);
/// each part is empty where the file has none. Borrowed from the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extras<'a> {
    /// Class names in label order, each followed by `\n`.
    #[serde(borrow)]
    names: &'a [u8],
    /// Per input, a gain and an offset, little-endian f32.
    #[serde(borrow)]
    input: &'a [u8],
}

impl<'a> Extras<'a> {
    /// Extras with class names (`names`: each name followed by `\n`, in label order) and an
    /// input quantizer (`input`: per input a gain and an offset as little-endian f32, as
    /// [`Extras::input_bytes`] lays them out); pass empty slices for none. Checked when the
    /// file is written and again when it is read.
    pub const fn new(names: &'a [u8], input: &'a [u8]) -> Extras<'a> {
        Extras { names, input }
    }

    /// No class names and no input quantizer.
    pub const NONE: Extras<'static> = Extras { names: &[], input: &[] };

    /// The file's bytes of an input quantizer: `(gain, offset)` per input, written into
    /// `out` (8 bytes per input); returns the bytes used.
    pub fn input_bytes(pairs: &[(f32, f32)], out: &mut [u8]) -> Result<usize, Error> {
        let needed = 8 * pairs.len();
        let found = out.len();
        let out = out.get_mut(..needed).ok_or(Error::BufferTooSmall { needed, found })?;
        for (chunk, &(gain, offset)) in out.chunks_exact_mut(8).zip(pairs) {
            chunk[..4].copy_from_slice(&gain.to_le_bytes());
            chunk[4..].copy_from_slice(&offset.to_le_bytes());
        }
        Ok(needed)
    }

    /// Bytes the extras take in the file.
    pub fn encoded_len(&self) -> usize {
        let varint = |n: usize| (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize;
        varint(self.names.len()) + self.names.len() + varint(self.input.len()) + self.input.len()
    }

    /// The class names, in label order (none if the file has none).
    pub fn class_names(&self) -> impl Iterator<Item = &'a str> + 'a {
        let names: &'a [u8] = self.names;
        names.split(|&b| b == b'\n').take(names.iter().filter(|&&b| b == b'\n').count()).map(|n| {
            // Checked to be UTF-8 when the file was read or written.
            core::str::from_utf8(n).unwrap_or("")
        })
    }

    /// The name of class `class`, if the file names its classes.
    pub fn class_name(&self, class: usize) -> Option<&'a str> {
        self.class_names().nth(class)
    }

    /// Whether the file names its classes.
    pub fn has_class_names(&self) -> bool {
        !self.names.is_empty()
    }

    /// The `(gain, offset)` of input `i`'s quantizer, if the model has one.
    #[inline]
    pub fn input_quantizer(&self, i: usize) -> Option<(f32, f32)> {
        let b = self.input.get(8 * i..8 * i + 8)?;
        let gain = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        Some((gain, f32::from_le_bytes([b[4], b[5], b[6], b[7]])))
    }

    /// Whether the model has an input quantizer (takes real-valued features).
    pub fn has_input_quantizer(&self) -> bool {
        !self.input.is_empty()
    }

    /// Checks the extras against the model they belong to.
    fn check(&self, architecture: &Architecture, quant: Quant) -> Result<(), Error> {
        if !self.names.is_empty() {
            let text = core::str::from_utf8(self.names).map_err(|_| Error::ClassNames)?;
            let count = text.bytes().filter(|&b| b == b'\n').count();
            let empty = text.split('\n').take(count).any(str::is_empty);
            if self.names.len() > MAX_NAMES_BYTES || !text.ends_with('\n') || count != architecture.classes() || empty {
                return Err(Error::ClassNames);
            }
        }
        if !self.input.is_empty() {
            if quant != Quant::Int8 || self.input.len() != 8 * architecture.inputs() {
                return Err(Error::InputQuantizer);
            }
            let finite = self.input.chunks_exact(4).all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
            if !finite {
                return Err(Error::InputQuantizer);
            }
        }
        Ok(())
    }
}

/// Slice-by-16 tables (16 KiB) on 64-bit hosts; one 1 KiB table where flash is scarce.
#[cfg(target_pointer_width = "64")]
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
#[cfg(not(target_pointer_width = "64"))]
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (ISO-HDLC, as zlib) of `bytes`: the checksum a model file ends with.
pub fn checksum(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

/// Everything in a model file but its payload and extras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    version: u16,
    architecture: Architecture,
    activation: Activation,
    quant: Quant,
    /// Bytes of the extras block.
    extras: usize,
    /// How each int8 layer stores its weights (sparse, int4).
    storage: Storage,
}

impl Header {
    /// The header this build writes for a model of `architecture` without extras
    /// ([`Extras::NONE`]: two empty byte strings, 2 bytes).
    pub const fn new(architecture: Architecture, activation: Activation, quant: Quant) -> Header {
        Header { version: DENSE_FORMAT_VERSION, architecture, activation, quant, extras: 2, storage: Storage::DENSE }
    }

    /// This header with the int8 layers stored as `storage` says: a version-5 file if a
    /// layer is int4, else version 4 if one is sparse, else version 3. Checked when the file
    /// is written.
    pub const fn with_storage(self, storage: Storage) -> Header {
        Header { version: version_of(&storage), storage, ..self }
    }

    /// How each layer stores its weights (every one dense int8 before version 4, none int4
    /// before version 5).
    pub const fn storage(&self) -> Storage {
        self.storage
    }

    /// This header's storage with the layers stored sparse that make the file smallest,
    /// when layer `l` keeps `kept[l]` blocks of four weights (at most all of its blocks;
    /// layers past `kept`'s end dense): each layer in turn is sparse where that makes the
    /// file smaller than storing it dense (an int8 kept block takes 5 bytes, one of a dense
    /// layer 4; int4, 3 bytes and 2). Which layers are int4 is kept. The rule by which the
    /// trainer writes a file, and by which `--flash` plans one before training.
    pub fn smallest_storage(&self, kept: &[u32]) -> Storage {
        let mut stored = self.storage;
        for (l, &kept) in kept.iter().enumerate().take(self.architecture.layers()) {
            let sparse = stored.with_sparse(l, kept);
            if self.with_storage(sparse).file_len() < self.with_storage(stored).file_len() {
                stored = sparse;
            }
        }
        stored
    }

    /// This header for a file with `extras`.
    pub fn with_extras(self, extras: &Extras<'_>) -> Header {
        Header { extras: extras.encoded_len(), ..self }
    }

    /// Format version of the file it was read from (or the one it will be written as).
    pub const fn version(&self) -> u16 {
        self.version
    }

    /// Layer widths.
    pub const fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// Hidden-layer activation.
    pub const fn activation(&self) -> Activation {
        self.activation
    }

    /// Parameter storage.
    pub const fn quant(&self) -> Quant {
        self.quant
    }

    /// Payload bytes this header implies.
    pub const fn payload_len(&self) -> usize {
        match self.quant {
            Quant::F32 => F32Layout::new(&self.architecture).len(),
            Quant::Int8 => Int8Layout::with_storage(&self.architecture, self.activation, &self.storage).len(),
        }
    }

    /// Bytes of the whole file.
    pub const fn file_len(&self) -> usize {
        self.payload_len() + self.extras + MAX_OVERHEAD
    }
}

/// Widths a version-2 header may list and still be decoded, so that a file with too many
/// layers is refused for that reason rather than as undecodable.
const MAX_LISTED_WIDTHS: usize = 16;

/// The version-2 header fields after the magic, as postcard encodes them.
#[derive(Serialize, Deserialize)]
struct HeaderV2 {
    version: u16,
    widths: heapless::Vec<u32, MAX_LISTED_WIDTHS>,
    activation: Activation,
    quant: Quant,
    payload_len: u32,
}

/// The version-3 header fields after the magic: version 2's and the extras' length.
#[derive(Serialize, Deserialize)]
struct HeaderV3 {
    v2: HeaderV2,
    extras_len: u32,
}

/// The version-4 header fields after the magic: version 3's and, per layer, the kept blocks
/// of a sparse one.
#[derive(Serialize, Deserialize)]
struct HeaderV4 {
    v3: HeaderV3,
    sparse: heapless::Vec<Option<u32>, MAX_LISTED_WIDTHS>,
}

/// How a version-5 header says a layer is stored.
#[derive(Serialize, Deserialize)]
struct LayerV5 {
    int4: bool,
    kept: Option<u32>,
}

/// The version-5 header fields after the magic: version 3's and, per layer, whether its
/// weights are int4 and the kept blocks of a sparse one.
#[derive(Serialize, Deserialize)]
struct HeaderV5 {
    v3: HeaderV3,
    layers: heapless::Vec<LayerV5, MAX_LISTED_WIDTHS>,
}

/// The version a file of this storage is written as.
const fn version_of(storage: &Storage) -> u16 {
    if storage.any_int4() {
        FORMAT_VERSION
    } else if storage.any() {
        SPARSE_FORMAT_VERSION
    } else {
        DENSE_FORMAT_VERSION
    }
}

/// The version-1 file up to the checksum.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct FileV1<'a> {
    magic: [u8; 4],
    version: u16,
    widths: [u32; 4],
    activation: Activation,
    quant: Quant,
    payload: &'a [u8],
}

/// A validated model file: its header and a borrowed payload of the size the header
/// implies. The only way to get one is [`read`].
///
/// ```compile_fail
/// use infer_core::arch::Architecture;
/// use infer_core::format::{Header, ModelFile, Quant};
/// use infer_core::Activation;
///
/// // Hand-built files cannot skip validation: the fields are private.
/// let header = Header::new(Architecture::FMNIST, Activation::Relu, Quant::F32);
/// let file = ModelFile { header, payload: &[] };
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ModelFile<'a> {
    header: Header,
    payload: &'a [u8],
    extras: Extras<'a>,
}

impl<'a> ModelFile<'a> {
    /// The decoded header.
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// The payload bytes, borrowed from the input; exactly [`Header::payload_len`] long.
    pub const fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The class names and input quantizer, validated (empty in files of versions 1 and 2).
    pub const fn extras(&self) -> &Extras<'a> {
        &self.extras
    }
}

/// Encodes a model file with `extras` into `out` (at least [`Header::file_len`] of
/// `header.with_extras(extras)` bytes), returning the bytes used.
pub fn write(header: &Header, payload: &[u8], extras: &Extras<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let header = header.with_extras(extras);
    // Kept blocks beyond a layer's would also make the payload's size overflow.
    if !header.storage.fits(&header.architecture) {
        return Err(Error::Malformed);
    }
    if payload.len() != header.payload_len() {
        return Err(Error::PayloadSize { expected: header.payload_len(), found: payload.len() });
    }
    let len = header.file_len();
    let found = out.len();
    let out = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len, found })?;
    out[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(payload);
    seal(&header, extras, out)
}

/// Writes the header, the extras and the checksum around a payload already in place at
/// `out[HEADER_BYTES..]`; `out` is exactly the file of `header`, whose extras length is
/// `extras`'.
pub(crate) fn seal(header: &Header, extras: &Extras<'_>, out: &mut [u8]) -> Result<usize, Error> {
    extras.check(&header.architecture, header.quant)?;
    if header.extras != extras.encoded_len() {
        return Err(Error::Malformed);
    }
    let mut widths = heapless::Vec::new();
    for &w in header.architecture.widths() {
        // Cannot fail: an architecture has at most MAX_LAYERS + 1 widths.
        widths.push(u32::from(w)).map_err(|_| Error::Malformed)?;
    }
    let storage = header.storage;
    let version = version_of(&storage);
    if version != DENSE_FORMAT_VERSION && (header.quant != Quant::Int8 || !storage.fits(&header.architecture)) {
        return Err(Error::Malformed);
    }
    let v3 = HeaderV3 {
        v2: HeaderV2 {
            version,
            widths,
            activation: header.activation,
            quant: header.quant,
            payload_len: header.payload_len() as u32,
        },
        extras_len: header.extras as u32,
    };
    let head = &mut out[..HEADER_BYTES];
    head[..MAGIC.len()].copy_from_slice(&MAGIC);
    let fields = &mut head[MAGIC.len()..];
    let layers = 0..header.architecture.layers();
    // Cannot fail: at most MAX_LAYERS layers.
    let used = match version {
        FORMAT_VERSION => {
            let mut listed = heapless::Vec::new();
            for l in layers {
                let layer = LayerV5 { int4: storage.int4(l), kept: storage.kept(l) };
                listed.push(layer).map_err(|_| Error::Malformed)?;
            }
            postcard::to_slice(&HeaderV5 { v3, layers: listed }, fields)
        }
        SPARSE_FORMAT_VERSION => {
            let mut kept = heapless::Vec::new();
            for l in layers {
                kept.push(storage.kept(l)).map_err(|_| Error::Malformed)?;
            }
            postcard::to_slice(&HeaderV4 { v3, sparse: kept }, fields)
        }
        _ => postcard::to_slice(&v3, fields),
    };
    let used = used.map_err(|_| Error::Malformed)?.len();
    head[MAGIC.len() + used..].fill(0);
    let start = HEADER_BYTES + header.payload_len();
    let body = start + header.extras;
    let tail = out.get_mut(start..body).ok_or(Error::Malformed)?;
    if postcard::to_slice(extras, tail).map_err(|_| Error::Malformed)?.len() != header.extras {
        return Err(Error::Malformed);
    }
    let crc = checksum(&out[..body]);
    out.get_mut(body..body + 4).ok_or(Error::Malformed)?.copy_from_slice(&crc.to_le_bytes());
    Ok(body + 4)
}

/// Validates a model file of version 1 to 4: magic, version, checksum, architecture,
/// sparse layers' counts, payload size and extras.
///
/// Any byte string gives `Ok` or an `Err`; none panics. The parameters themselves are
/// validated by [`crate::F32Model::from_file`] and [`crate::Int8Model::from_file`].
pub fn read(bytes: &[u8]) -> Result<ModelFile<'_>, Error> {
    if bytes.len() < MAGIC.len() + 4 {
        return Err(if bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] != MAGIC {
            Error::BadMagic
        } else {
            Error::Truncated
        });
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::BadMagic);
    }
    // The version comes straight after the magic; read it before the checksum so that a
    // file from another version says so rather than "corrupt".
    match postcard::take_from_bytes::<u16>(&bytes[MAGIC.len()..]) {
        Ok((1, _)) => read_v1(bytes),
        Ok((version @ 2..=FORMAT_VERSION, _)) => read_v2(bytes, version),
        Ok((found, _)) => Err(Error::UnsupportedVersion { found }),
        Err(_) => Err(Error::Malformed),
    }
}

/// Checks the checksum of `body` against the four bytes after it.
fn check_crc(body: &[u8], tail: &[u8]) -> Result<(), Error> {
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = checksum(body);
    if stored != computed {
        return Err(Error::Checksum { stored, computed });
    }
    Ok(())
}

/// Reads a file of version 2, 3 (whose header adds the extras' length) or 4 (which adds
/// the sparse layers).
fn read_v2(bytes: &[u8], version: u16) -> Result<ModelFile<'_>, Error> {
    // The header says how long the file is: a cut-short file is found without reading
    // (and checksumming) the rest.
    let head = bytes.get(..HEADER_BYTES);
    let none = heapless::Vec::new();
    let fields = head.and_then(|h| {
        let h = &h[MAGIC.len()..];
        match version {
            2 => postcard::take_from_bytes::<HeaderV2>(h).ok().map(|(v2, p)| (v2, 0, none, p)),
            3 => postcard::take_from_bytes::<HeaderV3>(h).ok().map(|(v3, p)| (v3.v2, v3.extras_len, none, p)),
            SPARSE_FORMAT_VERSION => postcard::take_from_bytes::<HeaderV4>(h).ok().map(|(v4, p)| {
                let listed = v4.sparse.into_iter().map(|kept| LayerV5 { int4: false, kept }).collect();
                (v4.v3.v2, v4.v3.extras_len, listed, p)
            }),
            _ => {
                postcard::take_from_bytes::<HeaderV5>(h).ok().map(|(v5, p)| (v5.v3.v2, v5.v3.extras_len, v5.layers, p))
            }
        }
    });
    let Some((fields, extras_len, listed, padding)) = fields else {
        // A short file whose header cannot be read: the checksum tells corrupt from cut.
        if bytes.len() < HEADER_BYTES + 4 {
            return Err(Error::Truncated);
        }
        check_crc(&bytes[..bytes.len() - 4], &bytes[bytes.len() - 4..])?;
        return Err(Error::Malformed);
    };
    let payload_len = fields.payload_len as usize;
    let len = HEADER_BYTES.saturating_add(payload_len).saturating_add(extras_len as usize).saturating_add(4);
    if bytes.len() < len {
        return Err(Error::Truncated);
    }
    let (body, tail) = bytes[..len].split_at(len - 4);
    check_crc(body, tail)?;
    if bytes.len() > len || padding.iter().any(|&b| b != 0) {
        return Err(Error::Malformed);
    }
    let mut widths = [0usize; MAX_LISTED_WIDTHS];
    for (w, &f) in widths.iter_mut().zip(&fields.widths) {
        *w = f as usize;
    }
    let architecture = Architecture::new(&widths[..fields.widths.len()])?;
    let (activation, quant) = (fields.activation, fields.quant);
    // A version-4 or 5 header lists every layer, and at least one is sparse (version 4) or
    // int4 (version 5); only int8 models have such layers.
    if version >= SPARSE_FORMAT_VERSION && listed.len() != architecture.layers() {
        return Err(Error::Malformed);
    }
    let mut storage = Storage::DENSE;
    for (l, layer) in listed.iter().enumerate() {
        if let Some(k) = layer.kept {
            storage = storage.with_sparse(l, k);
        }
        if layer.int4 {
            storage = storage.with_int4(l);
        }
    }
    let plain = version < SPARSE_FORMAT_VERSION;
    let wrong = version_of(&storage) != version.max(DENSE_FORMAT_VERSION) || !storage.fits(&architecture);
    if wrong || (!plain && quant != Quant::Int8) {
        return Err(Error::Malformed);
    }
    let header = Header { version, architecture, activation, quant, extras: extras_len as usize, storage };
    let (payload, extras) = body[HEADER_BYTES..].split_at(payload_len);
    if payload.len() != header.payload_len() {
        return Err(Error::PayloadSize { expected: header.payload_len(), found: payload.len() });
    }
    let extras = match extras {
        [] => Extras::NONE,
        bytes => match postcard::take_from_bytes::<Extras<'_>>(bytes) {
            Ok((extras, [])) => extras,
            _ => return Err(Error::Malformed),
        },
    };
    extras.check(&architecture, quant)?;
    Ok(ModelFile { header, payload, extras })
}

fn read_v1(bytes: &[u8]) -> Result<ModelFile<'_>, Error> {
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    // Header, then the payload's length: a cut-short file is found before the checksum.
    if let Ok((_, rest)) = postcard::take_from_bytes::<([u8; 4], u16, [u32; 4], Activation, Quant)>(bytes)
        && let Ok((len, after)) = postcard::take_from_bytes::<u32>(rest)
    {
        let expected = (bytes.len() - after.len()).saturating_add(len as usize).saturating_add(4);
        if bytes.len() < expected {
            return Err(Error::Truncated);
        }
    }
    check_crc(body, tail)?;
    let (file, rest) = postcard::take_from_bytes::<FileV1<'_>>(body).map_err(|_| Error::Malformed)?;
    if !rest.is_empty() || file.magic != MAGIC || file.version != 1 {
        return Err(Error::Malformed);
    }
    let architecture = Architecture::new(&file.widths.map(|w| w as usize))?;
    let header = Header {
        version: 1,
        architecture,
        activation: file.activation,
        quant: file.quant,
        extras: 0,
        storage: Storage::DENSE,
    };
    if file.payload.len() != header.payload_len() {
        return Err(Error::PayloadSize { expected: header.payload_len(), found: file.payload.len() });
    }
    Ok(ModelFile { header, payload: file.payload, extras: Extras::NONE })
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    /// A small f32 model file, 8-4-3, with `extras`.
    fn small_with(extras: &Extras<'_>) -> (Header, Vec<u8>) {
        let arch = Architecture::new(&[8, 4, 3]).unwrap();
        let header = Header::new(arch, Activation::Sigmoid, Quant::F32);
        let payload: Vec<u8> = (0..header.payload_len()).map(|i| (i % 251) as u8).collect();
        let mut out = vec![0xaa; header.with_extras(extras).file_len()];
        assert_eq!(write(&header, &payload, extras, &mut out).unwrap(), out.len());
        (header.with_extras(extras), out)
    }

    /// A small f32 model file: 8-4-3, no extras.
    fn small() -> (Header, Vec<u8>) {
        small_with(&Extras::NONE)
    }

    #[test]
    fn golden_bytes_of_version_3() {
        let (header, file) = small();
        assert_eq!(header.payload_len(), 4 * (8 * 4 + 4 + 4 * 3 + 3));
        // magic, version 3, 3 widths 8 4 3, sigmoid 0, f32 0, payload length 204, extras
        // length 2 (two empty byte strings), zeros.
        let mut head = [0u8; HEADER_BYTES];
        head[..14].copy_from_slice(&[b'F', b'M', b'L', b'P', 3, 3, 8, 4, 3, 0, 0, 0xcc, 0x01, 2]);
        assert_eq!(file[..HEADER_BYTES], head);
        assert_eq!(file.len(), HEADER_BYTES + 204 + 2 + 4);
        assert_eq!(file[HEADER_BYTES..HEADER_BYTES + 3], [0, 1, 2], "the payload starts at 64");
        assert_eq!(file[HEADER_BYTES + 204..HEADER_BYTES + 206], [0, 0], "no names, no quantizer");
        let crc = checksum(&file[..file.len() - 4]);
        assert_eq!(file[file.len() - 4..], crc.to_le_bytes());

        // With class names: their length, the names each ended by a newline, then an empty
        // quantizer.
        let (header, file) = small_with(&Extras::new("cat\ndog\nbird\n".as_bytes(), &[]));
        assert_eq!(file[13], 15, "extras length");
        let extras = &file[HEADER_BYTES + 204..file.len() - 4];
        assert_eq!(extras, b"\x0dcat\ndog\nbird\n\x00");
        let read = read(&file).unwrap();
        assert_eq!(*read.header(), header);
        assert_eq!(read.extras().class_names().collect::<Vec<_>>(), ["cat", "dog", "bird"]);
        assert_eq!((read.extras().class_name(2), read.extras().class_name(3)), (Some("bird"), None));
    }

    #[test]
    fn golden_header_of_the_study_network() {
        let header = Header::new(Architecture::FMNIST, Activation::Relu, Quant::Int8);
        let payload = vec![0u8; header.payload_len()];
        let mut file = vec![0u8; header.with_extras(&Extras::NONE).file_len()];
        write(&header, &payload, &Extras::NONE, &mut file).unwrap();
        // 784 = 0x90 0x06, 512 = 0x80 0x04, 256 = 0x80 0x02; ReLU 1, int8 1; 538_165 =
        // 0xb5 0xec 0x20; extras 2.
        let fields = [b'F', b'M', b'L', b'P', 3, 4, 0x90, 0x06, 0x80, 0x04, 0x80, 0x02, 10, 1, 1, 0xb5, 0xec, 0x20, 2];
        assert_eq!(file[..fields.len()], fields);
        assert!(file[fields.len()..HEADER_BYTES].iter().all(|&b| b == 0));
        assert_eq!(file.len(), 64 + 538_165 + 2 + 4);
    }

    #[test]
    fn version_2_files_load() {
        // Version 2's golden header: no extras length; the file ends with the payload.
        let arch = Architecture::new(&[8, 4, 3]).unwrap();
        let header = Header::new(arch, Activation::Sigmoid, Quant::F32);
        let mut file = vec![0u8; HEADER_BYTES];
        file[..13].copy_from_slice(&[b'F', b'M', b'L', b'P', 2, 3, 8, 4, 3, 0, 0, 0xcc, 0x01]);
        file.extend((0..header.payload_len()).map(|i| (i % 251) as u8));
        let crc = checksum(&file);
        file.extend_from_slice(&crc.to_le_bytes());
        let read = read(&file).unwrap();
        assert_eq!((read.header().version(), read.header().architecture()), (2, arch));
        assert_eq!(read.payload()[100], 100);
        assert!(!read.extras().has_class_names() && !read.extras().has_input_quantizer());
    }

    #[test]
    fn extras_that_do_not_fit_the_model_are_refused() {
        // Names: one per class (3), none empty, UTF-8, each ended by a newline.
        for names in ["a\nb\n", "a\nb\nc\nd\n", "a\n\nc\n", "a\nb\nc"] {
            let arch = Architecture::new(&[8, 4, 3]).unwrap();
            let header = Header::new(arch, Activation::Sigmoid, Quant::F32);
            let extras = Extras::new(names.as_bytes(), &[]);
            let mut out = vec![0u8; header.with_extras(&extras).file_len()];
            let payload = vec![0u8; header.payload_len()];
            assert_eq!(write(&header, &payload, &extras, &mut out), Err(Error::ClassNames), "{names:?}");
        }
        let bad_utf8 = [0xff, b'\n', b'b', b'\n', b'c', b'\n'];
        assert_eq!(
            Extras::new(&bad_utf8, &[]).check(&Architecture::new(&[8, 4, 3]).unwrap(), Quant::F32),
            Err(Error::ClassNames)
        );
        // A quantizer: 8 finite bytes per input, on int8 models only.
        let arch = Architecture::new(&[2, 4, 3]).unwrap();
        let mut pairs = [0u8; 16];
        Extras::input_bytes(&[(1.0, 0.5), (2.0, -1.0)], &mut pairs).unwrap();
        assert_eq!(Extras::new(&[], &pairs).check(&arch, Quant::Int8), Ok(()));
        assert_eq!(Extras::new(&[], &pairs).check(&arch, Quant::F32), Err(Error::InputQuantizer));
        assert_eq!(Extras::new(&[], &pairs[..8]).check(&arch, Quant::Int8), Err(Error::InputQuantizer));
        Extras::input_bytes(&[(1.0, f32::NAN), (2.0, -1.0)], &mut pairs).unwrap();
        assert_eq!(Extras::new(&[], &pairs).check(&arch, Quant::Int8), Err(Error::InputQuantizer));
    }

    #[test]
    fn input_quantization_rounds_half_up_and_clamps() {
        assert_eq!(quantize_input(1.0, 10.0, 0.5), 11);
        assert_eq!(quantize_input(1.0, 10.0, 0.49), 10);
        assert_eq!(quantize_input(-3.0, 1.0, 100.0), 97);
        assert_eq!(quantize_input(1e9, 1.0, 0.0), 255);
        assert_eq!(quantize_input(-1e9, 1.0, 0.0), 0);
        assert_eq!(quantize_input(f32::NAN, 1.0, 0.0), 0);
        assert_eq!(quantize_input(f32::INFINITY, 1.0, 0.0), 255);
        assert_eq!(quantize_input(254.6, 1.0, 0.0), 255);
        assert_eq!(quantize_input(0.0, 0.0, 17.0), 17, "a constant feature");
    }

    #[test]
    fn round_trip() {
        let (header, file) = small();
        let read = read(&file).unwrap();
        assert_eq!(*read.header(), header);
        assert_eq!(read.payload()[100], 100);
        assert_eq!(read.payload().len(), header.payload_len());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (_, file) = small();
        for cut in 0..file.len() {
            assert!(read(&file[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(read(&file[..file.len() - 1]).unwrap_err(), Error::Truncated);
        assert_eq!(read(&file[..40]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let (_, mut file) = small();
        for at in 0..file.len() {
            for flip in [0x01, 0x80, 0xff] {
                file[at] ^= flip;
                assert!(read(&file).is_err(), "flip {flip:#x} at {at}");
                file[at] ^= flip;
            }
        }
        assert!(read(&file).is_ok());
    }

    #[test]
    fn trailing_bytes_and_nonzero_padding_are_malformed() {
        let (header, mut file) = small();
        file.push(0);
        assert_eq!(read(&file).unwrap_err(), Error::Malformed);
        file.pop();
        // Padding that is not zero, with a checksum that matches: still refused.
        file[40] = 1;
        let n = file.len();
        let crc = checksum(&file[..n - 4]);
        file[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(read(&file).unwrap_err(), Error::Malformed);
        assert!(header.file_len() == n);
    }

    #[test]
    fn other_versions_say_so() {
        let (_, mut file) = small();
        file[4] = 6;
        assert_eq!(read(&file).unwrap_err(), Error::UnsupportedVersion { found: 6 });
        assert_eq!(read(b"NOPE....").unwrap_err(), Error::BadMagic);
    }

    /// A version-1 file as version 1 wrote it: no padding, the payload as a byte string.
    fn v1_file(widths: [u32; 4], activation: Activation, quant: Quant, payload: &[u8]) -> Vec<u8> {
        let v1 = FileV1 { magic: MAGIC, version: 1, widths, activation, quant, payload };
        let mut out = vec![0u8; payload.len() + 64];
        let used = postcard::to_slice(&v1, &mut out).unwrap().len();
        let crc = checksum(&out[..used]);
        out.truncate(used);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn version_1_files_load() {
        let header = Header::new(Architecture::FMNIST, Activation::Sigmoid, Quant::Int8);
        let payload: Vec<u8> = (0..header.payload_len()).map(|i| (i % 253) as u8).collect();
        let file = v1_file([784, 512, 256, 10], Activation::Sigmoid, Quant::Int8, &payload);
        // Version 1's golden header: the payload length follows the fields directly.
        assert_eq!(
            file[..17],
            [b'F', b'M', b'L', b'P', 1, 0x90, 0x06, 0x80, 0x04, 0x80, 0x02, 10, 0, 1, 0xb5, 0xee, 0x20]
        );
        let read = read(&file).unwrap();
        assert_eq!(read.header().version(), 1);
        assert_eq!(read.header().architecture(), Architecture::FMNIST);
        assert_eq!(read.payload(), &payload[..]);
        for cut in (0..file.len()).step_by(9973).chain([file.len() - 1]) {
            assert!(super::read(&file[..cut]).is_err());
        }
        let short = v1_file([784, 512, 256, 10], Activation::Sigmoid, Quant::Int8, &payload[1..]);
        assert_eq!(
            super::read(&short).unwrap_err(),
            Error::PayloadSize { expected: payload.len(), found: payload.len() - 1 }
        );
    }
}
