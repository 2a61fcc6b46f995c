//! Training: next-token LM loss (with the shift the seed forgot, spec §7 bug 1), AdamW on fp32
//! master weights with bf16 activations on GPUs, warmup + cosine, clipping, gradient
//! accumulation, the optional retrieval → memory-gym → LM curriculum, JSONL metrics, a loss-curve
//! PNG and resumable checkpoints.
//!
//! Ordinary steps never wait for the GPU: step losses and the gradient norm stay device tensors
//! and are read to the host only on steps that log, evaluate or checkpoint (and the last one), so
//! a diverged run stops at the latest at the next such step ([`TrainConfig::log_every`]).

use crate::checkpoint;
use crate::config::HybridConfig;
use crate::data::{default_corpus, load_corpus, text_head, AnyTokenizer, TokenData, TokenizerSpec};
use crate::model::{parameter_count, HybridModel};
use crate::optim::{warmup_cosine, AdamW, AdamWConfig};
use crate::plot::{line_chart, Series};
use crate::tasks::{Task, TaskGen};
use crate::{GdnError, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// A whole training run: `{"model": .., "train": .., "data": ..}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Architecture.
    pub model: HybridConfig,
    /// Optimisation.
    pub train: TrainConfig,
    /// Corpus and tokenizer.
    #[serde(default)]
    pub data: DataConfig,
}

impl RunConfig {
    /// Reads and validates a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| GdnError::Config(format!("cannot read {}: {e}", path.display())))?;
        let cfg: RunConfig = serde_json::from_str(&text).map_err(|e| GdnError::Config(format!("{}: {e}", path.display())))?;
        cfg.validate()?;
        Ok(cfg)
    }
    /// Checks model, training and data settings together.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.train.validate()?;
        let tok = self.data.tokenizer_spec()?;
        if self.model.vocab != tok.vocab_size() {
            return Err(GdnError::Config(format!(
                "model.vocab is {} but the '{}' tokenizer has {} ids",
                self.model.vocab,
                self.data.tokenizer,
                tok.vocab_size()
            )));
        }
        Ok(())
    }
}

/// Activation precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 activations on CUDA, fp32 on the CPU.
    #[default]
    Auto,
    /// fp32 everywhere.
    Fp32,
    /// bf16 activations (weights and optimizer stay fp32).
    Bf16,
}

/// Optimisation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per micro-batch.
    pub batch_size: i64,
    /// Tokens per sequence.
    pub seq_len: i64,
    /// Peak learning rate.
    pub lr: f64,
    /// Final LR as a fraction of the peak. Default 0.1.
    #[serde(default = "d_min_lr")]
    pub min_lr_ratio: f64,
    /// Linear warmup steps. Default 0.
    #[serde(default)]
    pub warmup_steps: u64,
    /// AdamW settings.
    #[serde(default)]
    pub adamw: AdamWConfig,
    /// Global gradient-norm clip (0 = off). Default 1.
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
    /// Micro-batches per optimizer step. Default 1.
    #[serde(default = "d_one")]
    pub grad_accum: u64,
    /// Seed of parameter init (libtorch) and batch sampling (host RNG). Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Held-out evaluation every N steps (0 = only at the end). Default 0.
    #[serde(default)]
    pub eval_every: u64,
    /// Batches per held-out evaluation. Default 8.
    #[serde(default = "d_eval_batches")]
    pub eval_batches: u64,
    /// Metrics line every N steps. Default 10.
    ///
    /// Step losses and the gradient norm stay on the device and are read to the host only on
    /// steps that log, evaluate (`eval_every`, the end of the gym phase) or checkpoint, and on the
    /// last step, so the GPU is not waited for every step. A non-finite loss therefore stops the
    /// run at the latest at the next such step (with the step where it first appeared), not at
    /// the step itself; no checkpoint or evaluation sees the diverged weights.
    #[serde(default = "d_log")]
    pub log_every: u64,
    /// Checkpoint every N steps besides the final one (0 = final only). Default 0.
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Activation precision. Default auto.
    #[serde(default)]
    pub precision: Precision,
    /// Optional curriculum before LM training.
    #[serde(default)]
    pub curriculum: Option<CurriculumConfig>,
}
fn d_min_lr() -> f64 { 0.1 }
fn d_clip() -> f64 { 1.0 }
fn d_one() -> u64 { 1 }
fn d_eval_batches() -> u64 { 8 }
fn d_log() -> u64 { 10 }

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(GdnError::Config(m));
        if self.steps == 0 || self.batch_size < 1 || self.seq_len < 2 || self.grad_accum == 0 {
            return bad("train.steps, batch_size, grad_accum must be ≥ 1 and seq_len ≥ 2".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!("train.lr must be > 0 and min_lr_ratio in [0,1], got {} / {}", self.lr, self.min_lr_ratio));
        }
        if let Some(c) = &self.curriculum {
            if c.task_seq_len < 4 * c.gym_needles + 4 {
                return bad(format!("curriculum.task_seq_len must be ≥ 4·gym_needles+4, got {}", c.task_seq_len));
            }
        }
        Ok(())
    }
}

/// The seed's curriculum, fixed (see [`crate::tasks`]): `retrieval_steps` of single-needle
/// retrieval, then `gym_steps` of memory gym, then next-token LM for the remaining steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurriculumConfig {
    /// Steps of the retrieval phase.
    pub retrieval_steps: u64,
    /// Steps of the memory-gym phase.
    pub gym_steps: u64,
    /// Sequence length of task rows.
    pub task_seq_len: i64,
    /// Needles per gym row. Default 2.
    #[serde(default = "d_needles")]
    pub gym_needles: i64,
    /// Held-out gym rows for accuracy. Default 256.
    #[serde(default = "d_eval_rows")]
    pub eval_rows: i64,
}
fn d_needles() -> i64 { 2 }
fn d_eval_rows() -> i64 { 256 }

/// Corpus and tokenizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// UTF-8 file or folder; default: the Shakespeare corpus of `cargo xtask setup`.
    #[serde(default)]
    pub corpus: Option<PathBuf>,
    /// Tokenizer name: "byte" (default) or "bpe" (byte-level BPE trained on the corpus).
    #[serde(default = "d_tok")]
    pub tokenizer: String,
    /// Vocabulary size of the "bpe" tokenizer (> 256, equal to model.vocab); only with "bpe".
    #[serde(default)]
    pub bpe_vocab: Option<i64>,
    /// Held-out tail of the corpus. Default 0.05.
    #[serde(default = "d_val")]
    pub val_fraction: f64,
}
fn d_tok() -> String { "byte".into() }
fn d_val() -> f64 { 0.05 }
impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { corpus: None, tokenizer: d_tok(), bpe_vocab: None, val_fraction: d_val() }
    }
}
impl DataConfig {
    /// The tokenizer these settings describe (errors name the offending field).
    pub fn tokenizer_spec(&self) -> Result<TokenizerSpec> {
        TokenizerSpec::from_config(&self.tokenizer, self.bpe_vocab)
    }
}

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Output folder: `checkpoint/`, `metrics.jsonl`, `loss.png`, `summary.json`, and for a BPE
    /// `tokenizer.json` (a copy of the one stored in the checkpoint, for other tools).
    pub out_dir: PathBuf,
    /// Device.
    pub device: Device,
    /// Resume from this checkpoint (weights, optimizer state, step).
    pub resume: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// Data-parallel group (set in workers started by `engram train --nproc N`). Parameters are
    /// broadcast from rank 0, every rank draws its own batches, gradients are averaged in
    /// buckets before clipping, and only rank 0 logs and writes checkpoints.
    pub group: Option<std::sync::Arc<engram_core::distributed::ProcessGroup>>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Steps completed.
    pub steps: u64,
    /// Parameters.
    pub parameters: i64,
    /// Mean training loss over the last logged window.
    pub final_train_loss: f64,
    /// Held-out LM loss (nats per token) at the end.
    pub val_loss: f64,
    /// Entropy of the training corpus' unigram distribution (nats), the loss of a model
    /// that ignores context.
    pub unigram_entropy: f64,
    /// Held-out gym accuracy at the end of the gym phase (when a curriculum ran).
    pub gym_accuracy: Option<f64>,
    /// Mean training throughput.
    pub tokens_per_s: f64,
    /// Wall time.
    pub seconds: f64,
    /// The final checkpoint.
    pub checkpoint: PathBuf,
}

/// Cross-entropy of logits `[B,T,V]` against targets `[B,T]` (-100 ignored), in fp32.
pub fn lm_loss(logits: &Tensor, targets: &Tensor) -> Tensor {
    let v = logits.size()[2];
    logits.to_kind(Kind::Float).reshape([-1, v]).cross_entropy_loss::<Tensor>(&targets.reshape([-1]), None, tch::Reduction::Mean, -100, 0.0)
}

/// Entropy (nats) of the token frequencies of `tokens` (1-D, ids < vocab).
pub fn unigram_entropy(tokens: &Tensor, vocab: i64) -> f64 {
    let counts = tokens.bincount::<Tensor>(None, vocab).to_kind(Kind::Double);
    let p = &counts / counts.sum(Kind::Double);
    let nz = p.masked_select(&p.gt(0.0));
    -(&nz * nz.log()).sum(Kind::Double).double_value(&[])
}

fn phase_of(step: u64, cur: Option<&CurriculumConfig>) -> Option<Task> {
    let c = cur?;
    if step < c.retrieval_steps {
        Some(Task::Retrieval)
    } else if step < c.retrieval_steps + c.gym_steps {
        Some(Task::Gym)
    } else {
        None
    }
}

/// Mean held-out LM loss over `batches` fixed batches.
pub fn eval_lm(model: &HybridModel, data: &TokenData, b: i64, t: i64, batches: u64, device: Device) -> Result<f64> {
    let mut rng = HostRng::new(0xE7A1);
    let t = t.min(data.val.size()[0] - 2).max(2);
    let mut total = 0.0;
    tch::no_grad(|| -> Result<()> {
        for _ in 0..batches.max(1) {
            let (x, y) = data.batch(true, b, t, &mut rng, device)?;
            total += lm_loss(&model.forward(&x)?, &y).double_value(&[]);
        }
        Ok(())
    })?;
    Ok(total / batches.max(1) as f64)
}

/// Accuracy on `rows` held-out rows of `task` (an RNG stream never used for training).
pub fn eval_task(model: &HybridModel, gen: &TaskGen, task: Task, rows: i64, t: i64, device: Device) -> Result<f64> {
    let mut rng = HostRng::new(0x4E1D_0u64 + 17);
    let mut correct = 0usize;
    let chunk = 32;
    let mut done = 0;
    tch::no_grad(|| -> Result<()> {
        while done < rows {
            let b = chunk.min(rows - done);
            let batch = gen.batch(task, b, t, &mut rng, device)?;
            let logits = model.forward(&batch.inputs)?;
            let pred: Vec<i64> = Vec::try_from(logits.select(1, t - 1).argmax(-1, false).to_device(Device::Cpu))?;
            correct += pred.iter().zip(&batch.answers).filter(|(p, a)| p == a).count();
            done += b;
        }
        Ok(())
    })?;
    Ok(correct as f64 / rows as f64)
}

/// Runs the training described by `run`; see [`TrainOptions`] for outputs.
pub fn train(run: &RunConfig, opts: &TrainOptions) -> Result<TrainSummary> {
    run.validate()?;
    let tc = &run.train;
    let dev = opts.device;
    std::fs::create_dir_all(&opts.out_dir)?;
    let tok_spec = run.data.tokenizer_spec()?;
    let text = match &run.data.corpus {
        Some(p) => load_corpus(p)?,
        None => default_corpus()?,
    };
    let tok = match &opts.resume {
        // A resumed run keeps the checkpoint's tokenizer (a BPE is not trained again).
        Some(r) => {
            let t = checkpoint::load_tokenizer(r)?;
            if t.spec() != tok_spec {
                return Err(GdnError::Config(format!(
                    "{} was trained with tokenizer {:?}, the config asks for {tok_spec:?}; cannot resume",
                    r.display(),
                    t.spec()
                )));
            }
            t
        }
        // Trained on the training part only, so the held-out tail stays unseen.
        None => tok_spec.build(text_head(&text, 1.0 - run.data.val_fraction))?,
    };
    let data = TokenData::new(&text, &tok, run.data.val_fraction)?;
    let unigram = unigram_entropy(&data.train, run.model.vocab);
    if data.val.size()[0] < 2 * tc.seq_len.min(64) {
        return Err(GdnError::Data("the held-out split is too small; raise data.val_fraction or use a larger corpus".into()));
    }
    let tasks = match &tc.curriculum {
        Some(c) => Some(TaskGen::new(run.model.vocab, c.gym_needles)?),
        None => None,
    };

    engram_core::seed::manual_seed(tc.seed);
    let mut vs = nn::VarStore::new(dev);
    let mut model = HybridModel::new(&vs.root(), &run.model)?;
    let bf16 = match tc.precision {
        Precision::Auto => dev.is_cuda(),
        Precision::Fp32 => false,
        Precision::Bf16 => true,
    };
    model.set_compute_kind(if bf16 { Kind::BFloat16 } else { Kind::Float });
    let mut opt = AdamW::new(&vs, tc.adamw.clone());
    let mut start = 0;
    if let Some(r) = &opts.resume {
        let ck = engram_core::checkpoint::Checkpoint::load(r)?;
        ck.expect_kind(checkpoint::KIND)?;
        let stored: checkpoint::StoredConfig = ck.config()?;
        if stored.model != run.model {
            return Err(GdnError::Config(format!("{} was trained with another model config; cannot resume", r.display())));
        }
        ck.load_into("model", &mut vs)?;
        start = checkpoint::load_optimizer(r, &mut opt)?;
        if start >= tc.steps {
            return Err(GdnError::Config(format!("{} is at step {start}; train.steps ({}) leaves nothing to do", r.display(), tc.steps)));
        }
    }
    let (rank, world) = opts.group.as_ref().map_or((0, 1), |g| (g.rank as u64, g.world_size as u64));
    let lead = rank == 0;
    if let (true, AnyTokenizer::Bpe(b)) = (lead, &tok) {
        b.save(&opts.out_dir.join("tokenizer.json"))?;
    }
    let trainable = vs.trainable_variables();
    if let Some(g) = &opts.group {
        g.broadcast_parameters(&trainable)?;
    }
    let params = parameter_count(&vs);
    let metrics_path = opts.out_dir.join(if lead { "metrics.jsonl".to_string() } else { format!(".metrics.rank{rank}.jsonl") });
    let mut metrics = std::fs::OpenOptions::new().create(true).append(start > 0).write(true).truncate(start == 0).open(&metrics_path)?;
    let pb = if opts.progress && lead {
        let pb = indicatif::ProgressBar::new(tc.steps);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
                .expect("valid template"),
        );
        pb.set_position(start);
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.println(format!(
        "hybrid {} ({params} parameters) on {dev:?}{}, {} activations; corpus {} tokens, unigram entropy {unigram:.3} nats",
        run.model.pattern,
        if world > 1 { format!(" x {world} ranks") } else { String::new() },
        if bf16 { "bf16" } else { "fp32" },
        data.train.size()[0]
    ));

    let t0 = Instant::now();
    let mut tokens_done: u64 = 0;
    // Step losses not yet read to the host (see `TrainConfig::log_every`): (step, 0-dim loss).
    let mut pending: Vec<(u64, Tensor)> = Vec::new();
    let (mut window_loss, mut window_n) = (0.0, 0u64);
    let mut last_train_loss = f64::NAN;
    let mut train_curve: Vec<(f64, f64)> = Vec::new();
    let mut val_curve: Vec<(f64, f64)> = Vec::new();
    let mut gym_acc = None;
    let mut write_line = |v: serde_json::Value| -> Result<()> {
        writeln!(metrics, "{v}")?;
        Ok(())
    };
    for step in start..tc.steps {
        let phase = phase_of(step, tc.curriculum.as_ref());
        let lr = warmup_cosine(step, tc.warmup_steps, tc.steps, tc.lr, tc.min_lr_ratio);
        opt.zero_grad();
        // The step's mean loss, accumulated on the device (no sync per micro-batch).
        let mut step_loss: Option<Tensor> = None;
        for micro in 0..tc.grad_accum {
            // Each rank draws its own batches; with one rank this is the single-process stream.
            let draw = (step * tc.grad_accum + micro) * world + rank;
            let mut rng = HostRng::new(tc.seed.wrapping_mul(0x9E37_79B9).wrapping_add(draw));
            let (x, y) = match (phase, &tasks, &tc.curriculum) {
                (Some(task), Some(gen), Some(c)) => {
                    let b = gen.batch(task, tc.batch_size, c.task_seq_len, &mut rng, dev)?;
                    (b.inputs, b.targets)
                }
                _ => data.batch(false, tc.batch_size, tc.seq_len, &mut rng, dev)?,
            };
            tokens_done += x.numel() as u64 * world;
            // ids < vocab by construction: TokenData and TaskGen draw from this vocabulary
            let loss = lm_loss(&model.forward_in_range(&x)?, &y);
            (&loss / tc.grad_accum as f64).backward();
            let part = loss.detach() / tc.grad_accum as f64;
            step_loss = Some(match step_loss {
                Some(acc) => acc + part,
                None => part,
            });
        }
        let mut step_loss = step_loss.expect("grad_accum ≥ 1 (validated)");
        if let Some(g) = &opts.group {
            g.average_gradients(&trainable, 25 << 20)?;
            // Every rank gets the same mean loss, so all of them stop at the same step when it
            // is non-finite.
            g.all_reduce_mean(&mut [&mut step_loss])?;
        }
        let gnorm = opt.clip_grad_norm(tc.grad_clip)?;
        opt.step(lr)?;
        pending.push((step, step_loss));
        let done = step + 1;
        let elapsed = t0.elapsed().as_secs_f64();
        let tps = tokens_done as f64 / elapsed.max(1e-9);
        let phase_name = match phase {
            Some(Task::Retrieval) => "retrieval",
            Some(Task::Gym) => "gym",
            None => "lm",
        };
        pb.set_position(done);
        let log_now = done % tc.log_every.max(1) == 0 || done == tc.steps;
        let gym_end = tc.curriculum.as_ref().map(|c| c.retrieval_steps + c.gym_steps);
        let gym_eval_now = tc.curriculum.as_ref().is_some_and(|c| c.gym_steps > 0) && gym_end == Some(done);
        let eval_now = (tc.eval_every > 0 && done % tc.eval_every == 0) || done == tc.steps;
        // On every rank alike (not only the lead, which writes it), so ranks stop together.
        let checkpoint_now = (tc.checkpoint_every > 0 && done % tc.checkpoint_every == 0) || done == tc.steps;
        if log_now || gym_eval_now || eval_now || checkpoint_now {
            // One device→host read for all the steps since the last read.
            let losses: Vec<f64> = Vec::try_from(
                Tensor::stack(&pending.iter().map(|(_, l)| l.reshape([])).collect::<Vec<_>>(), 0)
                    .to_kind(Kind::Double)
                    .to_device(Device::Cpu),
            )?;
            if let Some(((bad, _), l)) = pending.iter().zip(&losses).find(|(_, l)| !l.is_finite()) {
                return Err(GdnError::Input(format!("training diverged at step {bad}: loss {l}")));
            }
            window_loss += losses.iter().sum::<f64>();
            window_n += losses.len() as u64;
            pending.clear();
            let last = losses.last().copied().unwrap_or(f64::NAN);
            pb.set_message(format!("{phase_name} loss {last:.3} | {tps:.0} tok/s"));
        }
        if log_now {
            last_train_loss = window_loss / window_n as f64;
            if phase.is_none() {
                train_curve.push((done as f64, last_train_loss));
            }
            write_line(serde_json::json!({
                "step": done, "phase": phase_name, "loss": last_train_loss, "lr": lr,
                "grad_norm": gnorm.double_value(&[]), "tokens_per_s": tps, "elapsed_s": elapsed,
            }))?;
            window_loss = 0.0;
            window_n = 0;
        }
        if let (true, Some(gen), Some(c)) = (gym_eval_now, &tasks, &tc.curriculum) {
            let acc = eval_task(&model, gen, Task::Gym, c.eval_rows, c.task_seq_len, dev)?;
            gym_acc = Some(acc);
            pb.println(format!("step {done}: held-out gym accuracy {:.1}% (chance {:.1}%)", acc * 100.0, 100.0 / gen.content() as f64));
            write_line(serde_json::json!({"step": done, "gym_heldout_accuracy": acc}))?;
        }
        if eval_now {
            let vl = eval_lm(&model, &data, tc.batch_size, tc.seq_len, tc.eval_batches, dev)?;
            val_curve.push((done as f64, vl));
            pb.println(format!("step {done}: held-out loss {vl:.4} nats/token ({:.3} bits/token)", vl / std::f64::consts::LN_2));
            write_line(serde_json::json!({"step": done, "val_loss": vl}))?;
        }
        if lead && checkpoint_now {
            let mut m = BTreeMap::new();
            m.insert("train_loss".to_string(), last_train_loss);
            if let Some(&(_, vl)) = val_curve.last() {
                m.insert("val_loss".to_string(), vl);
            }
            checkpoint::save(
                &opts.out_dir.join("checkpoint"),
                &vs,
                &run.model,
                &tok,
                done,
                &m,
                Some(&opt),
                Some(serde_json::to_value(run)?),
            )?;
        }
    }
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let val_loss = val_curve.last().map(|v| v.1).unwrap_or(f64::NAN);
    if let Some(g) = &opts.group {
        // Ranks leave together, after rank 0's checkpoint is on disk.
        g.barrier()?;
    }
    if !lead {
        let _ = std::fs::remove_file(&metrics_path);
    }
    if lead {
        let _ = line_chart(
            &opts.out_dir.join("loss.png"),
            &[Series { points: &train_curve, color: [31, 119, 180] }, Series { points: &val_curve, color: [214, 39, 40] }],
            640,
            400,
        );
    }
    let summary = TrainSummary {
        steps: tc.steps,
        parameters: params,
        final_train_loss: last_train_loss,
        val_loss,
        unigram_entropy: unigram,
        gym_accuracy: gym_acc,
        tokens_per_s: tokens_done as f64 / seconds.max(1e-9),
        seconds,
        checkpoint: opts.out_dir.join("checkpoint"),
    };
    if lead {
        std::fs::write(opts.out_dir.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(summary)
}
