//! Losses on ATen's loss kernels (same reductions, clamping and gradients as `torch.nn.functional`),
//! plus focal, InfoNCE and a few compositions PyTorch lacks. Inputs are validated first, so a bad
//! shape is an [`Error`] rather than a libtorch abort.
//!
//! ```
//! use engram_layers::loss::*;
//! let f = tch::kind::FLOAT_CPU;
//! // cross-entropy of uniform logits is ln C; ignore_index rows do not count
//! let ce = cross_entropy(&tch::Tensor::zeros([2, 4], f), &tch::Tensor::from_slice(&[0i64, -100]), None, CrossEntropyOptions::default()).unwrap();
//! assert!((ce.double_value(&[]) - 4f64.ln()).abs() < 1e-6);
//! // BCE-with-logits is stable at extreme logits; BCE clamps log(0) at -100 like ATen
//! let x = tch::Tensor::from_slice(&[1000.0f32]);
//! let zero = tch::Tensor::from_slice(&[0.0f32]);
//! assert_eq!(binary_cross_entropy_with_logits(&x, &zero, None, None, Reduction::Mean).unwrap().double_value(&[]), 1000.0);
//! assert_eq!(binary_cross_entropy(&zero, &tch::Tensor::from_slice(&[1.0f32]), None, Reduction::Sum).unwrap().double_value(&[]), 100.0);
//! // KL(p‖p) = 0; focal loss down-weights easy examples; InfoNCE rewards aligned pairs
//! let p = tch::Tensor::from_slice(&[0.25f32, 0.75]).view([1, 2]);
//! assert!(kl_div(&p.log(), &p, false, KlReduction::BatchMean).unwrap().double_value(&[]).abs() < 1e-7);
//! let easy = sigmoid_focal_loss(&tch::Tensor::from_slice(&[4.0f32]), &tch::Tensor::from_slice(&[1.0f32]), 0.25, 2.0, Reduction::Sum).unwrap();
//! assert!(easy.double_value(&[]) < 1e-4);
//! let e = tch::Tensor::eye(4, f);
//! assert!(info_nce(&e, &e, 0.07, true).unwrap().double_value(&[]) < 1e-3);
//! // shape mismatches are errors
//! assert!(mse_loss(&tch::Tensor::zeros([2], f), &tch::Tensor::zeros([3], f), Reduction::Mean).is_err());
//! ```

use crate::util::{ensure, ensure_shape};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction as TchReduction, Tensor};

/// How element losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Element-wise losses.
    None,
    /// Mean (PyTorch's default).
    #[default]
    Mean,
    /// Sum.
    Sum,
}

impl Reduction {
    fn tch(self) -> TchReduction {
        match self {
            Reduction::None => TchReduction::None,
            Reduction::Mean => TchReduction::Mean,
            Reduction::Sum => TchReduction::Sum,
        }
    }
    fn apply(self, t: Tensor) -> Tensor {
        match self {
            Reduction::None => t,
            Reduction::Mean => t.mean(t.kind()),
            Reduction::Sum => t.sum(t.kind()),
        }
    }
}

fn same_shape(what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    ensure_shape(a.size() == b.size(), || format!("{what}: shapes differ: {:?} vs {:?}", a.size(), b.size()))
}

fn class_targets(what: &str, input: &Tensor, target: &Tensor, ignore_index: i64) -> Result<i64> {
    let (s, t) = (input.size(), target.size());
    ensure_shape(!s.is_empty(), || format!("{what}: empty input"))?;
    let (c, expect): (i64, Vec<i64>) = if s.len() == 1 {
        (s[0], vec![])
    } else {
        let mut e = vec![s[0]];
        e.extend_from_slice(&s[2..]);
        (s[1], e)
    };
    ensure_shape(t == expect, || format!("{what}: input {s:?} needs class targets of shape {expect:?}, got {t:?}"))?;
    ensure_shape(matches!(target.kind(), Kind::Int64), || format!("{what}: class targets must be int64, got {:?}", target.kind()))?;
    if target.numel() > 0 {
        let valid = target.ne(ignore_index);
        let bad = (target.lt(0).logical_or(&target.ge(c))).logical_and(&valid).any().int64_value(&[]);
        ensure_shape(bad == 0, || format!("{what}: a target is outside [0, {c}) and not ignore_index {ignore_index}"))?;
    }
    Ok(c)
}

/// Options of [`cross_entropy`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossEntropyOptions {
    /// Targets equal to this contribute nothing (and are excluded from the mean); −100 in PyTorch.
    pub ignore_index: i64,
    /// Label smoothing ε in `[0, 1]`.
    pub label_smoothing: f64,
    /// Reduction.
    pub reduction: Reduction,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions { ignore_index: -100, label_smoothing: 0.0, reduction: Reduction::Mean }
    }
}

/// `F.cross_entropy(logits, target, weight, ignore_index, label_smoothing)` with class-index
/// targets: `logits [N, C, *]` (or `[C]`), `target [N, *]` int64.
pub fn cross_entropy(logits: &Tensor, target: &Tensor, weight: Option<&Tensor>, o: CrossEntropyOptions) -> Result<Tensor> {
    let c = class_targets("cross_entropy", logits, target, o.ignore_index)?;
    ensure((0.0..=1.0).contains(&o.label_smoothing), || format!("label_smoothing must be in [0, 1], got {}", o.label_smoothing))?;
    if let Some(w) = weight {
        ensure_shape(w.size() == [c], || format!("cross_entropy: weight must be [{c}], got {:?}", w.size()))?;
    }
    Ok(logits.f_cross_entropy_loss(target, weight, o.reduction.tch(), o.ignore_index, o.label_smoothing)?)
}

/// `F.nll_loss(log_probs, target, weight, ignore_index)`.
pub fn nll_loss(log_probs: &Tensor, target: &Tensor, weight: Option<&Tensor>, ignore_index: i64, reduction: Reduction) -> Result<Tensor> {
    let c = class_targets("nll_loss", log_probs, target, ignore_index)?;
    if let Some(w) = weight {
        ensure_shape(w.size() == [c], || format!("nll_loss: weight must be [{c}], got {:?}", w.size()))?;
    }
    let s = log_probs.size();
    // ATen's nll_loss takes [N, C]; nll_loss2d/nd handles spatial dims.
    let out = if s.len() <= 2 {
        log_probs.f_nll_loss(target, weight, reduction.tch(), ignore_index)?
    } else {
        log_probs.f_nll_loss_nd(target, weight, reduction.tch(), ignore_index)?
    };
    Ok(out)
}

/// `F.binary_cross_entropy(probs, target, weight)`: log terms clamped at −100 as in ATen.
pub fn binary_cross_entropy(probs: &Tensor, target: &Tensor, weight: Option<&Tensor>, reduction: Reduction) -> Result<Tensor> {
    same_shape("binary_cross_entropy", probs, target)?;
    if probs.numel() > 0 {
        let outside = probs.lt(0.0).logical_or(&probs.gt(1.0)).any().int64_value(&[]);
        ensure_shape(outside == 0, || "binary_cross_entropy: probabilities must lie in [0, 1]".to_string())?;
    }
    Ok(probs.f_binary_cross_entropy(target, weight, reduction.tch())?)
}

/// `F.binary_cross_entropy_with_logits(logits, target, weight, pos_weight)`: the stable
/// `(1 − y)x + (1 + (p−1)y)·softplus(−x)` form of ATen.
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    same_shape("binary_cross_entropy_with_logits", logits, target)?;
    Ok(logits.f_binary_cross_entropy_with_logits(target, weight, pos_weight, reduction.tch())?)
}

/// `F.mse_loss`.
pub fn mse_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("mse_loss", input, target)?;
    Ok(input.f_mse_loss(target, reduction.tch())?)
}

/// `F.l1_loss`.
pub fn l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("l1_loss", input, target)?;
    Ok(input.f_l1_loss(target, reduction.tch())?)
}

/// `F.huber_loss(delta)`: quadratic below `delta`, linear above.
pub fn huber_loss(input: &Tensor, target: &Tensor, delta: f64, reduction: Reduction) -> Result<Tensor> {
    same_shape("huber_loss", input, target)?;
    ensure(delta > 0.0, || format!("huber_loss: delta must be > 0, got {delta}"))?;
    Ok(input.f_huber_loss(target, reduction.tch(), delta)?)
}

/// `F.smooth_l1_loss(beta)` (= Huber / beta; `beta = 0` is L1).
pub fn smooth_l1_loss(input: &Tensor, target: &Tensor, beta: f64, reduction: Reduction) -> Result<Tensor> {
    same_shape("smooth_l1_loss", input, target)?;
    ensure(beta >= 0.0, || format!("smooth_l1_loss: beta must be ≥ 0, got {beta}"))?;
    Ok(input.f_smooth_l1_loss(target, reduction.tch(), beta)?)
}

/// Reduction of [`kl_div`], including PyTorch's `batchmean` (the mathematically correct KL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlReduction {
    /// Element-wise.
    None,
    /// Mean over all elements (PyTorch's default, not a proper KL).
    Mean,
    /// Sum.
    Sum,
    /// Sum divided by the batch size.
    BatchMean,
}

/// `F.kl_div(input, target, log_target)`: `input` holds log-probabilities; `target` probabilities
/// (or log-probabilities with `log_target`).
pub fn kl_div(input: &Tensor, target: &Tensor, log_target: bool, reduction: KlReduction) -> Result<Tensor> {
    same_shape("kl_div", input, target)?;
    let r = match reduction {
        KlReduction::None => TchReduction::None,
        KlReduction::Mean => TchReduction::Mean,
        KlReduction::Sum | KlReduction::BatchMean => TchReduction::Sum,
    };
    let out = input.f_kl_div(target, r, log_target)?;
    Ok(match reduction {
        KlReduction::BatchMean => {
            let n = if input.dim() == 0 { 1 } else { input.size()[0].max(1) };
            out / n as f64
        }
        _ => out,
    })
}

/// Sigmoid focal loss (Lin et al. 2017; torchvision's `sigmoid_focal_loss`):
/// `α_t·(1 − p_t)^γ·BCE(x, y)`; `alpha < 0` disables the class weighting.
pub fn sigmoid_focal_loss(logits: &Tensor, target: &Tensor, alpha: f64, gamma: f64, reduction: Reduction) -> Result<Tensor> {
    same_shape("sigmoid_focal_loss", logits, target)?;
    ensure(gamma >= 0.0, || format!("focal loss: gamma must be ≥ 0, got {gamma}"))?;
    let p = logits.sigmoid();
    let ce = logits.f_binary_cross_entropy_with_logits(target, None::<&Tensor>, None::<&Tensor>, TchReduction::None)?;
    let p_t = &p * target + (1.0 - &p) * (1.0 - target);
    let one_minus: Tensor = 1.0 - p_t;
    let mut loss = ce * one_minus.pow_tensor_scalar(gamma);
    if alpha >= 0.0 {
        let alpha_t = target * alpha + (1.0 - target) * (1.0 - alpha);
        loss = alpha_t * loss;
    }
    Ok(reduction.apply(loss))
}

/// Softmax focal loss for class-index targets: `−(1 − p_y)^γ·log p_y` (mean over non-ignored).
pub fn softmax_focal_loss(logits: &Tensor, target: &Tensor, gamma: f64, ignore_index: i64, reduction: Reduction) -> Result<Tensor> {
    class_targets("softmax_focal_loss", logits, target, ignore_index)?;
    ensure(gamma >= 0.0, || format!("focal loss: gamma must be ≥ 0, got {gamma}"))?;
    let class_dim = if logits.dim() == 1 { 0 } else { 1 };
    let logp = logits.log_softmax(class_dim, Kind::Float).to_kind(logits.kind());
    let valid = target.ne(ignore_index);
    let safe_t = target.where_scalarother(&valid, 0).unsqueeze(class_dim);
    let logp_y = logp.gather(class_dim, &safe_t, false).squeeze_dim(class_dim);
    let one_minus: Tensor = 1.0 - logp_y.exp();
    let loss = -one_minus.pow_tensor_scalar(gamma) * &logp_y;
    let k = loss.kind();
    let loss = loss * valid.to_kind(k);
    Ok(match reduction {
        Reduction::Mean => loss.sum(loss.kind()) / valid.sum(Kind::Float).clamp_min(1.0).to_kind(loss.kind()),
        r => r.apply(loss),
    })
}

/// InfoNCE / NT-Xent on paired embeddings: row `i` of `query [N, D]` should match row `i` of
/// `key [N, D]` against the other rows. Embeddings are L2-normalised, similarities divided by
/// `temperature`; `symmetric` averages both directions (CLIP's loss).
pub fn info_nce(query: &Tensor, key: &Tensor, temperature: f64, symmetric: bool) -> Result<Tensor> {
    same_shape("info_nce", query, key)?;
    ensure_shape(query.dim() == 2 && query.size()[0] > 0, || format!("info_nce: expected [N, D], got {:?}", query.size()))?;
    ensure(temperature > 0.0, || format!("info_nce: temperature must be > 0, got {temperature}"))?;
    let normalize = |t: &Tensor| -> Result<Tensor> {
        let n = t.f_norm_scalaropt_dim(2, &[-1i64][..], true)?.clamp_min(1e-12);
        Ok(t / n)
    };
    let (q, k) = (normalize(query)?, normalize(key)?);
    let logits = q.matmul(&k.tr()) / temperature;
    let labels = Tensor::arange(query.size()[0], (Kind::Int64, query.device()));
    let o = CrossEntropyOptions::default();
    let l = logits.f_cross_entropy_loss(&labels, None::<&Tensor>, o.reduction.tch(), o.ignore_index, 0.0)?;
    if symmetric {
        let l2 = logits.tr().f_cross_entropy_loss(&labels, None::<&Tensor>, o.reduction.tch(), o.ignore_index, 0.0)?;
        Ok((l + l2) / 2.0)
    } else {
        Ok(l)
    }
}

/// `F.cosine_embedding_loss(x1, x2, y, margin)`: `1 − cos` for `y = 1`, `max(0, cos − margin)`
/// for `y = −1`; `x1, x2 [N, D]`, `y [N]`.
pub fn cosine_embedding_loss(x1: &Tensor, x2: &Tensor, y: &Tensor, margin: f64, reduction: Reduction) -> Result<Tensor> {
    same_shape("cosine_embedding_loss", x1, x2)?;
    let s = x1.size();
    ensure_shape((s.len() == 2 && y.size() == [s[0]]) || (s.len() == 1 && y.dim() == 0), || {
        format!("cosine_embedding_loss: x {s:?} needs y of shape [{}], got {:?}", s.first().copied().unwrap_or(0), y.size())
    })?;
    if y.numel() > 0 {
        let bad = y.ne(1.0).logical_and(&y.ne(-1.0)).any().int64_value(&[]);
        if bad != 0 {
            return Err(Error::InvalidArgument("cosine_embedding_loss: y must be 1 or -1".into()));
        }
    }
    Ok(Tensor::f_cosine_embedding_loss(x1, x2, y, margin, reduction.tch())?)
}
