//! `cargo xtask test`: the one test command (CI's `.ci/run` calls exactly this).
//!
//! Sets up the venv and data, compile-checks the CUDA kernels, runs every unit, integration
//! and doc test of the workspace, and prints a one-line summary.

use crate::env::{self, root};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

pub fn run(args: &[String]) -> Result<(), String> {
    let started = std::time::Instant::now();
    crate::setup::ensure_venv()?;
    crate::data::fetch_all()?;
    let kernels = crate::kernels::run(&[]);
    if let Err(e) = &kernels {
        eprintln!("xtask: kernel compile check FAILED: {e}");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = env::command(cargo);
    cmd.args(["test", "--workspace"]);
    // cargo runs tests on one thread per core; libtorch's own pool on top of that oversubscribes
    // small machines and spins (measured: 5-10x slower on 2 cores), so each test gets one thread.
    for var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            cmd.env(var, "1");
        }
    }
    cmd.args(args.iter().skip_while(|a| *a == "--"));
    cmd.current_dir(root()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start cargo test: {e}"))?;
    let mut totals = [0u64; 4]; // passed, failed, ignored, suites
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.trim().strip_prefix("test result: ") {
                totals[3] += 1;
                for part in rest.split(';') {
                    let mut it = part.split_whitespace().rev();
                    let (Some(label), Some(num)) = (it.next(), it.next()) else { continue };
                    let n: u64 = num.trim_start_matches("ok.").trim_start_matches("FAILED.").trim().parse().unwrap_or(0);
                    match label {
                        "passed" => totals[0] += n,
                        "failed" => totals[1] += n,
                        "ignored" => totals[2] += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let ok = status.success() && kernels.is_ok();
    println!(
        "xtask test: {} — {} passed, {} failed, {} ignored in {} suites; kernels {}; {:.0}s",
        if ok { "OK" } else { "FAILED" },
        totals[0],
        totals[1],
        totals[2],
        totals[3],
        if kernels.is_ok() { "compiled" } else { "FAILED to compile" },
        started.elapsed().as_secs_f64()
    );
    if ok { Ok(()) } else { Err("tests failed".into()) }
}
