//! `engram diagnose <ckpt> [<ckpt-B>]`: what does a hybrid checkpoint remember? Runs the
//! retrieval suites and mechanism probes of `engram-diagnostics`, prints a summary table and
//! writes `report.json`, `report.md` and PNG plots (schema: docs/diagnostics.md).

use anyhow::{Context, Result};
use engram_core::device::DeviceChoice;
use engram_diagnostics::retrieval::SuiteConfig;
use engram_diagnostics::tasks::QueryStyle;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory (written by `engram train`).
    checkpoint: PathBuf,
    /// A second checkpoint to compare side by side.
    checkpoint_b: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// quick (minutes on a CPU) or full (tighter intervals, longer contexts).
    #[arg(long, default_value = "quick")]
    suite: String,
    /// Output folder (default: <checkpoint>/diagnostics).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the trial generators (default: the suite's).
    #[arg(long)]
    seed: Option<u64>,
    /// How single-needle suites ask: `cue` (a lone CUE, as the model's retrieval task) or
    /// `cue-marker` (CUE MARKER, as the memory gym).
    #[arg(long, default_value = "cue")]
    query: String,
}

pub fn run(args: Args) -> Result<()> {
    let device = DeviceChoice::from_str(&args.device)?.resolve()?;
    let mut suite = SuiteConfig::by_name(&args.suite)?;
    if let Some(s) = args.seed {
        suite.seed = s;
    }
    suite.single_query = match args.query.as_str() {
        "cue" => QueryStyle::Cue,
        "cue-marker" => QueryStyle::CueMarker,
        other => anyhow::bail!("unknown --query '{other}' (expected cue or cue-marker)"),
    };
    let mut ckpts = vec![args.checkpoint.as_path()];
    if let Some(b) = &args.checkpoint_b {
        ckpts.push(b.as_path());
    }
    let out = args.out.clone().unwrap_or_else(|| args.checkpoint.join("diagnostics"));
    let report = engram_diagnostics::hybrid::diagnose_checkpoints(&ckpts, device, suite, Some(&out))?;
    print!("{}", engram_diagnostics::report::summary_table(&report.models));
    for n in &report.notices {
        println!("notice: {n}");
    }
    let out = out.canonicalize().with_context(|| format!("report folder {} vanished", out.display()))?;
    println!("wrote {}/report.json, report.md and {} plots ({:.1} s)", out.display(), report.plots.len(), report.elapsed_s);
    Ok(())
}
