//! Multi-head attention with a configurable number of key/value heads (MHA, GQA, MQA).

use super::kv_cache::KvCache;
use super::mask::{AttentionMask, MaskKind};
use super::rope::{Rope, RopeConfig};
use super::sdpa::{attention, SdpaOptions};
use crate::linear::{Linear, LinearConfig};
use crate::util::{ensure, ensure_shape};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Tensor};

/// Configuration of [`MultiHeadAttention`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiHeadAttentionConfig {
    /// Model width E (input and output).
    pub embed_dim: i64,
    /// Query heads H.
    pub num_heads: i64,
    /// Key/value heads; `H` = MHA, `1` = MQA, in between = GQA. Must divide `H`.
    pub num_kv_heads: i64,
    /// Per-head width D; `E / H` when absent.
    pub head_dim: Option<i64>,
    /// Biases on the four projections.
    pub bias: bool,
    /// Attention-probability dropout (training only).
    pub dropout: f64,
    /// Rotary embedding of queries and keys.
    pub rope: Option<RopeConfig>,
}

impl MultiHeadAttentionConfig {
    /// Plain MHA (`num_kv_heads = num_heads`), no bias, no dropout, no RoPE.
    pub fn new(embed_dim: i64, num_heads: i64) -> Self {
        MultiHeadAttentionConfig { embed_dim, num_heads, num_kv_heads: num_heads, head_dim: None, bias: false, dropout: 0.0, rope: None }
    }
    /// Sets the key/value head count.
    pub fn kv_heads(mut self, n: i64) -> Self {
        self.num_kv_heads = n;
        self
    }
    /// Enables RoPE.
    pub fn with_rope(mut self, rope: RopeConfig) -> Self {
        self.rope = Some(rope);
        self
    }
}

/// Self-attention with separate projections named as in Hugging Face's LLaMA attention
/// (`q_proj`, `k_proj`, `v_proj`, `o_proj`, each a `Linear` with PyTorch init drawn in that
/// order). PyTorch's fused `nn.MultiheadAttention` cannot express `num_kv_heads < num_heads`,
/// which is why the layout follows LLaMA.
///
/// ```
/// use engram_layers::attention::{AttentionMask, MaskKind, MultiHeadAttention, MultiHeadAttentionConfig};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let attn = MultiHeadAttention::new(vs.root() / "attn", MultiHeadAttentionConfig::new(16, 4).kv_heads(2)).unwrap();
/// let x = tch::Tensor::randn([2, 7, 16], tch::kind::FLOAT_CPU);
/// let y = attn.forward(&x, &AttentionMask::new(MaskKind::Causal), false).unwrap();
/// assert_eq!(y.size(), vec![2, 7, 16]);
/// ```
#[derive(Debug)]
pub struct MultiHeadAttention {
    /// `[H·D, E]`.
    pub q_proj: Linear,
    /// `[Hkv·D, E]`.
    pub k_proj: Linear,
    /// `[Hkv·D, E]`.
    pub v_proj: Linear,
    /// `[E, H·D]`.
    pub o_proj: Linear,
    rope: Option<Rope>,
    head_dim: i64,
    cfg: MultiHeadAttentionConfig,
}

impl MultiHeadAttention {
    /// Creates the four projections under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: MultiHeadAttentionConfig) -> Result<Self> {
        let p = path.borrow();
        ensure(cfg.embed_dim > 0 && cfg.num_heads > 0 && cfg.num_kv_heads > 0, || format!("MHA: bad sizes {cfg:?}"))?;
        ensure(cfg.num_heads % cfg.num_kv_heads == 0, || {
            format!("MHA: num_kv_heads {} must divide num_heads {}", cfg.num_kv_heads, cfg.num_heads)
        })?;
        let head_dim = match cfg.head_dim {
            Some(d) => d,
            None if cfg.embed_dim % cfg.num_heads == 0 => cfg.embed_dim / cfg.num_heads,
            None => {
                return Err(Error::InvalidArgument(format!(
                    "MHA: embed_dim {} not divisible by num_heads {}; set head_dim",
                    cfg.embed_dim, cfg.num_heads
                )))
            }
        };
        ensure((0.0..1.0).contains(&cfg.dropout), || format!("MHA: dropout {} not in [0,1)", cfg.dropout))?;
        let lin = |name: &str, i: i64, o: i64| {
            let c = LinearConfig { in_features: i, out_features: o, bias: cfg.bias };
            Linear::new(p / name, c)
        };
        let (e, h, hkv) = (cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads);
        let q_proj = lin("q_proj", e, h * head_dim);
        let k_proj = lin("k_proj", e, hkv * head_dim);
        let v_proj = lin("v_proj", e, hkv * head_dim);
        let o_proj = lin("o_proj", h * head_dim, e);
        let rope = cfg.rope.map(|r| Rope::new(head_dim, r)).transpose()?;
        Ok(MultiHeadAttention { q_proj, k_proj, v_proj, o_proj, rope, head_dim, cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &MultiHeadAttentionConfig {
        &self.cfg
    }

    /// Per-head width D.
    pub fn head_dim(&self) -> i64 {
        self.head_dim
    }

    fn split(&self, x: &Tensor, heads: i64) -> Tensor {
        let s = x.size();
        x.view([s[0], s[1], heads, self.head_dim]).transpose(1, 2)
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let s = x.size();
        ensure_shape(s.len() == 3 && s[2] == self.cfg.embed_dim, || {
            format!("MHA: expected x [B, L, {}], got {s:?}", self.cfg.embed_dim)
        })?;
        let wk = self.q_proj.weight.kind();
        ensure_shape(x.kind() == wk && x.device() == self.q_proj.weight.device(), || {
            format!("MHA: input is {:?} on {:?}, parameters are {wk:?} on {:?}", x.kind(), x.device(), self.q_proj.weight.device())
        })
    }

    fn project(&self, x: &Tensor, start: i64) -> Result<(Tensor, Tensor, Tensor)> {
        let q = self.split(&self.q_proj.forward(x), self.cfg.num_heads);
        let k = self.split(&self.k_proj.forward(x), self.cfg.num_kv_heads);
        let v = self.split(&self.v_proj.forward(x), self.cfg.num_kv_heads);
        match &self.rope {
            Some(r) => Ok((r.apply(&q, start)?, r.apply(&k, start)?, v)),
            None => Ok((q, k, v)),
        }
    }

    fn merge(&self, y: Tensor) -> Tensor {
        let s = y.size();
        self.o_proj.forward(&y.transpose(1, 2).reshape([s[0], s[2], s[1] * s[3]]))
    }

    fn opts(&self, train: bool) -> SdpaOptions {
        SdpaOptions { dropout_p: self.cfg.dropout, train, scale: None }
    }

    /// Self-attention over `x [B, L, E]` (positions `0..L`) → `[B, L, E]`.
    pub fn forward(&self, x: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        self.check_input(x)?;
        let (q, k, v) = self.project(x, 0)?;
        Ok(self.merge(attention(&q, &k, &v, mask, self.opts(train))?))
    }

    /// Incremental self-attention: `x [B, l, E]` are the next `l` tokens after those already in
    /// `cache`; their keys/values are appended. The mask is applied over the cached keys with the
    /// new queries aligned to the end, so decoding token by token equals one full-sequence pass.
    /// Key padding is not supported here (it would have to cover the cached keys too).
    pub fn forward_cached(&self, x: &Tensor, cache: &mut KvCache, kind: MaskKind) -> Result<Tensor> {
        self.check_input(x)?;
        let (q, k, v) = self.project(x, cache.position())?;
        let (k_all, v_all) = cache.append(&k, &v)?;
        let y = attention(&q, &k_all, &v_all, &AttentionMask::new(kind), self.opts(false))?;
        Ok(self.merge(y))
    }
}
