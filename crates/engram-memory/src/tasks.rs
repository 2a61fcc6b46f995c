//! Algorithmic tasks for the DNC: copy and repeat-copy (Graves et al. 2014/2016), a length
//! curriculum, the training loop and bit-error-rate evaluation.

use crate::dnc::{Dnc, DncConfig};
use crate::error::{invalid, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig as _, Device, Kind, Tensor};

/// Which task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Read `L` random bit vectors and a delimiter, then write them back.
    Copy,
    /// Read `L` vectors and a repeat count `n`, then write the sequence `n` times and an end marker.
    RepeatCopy {
        /// Largest repeat count (the count input is divided by it).
        max_repeats: i64,
    },
}

/// A batch: `input [B, T, in]`, `target [B, T, out]`, `mask [B, T]` (1 where the output is scored).
#[derive(Debug)]
pub struct Batch {
    /// Inputs.
    pub input: Tensor,
    /// Targets.
    pub target: Tensor,
    /// Scored steps.
    pub mask: Tensor,
}

impl Task {
    /// Input width for `bits`-bit vectors.
    pub fn input_size(&self, bits: i64) -> i64 {
        match self {
            Task::Copy => bits + 1,
            Task::RepeatCopy { .. } => bits + 2,
        }
    }
    /// Output width.
    pub fn output_size(&self, bits: i64) -> i64 {
        match self {
            Task::Copy => bits,
            Task::RepeatCopy { .. } => bits + 1,
        }
    }

    /// A batch of `batch` sequences with lengths drawn uniformly from `1..=max_len` (all padded
    /// to the longest; padding steps are unscored and have zero input).
    pub fn batch(&self, batch: i64, bits: i64, max_len: i64, rng: &mut HostRng) -> Result<Batch> {
        self.batch_range(batch, bits, 1, max_len, rng)
    }

    /// Like [`Task::batch`] with lengths drawn uniformly from `min_len..=max_len`.
    pub fn batch_range(&self, batch: i64, bits: i64, min_len: i64, max_len: i64, rng: &mut HostRng) -> Result<Batch> {
        if batch <= 0 || bits <= 0 || min_len <= 0 || max_len < min_len {
            return Err(invalid(format!("batch {batch}, bits {bits} must be positive and 1 <= min_len {min_len} <= max_len {max_len}")));
        }
        let (ni, no) = (self.input_size(bits) as usize, self.output_size(bits) as usize);
        let mut seqs = Vec::new();
        let mut t_max = 0;
        for _ in 0..batch {
            let len = (min_len + rng.below((max_len - min_len + 1) as u64) as i64) as usize;
            let reps = match self {
                Task::Copy => 1,
                Task::RepeatCopy { max_repeats } => 1 + rng.below((*max_repeats).max(1) as u64) as usize,
            };
            let bitsv: Vec<Vec<f32>> = (0..len).map(|_| (0..bits).map(|_| (rng.below(2)) as f32).collect()).collect();
            let t = match self {
                Task::Copy => 2 * len + 1,
                Task::RepeatCopy { .. } => len + 1 + reps * len + 1,
            };
            t_max = t_max.max(t);
            seqs.push((len, reps, bitsv, t));
        }
        let (b, t) = (batch as usize, t_max);
        let mut inp = vec![0f32; b * t * ni];
        let mut tgt = vec![0f32; b * t * no];
        let mut msk = vec![0f32; b * t];
        for (s, (len, reps, v, _)) in seqs.iter().enumerate() {
            for (i, word) in v.iter().enumerate() {
                inp[(s * t + i) * ni..(s * t + i) * ni + bits as usize].copy_from_slice(word);
            }
            let delim = (s * t + len) * ni;
            inp[delim + bits as usize] = 1.0;
            if let Task::RepeatCopy { max_repeats } = self {
                inp[delim + bits as usize + 1] = *reps as f32 / (*max_repeats).max(1) as f32;
            }
            for r in 0..*reps {
                for (i, word) in v.iter().enumerate() {
                    let step = len + 1 + r * len + i;
                    tgt[(s * t + step) * no..(s * t + step) * no + bits as usize].copy_from_slice(word);
                    msk[s * t + step] = 1.0;
                }
            }
            if matches!(self, Task::RepeatCopy { .. }) {
                let end = len + 1 + reps * len;
                tgt[(s * t + end) * no + bits as usize] = 1.0;
                msk[s * t + end] = 1.0;
            }
        }
        let (b, t) = (batch, t as i64);
        Ok(Batch {
            input: Tensor::from_slice(&inp).view([b, t, ni as i64]),
            target: Tensor::from_slice(&tgt).view([b, t, no as i64]),
            mask: Tensor::from_slice(&msk).view([b, t]),
        })
    }
}

/// Masked sigmoid cross-entropy per scored bit, and the bit error rate (threshold 0.5).
pub fn loss_and_ber(logits: &Tensor, batch: &Batch) -> (Tensor, f64) {
    let m = batch.mask.unsqueeze(-1);
    let bits = batch.target.size()[2] as f64;
    let scored = batch.mask.sum(Kind::Float).double_value(&[]) * bits;
    let per = logits.binary_cross_entropy_with_logits::<Tensor>(&batch.target, None, None, tch::Reduction::None);
    let loss = (per * &m).sum(Kind::Float) / scored.max(1.0);
    let wrong = (logits.gt(0.0).to_kind(Kind::Float) - &batch.target).abs() * &m;
    let ber = wrong.sum(Kind::Float).double_value(&[]) / scored.max(1.0);
    (loss, ber)
}

/// Optimizer of a DNC run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DncOptimizer {
    /// RMSProp (the DNC paper: lr 1e-4, decay 0.9, ε 1e-10).
    RmsProp {
        /// Learning rate.
        lr: f64,
    },
    /// Adam.
    Adam {
        /// Learning rate.
        lr: f64,
    },
}

/// Settings of a DNC training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DncTrainConfig {
    /// Task.
    pub task: Task,
    /// Bits per vector.
    pub bits: i64,
    /// Controller units.
    pub hidden: i64,
    /// Memory slots.
    pub slots: i64,
    /// Word size.
    pub word: i64,
    /// Read heads.
    pub reads: i64,
    /// Sequences per batch.
    pub batch: i64,
    /// Training steps.
    pub steps: usize,
    /// Optimizer.
    pub optimizer: DncOptimizer,
    /// Global gradient-norm clip.
    pub clip: f64,
    /// Longest training length at the end of the curriculum.
    pub max_len: i64,
    /// The curriculum raises the current length limit by one when the mean BER of the last
    /// `window` batches falls below this.
    pub curriculum_ber: f64,
    /// Curriculum window (batches).
    pub window: usize,
    /// Seed.
    pub seed: u64,
}

impl DncTrainConfig {
    /// The published defaults (memory 16×16, 4 read heads, RMSProp 1e-4, clip 50 as in
    /// DeepMind's release), copy task of up to 20 vectors of 6 bits.
    pub fn paper_defaults() -> Self {
        DncTrainConfig {
            task: Task::Copy,
            bits: 6,
            hidden: 64,
            slots: 16,
            word: 16,
            reads: 4,
            batch: 16,
            steps: 10_000,
            optimizer: DncOptimizer::RmsProp { lr: 1e-4 },
            clip: 50.0,
            max_len: 20,
            curriculum_ber: 0.02,
            window: 50,
            seed: 0,
        }
    }
    /// The model sizes this run trains.
    pub fn model(&self) -> DncConfig {
        DncConfig { input: self.task.input_size(self.bits), output: self.task.output_size(self.bits), hidden: self.hidden, slots: self.slots, word: self.word, reads: self.reads }
    }
}

/// A point of the training log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainPoint {
    /// Step.
    pub step: usize,
    /// Mean loss since the last point.
    pub loss: f64,
    /// Mean bit error rate since the last point.
    pub ber: f64,
    /// Curriculum length limit.
    pub max_len: i64,
}

/// Trains a DNC; returns the model (in `vs`) and the log (one point per `log_every` steps).
pub fn train_dnc(vs: &nn::VarStore, cfg: &DncTrainConfig, log_every: usize, log: &mut dyn FnMut(&TrainPoint)) -> Result<(Dnc, Vec<TrainPoint>)> {
    if cfg.steps == 0 || cfg.max_len <= 0 || cfg.clip.is_nan() || cfg.clip <= 0.0 {
        return Err(invalid("steps, max_len and clip must be positive"));
    }
    let dnc = {
        let _g = engram_core::seed::global_rng_lock();
        engram_core::seed::manual_seed(cfg.seed);
        Dnc::new(&vs.root(), cfg.model())?
    };
    let mut opt = match cfg.optimizer {
        DncOptimizer::RmsProp { lr } => nn::RmsProp { alpha: 0.9, eps: 1e-10, wd: 0.0, momentum: 0.0, centered: false }.build(vs, lr)?,
        DncOptimizer::Adam { lr } => nn::Adam::default().build(vs, lr)?,
    };
    let mut rng = HostRng::new(cfg.seed);
    let mut cur_len = 1i64;
    let mut recent: std::collections::VecDeque<f64> = Default::default();
    let (mut acc_loss, mut acc_ber, mut n) = (0.0, 0.0, 0);
    let mut points = Vec::new();
    for step in 1..=cfg.steps {
        let b = cfg.task.batch(cfg.batch, cfg.bits, cur_len, &mut rng)?;
        let (y, _) = dnc.forward(&b.input.to_device(vs.device()))?;
        let b = Batch { input: b.input, target: b.target.to_device(vs.device()), mask: b.mask.to_device(vs.device()) };
        let (loss, ber) = loss_and_ber(&y, &b);
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm(cfg.clip);
        opt.step();
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            return Err(invalid(format!("loss became non-finite at step {step}")));
        }
        acc_loss += l;
        acc_ber += ber;
        n += 1;
        recent.push_back(ber);
        if recent.len() > cfg.window {
            recent.pop_front();
        }
        if recent.len() == cfg.window && cur_len < cfg.max_len && recent.iter().sum::<f64>() / (cfg.window as f64) < cfg.curriculum_ber {
            cur_len += 1;
            recent.clear();
        }
        if step % log_every.max(1) == 0 || step == cfg.steps {
            let p = TrainPoint { step, loss: acc_loss / n as f64, ber: acc_ber / n as f64, max_len: cur_len };
            log(&p);
            points.push(p);
            (acc_loss, acc_ber, n) = (0.0, 0.0, 0);
        }
    }
    Ok((dnc, points))
}

/// Bit error rate of `dnc` on `batches` fresh batches with lengths exactly `len` (for
/// generalisation beyond the training lengths).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_ber(dnc: &Dnc, task: Task, bits: i64, len: i64, batches: usize, batch: i64, seed: u64, device: Device) -> Result<f64> {
    let mut rng = HostRng::new(seed);
    let mut total = 0.0;
    tch::no_grad(|| -> Result<()> {
        for _ in 0..batches {
            let b = fixed_length_batch(task, batch, bits, len, &mut rng)?;
            let (y, _) = dnc.forward(&b.input.to_device(device))?;
            let b = Batch { input: b.input, target: b.target.to_device(device), mask: b.mask.to_device(device) };
            total += loss_and_ber(&y, &b).1;
        }
        Ok(())
    })?;
    Ok(total / batches.max(1) as f64)
}

/// A batch in which every sequence has exactly `len` vectors.
pub fn fixed_length_batch(task: Task, batch: i64, bits: i64, len: i64, rng: &mut HostRng) -> Result<Batch> {
    task.batch_range(batch, bits, len, len, rng)
}
