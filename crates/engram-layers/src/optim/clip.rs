//! Gradient clipping (`torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`).
//!
//! ```
//! use engram_layers::optim::{clip_grad_norm, clip_grad_value};
//! let w = tch::Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
//! (&w * &w).sum(tch::Kind::Float).backward(); // grad (6, 8), norm 10
//! let total = clip_grad_norm(&[w.shallow_clone()], 1.0, 2.0, false).unwrap();
//! assert!((total - 10.0).abs() < 1e-5);
//! assert!((w.grad().norm().double_value(&[]) - 1.0).abs() < 1e-5);
//! clip_grad_value(&[w.shallow_clone()], 0.1).unwrap();
//! assert!(w.grad().abs().max().double_value(&[]) <= 0.1 + 1e-7); // f32 rounding of 0.1
//! ```

use engram_core::{Error, Result};
use tch::{Kind, Tensor};

/// The `norm_type`-norm of all gradients together (parameters without a gradient are skipped);
/// `f64::INFINITY` gives the max-abs norm.
pub fn grad_norm(params: &[Tensor], norm_type: f64) -> Result<f64> {
    if !(norm_type > 0.0) {
        return Err(Error::InvalidArgument(format!("grad norm type must be > 0, got {norm_type}")));
    }
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return Ok(0.0);
    }
    Ok(tch::no_grad(|| {
        let norms: Vec<Tensor> = grads.iter().map(|g| g.to_kind(Kind::Double).norm_scalaropt_dim(norm_type, &[] as &[i64], false)).collect();
        let stacked = Tensor::stack(&norms, 0);
        if norm_type.is_infinite() {
            stacked.max().double_value(&[])
        } else {
            stacked.norm_scalaropt_dim(norm_type, &[] as &[i64], false).double_value(&[])
        }
    }))
}

/// Scales all gradients so that their joint norm is at most `max_norm` and returns the norm
/// before clipping, as `clip_grad_norm_` (scale `max_norm/(total + 1e-6)`, clamped to 1).
/// With `error_if_nonfinite`, a NaN/inf total norm is an error and nothing is changed.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64, norm_type: f64, error_if_nonfinite: bool) -> Result<f64> {
    if !(max_norm >= 0.0) {
        return Err(Error::InvalidArgument(format!("max_norm must be ≥ 0, got {max_norm}")));
    }
    let total = grad_norm(params, norm_type)?;
    if error_if_nonfinite && !total.is_finite() {
        return Err(Error::InvalidArgument(format!("the total gradient norm is {total}; gradients left unchanged")));
    }
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    tch::no_grad(|| {
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.g_mul_scalar_(coef);
            }
        }
    });
    Ok(total)
}

/// Clamps every gradient element into `[−clip, clip]` (`clip_grad_value_`).
pub fn clip_grad_value(params: &[Tensor], clip: f64) -> Result<()> {
    if !(clip >= 0.0) {
        return Err(Error::InvalidArgument(format!("clip value must be ≥ 0, got {clip}")));
    }
    tch::no_grad(|| {
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.clamp_(-clip, clip);
            }
        }
    });
    Ok(())
}
