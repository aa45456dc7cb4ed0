//! The network's shape, fixed at compile time: 784-512-256-10.

/// Pixels per image (28 x 28), the input width.
pub const INPUT: usize = 784;
/// Units in the first hidden layer.
pub const HIDDEN1: usize = 512;
/// Units in the second hidden layer.
pub const HIDDEN2: usize = 256;
/// Classes, the output width.
pub const OUTPUT: usize = 10;

/// Layer widths in order, input first.
pub const LAYERS: [usize; 4] = [INPUT, HIDDEN1, HIDDEN2, OUTPUT];

/// Number of f32 parameters (weights and biases of the three dense layers).
pub const PARAMS: usize = INPUT * HIDDEN1 + HIDDEN1 + HIDDEN1 * HIDDEN2 + HIDDEN2 + HIDDEN2 * OUTPUT + OUTPUT;

/// Bytes of an f32 payload: every parameter as little-endian f32.
pub const F32_PAYLOAD_BYTES: usize = 4 * PARAMS;

/// Multiply-accumulates of one forward pass.
pub const MACS: usize = INPUT * HIDDEN1 + HIDDEN1 * HIDDEN2 + HIDDEN2 * OUTPUT;

const _: () = assert!(PARAMS == 535_818);
const _: () = assert!(MACS == 535_040);
