//! The attention core: shape-checked `scaled_dot_product_attention` with GQA head sharing.

use super::mask::{AttentionMask, MaskKind};
use crate::util::{ensure, ensure_shape};
use engram_core::Result;
use tch::Tensor;

/// Options of [`attention`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SdpaOptions {
    /// Attention-probability dropout, applied only when `train`.
    pub dropout_p: f64,
    /// Whether dropout is active.
    pub train: bool,
    /// Logit scale; `None` = `1/√head_dim`.
    pub scale: Option<f64>,
}

impl Default for SdpaOptions {
    fn default() -> Self {
        SdpaOptions { dropout_p: 0.0, train: false, scale: None }
    }
}

/// `softmax(q kᵀ · scale + mask) v` on libtorch's `scaled_dot_product_attention`.
///
/// Shapes: `q [B, H, Lq, D]`, `k [B, Hkv, Lk, D]`, `v [B, Hkv, Lk, Dv]`, with `H` a multiple of
/// `Hkv`: each group of `H/Hkv` consecutive query heads shares one key/value head (GQA; `Hkv = 1`
/// is MQA, `Hkv = H` plain MHA). Returns `[B, H, Lq, Dv]`. Shape errors are returned, not
/// aborted on. A query whose keys are all masked (e.g. an all-padding row) gets a zero output.
///
/// ```
/// use engram_layers::attention::{attention, AttentionMask, MaskKind, SdpaOptions};
/// let q = tch::Tensor::randn([1, 4, 5, 8], tch::kind::FLOAT_CPU);
/// let kv = tch::Tensor::randn([1, 2, 5, 8], tch::kind::FLOAT_CPU);
/// let y = attention(&q, &kv, &kv, &AttentionMask::new(MaskKind::Causal), SdpaOptions::default()).unwrap();
/// assert_eq!(y.size(), vec![1, 4, 5, 8]);
/// ```
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask, opts: SdpaOptions) -> Result<Tensor> {
    let (qs, ks, vs) = (q.size(), k.size(), v.size());
    ensure_shape(qs.len() == 4 && ks.len() == 4 && vs.len() == 4, || {
        format!("attention: q, k, v must be 4-D [B, H, L, D], got {qs:?} {ks:?} {vs:?}")
    })?;
    let (b, h, lq, d) = (qs[0], qs[1], qs[2], qs[3]);
    let (hkv, lk) = (ks[1], ks[2]);
    ensure_shape(ks[0] == b && vs[0] == b && ks[3] == d && vs[1] == hkv && vs[2] == lk, || {
        format!("attention: incompatible q {qs:?}, k {ks:?}, v {vs:?}")
    })?;
    ensure_shape(hkv > 0 && h % hkv == 0, || format!("attention: {h} query heads not a multiple of {hkv} kv heads"))?;
    ensure((0.0..1.0).contains(&opts.dropout_p), || format!("attention dropout must be in [0,1), got {}", opts.dropout_p))?;
    ensure_shape(q.kind() == k.kind() && k.kind() == v.kind(), || {
        format!("attention: dtypes differ: {:?} {:?} {:?}", q.kind(), k.kind(), v.kind())
    })?;
    let (k, v) = if hkv != h {
        let rep = h / hkv;
        (k.f_repeat_interleave_self_int(rep, 1, None)?, v.f_repeat_interleave_self_int(rep, 1, None)?)
    } else {
        (k.shallow_clone(), v.shallow_clone())
    };
    let dropout = if opts.train { opts.dropout_p } else { 0.0 };
    // Square causal without padding: let the kernel use its own causal path (no mask tensor).
    let square_causal = mask.kind == MaskKind::Causal && mask.key_padding.is_none() && lq == lk;
    let m = if square_causal { None } else { mask.build(b, lq, lk, q.device())? };
    let out = Tensor::f_scaled_dot_product_attention(q, &k, &v, m.as_ref(), dropout, square_causal, opts.scale, false)?;
    // Rows with every key masked come back NaN from some backends; their defined value is 0.
    Ok(match &m {
        Some(m) => {
            let any = m.any_dim(-1, true).expand([b, h, lq, 1], false);
            out.f_masked_fill(&any.logical_not(), 0.0)?
        }
        None => out,
    })
}

/// [`attention`] with an additive float `bias` on the logits (e.g. ALiBi or a relative-position
/// bias), broadcastable to `[B, H, Lq, Lk]`; masked positions stay excluded.
///
/// ```
/// use engram_layers::attention::{alibi_bias, attention_with_bias, AttentionMask, MaskKind, SdpaOptions};
/// let q = tch::Tensor::randn([1, 4, 5, 8], tch::kind::FLOAT_CPU);
/// let bias = alibi_bias(4, 5, 5, tch::Device::Cpu).unwrap();
/// let y = attention_with_bias(&q, &q, &q, &bias, &AttentionMask::new(MaskKind::Causal), SdpaOptions::default()).unwrap();
/// assert_eq!(y.size(), vec![1, 4, 5, 8]);
/// ```
pub fn attention_with_bias(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, mask: &AttentionMask, opts: SdpaOptions) -> Result<Tensor> {
    let (qs, ks) = (q.size(), k.size());
    ensure_shape(qs.len() == 4 && ks.len() == 4, || format!("attention: q, k must be 4-D, got {qs:?} {ks:?}"))?;
    let (b, h, lq, lk) = (qs[0], qs[1], qs[2], ks[2]);
    let full = [b, h, lq, lk];
    let bs = bias.size();
    ensure_shape(bs.len() <= 4 && bs.iter().rev().zip(full.iter().rev()).all(|(&x, &y)| x == 1 || x == y), || {
        format!("attention: bias {bs:?} does not broadcast to {full:?}")
    })?;
    let allowed = mask.build(b, lq, lk, q.device())?;
    let mut float_mask = bias.to_kind(q.kind()).expand(full, false).contiguous();
    if let Some(m) = &allowed {
        float_mask = float_mask.masked_fill(&m.logical_not(), f64::NEG_INFINITY);
    }
    // The additive mask now carries the structure; pass it to the core as a plain float mask.
    let (qs, ks, vs) = (q.size(), k.size(), v.size());
    ensure_shape(ks[0] == b && vs[0] == b && ks[3] == qs[3] && vs[1] == ks[1] && vs[2] == lk && ks[1] > 0 && h % ks[1] == 0, || {
        format!("attention: incompatible q {qs:?}, k {ks:?}, v {vs:?}")
    })?;
    let (k, v) = if ks[1] != h {
        let rep = h / ks[1];
        (k.f_repeat_interleave_self_int(rep, 1, None)?, v.f_repeat_interleave_self_int(rep, 1, None)?)
    } else {
        (k.shallow_clone(), v.shallow_clone())
    };
    let dropout = if opts.train { opts.dropout_p } else { 0.0 };
    let out = Tensor::f_scaled_dot_product_attention(q, &k, &v, Some(&float_mask), dropout, false, opts.scale, false)?;
    Ok(match &allowed {
        Some(m) => {
            let any = m.any_dim(-1, true).expand([b, h, lq, 1], false);
            out.f_masked_fill(&any.logical_not(), 0.0)?
        }
        None => out,
    })
}
