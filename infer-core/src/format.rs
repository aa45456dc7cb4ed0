//! The model file: one format for the trainer (which writes it) and firmware (which reads it).
//!
//! # Version 2 (written by this build)
//!
//! | bytes | field | encoding |
//! |---|---|---|
//! | 0..4 | magic | `FMLP` |
//! | | version | postcard varint u16, `2` |
//! | | layer widths | varint count (3 to 6), then each width as a varint u32, input first |
//! | | activation | varint enum tag ([`Activation`]: sigmoid 0, ReLU 1) |
//! | | quantization | varint enum tag ([`Quant`]: f32 0, int8 1) |
//! | | payload length | varint u32 |
//! | ..64 | padding | zero bytes up to [`HEADER_BYTES`] |
//! | 64.. | payload | the parameters ([`crate::layout`]) |
//! | last 4 | checksum | CRC-32 (ISO-HDLC, as zlib) of everything before it, u32 LE |
//!
//! The header is padded so that the payload starts 64 bytes into the file: a model
//! embedded in a 64-byte-aligned static, or read into an aligned buffer, has aligned
//! weights (the x86 int8 kernel loads 64 weight bytes at a time, and a load that straddles
//! two cache lines costs two).
//!
//! # Version 1
//!
//! Magic, version `1`, four varint u32 widths, activation, quantization, the payload as
//! a varint length and its bytes (no padding), the checksum. Version 1 only ever held
//! the 784-512-256-10 network, whose payloads are laid out exactly as in version 2;
//! [`read`] loads such files.

use serde::{Deserialize, Serialize};

use crate::arch::{Architecture, MAX_HIDDEN, MAX_WIDTH};
use crate::error::Error;
use crate::layout::{F32Layout, Int8Layout};
pub use crate::spec::{Activation, FORMAT_VERSION, Quant};

/// First four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"FMLP";
/// Bytes before the payload in a version-2 file (header fields, then zero padding).
pub const HEADER_BYTES: usize = 64;
/// Bytes a file adds around its payload: the header and the checksum.
pub const MAX_OVERHEAD: usize = HEADER_BYTES + 4;

/// Bytes of the largest model file there can be: f32, five layers of 1024 by 1024 (21 MB).
/// A reader may refuse a larger file unread.
pub const MAX_FILE_BYTES: usize = {
    let widest = match Architecture::new(&[MAX_WIDTH; MAX_HIDDEN + 2]) {
        Ok(a) => a,
        Err(_) => panic!("the widest architecture is valid"),
    };
    Header::new(widest, Activation::Relu, Quant::F32).file_len()
};

/// Slice-by-16 tables (16 KiB) on 64-bit hosts; one 1 KiB table where flash is scarce.
#[cfg(target_pointer_width = "64")]
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
#[cfg(not(target_pointer_width = "64"))]
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (ISO-HDLC, as zlib) of `bytes`: the checksum a model file ends with.
pub fn checksum(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

/// Everything in a model file but its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    version: u16,
    architecture: Architecture,
    activation: Activation,
    quant: Quant,
}

impl Header {
    /// The header this build writes for a model of `architecture`.
    pub const fn new(architecture: Architecture, activation: Activation, quant: Quant) -> Header {
        Header { version: FORMAT_VERSION, architecture, activation, quant }
    }

    /// Format version of the file it was read from (or [`FORMAT_VERSION`]).
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
            Quant::Int8 => Int8Layout::new(&self.architecture, self.activation).len(),
        }
    }

    /// Bytes of the whole file.
    pub const fn file_len(&self) -> usize {
        self.payload_len() + MAX_OVERHEAD
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
}

/// Encodes a model file into `out` (at least [`Header::file_len`] bytes), returning the
/// bytes used.
pub fn write(header: &Header, payload: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    if payload.len() != header.payload_len() {
        return Err(Error::PayloadSize { expected: header.payload_len(), found: payload.len() });
    }
    let len = header.file_len();
    let found = out.len();
    let out = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len, found })?;
    out[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(payload);
    seal(header, out)
}

/// Writes the header and the checksum around a payload already in place at
/// `out[HEADER_BYTES..]`; `out` is exactly the file.
pub(crate) fn seal(header: &Header, out: &mut [u8]) -> Result<usize, Error> {
    let mut widths = heapless::Vec::new();
    for &w in header.architecture.widths() {
        // Cannot fail: an architecture has at most MAX_LAYERS + 1 widths.
        widths.push(u32::from(w)).map_err(|_| Error::Malformed)?;
    }
    let fields = HeaderV2 {
        version: FORMAT_VERSION,
        widths,
        activation: header.activation,
        quant: header.quant,
        payload_len: header.payload_len() as u32,
    };
    let head = &mut out[..HEADER_BYTES];
    head[..MAGIC.len()].copy_from_slice(&MAGIC);
    let used = postcard::to_slice(&fields, &mut head[MAGIC.len()..]).map_err(|_| Error::Malformed)?.len();
    head[MAGIC.len() + used..].fill(0);
    let body = HEADER_BYTES + header.payload_len();
    let crc = checksum(&out[..body]);
    out.get_mut(body..body + 4).ok_or(Error::Malformed)?.copy_from_slice(&crc.to_le_bytes());
    Ok(body + 4)
}

/// Validates a model file of version 1 or 2: magic, version, checksum, architecture and
/// payload size.
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
        Ok((FORMAT_VERSION, _)) => read_v2(bytes),
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

fn read_v2(bytes: &[u8]) -> Result<ModelFile<'_>, Error> {
    // The header says how long the file is: a cut-short file is found without reading
    // (and checksumming) the rest.
    let head = bytes.get(..HEADER_BYTES);
    let fields = head.and_then(|h| postcard::take_from_bytes::<HeaderV2>(&h[MAGIC.len()..]).ok());
    let Some((fields, padding)) = fields else {
        // A short file whose header cannot be read: the checksum tells corrupt from cut.
        if bytes.len() < HEADER_BYTES + 4 {
            return Err(Error::Truncated);
        }
        check_crc(&bytes[..bytes.len() - 4], &bytes[bytes.len() - 4..])?;
        return Err(Error::Malformed);
    };
    let len = HEADER_BYTES.saturating_add(fields.payload_len as usize).saturating_add(4);
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
    let header = Header { version: FORMAT_VERSION, architecture, activation: fields.activation, quant: fields.quant };
    let payload = &body[HEADER_BYTES..];
    if payload.len() != header.payload_len() {
        return Err(Error::PayloadSize { expected: header.payload_len(), found: payload.len() });
    }
    Ok(ModelFile { header, payload })
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
    let header = Header { version: 1, architecture, activation: file.activation, quant: file.quant };
    if file.payload.len() != header.payload_len() {
        return Err(Error::PayloadSize { expected: header.payload_len(), found: file.payload.len() });
    }
    Ok(ModelFile { header, payload: file.payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    /// A small f32 model file: 8-4-3.
    fn small() -> (Header, Vec<u8>) {
        let arch = Architecture::new(&[8, 4, 3]).unwrap();
        let header = Header::new(arch, Activation::Sigmoid, Quant::F32);
        let payload: Vec<u8> = (0..header.payload_len()).map(|i| (i % 251) as u8).collect();
        let mut out = vec![0xaa; header.file_len()];
        assert_eq!(write(&header, &payload, &mut out).unwrap(), out.len());
        (header, out)
    }

    #[test]
    fn golden_bytes_of_version_2() {
        let (header, file) = small();
        assert_eq!(header.payload_len(), 4 * (8 * 4 + 4 + 4 * 3 + 3));
        // magic, version 2, 3 widths 8 4 3, sigmoid 0, f32 0, payload length 204, zeros.
        let mut head = [0u8; HEADER_BYTES];
        head[..14].copy_from_slice(&[b'F', b'M', b'L', b'P', 2, 3, 8, 4, 3, 0, 0, 0xcc, 0x01, 0]);
        assert_eq!(file[..HEADER_BYTES], head);
        assert_eq!(file.len(), HEADER_BYTES + 204 + 4);
        assert_eq!(file[HEADER_BYTES..HEADER_BYTES + 3], [0, 1, 2], "the payload starts at 64");
        let crc = checksum(&file[..file.len() - 4]);
        assert_eq!(file[file.len() - 4..], crc.to_le_bytes());
    }

    #[test]
    fn golden_header_of_the_study_network() {
        let header = Header::new(Architecture::FMNIST, Activation::Relu, Quant::Int8);
        let payload = vec![0u8; header.payload_len()];
        let mut file = vec![0u8; header.file_len()];
        write(&header, &payload, &mut file).unwrap();
        // 784 = 0x90 0x06, 512 = 0x80 0x04, 256 = 0x80 0x02; ReLU 1, int8 1; 538_165 =
        // 0xb5 0xec 0x20.
        let fields = [b'F', b'M', b'L', b'P', 2, 4, 0x90, 0x06, 0x80, 0x04, 0x80, 0x02, 10, 1, 1, 0xb5, 0xec, 0x20];
        assert_eq!(file[..fields.len()], fields);
        assert!(file[fields.len()..HEADER_BYTES].iter().all(|&b| b == 0));
        assert_eq!(file.len(), 64 + 538_165 + 4);
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
        file[4] = 3;
        assert_eq!(read(&file).unwrap_err(), Error::UnsupportedVersion { found: 3 });
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
