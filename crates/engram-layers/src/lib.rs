//! # engram-layers
//!
//! Layers, attention, optimizers, LR schedules and losses with PyTorch parity. Built on
//! libtorch's ATen ops through tch; adds what tch lacks, starting with PyTorch-exact
//! initialisation so that a Rust model and a PyTorch model seeded alike start bit-identical.

pub mod init;
pub mod linear;

pub use linear::{Linear, LinearConfig};
