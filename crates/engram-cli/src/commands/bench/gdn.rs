//! `engram bench gdn`: training throughput (tokens/s) and process GPU memory of the hybrid at
//! the seed's config (d=512, H=8, K=64, V=128, vocab 50257, "GS": 33,217,560 parameters), by
//! default at B=4, T=2048 and B=8, T=4096. The PyTorch + fla peer is `scripts/gpu/hybrid_torch.py`.

use anyhow::Result;
use clap::Parser;
use engram_core::device::DeviceChoice;
use engram_gdn::bench::{markdown, train_throughput_traced};
use engram_gdn::HybridConfig;

#[derive(Parser, Debug)]
#[command(about = "Hybrid GDN+SWA training throughput at the seed config")]
struct Opts {
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Shapes as BxT, comma separated (run smallest first: the memory column is a process peak).
    #[arg(long, value_delimiter = ',', default_value = "4x2048,8x4096")]
    shapes: Vec<String>,
    /// Untimed steps.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// fp32 activations (default: bf16 on CUDA, fp32 on the CPU).
    #[arg(long)]
    fp32: bool,
    /// Use the seed's non-causal final-state retrieval read (one delta-rule pass fewer).
    #[arg(long)]
    seed_compat: bool,
    /// A model config JSON instead of the seed's.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Write the rows as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Record the timed steps of the first shape with libtorch's profiler into this Chrome trace
    /// (JSON; `scripts/gpu/trace_summary.py` tabulates it). Adds profiler overhead to that shape.
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
}

/// Runs the benchmark; `argv[0]` is the command name, the rest its options.
pub fn run(argv: &[String]) -> Result<()> {
    let Some(o) = crate::commands::parse_opts::<Opts>(argv)? else { return Ok(()) };
    let device = o.device.parse::<DeviceChoice>()?.resolve()?;
    let mut cfg = match &o.config {
        Some(p) => serde_json::from_str::<HybridConfig>(&std::fs::read_to_string(p)?)?,
        None => HybridConfig::seed_gs(),
    };
    cfg.seed_compat |= o.seed_compat;
    cfg.validate()?;
    let shapes = o
        .shapes
        .iter()
        .map(|s| {
            let (b, t) = s.split_once('x').ok_or_else(|| anyhow::anyhow!("shape '{s}' is not BxT"))?;
            Ok((b.trim().parse::<i64>()?, t.trim().parse::<i64>()?))
        })
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(shapes.iter().all(|&(b, t)| b > 0 && t > 1), "shapes need B ≥ 1 and T ≥ 2");
    anyhow::ensure!(o.steps > 0, "--steps must be positive");
    let bf16 = device.is_cuda() && !o.fp32;
    println!(
        "hybrid {} d={} H={} K={} V={} vocab {} on {device:?}, {} activations, {} reads",
        cfg.pattern,
        cfg.d_model,
        cfg.heads,
        cfg.key_dim,
        cfg.value_dim,
        cfg.vocab,
        if bf16 { "bf16" } else { "fp32" },
        if cfg.seed_compat { "seed final-state" } else { "causal per-position" }
    );
    let rows = train_throughput_traced(&cfg, &shapes, device, bf16, o.warmup, o.steps, o.trace.as_deref())?;
    print!("{}", markdown(&rows));
    if let Some(p) = o.json {
        std::fs::write(p, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}
