//! # engram-moe
//!
//! Mixture of experts: soft, top-k token-choice and expert-choice routing; attention experiments.
