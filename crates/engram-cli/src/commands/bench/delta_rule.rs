//! `engram bench` for delta_rule.

/// Runs the benchmark; `argv[0]` is the command name, the rest its options.
pub fn run(_argv: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("this benchmark is not implemented yet")
}
