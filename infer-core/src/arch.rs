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

/// Inputs that share one 32-bit word of an int8 weight row (see [`crate::int8net`]).
pub const GROUP: usize = 4;

/// Outputs per block of an int8 weight matrix (see [`crate::int8net`]).
pub const BLOCK: usize = 128;

/// Weight bytes of an int8 payload: one byte per weight.
pub const INT8_WEIGHT_BYTES: usize = INPUT * HIDDEN1 + HIDDEN1 * HIDDEN2 + HIDDEN2 * OUTPUT;

/// Per-output-channel bytes of an int8 payload: an i16 bias and an i16 multiplier per unit.
pub const INT8_CHANNEL_BYTES: usize = 4 * (HIDDEN1 + HIDDEN2 + OUTPUT);

/// Per-layer bytes of an int8 payload: rounding shift, multiplier shift, zero point.
pub const INT8_LAYER_BYTES: usize = 3 * 3;

/// Bytes of the sigmoid lookup table of an int8 sigmoid model.
pub const SIGMOID_TABLE_BYTES: usize = 256;

/// Bytes of an int8 ReLU payload: weights, channel and layer parameters, the f32 score scale.
pub const INT8_RELU_PAYLOAD_BYTES: usize = INT8_WEIGHT_BYTES + INT8_CHANNEL_BYTES + INT8_LAYER_BYTES + 4;

/// Bytes of an int8 sigmoid payload: a ReLU payload plus the sigmoid table.
pub const INT8_SIGMOID_PAYLOAD_BYTES: usize = INT8_RELU_PAYLOAD_BYTES + SIGMOID_TABLE_BYTES;

/// Multiply-accumulates of one forward pass.
pub const MACS: usize = INPUT * HIDDEN1 + HIDDEN1 * HIDDEN2 + HIDDEN2 * OUTPUT;

const _: () = assert!(PARAMS == 535_818);
const _: () = assert!(MACS == 535_040);
const _: () = assert!(INPUT.is_multiple_of(GROUP) && HIDDEN1.is_multiple_of(GROUP) && HIDDEN2.is_multiple_of(GROUP));
