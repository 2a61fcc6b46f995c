//! `cargo xtask <command>`: the project's one entry point for setup, builds and tests.
//!
//! Std only (no tch): it must build in seconds on a fresh machine, before libtorch exists.

mod bundle;
mod data;
mod env;
mod kernels;
mod setup;
mod test;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command> [options]

commands:
  setup                 create .venv with torch==2.11.0 (idempotent) and fetch the offline data
  data                  fetch the offline data sets only (.data/)
  kernels [--force]     build the CUDA kernel library into target/kernels/ (nvcc from PyPI;
                        ENGRAM_NVCC_FLAGS adds flags, e.g. -lineinfo)
  test [-- ARGS]        set up, compile-check the kernels, run every test and doc test
  quickstart            set up, train a small hybrid on CPU, sample from it, diagnose it
  diagnose CKPT [B] [--device D] [--suite quick|full] [--out DIR]
                        run the diagnostic suites on a checkpoint (or compare two)
  bench WHAT [ARGS]     run a benchmark (delta-rule, moe, ...) in release mode
  bundle --out DIR      release binaries + kernel library + run.sh for a CUDA host without Rust
  engram [ARGS]         run the engram CLI in release mode with the right environment";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "setup" => setup::run(rest),
        "data" => data::fetch_all().map(|_| ()),
        "kernels" => kernels::run(rest),
        "test" => test::run(rest),
        "quickstart" => quickstart(rest),
        "diagnose" => engram_release(&prepend("diagnose", rest)),
        "bench" => engram_release(&prepend("bench", rest)),
        "bundle" => bundle::run(rest),
        "engram" => engram_release(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prepend(first: &str, rest: &[String]) -> Vec<String> {
    std::iter::once(first.to_string()).chain(rest.iter().cloned()).collect()
}

/// Sets up, builds the CLI in release mode (with kernels when nvcc is usable) and runs it.
fn engram_release(args: &[String]) -> Result<(), String> {
    setup::ensure_venv()?;
    kernels::build_if_possible();
    env::cargo(&["build", "--release", "-p", "engram-cli"])?;
    let bin = env::root().join("target/release/engram");
    env::run_status(env::command(&bin).args(args))
}

fn quickstart(rest: &[String]) -> Result<(), String> {
    setup::ensure_venv()?;
    data::fetch_corpus()?;
    kernels::build_if_possible();
    env::cargo(&["build", "--release", "-p", "engram-cli"])?;
    let bin = env::root().join("target/release/engram");
    let run_dir = env::root().join("runs/quickstart");
    let cfg = env::root().join("configs/quickstart.json");
    let ck = run_dir.join("checkpoint");
    let device: Vec<String> = rest.to_vec();
    env::run_status(env::command(&bin).arg("train").arg("--config").arg(&cfg).arg("--out").arg(&run_dir).args(&device))?;
    env::run_status(env::command(&bin).arg("generate").arg(&ck).args(["--prompt", "ROMEO:", "--tokens", "200"]))?;
    env::run_status(env::command(&bin).arg("diagnose").arg(&ck).args(["--suite", "quick", "--out"]).arg(run_dir.join("diagnostics")))
}
