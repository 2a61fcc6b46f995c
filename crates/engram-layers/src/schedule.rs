//! Learning-rate schedules. Stateless schedules give the multiplier-free learning rate at a step
//! (closed forms of `torch.optim.lr_scheduler`'s values); [`ReduceLrOnPlateau`] is stateful.

use crate::optim::Optimizer;
use crate::util::ensure;
use engram_core::Result;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A learning rate as a function of the step (0-based: step 0 is the first optimizer step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// `base_lr` throughout.
    Constant {
        /// The learning rate.
        base_lr: f64,
    },
    /// `StepLR`: `base_lr · γ^⌊step/step_size⌋`.
    Step {
        /// Initial learning rate.
        base_lr: f64,
        /// Steps between decays.
        step_size: u64,
        /// Decay factor.
        gamma: f64,
    },
    /// Linear warmup from 0 over `warmup` steps, then cosine from `base_lr` to
    /// `min_lr_ratio·base_lr` at `total` (Hugging Face's `get_cosine_schedule_with_warmup`
    /// with a floor; `CosineAnnealingLR` is `warmup = 0`).
    CosineWarmup {
        /// Peak learning rate.
        base_lr: f64,
        /// Warmup steps.
        warmup: u64,
        /// Total steps.
        total: u64,
        /// Final learning rate as a fraction of the peak.
        min_lr_ratio: f64,
    },
    /// Linear warmup from 0 over `warmup` steps, then linear decay to 0 at `total`
    /// (`get_linear_schedule_with_warmup`).
    LinearWarmupDecay {
        /// Peak learning rate.
        base_lr: f64,
        /// Warmup steps.
        warmup: u64,
        /// Total steps.
        total: u64,
    },
    /// `OneCycleLR` (cosine annealing, two phases): from `max_lr/div_factor` up to `max_lr` over
    /// `pct_start·total` steps, then down to `max_lr/(div_factor·final_div_factor)`.
    OneCycle {
        /// Peak learning rate.
        max_lr: f64,
        /// Total steps.
        total: u64,
        /// Fraction of steps spent increasing (0.3).
        pct_start: f64,
        /// `initial_lr = max_lr/div_factor` (25).
        div_factor: f64,
        /// `min_lr = initial_lr/final_div_factor` (1e4).
        final_div_factor: f64,
    },
}

impl LrSchedule {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Constant { base_lr } => ensure(base_lr >= 0.0, || format!("bad lr {base_lr}")),
            LrSchedule::Step { base_lr, step_size, gamma } => {
                ensure(base_lr >= 0.0 && step_size > 0 && gamma > 0.0, || format!("bad StepLR {self:?}"))
            }
            LrSchedule::CosineWarmup { base_lr, warmup, total, min_lr_ratio } => ensure(
                base_lr >= 0.0 && total > 0 && warmup <= total && (0.0..=1.0).contains(&min_lr_ratio),
                || format!("bad cosine schedule {self:?}"),
            ),
            LrSchedule::LinearWarmupDecay { base_lr, warmup, total } => {
                ensure(base_lr >= 0.0 && total > 0 && warmup <= total, || format!("bad linear schedule {self:?}"))
            }
            LrSchedule::OneCycle { max_lr, total, pct_start, div_factor, final_div_factor } => ensure(
                max_lr > 0.0
                    && total > 1
                    && pct_start > 0.0
                    && pct_start < 1.0
                    && div_factor > 0.0
                    && final_div_factor > 0.0
                    && (pct_start * total as f64) >= 1.0,
                || format!("bad one-cycle schedule {self:?}"),
            ),
        }
    }

    /// `OneCycleLR` with PyTorch's defaults.
    pub fn one_cycle(max_lr: f64, total: u64) -> Self {
        LrSchedule::OneCycle { max_lr, total, pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 }
    }

    /// The learning rate at `step`.
    ///
    /// ```
    /// use engram_layers::schedule::LrSchedule;
    /// let s = LrSchedule::CosineWarmup { base_lr: 1.0, warmup: 10, total: 110, min_lr_ratio: 0.0 };
    /// assert_eq!(s.lr(5), 0.5);
    /// assert_eq!(s.lr(10), 1.0);
    /// assert!((s.lr(60) - 0.5).abs() < 1e-12);
    /// assert_eq!(s.lr(110), 0.0);
    /// ```
    pub fn lr(&self, step: u64) -> f64 {
        let s = step as f64;
        match *self {
            LrSchedule::Constant { base_lr } => base_lr,
            LrSchedule::Step { base_lr, step_size, gamma } => base_lr * gamma.powi((step / step_size) as i32),
            LrSchedule::CosineWarmup { base_lr, warmup, total, min_lr_ratio } => {
                if step < warmup {
                    return base_lr * s / warmup.max(1) as f64;
                }
                let progress = ((s - warmup as f64) / (total - warmup).max(1) as f64).min(1.0);
                let cos = 0.5 * (1.0 + (PI * progress).cos());
                base_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cos)
            }
            LrSchedule::LinearWarmupDecay { base_lr, warmup, total } => {
                if step < warmup {
                    return base_lr * s / warmup.max(1) as f64;
                }
                base_lr * (0.0f64).max((total as f64 - s) / (total - warmup).max(1) as f64)
            }
            LrSchedule::OneCycle { max_lr, total, pct_start, div_factor, final_div_factor } => {
                let initial = max_lr / div_factor;
                let min_lr = initial / final_div_factor;
                let end1 = pct_start * total as f64 - 1.0;
                let end2 = total as f64 - 1.0;
                // PyTorch raises past the last step; holding the final value is the useful reading.
                let s = s.min(end2);
                let anneal = |start: f64, end: f64, pct: f64| end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0);
                if s <= end1 {
                    anneal(initial, max_lr, s / end1)
                } else {
                    anneal(max_lr, min_lr, (s - end1) / (end2 - end1))
                }
            }
        }
    }

    /// Sets `opt`'s learning rate (every group) to the value at `step` and returns it.
    pub fn apply(&self, opt: &mut dyn Optimizer, step: u64) -> f64 {
        let lr = self.lr(step);
        opt.set_lr(lr);
        lr
    }
}

/// Whether lower or higher metric values are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlateauMode {
    /// Lower is better (a loss).
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How the improvement threshold is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    /// Improvement relative to the best value (`best·(1 ∓ threshold)`).
    Rel,
    /// Absolute improvement (`best ∓ threshold`).
    Abs,
}

/// Configuration of [`ReduceLrOnPlateau`] (PyTorch's defaults in [`ReduceLrOnPlateauConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceLrOnPlateauConfig {
    /// Direction of improvement.
    pub mode: PlateauMode,
    /// Multiplier on a plateau (0.1).
    pub factor: f64,
    /// Epochs without improvement tolerated (10).
    pub patience: u64,
    /// Minimum improvement (1e-4).
    pub threshold: f64,
    /// Relative or absolute threshold.
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction (0).
    pub cooldown: u64,
    /// Lower bound on the learning rate (0).
    pub min_lr: f64,
    /// Reductions smaller than this are skipped (1e-8).
    pub eps: f64,
}

impl Default for ReduceLrOnPlateauConfig {
    fn default() -> Self {
        ReduceLrOnPlateauConfig {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// `ReduceLROnPlateau`: multiplies the learning rate by `factor` when the metric has not improved
/// for more than `patience` epochs.
///
/// ```
/// use engram_layers::schedule::{ReduceLrOnPlateau, ReduceLrOnPlateauConfig};
/// let cfg = ReduceLrOnPlateauConfig { patience: 1, ..Default::default() };
/// let mut s = ReduceLrOnPlateau::new(1.0, cfg).unwrap();
/// assert_eq!(s.step(1.0), 1.0);
/// assert_eq!(s.step(1.0), 1.0); // one bad epoch is tolerated
/// assert!((s.step(1.0) - 0.1).abs() < 1e-12); // the second is not
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReduceLrOnPlateau {
    cfg: ReduceLrOnPlateauConfig,
    lr: f64,
    best: f64,
    num_bad_epochs: u64,
    cooldown_counter: u64,
}

impl ReduceLrOnPlateau {
    /// Starts at `lr`.
    pub fn new(lr: f64, cfg: ReduceLrOnPlateauConfig) -> Result<Self> {
        ensure(cfg.factor < 1.0 && cfg.factor >= 0.0, || format!("ReduceLROnPlateau: factor must be < 1, got {}", cfg.factor))?;
        ensure(lr >= 0.0 && cfg.min_lr >= 0.0, || "ReduceLROnPlateau: negative learning rate".to_string())?;
        let best = match cfg.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        };
        Ok(ReduceLrOnPlateau { cfg, lr, best, num_bad_epochs: 0, cooldown_counter: 0 })
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    fn is_better(&self, a: f64) -> bool {
        let (t, b) = (self.cfg.threshold, self.best);
        match (self.cfg.mode, self.cfg.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < b * (1.0 - t),
            (PlateauMode::Min, ThresholdMode::Abs) => a < b - t,
            (PlateauMode::Max, ThresholdMode::Rel) => a > b * (t + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > b + t,
        }
    }

    /// Records one epoch's metric and returns the (possibly reduced) learning rate.
    pub fn step(&mut self, metric: f64) -> f64 {
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.cfg.patience {
            let new_lr = (self.lr * self.cfg.factor).max(self.cfg.min_lr);
            if self.lr - new_lr > self.cfg.eps {
                self.lr = new_lr;
            }
            self.cooldown_counter = self.cfg.cooldown;
            self.num_bad_epochs = 0;
        }
        self.lr
    }

    /// [`ReduceLrOnPlateau::step`] and sets the optimizer's learning rate.
    pub fn step_optimizer(&mut self, opt: &mut dyn Optimizer, metric: f64) -> f64 {
        let lr = self.step(metric);
        opt.set_lr(lr);
        lr
    }
}
