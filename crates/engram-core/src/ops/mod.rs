//! Tensor ops that libtorch does not provide.

pub mod delta_rule;
pub mod fused_adamw;

pub use delta_rule::{delta_rule, Backend, DeltaRuleOptions, Semantics};
