//! `engram reproduce fewshot`: seed 004's memory-augmented transformer ("33.3% on 3-way from 6
//! examples", which is chance) re-run on real images: 3-way 2-shot episodes from mnist5k (or
//! Fashion-MNIST) with the evaluation classes held out from training, reported with a 95%
//! confidence interval against chance and against a nearest-prototype baseline.

use anyhow::{Context, Result};
use clap::Parser;
use engram_memory::fewshot::{evaluate, nearest_prototype_baseline, train_fewshot, EpisodeSampler, FewShotConfig};
use engram_sparse::datasets::{self, DatasetName};
use tch::{nn, Tensor};

#[derive(Parser, Debug)]
#[command(name = "engram reproduce fewshot", about = "Memory-augmented transformer, N-way K-shot on held-out classes")]
struct Opts {
    /// Data set: mnist5k or fashion.
    #[arg(long, default_value = "mnist5k")]
    data: String,
    /// Classes used for evaluation only (comma-separated); the rest train.
    #[arg(long, default_value = "7,8,9")]
    test_classes: String,
    /// Classes per episode.
    #[arg(long, default_value_t = 3)]
    ways: i64,
    /// Support examples per class.
    #[arg(long, default_value_t = 2)]
    shots: i64,
    /// Queries per class.
    #[arg(long, default_value_t = 5)]
    queries: i64,
    /// Model width.
    #[arg(long, default_value_t = 128)]
    dim: i64,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: i64,
    /// Transformer layers.
    #[arg(long, default_value_t = 2)]
    layers: i64,
    /// External memory slots.
    #[arg(long, default_value_t = 500)]
    slots: i64,
    /// Episodes per step.
    #[arg(long, default_value_t = 16)]
    batch: i64,
    /// Training steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Evaluation episodes.
    #[arg(long, default_value_t = 2000)]
    eval_episodes: usize,
    #[command(flatten)]
    run: super::RunOpts,
}

/// Runs the experiment; `argv[0]` is the command name, the rest its options.
pub fn run(argv: &[String]) -> Result<()> {
    let Some(o) = crate::commands::parse_opts::<Opts>(argv)? else { return Ok(()) };
    let device = o.run.apply()?;
    let name: DatasetName = o.data.parse()?;
    let split = datasets::load(name, &datasets::data_root(), o.run.seed)?;
    // Episodes come from classes, not from the train/test split of images: pool every image.
    let x = Tensor::cat(&[&split.train.x, &split.test.x], 0).to_device(device);
    let y = Tensor::cat(&[&split.train.y, &split.test.y], 0).to_device(device);
    let test_classes: Vec<i64> = o.test_classes.split(',').map(|s| s.trim().parse::<i64>()).collect::<Result<_, _>>().context("--test-classes")?;
    let train_classes: Vec<i64> = (0..10).filter(|c| !test_classes.contains(c)).collect();
    if train_classes.len() < o.ways as usize || test_classes.len() < o.ways as usize {
        anyhow::bail!("need at least {} training and {} test classes", o.ways, o.ways);
    }
    let cfg = FewShotConfig { ways: o.ways, shots: o.shots, queries: o.queries, dim: o.dim, heads: o.heads, layers: o.layers, slots: o.slots, batch: o.batch, steps: o.steps, lr: o.lr, seed: o.run.seed };
    let train = EpisodeSampler::new(&x, &y, &train_classes)?;
    let test = EpisodeSampler::new(&x, &y, &test_classes)?;
    println!("few-shot {}-way {}-shot on {name}: train classes {train_classes:?}, held-out classes {test_classes:?}", o.ways, o.shots);
    let vs = nn::VarStore::new(device);
    let t0 = std::time::Instant::now();
    let (model, log) = train_fewshot(&vs, 784, &train, &cfg, 100, &mut |s, l| println!("step {s:>5}: episode loss {l:.4}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let eval_seed = o.run.seed + 12345;
    let acc = evaluate(&model, &test, &cfg, o.eval_episodes, eval_seed)?;
    let seen = evaluate(&model, &train, &cfg, o.eval_episodes.min(500), eval_seed)?;
    let proto = nearest_prototype_baseline(&test, &cfg, o.eval_episodes, eval_seed)?;
    let chance = 1.0 / o.ways as f64;
    println!("held-out classes: {:.2}% ± {:.2}% (95% CI, {} episodes); chance {:.2}%; {}", acc.mean * 100.0, acc.ci95 * 100.0, acc.episodes, chance * 100.0, if acc.above(chance) { "above chance" } else { "NOT above chance" });
    println!("nearest-prototype on raw pixels: {:.2}% ± {:.2}%", proto.mean * 100.0, proto.ci95 * 100.0);
    println!("training classes (new episodes): {:.2}% ± {:.2}%", seen.mean * 100.0, seen.ci95 * 100.0);
    let params: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    std::fs::create_dir_all(&o.run.out).with_context(|| format!("creating {}", o.run.out.display()))?;
    let path = o.run.out.join(format!("fewshot_{name}.json"));
    let report = serde_json::json!({ "experiment": "fewshot", "data": name.to_string(), "config": cfg, "parameters": params, "train_seconds": secs, "train_classes": train_classes, "test_classes": test_classes, "chance": chance, "held_out": acc, "training_classes": seen, "prototype_baseline": proto, "log": log });
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("{params} parameters, {secs:.0}s training; wrote {}", path.display());
    Ok(())
}
