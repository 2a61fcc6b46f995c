//! `engram`: the command-line tool. Each subcommand lives in `commands/<name>.rs`.

mod commands;
mod logger;

use clap::{Parser, Subcommand};

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
    Reproduce(commands::reproduce::Args),
    /// Run a benchmark.
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
