//! Router auxiliary losses.

use crate::error::{shape_err, Result};
use tch::{Kind, Tensor};

/// Switch-Transformer load-balancing loss `α·E·Σᵢ fᵢ·Pᵢ` (Fedus et al. 2021, eq. 4).
///
/// `probs` `[G, n, E]` are router probabilities; `Pᵢ` is their mean over tokens (differentiable)
/// and `fᵢ` the fraction of tokens whose top-1 expert is `i` (a count, no gradient). With
/// uniform probabilities the loss is exactly `α`, whatever `f` is, since `Σ fᵢ = 1`.
///
/// ```
/// use engram_moe::losses::load_balance_loss;
/// use tch::{Device, Kind, Tensor};
/// let uniform = Tensor::full([1, 6, 4], 0.25, (Kind::Float, Device::Cpu));
/// let l = load_balance_loss(&uniform, 0.01).unwrap().double_value(&[]);
/// assert!((l - 0.01).abs() < 1e-9);
/// ```
pub fn load_balance_loss(probs: &Tensor, alpha: f64) -> Result<Tensor> {
    let size = probs.size();
    if size.len() != 3 {
        return shape_err(format!("probs must be [groups, tokens, experts], got {size:?}"));
    }
    let e = size[2];
    let flat = probs.reshape([-1, e]);
    let top1 = flat.argmax(-1, false);
    let f = top1.one_hot(e).to_kind(flat.kind()).mean_dim(0, false, flat.kind());
    let p = flat.mean_dim(0, false, flat.kind());
    Ok((f * p).sum(flat.kind()) * (alpha * e as f64))
}

/// Router z-loss `mean over tokens of logsumexp(logits)²` (Zoph et al. 2022, ST-MoE); it keeps
/// router logits small. Multiply by its coefficient (1e-3 in ST-MoE) before adding it.
///
/// ```
/// use engram_moe::losses::router_z_loss;
/// use tch::{Device, Kind, Tensor};
/// let zeros = Tensor::zeros([1, 3, 4], (Kind::Float, Device::Cpu));
/// let z = router_z_loss(&zeros).unwrap().double_value(&[]);
/// assert!((z - 4f64.ln().powi(2)).abs() < 1e-6);
/// ```
pub fn router_z_loss(logits: &Tensor) -> Result<Tensor> {
    let size = logits.size();
    if size.is_empty() {
        return shape_err("router logits must have an expert dimension");
    }
    Ok(logits.logsumexp([-1], false).square().mean(Kind::Float))
}

/// Seed 004's "load balance" term `MSE(expert_counts, uniform_target)`. Under expert choice the
/// counts are always the capacity, so this is identically 0 (and counts carry no gradient): kept
/// to document that the seed's auxiliary loss was a no-op.
pub fn count_mse(tokens_per_expert: &[i64]) -> f64 {
    if tokens_per_expert.is_empty() {
        return 0.0;
    }
    let e = tokens_per_expert.len() as f64;
    let mean = tokens_per_expert.iter().sum::<i64>() as f64 / e;
    tokens_per_expert.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / e
}
