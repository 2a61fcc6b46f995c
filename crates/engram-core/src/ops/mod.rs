//! Tensor ops that libtorch does not provide.

pub mod clip_grad_norm;
pub mod delta_rule;
pub mod fused_adamw;

pub use clip_grad_norm::clip_grad_norm;
pub use delta_rule::{delta_rule, Backend, DeltaRuleOptions, Semantics};
