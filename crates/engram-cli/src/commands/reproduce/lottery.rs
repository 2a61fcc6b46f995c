//! `engram reproduce lottery`: seed 004's lottery-ticket claim (a ViT at 49% sparsity beats its
//! dense self) checked by iterative magnitude pruning with rewinding and a random-reinit control,
//! on LeNet-300-100 or the seed's ViT. CIFAR-10 is not available offline, so the ViT runs on
//! Fashion-MNIST (28×28, 49 patches of 4×4).

use anyhow::{Context, Result};
use clap::Parser;
use engram_core::seed::HostRng;
use engram_sparse::lottery::{run_lottery, LotteryConfig, PruneScope, Rewind, RoundResult};
use engram_sparse::mask::DensityRule;
use engram_sparse::model::SparseMlp;
use engram_sparse::optim::OptimizerConfig;
use engram_sparse::plot::{Chart, Series};
use engram_sparse::vit::{Vit, VitConfig};
use tch::nn;

#[derive(Parser, Debug)]
#[command(name = "engram reproduce lottery", about = "Iterative magnitude pruning with rewinding; accuracy vs sparsity")]
struct Opts {
    /// Model: lenet (LeNet-300-100) or vit (6 layers, 6 heads, d=192, patch 4).
    #[arg(long, default_value = "lenet")]
    model: String,
    /// Data set: mnist5k or fashion.
    #[arg(long, default_value = "fashion")]
    data: String,
    /// Use only the first N training examples (0 = all).
    #[arg(long, default_value_t = 0)]
    train_limit: i64,
    /// ViT depth (seed 004: 6); smaller values shorten CPU runs.
    #[arg(long, default_value_t = 6)]
    vit_depth: i64,
    /// Pruning rounds after the dense run.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Fraction of remaining weights pruned per round.
    #[arg(long, default_value_t = 0.2)]
    rate: f64,
    /// global or layer.
    #[arg(long, default_value = "global")]
    scope: String,
    /// Rewind to this optimizer step of the dense run (0 = to initialisation).
    #[arg(long, default_value_t = 0)]
    rewind_step: usize,
    /// Epochs per round.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Minibatch size.
    #[arg(long, default_value_t = 60)]
    batch: i64,
    /// Adam learning rate (1.2e-3 for LeNet in Frankle & Carbin).
    #[arg(long, default_value_t = 1.2e-3)]
    lr: f64,
    /// Skip the random-reinit control.
    #[arg(long)]
    no_reinit: bool,
    #[command(flatten)]
    run: super::RunOpts,
}

/// Runs the experiment; `argv[0]` is the command name, the rest its options.
pub fn run(argv: &[String]) -> Result<()> {
    let Some(o) = crate::commands::parse_opts::<Opts>(argv)? else { return Ok(()) };
    let device = o.run.apply()?;
    let (name, data) = super::image_split(&o.data, o.train_limit, o.run.seed, device)?;
    let scope = match o.scope.as_str() {
        "global" => PruneScope::Global,
        "layer" => PruneScope::PerLayer,
        s => anyhow::bail!("--scope {s}: expected global or layer"),
    };
    let cfg = LotteryConfig {
        rounds: o.rounds,
        rate: o.rate,
        scope,
        rewind: if o.rewind_step == 0 { Rewind::Init } else { Rewind::Step(o.rewind_step) },
        epochs: o.epochs,
        batch: o.batch,
        optimizer: OptimizerConfig::Adam { lr: o.lr, weight_decay: 0.0 },
        seed: o.run.seed,
        random_reinit: !o.no_reinit,
    };
    println!("lottery tickets: {} on {name} ({} train / {} test), {cfg:?}", o.model, data.train.len(), data.test.len());
    let mut log = |r: &RoundResult| {
        let reinit = r.reinit_acc.map(|a| format!("{:.2}%", a * 100.0)).unwrap_or_else(|| "-".into());
        println!("round {:>2}: sparsity {:>6.2}%  nnz {:>8}  ticket {:.2}%  random reinit {reinit}", r.round, r.sparsity * 100.0, r.nnz, r.ticket_acc * 100.0);
    };
    let results = match o.model.as_str() {
        "lenet" => {
            let build = |p: &nn::Path| SparseMlp::new(p, &[784, 300, 100, 10], DensityRule::Dense, false, &mut HostRng::new(0));
            run_lottery(&build, &cfg, &data, device, &mut log)?
        }
        "vit" => {
            let vc = VitConfig { depth: o.vit_depth, ..VitConfig::seed004_fashion() };
            let build = |p: &nn::Path| Vit::new(p, vc);
            run_lottery(&build, &cfg, &data, device, &mut log)?
        }
        m => anyhow::bail!("--model {m}: expected lenet or vit"),
    };
    std::fs::create_dir_all(&o.run.out).with_context(|| format!("creating {}", o.run.out.display()))?;
    let stem = format!("lottery_{}_{name}", o.model);
    let json = o.run.out.join(format!("{stem}.json"));
    let report = serde_json::json!({ "experiment": "lottery", "model": o.model, "vit_depth": o.vit_depth, "data": name.to_string(), "train": data.train.len(), "config": cfg, "rounds": results });
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    // x: sparsity in %, y: accuracy in %; red = rewound ticket, blue = random reinit.
    let ticket: Vec<(f64, f64)> = results.iter().map(|r| (r.sparsity * 100.0, r.ticket_acc * 100.0)).collect();
    let reinit: Vec<(f64, f64)> = results.iter().filter_map(|r| r.reinit_acc.map(|a| (r.sparsity * 100.0, a * 100.0))).collect();
    let ys: Vec<f64> = ticket.iter().chain(&reinit).map(|p| p.1).collect();
    let lo = (ys.iter().cloned().fold(f64::INFINITY, f64::min) / 5.0).floor() * 5.0;
    let hi = ((ys.iter().cloned().fold(0.0, f64::max) / 5.0).ceil() * 5.0).max(lo + 5.0);
    let chart = Chart {
        x_range: (0.0, 100.0),
        y_range: (lo, hi),
        x_ticks: (0..=10).map(|i| i as f64 * 10.0).collect(),
        y_ticks: (0..=((hi - lo) / 5.0) as i64).map(|i| lo + 5.0 * i as f64).collect(),
        series: vec![Series { color: [200, 30, 30], points: ticket }, Series { color: [30, 60, 200], points: reinit }],
    };
    let png = o.run.out.join(format!("{stem}.png"));
    std::fs::write(&png, chart.to_png()?)?;
    println!("wrote {} and {} (red: rewound ticket, blue: random reinit; x sparsity %, y test accuracy %)", json.display(), png.display());
    Ok(())
}
