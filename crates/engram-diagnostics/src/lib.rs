//! # engram-diagnostics
//!
//! What a trained hybrid model remembers: retrieval suites, mechanism probes, reports and plots.
