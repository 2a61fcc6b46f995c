//! Continual-learning strategies, each a [`Plugin`](crate::template::Plugin) (or an architecture
//! choice, for multi-head), and a runner that builds any of them by name.

pub mod buffer;
pub mod distillation;
pub mod regularization;
pub mod rehearsal;

pub use distillation::Lwf;
pub use regularization::{fisher_diagonal, Ewc, Mas, Si};
pub use rehearsal::{AGem, BufferPolicy, DerPlusPlus, GDumb, Replay};

use crate::error::{invalid, Result};
use crate::metrics::AccuracyMatrix;
use crate::model::{Heads, Mlp, MlpConfig};
use crate::scenario::{joint_training_set, Scenario, Setting};
use crate::template::{run_epochs, train_stream, Context, Learner, Plugin, RunResult, TrainConfig};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};

/// Every strategy the runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Fine-tuning: no protection (the lower bound).
    Naive,
    /// One model trained on all tasks' data at once (the upper bound; not continual).
    Joint,
    /// Replay with a reservoir buffer.
    Replay,
    /// Replay with a class-balanced buffer.
    ReplayBalanced,
    /// EWC, one penalty per past task.
    Ewc,
    /// Online EWC.
    OnlineEwc,
    /// Synaptic Intelligence.
    Si,
    /// Memory Aware Synapses.
    Mas,
    /// Learning without Forgetting.
    Lwf,
    /// Averaged GEM.
    AGem,
    /// GDumb.
    GDumb,
    /// Dark Experience Replay++.
    DerPlusPlus,
    /// A head per task on a shared body (task-incremental only).
    MultiHead,
    /// Reservoir replay combined with EWC (two plugins at once).
    ReplayEwc,
}

impl StrategyKind {
    /// Every strategy, in report order.
    pub const ALL: [StrategyKind; 14] = [
        StrategyKind::Naive,
        StrategyKind::Joint,
        StrategyKind::Replay,
        StrategyKind::ReplayBalanced,
        StrategyKind::Ewc,
        StrategyKind::OnlineEwc,
        StrategyKind::Si,
        StrategyKind::Mas,
        StrategyKind::Lwf,
        StrategyKind::AGem,
        StrategyKind::GDumb,
        StrategyKind::DerPlusPlus,
        StrategyKind::MultiHead,
        StrategyKind::ReplayEwc,
    ];

    /// The report name.
    pub fn name(&self) -> &'static str {
        match self {
            StrategyKind::Naive => "naive",
            StrategyKind::Joint => "joint",
            StrategyKind::Replay => "replay",
            StrategyKind::ReplayBalanced => "replay-balanced",
            StrategyKind::Ewc => "ewc",
            StrategyKind::OnlineEwc => "online-ewc",
            StrategyKind::Si => "si",
            StrategyKind::Mas => "mas",
            StrategyKind::Lwf => "lwf",
            StrategyKind::AGem => "a-gem",
            StrategyKind::GDumb => "gdumb",
            StrategyKind::DerPlusPlus => "der++",
            StrategyKind::MultiHead => "multi-head",
            StrategyKind::ReplayEwc => "replay+ewc",
        }
    }

    /// Whether the strategy makes sense in `setting` (multi-head needs the task id).
    pub fn supports(&self, setting: Setting) -> bool {
        *self != StrategyKind::MultiHead || setting == Setting::TaskIncremental
    }
}

impl std::str::FromStr for StrategyKind {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| invalid(format!("unknown strategy '{s}': expected one of {}", StrategyKind::ALL.map(|k| k.name()).join(", "))))
    }
}

/// Hyper-parameters of every strategy (defaults: the benchmark's values).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StrategyParams {
    /// Buffer size of replay, DER++, GDumb and A-GEM's total memory.
    pub memory: usize,
    /// Replayed samples per mini-batch.
    pub replay_batch: usize,
    /// EWC λ.
    pub ewc_lambda: f64,
    /// Online EWC decay γ.
    pub ewc_gamma: f64,
    /// Samples used for the Fisher (None: all).
    pub fisher_samples: Option<usize>,
    /// SI strength c and damping ξ.
    pub si_c: f64,
    /// SI damping.
    pub si_xi: f64,
    /// MAS λ.
    pub mas_lambda: f64,
    /// LwF α and temperature.
    pub lwf_alpha: f64,
    /// LwF temperature.
    pub lwf_temperature: f64,
    /// DER++ α (logit matching) and β (labels).
    pub der_alpha: f64,
    /// DER++ β.
    pub der_beta: f64,
    /// GDumb passes over its buffer per experience.
    pub gdumb_passes: usize,
}

impl Default for StrategyParams {
    fn default() -> Self {
        StrategyParams {
            memory: 2000,
            replay_batch: 128,
            ewc_lambda: 5000.0,
            ewc_gamma: 1.0,
            fisher_samples: Some(2000),
            si_c: 1.0,
            si_xi: 0.1,
            mas_lambda: 1.0,
            lwf_alpha: 1.0,
            lwf_temperature: 2.0,
            der_alpha: 0.5,
            der_beta: 0.5,
            gdumb_passes: 10,
        }
    }
}

/// The plugins of a strategy.
pub fn plugins_for(kind: StrategyKind, p: &StrategyParams, n_tasks: usize, seed: u64) -> Result<Vec<Box<dyn Plugin>>> {
    let per_exp = (p.memory / n_tasks.max(1)).max(1);
    Ok(match kind {
        StrategyKind::Naive | StrategyKind::Joint | StrategyKind::MultiHead => Vec::new(),
        StrategyKind::Replay => vec![Box::new(Replay::new(p.memory, p.replay_batch, BufferPolicy::Reservoir, seed)?)],
        StrategyKind::ReplayBalanced => vec![Box::new(Replay::new(p.memory, p.replay_batch, BufferPolicy::ClassBalanced, seed)?)],
        StrategyKind::Ewc => vec![Box::new(Ewc::separate(p.ewc_lambda, p.fisher_samples))],
        StrategyKind::OnlineEwc => vec![Box::new(Ewc::online(p.ewc_lambda, p.ewc_gamma, p.fisher_samples))],
        StrategyKind::Si => vec![Box::new(Si::new(p.si_c, p.si_xi))],
        StrategyKind::Mas => vec![Box::new(Mas::new(p.mas_lambda, 0.5, p.fisher_samples))],
        StrategyKind::Lwf => vec![Box::new(Lwf::new(p.lwf_alpha, p.lwf_temperature))],
        StrategyKind::AGem => vec![Box::new(AGem::new(per_exp, p.replay_batch * 2, seed))],
        StrategyKind::GDumb => vec![Box::new(GDumb::new(p.memory, p.gdumb_passes, seed))],
        StrategyKind::DerPlusPlus => vec![Box::new(DerPlusPlus::new(p.memory, p.der_alpha, p.der_beta, p.replay_batch, seed))],
        StrategyKind::ReplayEwc => vec![
            Box::new(Replay::new(p.memory, p.replay_batch, BufferPolicy::Reservoir, seed)?),
            Box::new(Ewc::separate(p.ewc_lambda, p.fisher_samples)),
        ],
    })
}

/// The heads a strategy needs in `scenario`: a head per task for multi-head, else one shared head.
pub fn heads_for(kind: StrategyKind, scenario: &Scenario) -> Heads {
    if kind == StrategyKind::MultiHead {
        Heads::PerTask { n_classes: scenario.n_classes, classes: scenario.experiences.iter().map(|e| e.classes.clone()).collect() }
    } else {
        Heads::Single(scenario.n_classes)
    }
}

/// Builds a fresh MLP (seeded with `seed` through libtorch's generator) and runs `kind` on `scenario`.
/// The joint upper bound trains once on all tasks' data and reports a single row.
pub fn run_strategy(
    kind: StrategyKind,
    scenario: &Scenario,
    hidden: &[i64],
    params: &StrategyParams,
    cfg: &TrainConfig,
) -> Result<RunResult> {
    if !kind.supports(scenario.setting) {
        return Err(invalid(format!("{} needs the task-incremental setting", kind.name())));
    }
    let input = scenario.experiences[0].train.dim();
    let device = scenario.experiences[0].train.x.device();
    let mlp_cfg = MlpConfig { input, hidden: hidden.to_vec(), heads: heads_for(kind, scenario) };
    let model = {
        let _g = engram_core::seed::global_rng_lock();
        engram_core::seed::manual_seed(cfg.seed);
        Mlp::new(&mlp_cfg, device)?
    };
    let mut learner = Learner::new(model, scenario)?;
    if kind == StrategyKind::Joint {
        let start = std::time::Instant::now();
        let initial = crate::template::evaluate_all(&learner, scenario)?;
        let data = joint_training_set(scenario)?;
        let mut ctx = Context { experience: 0, seen_classes: (0..scenario.n_classes).collect(), current_classes: (0..scenario.n_classes).collect(), iteration: 0, seed: cfg.seed };
        let mut rng = HostRng::new(cfg.seed);
        let steps = run_epochs(&mut learner, &data, &mut [], cfg, cfg.epochs, &mut ctx, &mut rng, None)?;
        let row = crate::template::evaluate_all(&learner, scenario)?;
        return Ok(RunResult { accuracy: AccuracyMatrix::new(vec![row], Some(initial))?, wall_s: start.elapsed().as_secs_f64(), steps });
    }
    let mut plugins = plugins_for(kind, params, scenario.n_tasks(), cfg.seed)?;
    train_stream(&mut learner, scenario, &mut plugins, cfg)
}
