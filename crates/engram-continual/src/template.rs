//! The training template: one loop over the stream's experiences, with hooks where strategies
//! (plugins) act. Per experience:
//!
//! ```text
//! before_experience → train_set (may replace the data) → optimizer built (reset per experience)
//!   for each epoch, each mini-batch:
//!     adapt_batch (replay adds samples) → forward → loss + loss_terms (EWC, SI, LwF, DER++ ...)
//!     → before_backward (A-GEM reference gradient) → backward → after_backward (gradient hooks)
//!     → clip → optimizer step → after_step (SI path integral, buffer updates)
//! after_experience (Fisher, importances, snapshots, memories) → evaluate every task → row of R
//! ```
//!
//! Plugins compose: each one only adds samples, loss terms or gradient edits, so replay + EWC
//! is simply both plugins in the list.

use crate::data::Dataset;
use crate::error::{invalid, Result};
use crate::metrics::AccuracyMatrix;
use crate::model::{Mlp, MASKED};
use crate::optim::{clip_grad_norm_, OptimizerConfig};
use crate::scenario::{Experience, Scenario, Setting};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// A model in a setting: the network plus what the setting lets it output.
#[derive(Debug)]
pub struct Learner {
    /// The network.
    pub model: Mlp,
    /// The setting.
    pub setting: Setting,
    /// `[T, C]`: the classes task `t` may output (used to mask a shared head in task-IL).
    pub class_mask: Tensor,
}

impl Learner {
    /// A learner for `scenario` with network `model`.
    pub fn new(model: Mlp, scenario: &Scenario) -> Result<Self> {
        if model.n_classes() != scenario.n_classes {
            return Err(invalid(format!(
                "the network outputs {} classes but scenario '{}' has {}",
                model.n_classes(),
                scenario.name,
                scenario.n_classes
            )));
        }
        let device = model.params()[0].device();
        Ok(Learner { setting: scenario.setting, class_mask: scenario.class_mask(device), model })
    }

    /// Which outputs each sample may use, `[B, C]` (all true outside task-IL).
    pub fn valid_outputs(&self, t: &Tensor) -> Tensor {
        if self.setting == Setting::TaskIncremental {
            self.class_mask.index_select(0, t)
        } else {
            Tensor::ones([t.size()[0], self.model.n_classes()], (Kind::Bool, t.device()))
        }
    }

    /// Logits as the setting allows them (other tasks' classes at [`MASKED`] in task-IL).
    pub fn logits(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.logits_with(&self.model.params(), x, t)
    }

    /// [`Learner::logits`] with other parameter values (a snapshot).
    pub fn logits_with(&self, params: &[Tensor], x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let z = self.model.forward_with(params, x, t)?;
        if self.setting == Setting::TaskIncremental && !self.model.is_multi_head() {
            Ok(z.masked_fill(&self.valid_outputs(t).logical_not(), MASKED))
        } else {
            Ok(z)
        }
    }

    /// Mean cross-entropy of `logits` against `y`.
    pub fn loss(logits: &Tensor, y: &Tensor) -> Tensor {
        logits.cross_entropy_for_logits(y)
    }

    /// Accuracy (fraction in `[0, 1]`) on `data`, in batches, without gradients.
    pub fn accuracy(&self, data: &Dataset) -> Result<f64> {
        if data.is_empty() {
            return Err(invalid("accuracy of an empty set"));
        }
        let mut correct = 0i64;
        tch::no_grad(|| -> Result<()> {
            let n = data.len() as i64;
            let mut start = 0;
            while start < n {
                let len = 4096.min(n - start);
                let z = self.logits(&data.x.narrow(0, start, len), &data.t.narrow(0, start, len))?;
                correct += z.argmax(-1, false).eq_tensor(&data.y.narrow(0, start, len)).sum(Kind::Int64).int64_value(&[]);
                start += len;
            }
            Ok(())
        })?;
        Ok(correct as f64 / data.len() as f64)
    }
}

/// One mini-batch: inputs, labels, task ids.
#[derive(Debug)]
pub struct Batch {
    /// Inputs `[B, D]`.
    pub x: Tensor,
    /// Labels `[B]`.
    pub y: Tensor,
    /// Task ids `[B]`.
    pub t: Tensor,
    /// How many leading rows are the current experience's own data (the rest was added by plugins).
    pub n_current: i64,
}

impl Batch {
    /// Appends `extra` samples (replayed ones) after the current rows.
    pub fn append(&mut self, extra: &Dataset) {
        self.x = Tensor::cat(&[&self.x, &extra.x], 0);
        self.y = Tensor::cat(&[&self.y, &extra.y], 0);
        self.t = Tensor::cat(&[&self.t, &extra.t], 0);
    }
    /// The current experience's own rows.
    pub fn current(&self) -> Dataset {
        Dataset {
            x: self.x.narrow(0, 0, self.n_current),
            y: self.y.narrow(0, 0, self.n_current),
            t: self.t.narrow(0, 0, self.n_current),
        }
    }
}

/// What the loop knows at a hook.
#[derive(Debug, Clone)]
pub struct Context {
    /// Index of the current experience.
    pub experience: usize,
    /// Classes of every experience seen so far, the current one included.
    pub seen_classes: Vec<i64>,
    /// Classes of the current experience.
    pub current_classes: Vec<i64>,
    /// Iterations done in this experience.
    pub iteration: usize,
    /// Host RNG for sampling (seeded from the run's seed).
    pub seed: u64,
}

/// A continual-learning strategy as a set of hooks. Every method has a do-nothing default.
pub trait Plugin {
    /// Name for reports.
    fn name(&self) -> String;
    /// Before anything happens in an experience.
    fn before_experience(&mut self, _l: &mut Learner, _exp: &Experience, _ctx: &Context) -> Result<()> {
        Ok(())
    }
    /// The data to train on in this experience (GDumb trains on its buffer instead).
    fn train_set(&mut self, _l: &mut Learner, current: Dataset, _ctx: &Context) -> Result<Dataset> {
        Ok(current)
    }
    /// Extra samples for the mini-batch (replay).
    fn adapt_batch(&mut self, _l: &Learner, _batch: &mut Batch, _ctx: &Context) -> Result<()> {
        Ok(())
    }
    /// Extra loss terms, added to the cross-entropy (regularisers, distillation).
    fn loss_terms(&mut self, _l: &Learner, _batch: &Batch, _logits: &Tensor, _ctx: &Context) -> Result<Vec<Tensor>> {
        Ok(Vec::new())
    }
    /// After the loss is built, before its backward pass.
    fn before_backward(&mut self, _l: &Learner, _batch: &Batch, _ctx: &Context) -> Result<()> {
        Ok(())
    }
    /// After backward, before clipping and the step: the gradients may be edited here.
    fn after_backward(&mut self, _l: &Learner, _ctx: &Context) -> Result<()> {
        Ok(())
    }
    /// After the optimizer step.
    fn after_step(&mut self, _l: &Learner, _batch: &Batch, _logits: &Tensor, _ctx: &Context) -> Result<()> {
        Ok(())
    }
    /// After training on an experience, before evaluation.
    fn after_experience(&mut self, _l: &mut Learner, _exp: &Experience, _ctx: &Context) -> Result<()> {
        Ok(())
    }
}

/// Training hyper-parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over each experience's data.
    pub epochs: usize,
    /// Mini-batch size (of current data; replay adds to it).
    pub batch_size: usize,
    /// Optimizer (rebuilt at the start of every experience).
    pub optimizer: OptimizerConfig,
    /// Global gradient-norm clip.
    pub clip_grad_norm: Option<f64>,
    /// Seed of the host RNG (shuffles, buffer sampling).
    pub seed: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { epochs: 1, batch_size: 128, optimizer: OptimizerConfig::adam(1e-3), clip_grad_norm: None, seed: 0, progress: false }
    }
}

/// What a run over a stream produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// The accuracy matrix (rows: after training experience i; columns: test set of task j).
    pub accuracy: AccuracyMatrix,
    /// Wall time of training and evaluation, seconds.
    pub wall_s: f64,
    /// Optimizer steps taken.
    pub steps: usize,
}

/// Trains `learner` on every experience of `scenario` in order, with `plugins`, evaluating all
/// tasks' test sets after each experience (and once before training, for forward transfer).
pub fn train_stream(learner: &mut Learner, scenario: &Scenario, plugins: &mut [Box<dyn Plugin>], cfg: &TrainConfig) -> Result<RunResult> {
    if cfg.batch_size == 0 {
        return Err(invalid("batch size must be positive"));
    }
    let start = std::time::Instant::now();
    let n_tasks = scenario.n_tasks();
    let initial: Vec<f64> = scenario.experiences.iter().map(|e| learner.accuracy(&e.test)).collect::<Result<_>>()?;
    let mut rows = Vec::new();
    let mut steps = 0usize;
    let mut seen: Vec<i64> = Vec::new();
    let total_iters: u64 = scenario
        .experiences
        .iter()
        .map(|e| (cfg.epochs * e.train.len().div_ceil(cfg.batch_size)) as u64)
        .sum();
    let bar = progress_bar(cfg.progress, total_iters, &scenario.name);
    let mut rng = HostRng::new(cfg.seed);
    for exp in &scenario.experiences {
        for c in &exp.classes {
            if !seen.contains(c) {
                seen.push(*c);
            }
        }
        let mut ctx = Context {
            experience: exp.task,
            seen_classes: seen.clone(),
            current_classes: exp.classes.clone(),
            iteration: 0,
            seed: cfg.seed ^ (exp.task as u64).wrapping_mul(0x9E37_79B9),
        };
        for p in plugins.iter_mut() {
            p.before_experience(learner, exp, &ctx)?;
        }
        let mut data = exp.train.clone();
        for p in plugins.iter_mut() {
            data = p.train_set(learner, data, &ctx)?;
        }
        let epochs = cfg.epochs;
        steps += run_epochs(learner, &data, plugins, cfg, epochs, &mut ctx, &mut rng, bar.as_ref())?;
        for p in plugins.iter_mut() {
            p.after_experience(learner, exp, &ctx)?;
        }
        let row: Vec<f64> = scenario.experiences.iter().map(|e| learner.accuracy(&e.test)).collect::<Result<_>>()?;
        rows.push(row);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let accuracy = AccuracyMatrix::new(rows, Some(initial))?;
    debug_assert_eq!(accuracy.n_tasks(), n_tasks);
    Ok(RunResult { accuracy, wall_s: start.elapsed().as_secs_f64(), steps })
}

/// Trains on `data` for `epochs` passes (shuffled mini-batches) with the plugins' hooks.
/// Returns the number of optimizer steps. Public so that a plugin-free caller (the joint upper
/// bound, GDumb's retraining) can reuse the same inner loop.
#[allow(clippy::too_many_arguments)]
pub fn run_epochs(
    learner: &mut Learner,
    data: &Dataset,
    plugins: &mut [Box<dyn Plugin>],
    cfg: &TrainConfig,
    epochs: usize,
    ctx: &mut Context,
    rng: &mut HostRng,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    let params = learner.model.params();
    let mut opt = cfg.optimizer.build(&params)?;
    let n = data.len();
    let device = data.x.device();
    let mut steps = 0;
    for _ in 0..epochs {
        let mut order: Vec<i64> = (0..n as i64).collect();
        rng.shuffle(&mut order);
        for chunk in order.chunks(cfg.batch_size) {
            let idx = Tensor::from_slice(chunk).to_device(device);
            let mut batch = Batch {
                x: data.x.index_select(0, &idx),
                y: data.y.index_select(0, &idx),
                t: data.t.index_select(0, &idx),
                n_current: chunk.len() as i64,
            };
            opt.zero_grad()?;
            for p in plugins.iter_mut() {
                p.adapt_batch(learner, &mut batch, ctx)?;
            }
            let logits = learner.logits(&batch.x, &batch.t)?;
            let mut loss = Learner::loss(&logits, &batch.y);
            for p in plugins.iter_mut() {
                for term in p.loss_terms(learner, &batch, &logits, ctx)? {
                    // Out of place: `+=` on a tch tensor adds in place into the graph's node.
                    #[allow(clippy::assign_op_pattern)]
                    {
                        loss = loss + term;
                    }
                }
            }
            for p in plugins.iter_mut() {
                p.before_backward(learner, &batch, ctx)?;
            }
            loss.f_backward()?;
            for p in plugins.iter_mut() {
                p.after_backward(learner, ctx)?;
            }
            if let Some(max) = cfg.clip_grad_norm {
                clip_grad_norm_(&params, max)?;
            }
            opt.step()?;
            for p in plugins.iter_mut() {
                p.after_step(learner, &batch, &logits.detach(), ctx)?;
            }
            ctx.iteration += 1;
            steps += 1;
            if let Some(b) = bar {
                b.inc(1);
            }
        }
    }
    Ok(steps)
}

fn progress_bar(show: bool, total: u64, name: &str) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let b = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} it {per_sec} eta {eta}") {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(name.to_string());
    Some(b)
}

/// Evaluates on the given test sets (the joint upper bound's single row).
pub fn evaluate_all(learner: &Learner, scenario: &Scenario) -> Result<Vec<f64>> {
    scenario.experiences.iter().map(|e| learner.accuracy(&e.test)).collect()
}

/// The default device for experiments (CPU; CUDA when asked for and present).
pub fn default_device() -> Device {
    Device::Cpu
}
