//! `engram reproduce sparse`: seed 004's SET claim (98.33% on MNIST with 139,700 of 2,794,000
//! weights) checked against dense, static-sparse, Erdős–Rényi-SET and RigL networks trained
//! identically.

use anyhow::{Context, Result};
use clap::Parser;
use engram_sparse::optim::OptimizerConfig;
use engram_sparse::set_experiment::{run_variant, SetConfig, Variant};

#[derive(Parser, Debug)]
#[command(name = "engram reproduce sparse", about = "SET / RigL / static / dense on the 784-1000-1000-1000-10 MLP")]
struct Opts {
    /// Data set: mnist5k (4,000 train / 1,000 test) or fashion (60,000 / 10,000).
    #[arg(long, default_value = "fashion")]
    data: String,
    /// Use only the first N training examples (0 = all).
    #[arg(long, default_value_t = 0)]
    train_limit: i64,
    /// Epochs per network.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Minibatch size.
    #[arg(long, default_value_t = 128)]
    batch: i64,
    /// SGD learning rate (momentum 0.9, weight decay 2e-4 as in the SET paper).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Density of the sparse networks (0.05 gives seed 004's 139,700 weights).
    #[arg(long, default_value_t = 0.05)]
    density: f64,
    /// SET's ζ.
    #[arg(long, default_value_t = 0.3)]
    zeta: f64,
    /// Comma-separated variants: dense, static, set, set-er, rigl.
    #[arg(long, default_value = "dense,static,set,set-er,rigl")]
    variants: String,
    #[command(flatten)]
    run: super::RunOpts,
}

/// Runs the experiment; `argv[0]` is the command name, the rest its options.
pub fn run(argv: &[String]) -> Result<()> {
    let Some(o) = crate::commands::parse_opts::<Opts>(argv)? else { return Ok(()) };
    let device = o.run.apply()?;
    let (name, data) = super::image_split(&o.data, o.train_limit, o.run.seed, device)?;
    let variants = o.variants.split(',').map(|s| Variant::parse(s.trim())).collect::<engram_sparse::Result<Vec<_>>>()?;
    let cfg = SetConfig {
        epochs: o.epochs,
        batch: o.batch,
        density: o.density,
        zeta: o.zeta,
        seed: o.run.seed,
        optimizer: OptimizerConfig::Sgd { lr: o.lr, momentum: 0.9, weight_decay: 2e-4 },
        variants: variants.clone(),
        ..SetConfig::default()
    };
    println!("SET reproduction on {name} ({} train / {} test), {} epochs, device {device:?}", data.train.len(), data.test.len(), cfg.epochs);
    let mut results = Vec::new();
    for v in variants {
        let r = run_variant(v, &cfg, &data, device, &mut |l| println!("{l}"))?;
        println!("{:>7}: {:.2}% test accuracy with {} of {} weights ({:.1}s)", r.variant, r.final_test_acc * 100.0, r.nnz, r.numel, r.seconds);
        results.push(r);
    }
    std::fs::create_dir_all(&o.run.out).with_context(|| format!("creating {}", o.run.out.display()))?;
    let path = o.run.out.join(format!("sparse_{name}.json"));
    let report = serde_json::json!({ "experiment": "sparse", "data": name.to_string(), "train": data.train.len(), "test": data.test.len(), "config": cfg, "results": results });
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", path.display());
    Ok(())
}
