//! The model file: one format for the trainer (which writes it) and firmware (which reads it).
//!
//! Layout, all of it postcard-encoded except the checksum:
//!
//! | field        | encoding                                                  |
//! |--------------|-----------------------------------------------------------|
//! | magic        | 4 bytes, `FMLP`                                           |
//! | version      | varint u16, [`FORMAT_VERSION`]                           |
//! | architecture | four varint u32 layer widths                              |
//! | activation   | varint enum tag ([`Activation`])                          |
//! | quantization | varint enum tag ([`Quant`])                               |
//! | payload      | varint length, then the bytes                             |
//! | checksum     | CRC-32 (ISO-HDLC, as zlib) of everything before it, u32 LE |
//!
//! An f32 payload holds `W1, b1, W2, b2, W3, b3` as little-endian f32, each weight
//! matrix row-major with shape (inputs, outputs), as Keras stores a Dense kernel.
//! An int8 payload is laid out in [`crate::int8net`]'s documentation.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::arch;

/// First four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"FMLP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Upper bound on the bytes a file adds around its payload (header, length, checksum).
pub const MAX_OVERHEAD: usize = 64;

/// Slice-by-16 tables (16 KiB) on 64-bit hosts; one 1 KiB table where flash is scarce.
#[cfg(target_pointer_width = "64")]
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
#[cfg(not(target_pointer_width = "64"))]
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Why a byte string is not a model this build can run. Never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the smallest possible model file.
    Truncated,
    /// The file does not start with [`MAGIC`]: not a model file.
    BadMagic,
    /// Written by another format version.
    UnsupportedVersion {
        /// The version the file says it has.
        found: u16,
    },
    /// The checksum does not match the contents: the file is corrupt.
    Checksum {
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of the contents as read.
        computed: u32,
    },
    /// The header or payload could not be decoded.
    Malformed,
    /// The layer widths are not the 784-512-256-10 network this build runs.
    WrongArchitecture {
        /// The widths the file declares.
        found: [u32; 4],
    },
    /// The payload is not the size its architecture and quantization need.
    PayloadSize {
        /// Bytes the header implies.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The quantization scheme is not the one the caller asked for.
    WrongQuantization,
    /// The output buffer is too small to hold the encoded file.
    BufferTooSmall,
    /// A parameter is NaN or infinite.
    NonFinite,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("file is truncated"),
            Error::BadMagic => f.write_str("not a model file (bad magic bytes)"),
            Error::UnsupportedVersion { found } => write!(
                f,
                "model format version {found} is not supported (this build reads version {FORMAT_VERSION}); re-export the model with this build's trainer"
            ),
            Error::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")
            }
            Error::Malformed => f.write_str("header or payload cannot be decoded"),
            Error::WrongArchitecture { found } => write!(
                f,
                "architecture {}-{}-{}-{} is not the {}-{}-{}-{} network this build runs",
                found[0],
                found[1],
                found[2],
                found[3],
                arch::INPUT,
                arch::HIDDEN1,
                arch::HIDDEN2,
                arch::OUTPUT
            ),
            Error::PayloadSize { expected, found } => {
                write!(f, "payload has {found} bytes, the architecture needs {expected}")
            }
            Error::WrongQuantization => f.write_str("model has another quantization scheme than the one asked for"),
            Error::BufferTooSmall => f.write_str("output buffer too small"),
            Error::NonFinite => f.write_str("a parameter is NaN or infinite"),
        }
    }
}

impl core::error::Error for Error {}

/// Hidden-layer nonlinearity. Dropout only matters in training, so a dropout model is `Relu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Activation {
    /// Logistic sigmoid, `1 / (1 + e^-x)`.
    Sigmoid,
    /// Rectified linear unit, `max(x, 0)`.
    Relu,
}

/// How the parameters in the payload are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Quant {
    /// Every parameter as little-endian f32.
    F32,
    /// int8 weights with per-output-channel scales, 8-bit activations and integer
    /// requantization (see [`crate::int8net`]).
    Int8,
}

/// Layer widths, input first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Architecture {
    /// Widths of the input, both hidden layers and the output.
    pub layers: [u32; 4],
}

impl Architecture {
    /// The network this build runs.
    pub const FMNIST: Architecture =
        Architecture { layers: [arch::INPUT as u32, arch::HIDDEN1 as u32, arch::HIDDEN2 as u32, arch::OUTPUT as u32] };
}

/// Everything in a model file but its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Format version of the file.
    pub version: u16,
    /// Layer widths.
    pub architecture: Architecture,
    /// Hidden-layer activation.
    pub activation: Activation,
    /// Parameter storage.
    pub quant: Quant,
}

impl Header {
    /// Header of an f32 model of this build's architecture.
    pub const fn f32(activation: Activation) -> Header {
        Header {
            magic: MAGIC,
            version: FORMAT_VERSION,
            architecture: Architecture::FMNIST,
            activation,
            quant: Quant::F32,
        }
    }

    /// Header of an int8 model of this build's architecture.
    pub const fn int8(activation: Activation) -> Header {
        Header { quant: Quant::Int8, ..Header::f32(activation) }
    }

    /// Payload bytes this header implies.
    pub fn payload_len(&self) -> usize {
        match (self.quant, self.activation) {
            (Quant::F32, _) => arch::F32_PAYLOAD_BYTES,
            (Quant::Int8, Activation::Relu) => arch::INT8_RELU_PAYLOAD_BYTES,
            (Quant::Int8, Activation::Sigmoid) => arch::INT8_SIGMOID_PAYLOAD_BYTES,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    header: Header,
    #[serde(borrow)]
    payload: &'a [u8],
}

/// A validated model file: its header and a borrowed payload.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile<'a> {
    /// The decoded header.
    pub header: Header,
    /// The payload bytes, borrowed from the input.
    pub payload: &'a [u8],
}

/// Encodes a model file into `out`, returning the bytes used.
///
/// `out` needs `payload.len() + MAX_OVERHEAD` bytes at most.
pub fn write(header: &Header, payload: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    if payload.len() != header.payload_len() {
        return Err(Error::PayloadSize { expected: header.payload_len(), found: payload.len() });
    }
    let envelope = Envelope { header: *header, payload };
    let used = postcard::to_slice(&envelope, out).map_err(|_| Error::BufferTooSmall)?.len();
    let crc = CRC.checksum(&out[..used]);
    let tail = out.get_mut(used..used + 4).ok_or(Error::BufferTooSmall)?;
    tail.copy_from_slice(&crc.to_le_bytes());
    Ok(used + 4)
}

/// Validates a model file: magic, version, checksum, architecture and payload size.
///
/// Any byte string gives `Ok` or an `Err`; none panics.
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
    if let Ok((version, _)) = postcard::take_from_bytes::<u16>(&bytes[MAGIC.len()..])
        && version != FORMAT_VERSION
    {
        return Err(Error::UnsupportedVersion { found: version });
    }
    // The header says how long the file is: a cut-short file is found without reading
    // (and checksumming) the rest.
    if let Ok((_, rest)) = postcard::take_from_bytes::<Header>(bytes)
        && let Ok((len, after)) = postcard::take_from_bytes::<u32>(rest)
    {
        let expected = (bytes.len() - after.len()).saturating_add(len as usize).saturating_add(4);
        if bytes.len() < expected {
            return Err(Error::Truncated);
        }
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = CRC.checksum(body);
    if stored != computed {
        return Err(Error::Checksum { stored, computed });
    }
    let (envelope, rest) = postcard::take_from_bytes::<Envelope<'_>>(body).map_err(|_| Error::Malformed)?;
    if !rest.is_empty() {
        return Err(Error::Malformed);
    }
    let header = envelope.header;
    if header.architecture != Architecture::FMNIST {
        return Err(Error::WrongArchitecture { found: header.architecture.layers });
    }
    if envelope.payload.len() != header.payload_len() {
        return Err(Error::PayloadSize { expected: header.payload_len(), found: envelope.payload.len() });
    }
    Ok(ModelFile { header, payload: envelope.payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    fn buffer() -> Vec<u8> {
        vec![0u8; arch::F32_PAYLOAD_BYTES + MAX_OVERHEAD]
    }

    fn small_file(buf: &mut [u8]) -> usize {
        let mut payload = vec![0u8; arch::F32_PAYLOAD_BYTES];
        for (i, b) in payload.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        write(&Header::f32(Activation::Sigmoid), &payload, buf).unwrap()
    }

    #[test]
    fn golden_header_bytes() {
        let mut buf = buffer();
        let len = small_file(&mut buf);
        // magic, version 1, 784 (varint 0x90 0x06), 512 (0x80 0x04), 256 (0x80 0x02), 10,
        // activation Sigmoid = 0, quant F32 = 0, payload length 2_143_272 as varint.
        let expected_head: [u8; 17] =
            [b'F', b'M', b'L', b'P', 1, 0x90, 0x06, 0x80, 0x04, 0x80, 0x02, 10, 0, 0, 0xa8, 0xe8, 0x82];
        assert_eq!(buf[..17], expected_head[..]);
        assert_eq!(len, 17 + 1 + arch::F32_PAYLOAD_BYTES + 4);
        let crc = CRC.checksum(&buf[..len - 4]);
        assert_eq!(buf[len - 4..len], crc.to_le_bytes());
    }

    #[test]
    fn round_trip() {
        let mut buf = buffer();
        let len = small_file(&mut buf);
        let file = read(&buf[..len]).unwrap();
        assert_eq!(file.header, Header::f32(Activation::Sigmoid));
        assert_eq!(file.payload[1000], (1000 % 251) as u8);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut buf = buffer();
        let len = small_file(&mut buf);
        for cut in (0..len).step_by(40_009).chain([len - 1, len - 4, 5, 3, 0]) {
            assert!(read(&buf[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(read(&buf[..len / 2]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn flipped_bytes_are_errors() {
        let mut buf = buffer();
        let len = small_file(&mut buf);
        for at in (0..len).step_by(50_021).chain(0..20).chain(len - 4..len) {
            buf[at] ^= 0x5a;
            assert!(read(&buf[..len]).is_err(), "flip at {at}");
            buf[at] ^= 0x5a;
        }
        assert!(read(&buf[..len]).is_ok());
    }

    #[test]
    fn other_version_says_so() {
        let mut buf = buffer();
        let len = small_file(&mut buf);
        buf[4] = 2;
        assert_eq!(read(&buf[..len]).unwrap_err(), Error::UnsupportedVersion { found: 2 });
        assert_eq!(read(b"NOPE....").unwrap_err(), Error::BadMagic);
    }
}
