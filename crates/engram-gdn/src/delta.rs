//! The delta-rule op of engram-core, used by the G layers and by the S layers' state reads.

pub(crate) use engram_core::ops::delta_rule::{delta_rule, seed_to_standard, DeltaRuleOptions, Semantics};
