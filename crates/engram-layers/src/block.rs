//! The pre-norm residual transformer block (GPT-2/LLaMA style):
//! `x + attn(norm₁(x))`, then `x + ffn(norm₂(x))`, each branch with optional DropPath.

use crate::activation::Activation;
use crate::attention::{AttentionMask, KvCache, MaskKind, MultiHeadAttention, MultiHeadAttentionConfig, RopeConfig};
use crate::dropout::DropPath;
use crate::ffn::{GatedFfn, GatedFfnConfig, GateKind, Mlp, MlpConfig};
use crate::norm::{LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig};
use crate::util::ensure;
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::ModuleT, Tensor};

/// Which normalisation the block uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// RMSNorm with this eps (LLaMA).
    Rms {
        /// ε.
        eps: f64,
    },
    /// LayerNorm with this eps (GPT-2).
    Layer {
        /// ε.
        eps: f64,
    },
}

/// Which feed-forward the block uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FfnKind {
    /// Gated FFN (SwiGLU with `GateKind::Silu`).
    Gated {
        /// Gate non-linearity.
        gate: GateKind,
    },
    /// Plain two-layer MLP.
    Mlp {
        /// Non-linearity.
        activation: Activation,
    },
}

/// Configuration of [`TransformerBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerBlockConfig {
    /// Model width.
    pub dim: i64,
    /// Query heads.
    pub num_heads: i64,
    /// Key/value heads (GQA).
    pub num_kv_heads: i64,
    /// FFN hidden width.
    pub ffn_hidden: i64,
    /// Normalisation.
    pub norm: NormKind,
    /// Feed-forward.
    pub ffn: FfnKind,
    /// Rotary embedding in attention.
    pub rope: Option<RopeConfig>,
    /// Biases in attention and FFN projections.
    pub bias: bool,
    /// Attention-probability dropout.
    pub attn_dropout: f64,
    /// Dropout on each branch output.
    pub resid_dropout: f64,
    /// Stochastic depth on each branch.
    pub drop_path: f64,
}

impl TransformerBlockConfig {
    /// A LLaMA-style block: RMSNorm(1e-6), SwiGLU, RoPE, no biases, no dropout.
    pub fn llama(dim: i64, num_heads: i64, num_kv_heads: i64, ffn_hidden: i64) -> Self {
        TransformerBlockConfig {
            dim,
            num_heads,
            num_kv_heads,
            ffn_hidden,
            norm: NormKind::Rms { eps: 1e-6 },
            ffn: FfnKind::Gated { gate: GateKind::Silu },
            rope: Some(RopeConfig::default()),
            bias: false,
            attn_dropout: 0.0,
            resid_dropout: 0.0,
            drop_path: 0.0,
        }
    }
}

#[derive(Debug)]
enum Norm {
    Rms(RmsNorm),
    Layer(LayerNorm),
}

impl Norm {
    fn new(p: nn::Path, kind: NormKind, dim: i64) -> Norm {
        match kind {
            NormKind::Rms { eps } => Norm::Rms(RmsNorm::new(p, RmsNormConfig::new(dim, eps))),
            NormKind::Layer { eps } => Norm::Layer(LayerNorm::new(p, LayerNormConfig { eps, ..LayerNormConfig::new(dim) })),
        }
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Rms(n) => n.try_forward(x),
            Norm::Layer(n) => n.try_forward(x),
        }
    }
}

#[derive(Debug)]
enum Ffn {
    Gated(GatedFfn),
    Mlp(Mlp),
}

/// A pre-norm block with the parameter names of Hugging Face's `LlamaDecoderLayer`:
/// `input_layernorm`, `self_attn.{q,k,v,o}_proj`, `post_attention_layernorm`, `mlp.*`.
///
/// ```
/// use engram_layers::attention::{AttentionMask, MaskKind};
/// use engram_layers::block::{TransformerBlock, TransformerBlockConfig};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let b = TransformerBlock::new(vs.root() / "layers" / 0, TransformerBlockConfig::llama(16, 4, 2, 32)).unwrap();
/// let x = tch::Tensor::randn([2, 5, 16], tch::kind::FLOAT_CPU);
/// let y = b.forward_t(&x, &AttentionMask::new(MaskKind::Causal), false).unwrap();
/// assert_eq!(y.size(), x.size());
/// ```
#[derive(Debug)]
pub struct TransformerBlock {
    input_layernorm: Norm,
    /// The attention.
    pub self_attn: MultiHeadAttention,
    post_attention_layernorm: Norm,
    mlp: Ffn,
    drop_path: DropPath,
    cfg: TransformerBlockConfig,
}

impl TransformerBlock {
    /// Creates the block under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: TransformerBlockConfig) -> Result<Self> {
        let p = path.borrow();
        ensure((0.0..1.0).contains(&cfg.resid_dropout), || format!("block: resid_dropout {} not in [0, 1)", cfg.resid_dropout))?;
        let input_layernorm = Norm::new(p / "input_layernorm", cfg.norm, cfg.dim);
        let mut acfg = MultiHeadAttentionConfig::new(cfg.dim, cfg.num_heads).kv_heads(cfg.num_kv_heads);
        acfg.bias = cfg.bias;
        acfg.dropout = cfg.attn_dropout;
        acfg.rope = cfg.rope;
        let self_attn = MultiHeadAttention::new(p / "self_attn", acfg)?;
        let post_attention_layernorm = Norm::new(p / "post_attention_layernorm", cfg.norm, cfg.dim);
        let mlp = match cfg.ffn {
            FfnKind::Gated { gate } => {
                Ffn::Gated(GatedFfn::new(p / "mlp", GatedFfnConfig { dim: cfg.dim, hidden_dim: cfg.ffn_hidden, gate, bias: cfg.bias })?)
            }
            FfnKind::Mlp { activation } => {
                Ffn::Mlp(Mlp::new(p / "mlp", MlpConfig { dim: cfg.dim, hidden_dim: cfg.ffn_hidden, activation, bias: cfg.bias })?)
            }
        };
        Ok(TransformerBlock { input_layernorm, self_attn, post_attention_layernorm, mlp, drop_path: DropPath::new(cfg.drop_path)?, cfg })
    }

    fn branch_out(&self, y: Tensor, train: bool) -> Tensor {
        let y = if train && self.cfg.resid_dropout > 0.0 { y.dropout(self.cfg.resid_dropout, true) } else { y };
        self.drop_path.forward_t(&y, train)
    }

    fn ffn(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.post_attention_layernorm.forward(x)?;
        let y = match &self.mlp {
            Ffn::Gated(f) => f.try_forward(&h)?,
            Ffn::Mlp(f) => f.try_forward(&h)?,
        };
        Ok(x + self.branch_out(y, train))
    }

    /// `x [B, L, dim]` → `[B, L, dim]`.
    pub fn forward_t(&self, x: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        let a = self.self_attn.forward(&self.input_layernorm.forward(x)?, mask, train)?;
        let x = x + self.branch_out(a, train);
        self.ffn(&x, train)
    }

    /// Incremental decoding of the next tokens `x [B, l, dim]` with a KV cache (inference only).
    pub fn forward_cached(&self, x: &Tensor, cache: &mut KvCache, kind: MaskKind) -> Result<Tensor> {
        let a = self.self_attn.forward_cached(&self.input_layernorm.forward(x)?, cache, kind)?;
        let x = x + a;
        self.ffn(&x, false)
    }
}
