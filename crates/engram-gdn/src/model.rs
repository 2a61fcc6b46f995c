//! [`HybridModel`]: embedding → pattern of G/S mixers, each followed by a SwiGLU FFN → RMSNorm →
//! tied LM head (spec §2.1), with the causal fixes of issue 7.

use crate::blocks::{RmsNorm, SwiGlu};
use crate::config::{HybridConfig, LayerKind};
use crate::gdn::{GdnCache, GdnLayer, WriteStream};
use crate::swa::{SwaCache, SwaLayer};
use crate::{GdnError, Result};
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
enum Mixer {
    Gdn(GdnLayer),
    Swa(SwaLayer),
}

/// What one layer did during a traced forward.
#[derive(Debug)]
pub enum LayerTrace {
    /// A G layer.
    Gdn {
        /// Keys as written `[B,T,H,K]` (shifted when `shifted_value`: position t holds the key of t-1).
        keys: Tensor,
        /// The layer's queries `[B,T,H,K]` (standard flavour; the seed reads with its keys).
        queries: Option<Tensor>,
        /// Write strength `[B,T,H]` as applied at each step.
        beta: Tensor,
        /// Retention factor in (0, 1] `[B,T,H]` as applied at each step.
        decay: Tensor,
        /// State after the last token `[B,H,K,V]`.
        final_state: Tensor,
    },
    /// An S layer.
    Swa {
        /// Entropy (nats) of each query's local attention `[B,H,T]`.
        attn_entropy: Option<Tensor>,
    },
}

/// Per-layer internals of one forward pass, in pattern order.
#[derive(Debug)]
pub struct Trace {
    /// One entry per layer.
    pub layers: Vec<LayerTrace>,
}

/// Incremental decoding state: recurrent states of G layers, KV windows of S layers. Each
/// [`HybridModel::forward_step`] costs O(window) per token, independent of the sequence length.
#[derive(Debug)]
pub struct DecodeState {
    gdn: Vec<GdnCache>,
    swa: Vec<SwaCache>,
    pos: i64,
}

impl DecodeState {
    /// Tokens consumed so far.
    pub fn position(&self) -> i64 {
        self.pos
    }
}

/// The GDN + sliding-window hybrid language model.
///
/// ```
/// use engram_gdn::{HybridConfig, HybridModel};
/// use tch::{nn, Device, Kind, Tensor};
/// let cfg = HybridConfig::tiny();
/// let vs = nn::VarStore::new(Device::Cpu);
/// let model = HybridModel::new(&vs.root(), &cfg).unwrap();
/// let tokens = Tensor::randint(cfg.vocab, [2, 12], (Kind::Int64, Device::Cpu));
/// let logits = model.forward(&tokens).unwrap();
/// assert_eq!(logits.size(), vec![2, 12, cfg.vocab]);
/// ```
#[derive(Debug)]
pub struct HybridModel {
    cfg: HybridConfig,
    embed: Tensor,
    lm_head: Option<Tensor>,
    layers: Vec<(Mixer, SwiGlu)>,
    norm_f: RmsNorm,
    compute_kind: Kind,
}

impl HybridModel {
    /// Creates the parameters under `path` (PyTorch-style names: `embed.weight`,
    /// `layers.{i}.mixer.*`, `layers.{i}.ffn.*`, `norm_f.weight`, `lm_head.weight` when untied).
    pub fn new(path: &nn::Path, cfg: &HybridConfig) -> Result<Self> {
        cfg.validate()?;
        let embed = (path / "embed").var("weight", &[cfg.vocab, cfg.d_model], nn::Init::Randn { mean: 0.0, stdev: cfg.init_std });
        let mut layers = Vec::new();
        for (i, kind) in cfg.layers().into_iter().enumerate() {
            let lp = path / "layers" / i;
            let mixer = match kind {
                LayerKind::Gdn => Mixer::Gdn(GdnLayer::new(&(&lp / "mixer"), cfg)),
                LayerKind::Swa => Mixer::Swa(SwaLayer::new(&(&lp / "mixer"), cfg)),
            };
            let ffn = SwiGlu::new(&(&lp / "ffn"), cfg.d_model, cfg.ffn_hidden(), cfg.norm_eps);
            layers.push((mixer, ffn));
        }
        let norm_f = RmsNorm::new(&(path / "norm_f"), cfg.d_model, cfg.norm_eps);
        let lm_head = (!cfg.tie_embeddings).then(|| {
            (path / "lm_head").var("weight", &[cfg.vocab, cfg.d_model], nn::Init::Randn { mean: 0.0, stdev: cfg.init_std })
        });
        Ok(HybridModel { cfg: cfg.clone(), embed, lm_head, layers, norm_f, compute_kind: Kind::Float })
    }

    /// The architecture.
    pub fn config(&self) -> &HybridConfig {
        &self.cfg
    }

    /// Activation dtype (parameters stay fp32): `Kind::BFloat16` gives mixed precision on GPUs.
    pub fn set_compute_kind(&mut self, kind: Kind) {
        self.compute_kind = kind;
    }

    /// The device of the parameters.
    pub fn device(&self) -> tch::Device {
        self.embed.device()
    }

    /// Current activation dtype.
    pub fn compute_kind(&self) -> Kind {
        self.compute_kind
    }

    /// Logits `[B,T,vocab]` (in the compute dtype) for tokens `[B,T]` (int64).
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        Ok(self.run(tokens, None, false)?.0)
    }

    /// As [`HybridModel::forward`] without the range check of the ids: that check reads the
    /// batch's min and max back to the host, a device sync per call on GPUs. For batches known to
    /// lie in `[0, vocab)` by construction (the trainer's, drawn from corpora tokenized for this
    /// vocabulary, and the benchmark's); shape, dtype and device are still checked. Out-of-range
    /// ids then reach libtorch's embedding unchecked: a panic (tch raises libtorch's error) on the
    /// CPU, a device-side assert on CUDA. Ids from outside go through [`HybridModel::forward`].
    pub fn forward_in_range(&self, tokens: &Tensor) -> Result<Tensor> {
        Ok(self.run_with(tokens, None, false, false)?.0)
    }

    /// Logits plus each layer's internals (keys, gates, final state, attention entropy).
    pub fn forward_with_trace(&self, tokens: &Tensor) -> Result<(Tensor, Trace)> {
        let (logits, trace) = self.run(tokens, None, true)?;
        Ok((logits, trace.expect("trace requested")))
    }

    /// A fresh decoding state for [`HybridModel::forward_step`].
    pub fn decode_state(&self) -> DecodeState {
        let n_g = self.layers.iter().filter(|(m, _)| matches!(m, Mixer::Gdn(_))).count();
        let n_s = self.layers.len() - n_g;
        DecodeState {
            gdn: (0..n_g).map(|_| GdnCache::default()).collect(),
            swa: (0..n_s).map(|_| SwaCache::default()).collect(),
            pos: 0,
        }
    }

    /// Consumes the next `T ≥ 1` tokens `[B,T]` of a sequence and returns their logits; a
    /// prompt may go in whole (prefill), then one token per call. Always causal: a
    /// `seed_compat` model is decoded without its future-state leak.
    pub fn forward_step(&self, tokens: &Tensor, state: &mut DecodeState) -> Result<Tensor> {
        Ok(self.run(tokens, Some(state), false)?.0)
    }

    fn check_tokens(&self, tokens: &Tensor, check_ids: bool) -> Result<(i64, i64)> {
        let size = tokens.size();
        if size.len() != 2 {
            return Err(GdnError::Input(format!("tokens must be [batch, time], got shape {size:?}")));
        }
        if tokens.kind() != Kind::Int64 {
            return Err(GdnError::Input(format!("tokens must be int64, got {:?}", tokens.kind())));
        }
        if size[0] < 1 || size[1] < 1 {
            return Err(GdnError::Input(format!("tokens must be non-empty, got shape {size:?}")));
        }
        if tokens.device() != self.embed.device() {
            return Err(GdnError::Input(format!("tokens are on {:?}, the model on {:?}", tokens.device(), self.embed.device())));
        }
        if !check_ids {
            return Ok((size[0], size[1]));
        }
        let (lo, hi) = (tokens.min().int64_value(&[]), tokens.max().int64_value(&[]));
        if lo < 0 || hi >= self.cfg.vocab {
            return Err(GdnError::Input(format!("token ids must lie in [0, {}), got range [{lo}, {hi}]", self.cfg.vocab)));
        }
        Ok((size[0], size[1]))
    }

    fn run(&self, tokens: &Tensor, state: Option<&mut DecodeState>, want_trace: bool) -> Result<(Tensor, Option<Trace>)> {
        self.run_with(tokens, state, want_trace, true)
    }

    fn run_with(&self, tokens: &Tensor, mut state: Option<&mut DecodeState>, want_trace: bool, check_ids: bool) -> Result<(Tensor, Option<Trace>)> {
        let (_, t) = self.check_tokens(tokens, check_ids)?;
        let ck = self.compute_kind;
        let pos = state.as_ref().map_or(0, |s| s.pos);
        let compat = self.cfg.seed_compat && state.is_none();
        let mut x = Tensor::embedding(&self.embed.to_kind(ck), tokens, -1, false, false);
        let mut writes: Option<WriteStream> = None;
        let mut traces = Vec::new();
        let (mut gi, mut si) = (0, 0);
        for (mixer, ffn) in &self.layers {
            match mixer {
                Mixer::Gdn(layer) => {
                    // Threading a final state into the next G layer lets position t see tokens
                    // after t; only seed_compat does it.
                    let init = if compat { writes.as_ref().map(|w| w.final_state.shallow_clone()) } else { None };
                    let cache = state.as_deref_mut().map(|s| &mut s.gdn[gi]);
                    let (y, ws) = layer.forward(&x, init.as_ref(), pos, cache)?;
                    gi += 1;
                    x = y;
                    if want_trace {
                        traces.push(LayerTrace::Gdn {
                            keys: ws.keys.shallow_clone(),
                            queries: ws.queries.as_ref().map(|q| q.shallow_clone()),
                            beta: ws.beta.shallow_clone(),
                            decay: ws.decay_factor(),
                            final_state: ws.final_state.shallow_clone(),
                        });
                    }
                    writes = Some(ws);
                }
                Mixer::Swa(layer) => {
                    let cache = state.as_deref_mut().map(|s| &mut s.swa[si]);
                    let (y, ent) = layer.forward(&x, writes.as_ref(), pos, cache, want_trace, compat)?;
                    si += 1;
                    x = y;
                    if want_trace {
                        traces.push(LayerTrace::Swa { attn_entropy: ent });
                    }
                }
            }
            x = ffn.forward(&x);
        }
        let x = self.norm_f.forward(&x);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let logits = x.matmul(&head.to_kind(ck).tr());
        if let Some(s) = state {
            s.pos += t;
        }
        Ok((logits, want_trace.then_some(Trace { layers: traces })))
    }
}

/// Number of parameters of a VarStore (tied weights are one variable, counted once).
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
