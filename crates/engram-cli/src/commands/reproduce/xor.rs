//! `engram reproduce xor`.

/// Runs the experiment; `argv[0]` is the command name, the rest its options.
pub fn run(_argv: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`engram reproduce xor` is not implemented yet")
}
