//! # engram-gdn
//!
//! The Gated DeltaNet + sliding-window-attention hybrid LM: model, data, training, generation.
