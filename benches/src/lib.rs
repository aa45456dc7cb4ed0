//! Criterion benchmarks of the trainer's and infer-core's kernels; see `benches/`.
//!
//! `cargo bench -p benches` runs them all; `cargo bench -p benches -- --quick` a short pass.
