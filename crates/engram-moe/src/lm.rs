//! A small MoE transformer language model (seed 004's configuration: d = 128, 4 experts,
//! capacity 32, d_ff 256, 2 layers, 4 heads), pre-LayerNorm, causal attention, byte tokens.
//!
//! Routing is per sequence (one group per batch row), so a 64-token sequence with 4 experts of
//! capacity 32 fills 128 expert slots: 2 experts per token on average under expert choice.
//!
//! **Expert choice is not causal.** An expert keeps the top-`k` tokens of the whole sequence,
//! so whether token `t` is processed depends on the router scores of tokens after `t`: changing
//! a later token can change an earlier output ([`causal_leak`] measures it; a test shows it).
//! Training with it leaks future information that is absent at generation time. The causal
//! alternative offered here is token choice ([`RouterKind::TokenChoice`]), whose capacity
//! queue is filled in sequence order so a token's routing depends only on itself and earlier
//! tokens; the test shows its leak is exactly zero.

use crate::corpus::ByteCorpus;
use crate::error::{config_err, shape_err, Result};
use crate::ffn::{Activation, MoeFfn, MoeFfnConfig};
use crate::losses::{load_balance_loss, router_z_loss};
use crate::optim::{Adam, AdamConfig};
use crate::routing::{Capacity, RouterKind, RoutingStats};
use engram_core::seed::HostRng;
use engram_layers::{Linear, LinearConfig};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Configuration of [`MoeLm`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MoeLmConfig {
    /// Vocabulary (256 for bytes).
    pub vocab: i64,
    /// Model width.
    pub d_model: i64,
    /// Attention heads.
    pub heads: i64,
    /// Transformer blocks.
    pub layers: i64,
    /// Maximum sequence length (learned positions).
    pub max_seq_len: i64,
    /// Experts per MoE layer.
    pub experts: i64,
    /// Expert hidden width.
    pub d_ff: i64,
    /// Router.
    pub router: RouterKind,
    /// Switch load-balance coefficient α.
    pub load_balance_coeff: f64,
    /// Router z-loss coefficient.
    pub z_loss_coeff: f64,
}

impl MoeLmConfig {
    /// Seed 004's configuration with the given router (expert choice: capacity 32).
    pub fn seed004(router: RouterKind) -> Self {
        MoeLmConfig {
            vocab: 256,
            d_model: 128,
            heads: 4,
            layers: 2,
            max_seq_len: 64,
            experts: 4,
            d_ff: 256,
            router,
            load_balance_coeff: 0.01,
            z_loss_coeff: 1e-3,
        }
    }

    /// Seed 004's expert-choice router: each expert takes 32 tokens per sequence.
    pub fn expert_choice_32() -> RouterKind {
        RouterKind::ExpertChoice { capacity: Capacity::Fixed(32) }
    }

    /// The causal alternative with the same expert slots: top-2 token choice, capacity 32.
    pub fn token_choice_top2_32() -> RouterKind {
        RouterKind::TokenChoice { k: 2, capacity: Capacity::Fixed(32) }
    }
}

#[derive(Debug)]
struct Block {
    ln1: nn::LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: nn::LayerNorm,
    moe: MoeFfn,
    heads: i64,
}

/// Output of a forward pass.
#[derive(Debug)]
pub struct LmOutput {
    /// `[B, T, vocab]`.
    pub logits: Tensor,
    /// Weighted auxiliary loss (load balance + z-loss, summed over layers).
    pub aux_loss: Tensor,
    /// Routing statistics per layer.
    pub stats: Vec<RoutingStats>,
}

/// The MoE transformer LM.
///
/// ```
/// use engram_moe::lm::{MoeLm, MoeLmConfig};
/// use engram_moe::routing::{Capacity, RouterKind};
/// use tch::{nn, Device, Kind, Tensor};
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mut cfg = MoeLmConfig::seed004(RouterKind::TokenChoice { k: 1, capacity: Capacity::Factor(1.5) });
/// cfg.d_model = 32; cfg.d_ff = 64; cfg.max_seq_len = 16;
/// let lm = MoeLm::new(&vs.root(), cfg).unwrap();
/// let tokens = Tensor::randint(256, [2, 16], (Kind::Int64, Device::Cpu));
/// let out = lm.forward(&tokens).unwrap();
/// assert_eq!(out.logits.size(), vec![2, 16, 256]);
/// assert_eq!(out.stats.len(), 2);
/// ```
#[derive(Debug)]
pub struct MoeLm {
    cfg: MoeLmConfig,
    tok_emb: nn::Embedding,
    pos_emb: Tensor,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    head: Linear,
}

impl MoeLm {
    /// Creates the model under `p`.
    pub fn new(p: &nn::Path, cfg: MoeLmConfig) -> Result<Self> {
        if cfg.d_model % cfg.heads != 0 {
            return config_err(format!("d_model {} is not divisible by heads {}", cfg.d_model, cfg.heads));
        }
        if cfg.vocab < 1 || cfg.layers < 1 || cfg.max_seq_len < 1 {
            return config_err(format!("invalid LM config {cfg:?}"));
        }
        let d = cfg.d_model;
        let tok_emb = nn::embedding(p / "tok_emb", cfg.vocab, d, Default::default());
        let pos_emb = p.var("pos_emb", &[cfg.max_seq_len, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let mut blocks = Vec::new();
        for i in 0..cfg.layers {
            let b = p / "blocks" / i;
            blocks.push(Block {
                ln1: nn::layer_norm(&b / "ln1", vec![d], Default::default()),
                qkv: Linear::new(&b / "qkv", LinearConfig::new(d, 3 * d)),
                proj: Linear::new(&b / "proj", LinearConfig::new(d, d)),
                ln2: nn::layer_norm(&b / "ln2", vec![d], Default::default()),
                moe: MoeFfn::new(
                    &b / "moe",
                    MoeFfnConfig {
                        d_model: d,
                        d_ff: cfg.d_ff,
                        experts: cfg.experts,
                        router: cfg.router,
                        activation: Activation::Gelu,
                    },
                )?,
                heads: cfg.heads,
            });
        }
        let ln_f = nn::layer_norm(p / "ln_f", vec![d], Default::default());
        let head = Linear::new(p / "head", LinearConfig::new(d, cfg.vocab));
        Ok(MoeLm { cfg, tok_emb, pos_emb, blocks, ln_f, head })
    }

    /// The configuration.
    pub fn config(&self) -> &MoeLmConfig {
        &self.cfg
    }

    /// `tokens` `[B, T]` int64 → logits, aux loss and per-layer routing statistics.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, tokens: &Tensor) -> Result<LmOutput> {
        let s = tokens.size();
        if s.len() != 2 || s[1] < 1 || s[1] > self.cfg.max_seq_len {
            return shape_err(format!("tokens must be [batch, 1..={}], got {s:?}", self.cfg.max_seq_len));
        }
        if tokens.kind() != Kind::Int64 {
            return shape_err(format!("tokens must be int64, got {:?}", tokens.kind()));
        }
        let (lo, hi) = (tokens.min().int64_value(&[]), tokens.max().int64_value(&[]));
        if lo < 0 || hi >= self.cfg.vocab {
            return shape_err(format!("token ids must lie in 0..{}, got {lo}..={hi}", self.cfg.vocab));
        }
        let (b, t, d) = (s[0], s[1], self.cfg.d_model);
        let mut x = self.tok_emb.forward(tokens) + self.pos_emb.narrow(0, 0, t);
        let mut aux = Tensor::zeros([], (Kind::Float, tokens.device()));
        let mut stats = Vec::new();
        for blk in &self.blocks {
            let h = blk.ln1.forward(&x);
            let qkv = blk.qkv.forward(&h).view([b, t, 3, blk.heads, d / blk.heads]).permute([2, 0, 3, 1, 4]);
            let att = Tensor::scaled_dot_product_attention(
                &qkv.get(0),
                &qkv.get(1),
                &qkv.get(2),
                None::<Tensor>,
                0.0,
                true,
                None,
                false,
            );
            // Out of place on purpose: `+=` on a tch Tensor is in place and would overwrite the
            // activation that LayerNorm saved for backward.
            x = x + blk.proj.forward(&att.transpose(1, 2).reshape([b, t, d]));
            let (y, routing) = blk.moe.forward_grouped(&blk.ln2.forward(&x))?;
            aux = aux
                + load_balance_loss(&routing.probs, self.cfg.load_balance_coeff)?
                + router_z_loss(&routing.logits)? * self.cfg.z_loss_coeff;
            stats.push(routing.stats());
            x = x + y;
        }
        let logits = self.head.forward(&self.ln_f.forward(&x));
        Ok(LmOutput { logits, aux_loss: aux, stats })
    }

    /// Mean next-token cross-entropy (nats) of `logits` against `targets`.
    pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
        let v = logits.size()[2];
        logits.reshape([-1, v]).cross_entropy_for_logits(&targets.reshape([-1]))
    }
}

/// Largest change of the outputs at positions `0..T−1` when only the last token of `tokens`
/// `[B, T]` is changed (to `(x + 1) mod vocab`). Zero for a causal model.
pub fn causal_leak(model: &MoeLm, tokens: &Tensor) -> Result<f64> {
    let t = tokens.size()[1];
    let changed = tokens.copy();
    let last = (tokens.narrow(1, t - 1, 1) + 1).remainder(model.cfg.vocab);
    changed.narrow(1, t - 1, 1).copy_(&last);
    tch::no_grad(|| {
        let a = model.forward(tokens)?.logits.narrow(1, 0, t - 1);
        let b = model.forward(&changed)?.logits.narrow(1, 0, t - 1);
        Ok((a - b).abs().max().double_value(&[]))
    })
}

/// Training options for [`train_lm`].
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct TrainOptions {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per batch.
    pub batch: i64,
    /// Tokens per sequence.
    pub seq_len: i64,
    /// AdamW learning rate (PyTorch defaults otherwise, weight decay 0.01).
    pub lr: f64,
    /// Seed for init (libtorch) and batches (host RNG).
    pub seed: u64,
    /// Validation batches at the end.
    pub eval_batches: usize,
    /// Record the training loss every this many steps.
    pub log_every: usize,
}

/// What a training run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LmReport {
    /// Router used.
    pub router: RouterKind,
    /// (step, mean training cross-entropy over the last `log_every` steps).
    pub train_curve: Vec<(usize, f64)>,
    /// Validation cross-entropy before training (nats/byte).
    pub initial_valid_loss: f64,
    /// Validation cross-entropy after training (nats/byte).
    pub valid_loss: f64,
    /// Per layer: routing statistics summed over the validation batches.
    pub valid_stats: Vec<RoutingStats>,
    /// Causal leak on a validation batch (0 = causal).
    pub causal_leak: f64,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
    /// Parameter count.
    pub parameters: i64,
}

fn merge(acc: &mut Vec<RoutingStats>, new: Vec<RoutingStats>, n: f64) {
    if acc.is_empty() {
        *acc = new.into_iter().map(|mut s| {
            s.drop_rate /= n;
            s.unrouted_fraction /= n;
            s.router_entropy /= n;
            s
        }).collect();
        return;
    }
    for (a, s) in acc.iter_mut().zip(new) {
        for (x, y) in a.tokens_per_expert.iter_mut().zip(&s.tokens_per_expert) {
            *x += y;
        }
        for (x, y) in a.coverage.iter_mut().zip(&s.coverage) {
            *x += y;
        }
        a.drop_rate += s.drop_rate / n;
        a.unrouted_fraction += s.unrouted_fraction / n;
        a.router_entropy += s.router_entropy / n;
    }
}

fn evaluate(model: &MoeLm, corpus: &ByteCorpus, o: &TrainOptions, device: Device) -> Result<(f64, Vec<RoutingStats>)> {
    let mut rng = HostRng::new(o.seed ^ 0xE7A1);
    let mut total = 0.0;
    let mut stats = Vec::new();
    for _ in 0..o.eval_batches {
        let (x, y) = ByteCorpus::batch(&corpus.valid, o.batch, o.seq_len, &mut rng, device)?;
        let out = tch::no_grad(|| model.forward(&x))?;
        total += MoeLm::cross_entropy(&out.logits, &y).double_value(&[]);
        merge(&mut stats, out.stats, o.eval_batches as f64);
    }
    Ok((total / o.eval_batches as f64, stats))
}

/// Trains an [`MoeLm`] with AdamW on byte windows of `corpus`; `on_log` sees each logged point.
pub fn train_lm(
    cfg: MoeLmConfig,
    corpus: &ByteCorpus,
    o: TrainOptions,
    device: Device,
    mut on_log: impl FnMut(usize, f64),
) -> Result<LmReport> {
    if o.seq_len > cfg.max_seq_len || o.steps == 0 || o.eval_batches == 0 || o.log_every == 0 {
        return config_err(format!("invalid training options {o:?} for max_seq_len {}", cfg.max_seq_len));
    }
    engram_core::seed::manual_seed(o.seed);
    let vs = nn::VarStore::new(device);
    let model = MoeLm::new(&vs.root(), cfg)?;
    let params = vs.trainable_variables();
    let parameters = params.iter().map(|p| p.numel() as i64).sum();
    let mut opt = Adam::new(params, AdamConfig::adamw(o.lr));
    let (initial_valid_loss, _) = evaluate(&model, corpus, &o, device)?;
    let mut rng = HostRng::new(o.seed);
    let mut curve = Vec::new();
    let mut window = 0.0;
    let start = std::time::Instant::now();
    for step in 1..=o.steps {
        let (x, y) = ByteCorpus::batch(&corpus.train, o.batch, o.seq_len, &mut rng, device)?;
        opt.zero_grad();
        let out = model.forward(&x)?;
        let ce = MoeLm::cross_entropy(&out.logits, &y);
        (&ce + &out.aux_loss).backward();
        opt.step();
        window += ce.double_value(&[]);
        if step % o.log_every == 0 {
            let m = window / o.log_every as f64;
            curve.push((step, m));
            on_log(step, m);
            window = 0.0;
        }
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let (valid_loss, valid_stats) = evaluate(&model, corpus, &o, device)?;
    let mut rng = HostRng::new(o.seed ^ 0x1EA4);
    let (x, _) = ByteCorpus::batch(&corpus.valid, o.batch, o.seq_len, &mut rng, device)?;
    let causal_leak = causal_leak(&model, &x)?;
    Ok(LmReport {
        router: cfg.router,
        train_curve: curve,
        initial_valid_loss,
        valid_loss,
        valid_stats,
        causal_leak,
        train_seconds,
        parameters,
    })
}
