//! `engram diagnose`.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Arguments (being implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub fn run(_args: Args) -> Result<()> {
    anyhow::bail!("`engram diagnose` is not implemented yet")
}
