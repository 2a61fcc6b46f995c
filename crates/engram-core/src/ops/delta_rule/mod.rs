//! The gated delta rule (placeholder: being implemented; see issue 11).

/// Options of [`delta_rule`].
#[derive(Debug, Default)]
pub struct DeltaRuleOptions;

/// Not implemented yet.
pub fn delta_rule() -> crate::Result<()> {
    Err(crate::Error::InvalidArgument("delta_rule: not implemented yet".into()))
}
