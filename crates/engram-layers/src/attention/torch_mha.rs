//! A 1:1 mirror of `torch.nn.MultiheadAttention` (fused `in_proj_weight`, `out_proj`), for
//! loading PyTorch checkpoints of that module and for models that use it.

use super::mask::{AttentionMask, MaskKind};
use super::sdpa::{attention, SdpaOptions};
use crate::linear::Linear;
use crate::util::{ensure, ensure_shape};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`TorchMultiheadAttention`] (the `nn.MultiheadAttention` arguments it
/// supports: equal q/k/v widths, no `add_bias_kv`/`add_zero_attn`, `batch_first=True`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchMultiheadAttentionConfig {
    /// E.
    pub embed_dim: i64,
    /// Heads; must divide E.
    pub num_heads: i64,
    /// Attention-probability dropout (training only).
    pub dropout: f64,
    /// `in_proj_bias` and `out_proj.bias`.
    pub bias: bool,
}

/// `nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first=True)` with the same
/// parameters (`in_proj_weight [3E, E]`, `in_proj_bias [3E]`, `out_proj.weight`, `out_proj.bias`)
/// and the same initialisation order (out_proj drawn as a Linear, then `xavier_uniform_` on
/// `in_proj_weight`, biases zeroed), so seeded constructions match PyTorch bit for bit.
///
/// ```
/// use engram_layers::attention::{AttentionMask, MaskKind, TorchMultiheadAttention, TorchMultiheadAttentionConfig};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let cfg = TorchMultiheadAttentionConfig { embed_dim: 8, num_heads: 2, dropout: 0.0, bias: true };
/// let mha = TorchMultiheadAttention::new(vs.root() / "attn", cfg).unwrap();
/// let x = tch::Tensor::randn([3, 5, 8], tch::kind::FLOAT_CPU);
/// let y = mha.forward(&x, &x, &x, &AttentionMask::new(MaskKind::Causal), false).unwrap();
/// assert_eq!(y.size(), vec![3, 5, 8]);
/// ```
#[derive(Debug)]
pub struct TorchMultiheadAttention {
    /// `[3E, E]`: query, key and value projections stacked.
    pub in_proj_weight: Tensor,
    /// `[3E]`.
    pub in_proj_bias: Option<Tensor>,
    /// `out_proj.weight [E, E]`, `out_proj.bias [E]`.
    pub out_proj: Linear,
    cfg: TorchMultiheadAttentionConfig,
}

impl TorchMultiheadAttention {
    /// Creates the parameters under `path` in PyTorch's draw order.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: TorchMultiheadAttentionConfig) -> Result<Self> {
        let e = cfg.embed_dim;
        ensure(e > 0 && cfg.num_heads > 0 && e % cfg.num_heads == 0, || {
            format!("MultiheadAttention: embed_dim {e} must be divisible by num_heads {}", cfg.num_heads)
        })?;
        ensure((0.0..1.0).contains(&cfg.dropout), || format!("MultiheadAttention: dropout {} not in [0, 1)", cfg.dropout))?;
        let p = path.borrow();
        let mut in_proj_weight = p.zeros("in_proj_weight", &[3 * e, e]);
        let in_proj_bias = cfg.bias.then(|| p.zeros("in_proj_bias", &[3 * e]));
        let out_proj = Linear::new(p / "out_proj", crate::linear::LinearConfig { in_features: e, out_features: e, bias: cfg.bias });
        // xavier_uniform_: a = √3 · √(2/(fan_in + fan_out)), fan_in = E, fan_out = 3E.
        let std = (2.0 / (e + 3 * e) as f64).sqrt();
        let a = 3f64.sqrt() * std;
        crate::init::uniform_(&mut in_proj_weight, -a, a);
        if let Some(b) = &out_proj.bias {
            tch::no_grad(|| {
                let _ = b.shallow_clone().zero_();
            });
        }
        Ok(TorchMultiheadAttention { in_proj_weight, in_proj_bias, out_proj, cfg })
    }

    /// Attention of `query [B, Lq, E]` over `key`/`value [B, Lk, E]` (PyTorch's `batch_first`
    /// layout), returning `attn_output` only (`need_weights=False`). The mask's key padding uses
    /// this crate's convention (`true` = keep); see [`AttentionMask::from_torch_key_padding`].
    pub fn forward(&self, query: &Tensor, key: &Tensor, value: &Tensor, mask: &AttentionMask, train: bool) -> Result<Tensor> {
        let e = self.cfg.embed_dim;
        let (qs, ks, vs) = (query.size(), key.size(), value.size());
        ensure_shape(qs.len() == 3 && ks.len() == 3 && vs == ks && qs[0] == ks[0] && qs[2] == e && ks[2] == e, || {
            format!("MultiheadAttention: expected [B, L, {e}] query and equal key/value, got {qs:?} {ks:?} {vs:?}")
        })?;
        let h = self.cfg.num_heads;
        let d = e / h;
        let w = self.in_proj_weight.chunk(3, 0);
        let b: Vec<Option<Tensor>> = match &self.in_proj_bias {
            Some(bb) => bb.chunk(3, 0).into_iter().map(Some).collect(),
            None => vec![None, None, None],
        };
        let proj = |x: &Tensor, i: usize| {
            let s = x.size();
            x.linear(&w[i], b[i].as_ref()).view([s[0], s[1], h, d]).transpose(1, 2)
        };
        let (q, k, v) = (proj(query, 0), proj(key, 1), proj(value, 2));
        let opts = SdpaOptions { dropout_p: self.cfg.dropout, train, scale: None };
        let y = attention(&q, &k, &v, mask, opts)?;
        let y = y.transpose(1, 2).reshape([qs[0], qs[1], e]);
        Ok(y.linear(&self.out_proj.weight, self.out_proj.bias.as_ref()))
    }

    /// Self-attention shorthand.
    pub fn forward_self(&self, x: &Tensor, kind: MaskKind, train: bool) -> Result<Tensor> {
        self.forward(x, x, x, &AttentionMask::new(kind), train)
    }
}
