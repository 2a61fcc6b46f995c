//! The Split Fashion-MNIST benchmark: 5 tasks of 2 classes, an MLP 784-400-400, Adam 1e-3,
//! every strategy in the class- and task-incremental settings over several seeds, with wall time.

use crate::data::TrainTest;
use crate::error::Result;
use crate::metrics::{median, std_dev};
use crate::scenario::{split, Setting};
use crate::strategies::{run_strategy, StrategyKind, StrategyParams};
use crate::template::{RunResult, TrainConfig};
use serde::{Deserialize, Serialize};

/// Benchmark options.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Hidden widths.
    pub hidden: Vec<i64>,
    /// Epochs per experience.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Settings.
    pub settings: Vec<Setting>,
    /// Strategies.
    pub strategies: Vec<StrategyKind>,
    /// Strategy hyper-parameters.
    pub params: StrategyParams,
    /// Training samples kept per class (None: all 6,000), to shorten runs.
    pub train_per_class: Option<usize>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            hidden: vec![400, 400],
            epochs: 1,
            batch_size: 128,
            lr: 1e-3,
            seeds: vec![0, 1, 2],
            settings: vec![Setting::ClassIncremental, Setting::TaskIncremental],
            strategies: StrategyKind::ALL.to_vec(),
            params: StrategyParams::default(),
            train_per_class: None,
        }
    }
}

/// One (setting, strategy, seed) run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRun {
    /// Setting.
    pub setting: Setting,
    /// Strategy name.
    pub strategy: String,
    /// Seed.
    pub seed: u64,
    /// The run.
    pub result: RunResult,
}

/// Aggregate over seeds of one (setting, strategy).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    /// Setting.
    pub setting: Setting,
    /// Strategy name.
    pub strategy: String,
    /// Seeds run.
    pub n_seeds: usize,
    /// Mean and sample sd of the final average accuracy (percent).
    pub acc_mean: f64,
    /// Sample sd of the final average accuracy (percent).
    pub acc_sd: f64,
    /// Median BWT (percent), when defined.
    pub bwt_median: Option<f64>,
    /// Median forgetting (percent), when defined.
    pub forgetting_median: Option<f64>,
    /// Median wall time per run, seconds.
    pub wall_s_median: f64,
}

fn subsample(data: &TrainTest, per_class: usize) -> Result<TrainTest> {
    let labels = data.train.labels();
    let mut count = std::collections::HashMap::new();
    let mut keep = Vec::new();
    for (i, y) in labels.iter().enumerate() {
        let c = count.entry(*y).or_insert(0usize);
        if *c < per_class {
            keep.push(i as i64);
            *c += 1;
        }
    }
    Ok(TrainTest { train: data.train.subset(&keep)?, test: data.test.clone() })
}

/// Runs the benchmark on `data` (Fashion-MNIST), calling `on_run` after every run.
pub fn run(data: &TrainTest, cfg: &BenchConfig, mut on_run: impl FnMut(&BenchRun)) -> Result<Vec<BenchRun>> {
    let data = match cfg.train_per_class {
        Some(k) => subsample(data, k)?,
        None => data.clone(),
    };
    let mut runs = Vec::new();
    for &setting in &cfg.settings {
        let scenario = split("fashion-mnist", &data, 2, setting)?;
        for &kind in &cfg.strategies {
            if !kind.supports(setting) {
                continue;
            }
            for &seed in &cfg.seeds {
                let tc = TrainConfig {
                    epochs: cfg.epochs,
                    batch_size: cfg.batch_size,
                    optimizer: crate::optim::OptimizerConfig::adam(cfg.lr),
                    clip_grad_norm: None,
                    seed,
                    progress: true,
                };
                let result = run_strategy(kind, &scenario, &cfg.hidden, &cfg.params, &tc)?;
                let r = BenchRun { setting, strategy: kind.name().to_string(), seed, result };
                on_run(&r);
                runs.push(r);
            }
        }
    }
    Ok(runs)
}

/// Aggregates runs per (setting, strategy), in first-seen order.
pub fn aggregate(runs: &[BenchRun]) -> Vec<BenchRow> {
    let mut keys: Vec<(Setting, String)> = Vec::new();
    for r in runs {
        let k = (r.setting, r.strategy.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(setting, strategy)| {
            let sel: Vec<&BenchRun> = runs.iter().filter(|r| r.setting == setting && r.strategy == strategy).collect();
            let acc: Vec<f64> = sel.iter().map(|r| 100.0 * r.result.accuracy.average_accuracy()).collect();
            let opt_median = |f: &dyn Fn(&BenchRun) -> Option<f64>| -> Option<f64> {
                let v: Vec<f64> = sel.iter().filter_map(|r| f(r)).map(|x| 100.0 * x).collect();
                (!v.is_empty()).then(|| median(&v))
            };
            BenchRow {
                setting,
                n_seeds: sel.len(),
                acc_mean: acc.iter().sum::<f64>() / acc.len() as f64,
                acc_sd: std_dev(&acc),
                bwt_median: opt_median(&|r| r.result.accuracy.backward_transfer()),
                forgetting_median: opt_median(&|r| r.result.accuracy.forgetting()),
                wall_s_median: median(&sel.iter().map(|r| r.result.wall_s).collect::<Vec<_>>()),
                strategy,
            }
        })
        .collect()
}

/// The aggregate as a Markdown table.
pub fn markdown_table(rows: &[BenchRow]) -> String {
    let mut s = String::from("| setting | strategy | seeds | ACC % (mean ± sd) | BWT % (median) | forgetting % (median) | wall s / run (median) |\n|---|---|---|---|---|---|---|\n");
    let f = |v: Option<f64>| v.map_or("—".to_string(), |x| format!("{x:.1}"));
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {:.1} ± {:.1} | {} | {} | {:.1} |\n",
            r.setting.short(),
            r.strategy,
            r.n_seeds,
            r.acc_mean,
            r.acc_sd,
            f(r.bwt_median),
            f(r.forgetting_median),
            r.wall_s_median
        );
    }
    s
}
