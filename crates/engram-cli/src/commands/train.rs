//! `engram train --config FILE [--device cpu|cuda|auto] [--out DIR] [--steps N] [--resume CKPT]
//! [--corpus PATH]`: trains the hybrid GDN + SWA model described by a run config
//! (`{"model": .., "train": .., "data": ..}`, see `configs/`).

use anyhow::{Context, Result};
use engram_core::device::DeviceChoice;
use engram_gdn::train::{train, RunConfig, TrainOptions};
use engram_core::distributed::{launch, Backend, ProcessGroup, RendezvousEnv};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Run config (JSON): model, train and data sections.
    #[arg(long)]
    config: PathBuf,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output folder (checkpoint/, metrics.jsonl, loss.png, summary.json); default runs/<config name>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override train.steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Continue from a checkpoint written by a previous run (weights, optimizer state, step).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Override data.corpus: a UTF-8 text file or folder.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Data-parallel processes (one per GPU with --device cuda; gloo on CPU). Each runs
    /// the same command with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, as torchrun does.
    #[arg(long, default_value_t = 1)]
    nproc: usize,
    /// Rendezvous port for --nproc.
    #[arg(long, default_value_t = 29500)]
    master_port: u16,
    /// CPU threads for libtorch (default: libtorch's choice; 1 helps on oversubscribed machines).
    #[arg(long)]
    threads: Option<i32>,
}

pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(args.nproc >= 1, "--nproc must be at least 1");
    let worker = std::env::var_os("RANK").is_some() && std::env::var_os("WORLD_SIZE").is_some();
    if args.nproc > 1 && !worker {
        return launch_workers(&args);
    }
    if let Some(n) = args.threads {
        anyhow::ensure!(n > 0, "--threads must be positive");
        tch::set_num_threads(n);
    }
    let mut cfg = RunConfig::from_file(&args.config)?;
    if let Some(s) = args.steps {
        cfg.train.steps = s;
    }
    if let Some(c) = args.corpus {
        cfg.data.corpus = Some(c);
    }
    cfg.validate()?;
    let mut device = args.device.parse::<DeviceChoice>()?.resolve()?;
    let group = if worker {
        let env = RendezvousEnv::from_env()?;
        let backend = if device.is_cuda() {
            device = DeviceChoice::Cuda(env.local_rank).resolve()?;
            Backend::Nccl
        } else {
            Backend::Gloo
        };
        Some(Arc::new(ProcessGroup::new(backend, &env, Duration::from_secs(600))?))
    } else {
        None
    };
    let lead = group.as_ref().is_none_or(|g| g.rank == 0);
    let out = args.out.unwrap_or_else(|| {
        let stem = args.config.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "run".into());
        PathBuf::from("runs").join(stem)
    });
    let opts = TrainOptions { out_dir: out.clone(), device, resume: args.resume, progress: !args.quiet, group };
    let s = train(&cfg, &opts).with_context(|| format!("training {}", args.config.display()))?;
    if !lead {
        return Ok(());
    }
    println!(
        "trained {} steps in {:.1} s ({:.0} tokens/s): held-out loss {:.4} nats/token vs unigram entropy {:.4}",
        s.steps, s.seconds, s.tokens_per_s, s.val_loss, s.unigram_entropy
    );
    if let Some(a) = s.gym_accuracy {
        println!("held-out memory-gym accuracy {:.1}%", a * 100.0);
    }
    println!("checkpoint: {}", s.checkpoint.display());
    println!("metrics:    {}  loss curve: {}", out.join("metrics.jsonl").display(), out.join("loss.png").display());
    Ok(())
}

/// Re-runs this command once per rank without `--nproc`; a failing rank stops the others.
fn launch_workers(args: &Args) -> Result<()> {
    let exe = std::env::current_exe().context("locating the engram binary")?;
    let mut argv: Vec<String> = Vec::new();
    let mut skip = false;
    for a in std::env::args().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if a == "--nproc" {
            skip = true;
            continue;
        }
        if a.starts_with("--nproc=") {
            continue;
        }
        argv.push(a);
    }
    println!("launching {} ranks on 127.0.0.1:{}", args.nproc, args.master_port);
    launch(args.nproc, &exe, &argv, args.master_port)?;
    Ok(())
}
