//! `engram`: the command-line tool. Each subcommand lives in `commands/<name>.rs`.

mod commands;
mod logger;

use clap::{CommandFactory, Parser, Subcommand};

/// Prints the long help of one top-level subcommand (for those whose `--help` passes through).
pub(crate) fn print_subcommand_help(name: &str) {
    let mut cmd = Cli::command();
    cmd.build(); // resolves the full usage name ("engram bench")
    if let Some(sub) = cmd.find_subcommand_mut(name) {
        let _ = sub.print_long_help();
    }
}

#[derive(Parser)]
#[command(name = "engram", version, about = "Research on memory in neural networks, on libtorch.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print libtorch version, CUDA availability, device name and kernel-library status.
    Info(commands::info::Args),
    /// Train a model from a config file (the hybrid GDN+SWA LM by default).
    Train(commands::train::Args),
    /// Sample text from a trained checkpoint.
    Generate(commands::generate::Args),
    /// Run the diagnostic suites on one checkpoint (or compare two).
    Diagnose(commands::diagnose::Args),
    /// Re-run a published experiment from the seeds.
    // The help flag passes through to the experiment (`engram reproduce moe --help`); the
    // command's own help is `engram reproduce --help` with no experiment, handled in run().
    #[command(disable_help_flag = true)]
    Reproduce(commands::reproduce::Args),
    /// Run a benchmark.
    #[command(disable_help_flag = true)]
    Bench(commands::bench::Args),
}

fn main() {
    logger::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => commands::info::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Generate(a) => commands::generate::run(a),
        Command::Diagnose(a) => commands::diagnose::run(a),
        Command::Reproduce(a) => commands::reproduce::run(a),
        Command::Bench(a) => commands::bench::run(a),
    };
    if let Err(e) = result {
        // One line per cause, no backtrace: users see what went wrong, not where in our code.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
