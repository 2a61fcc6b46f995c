//! `engram bench <what> [options]`: benchmarks. Each lives in `bench/<name>.rs`.

use anyhow::Result;

mod delta_rule;
mod gdn;
mod moe;

#[derive(clap::Args)]
pub struct Args {
    /// Which benchmark: delta-rule, gdn, moe.
    #[arg(allow_hyphen_values = true)]
    what: String,
    /// Options of the benchmark.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    if matches!(args.what.as_str(), "-h" | "--help" | "help") {
        crate::print_subcommand_help("bench");
        return Ok(());
    }
    let argv: Vec<String> = std::iter::once(format!("engram bench {}", args.what)).chain(args.rest).collect();
    match args.what.as_str() {
        "delta-rule" => delta_rule::run(&argv),
        "gdn" => gdn::run(&argv),
        "moe" => moe::run(&argv),
        other => anyhow::bail!("unknown benchmark '{other}': expected delta-rule, gdn or moe"),
    }
}
