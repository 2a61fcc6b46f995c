//! `engram bench moe`: forward+backward throughput of top-1, top-2 and expert-choice MoE layers
//! at E ∈ {4, 8, 16} against dense FFNs with the same active parameters, in one run.

use anyhow::Result;
use clap::Parser;
use engram_moe::bench::{markdown, run as run_bench, BenchConfig};

#[derive(Parser, Debug)]
#[command(about = "MoE layer forward+backward throughput vs dense FFNs")]
struct Opts {
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Sequences per batch (one routing group each).
    #[arg(long, default_value_t = 8)]
    batch: i64,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq_len: i64,
    /// Model width.
    #[arg(long, default_value_t = 256)]
    d_model: i64,
    /// Hidden width of one expert (dense baselines: d_ff and 2·d_ff).
    #[arg(long, default_value_t = 512)]
    d_ff: i64,
    /// Expert counts.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16")]
    experts: Vec<i64>,
    /// Token-choice capacity factor.
    #[arg(long, default_value_t = 1.25)]
    capacity_factor: f64,
    /// Expert-choice capacity factor c (c experts per token on average).
    #[arg(long, default_value_t = 2.0)]
    expert_choice_factor: f64,
    /// Untimed iterations.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed iterations (median reported).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Write the rows as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Runs the benchmark; `argv[0]` is the command name, the rest its options.
pub fn run(argv: &[String]) -> Result<()> {
    let Some(o) = crate::commands::parse_opts::<Opts>(argv)? else { return Ok(()) };
    let device = match o.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "cuda" => tch::Device::Cuda(0),
        d if d.starts_with("cuda:") => tch::Device::Cuda(d[5..].parse()?),
        other => anyhow::bail!("unknown device '{other}': expected cpu, cuda or cuda:N"),
    };
    if let tch::Device::Cuda(_) = device {
        anyhow::ensure!(tch::Cuda::is_available(), "CUDA requested but not available");
    }
    anyhow::ensure!(o.iters > 0 && !o.experts.is_empty(), "need at least one iteration and one expert count");
    let cfg = BenchConfig {
        batch: o.batch,
        seq_len: o.seq_len,
        d_model: o.d_model,
        d_ff: o.d_ff,
        experts: o.experts.clone(),
        capacity_factor: o.capacity_factor,
        expert_choice_factor: o.expert_choice_factor,
        warmup: o.warmup,
        iters: o.iters,
    };
    println!(
        "engram bench moe: device {:?}, {} threads, tokens {} ({}x{}), d_model {}, d_ff {}, capacity factor {} (token choice), c = {} (expert choice)",
        device,
        tch::get_num_threads(),
        o.batch * o.seq_len,
        o.batch,
        o.seq_len,
        o.d_model,
        o.d_ff,
        o.capacity_factor,
        o.expert_choice_factor
    );
    let rows = run_bench(&cfg, device)?;
    print!("{}", markdown(&rows));
    if let Some(p) = &o.json {
        std::fs::write(p, serde_json::to_string_pretty(&rows)?)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
