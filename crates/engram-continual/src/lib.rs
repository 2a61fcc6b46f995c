//! # engram-continual
//!
//! Continual learning: scenarios, strategies (replay, EWC, SI, LwF, A-GEM, ...) and metrics.
