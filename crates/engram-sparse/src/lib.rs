//! # engram-sparse
//!
//! Sparse training: masked layers, SET, RigL and lottery tickets.
