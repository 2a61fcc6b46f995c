//! # engram-memory
//!
//! Memory-augmented networks: the Differentiable Neural Computer and a few-shot memory transformer.
