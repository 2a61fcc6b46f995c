//! Optimizers and gradient clipping with PyTorch's semantics.
//!
//! * [`Sgd`] delegates the update to libtorch's C++ `torch::optim::SGD`, whose step is the same
//!   ATen call as Python's single-tensor SGD on the CPU (`p.add_(grad, alpha=-lr)`, a fused
//!   multiply-add); a Rust `p -= lr * grad` rounds twice and drifts off the published digits.
//! * [`Adam`] follows `torch.optim.Adam`'s single-tensor update op for op (`lerp_`, `addcmul_`,
//!   `addcdiv_`). tch's own `nn::Adam` is the C++ optimizer, which computes the first moment
//!   as `m*β1 + (1-β1)*g` instead of `lerp_`, so its numbers differ from Python's in the last bits.
//! * Both zero gradients the way PyTorch ≥ 2.0 does (`set_to_none`): a parameter that took no
//!   part in the last backward (an unused task head) has no gradient and is skipped by `step`,
//!   so it stays bit-identical even under Adam's momentum.

use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use tch::{COptimizer, Kind, Tensor};

/// An optimizer over a fixed list of parameters.
pub trait Optimizer {
    /// Drops every gradient (PyTorch's `zero_grad(set_to_none=True)`).
    fn zero_grad(&mut self) -> Result<()>;
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// The parameters it updates, in order.
    fn params(&self) -> &[Tensor];
}

/// Which optimizer to build, with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// Plain SGD (no momentum, no weight decay), as `torch.optim.SGD(params, lr)`.
    Sgd { lr: f64 },
    /// Adam with betas (0.9, 0.999), eps 1e-8, no weight decay unless given.
    Adam { lr: f64, weight_decay: f64 },
}

impl OptimizerConfig {
    /// `torch.optim.Adam(params, lr)`.
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig::Adam { lr, weight_decay: 0.0 }
    }
    /// Builds the optimizer over `params`.
    pub fn build(&self, params: &[Tensor]) -> Result<Box<dyn Optimizer>> {
        Ok(match *self {
            OptimizerConfig::Sgd { lr } => Box::new(Sgd::new(params, lr)?),
            OptimizerConfig::Adam { lr, weight_decay } => {
                Box::new(Adam::new(params, lr, (0.9, 0.999), 1e-8, weight_decay)?)
            }
        })
    }
}

/// `set_to_none` zeroing goes through libtorch's C++ optimizer, the only route tch offers to
/// undefine a gradient.
fn none_grad_holder(params: &[Tensor]) -> Result<COptimizer> {
    let mut holder = COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false)?;
    for p in params {
        holder.add_parameters(p, 0)?;
    }
    Ok(holder)
}

/// Plain SGD, bit-identical to `torch.optim.SGD(params, lr)` on the CPU.
///
/// ```
/// use engram_continual::optim::{Optimizer, Sgd};
/// use tch::{Kind, Tensor};
/// let w = Tensor::ones([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
/// let mut opt = Sgd::new(&[w.shallow_clone()], 0.5).unwrap();
/// (&w * &w).sum(Kind::Float).backward();
/// opt.step().unwrap();
/// assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![0.0, 0.0]);
/// ```
pub struct Sgd {
    inner: COptimizer,
    params: Vec<Tensor>,
}

impl Sgd {
    /// SGD with learning rate `lr` over `params`.
    pub fn new(params: &[Tensor], lr: f64) -> Result<Self> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(invalid(format!("SGD learning rate must be finite and >= 0, got {lr}")));
        }
        let mut inner = COptimizer::sgd(lr, 0.0, 0.0, 0.0, false)?;
        for p in params {
            inner.add_parameters(p, 0)?;
        }
        Ok(Sgd { inner, params: params.iter().map(|p| p.shallow_clone()).collect() })
    }
}

impl Optimizer for Sgd {
    fn zero_grad(&mut self) -> Result<()> {
        Ok(self.inner.zero_grad()?)
    }
    fn step(&mut self) -> Result<()> {
        Ok(self.inner.step()?)
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
}

/// Adam as `torch.optim.Adam` computes it (single-tensor path, `amsgrad=False`).
///
/// ```
/// use engram_continual::optim::{Adam, Optimizer};
/// use tch::{Kind, Tensor};
/// let w = Tensor::ones([1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
/// let mut opt = Adam::new(&[w.shallow_clone()], 0.1, (0.9, 0.999), 1e-8, 0.0).unwrap();
/// (&w * 3.0).sum(Kind::Float).backward();
/// opt.step().unwrap();
/// // The first Adam step moves every coordinate by about lr, whatever the gradient's scale.
/// assert!((f64::try_from(&w).unwrap() - 0.9).abs() < 1e-6);
/// ```
pub struct Adam {
    params: Vec<Tensor>,
    exp_avg: Vec<Option<Tensor>>,
    exp_avg_sq: Vec<Option<Tensor>>,
    steps: Vec<i32>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    zeroer: COptimizer,
}

impl Adam {
    /// Adam over `params`.
    pub fn new(params: &[Tensor], lr: f64, betas: (f64, f64), eps: f64, weight_decay: f64) -> Result<Self> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(invalid(format!("Adam learning rate must be finite and >= 0, got {lr}")));
        }
        if !(0.0..1.0).contains(&betas.0) || !(0.0..1.0).contains(&betas.1) {
            return Err(invalid(format!("Adam betas must lie in [0, 1), got {betas:?}")));
        }
        let n = params.len();
        Ok(Adam {
            params: params.iter().map(|p| p.shallow_clone()).collect(),
            exp_avg: (0..n).map(|_| None).collect(),
            exp_avg_sq: (0..n).map(|_| None).collect(),
            steps: vec![0; n],
            lr,
            betas,
            eps,
            weight_decay,
            zeroer: none_grad_holder(params)?,
        })
    }
}

impl Optimizer for Adam {
    fn zero_grad(&mut self) -> Result<()> {
        Ok(self.zeroer.zero_grad()?)
    }

    fn step(&mut self) -> Result<()> {
        let (b1, b2) = self.betas;
        tch::no_grad(|| -> Result<()> {
            for (i, p) in self.params.iter_mut().enumerate() {
                let mut grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    grad = grad.f_add(&(&*p * self.weight_decay))?;
                }
                let m = self.exp_avg[i].get_or_insert_with(|| p.zeros_like());
                let v = self.exp_avg_sq[i].get_or_insert_with(|| p.zeros_like());
                self.steps[i] += 1;
                let step = self.steps[i];
                // exp_avg.lerp_(grad, 1 - beta1)
                let _ = m.f_lerp_(&grad, 1.0 - b1)?;
                // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): ATen evaluates
                // value * t1 * t2 left to right, so pre-scaling t1 rounds identically.
                let _ = v.f_mul_scalar_(b2)?;
                let scaled = grad.f_mul_scalar(1.0 - b2)?;
                let _ = v.f_addcmul_(&scaled, &grad)?;
                let bias_correction1 = 1.0 - b1.powi(step);
                let bias_correction2 = 1.0 - b2.powi(step);
                let step_size = self.lr / bias_correction1;
                let mut denom = v.f_sqrt()?.f_div_scalar(bias_correction2.sqrt())?;
                let _ = denom.f_add_scalar_(self.eps)?;
                // param.addcdiv_(exp_avg, denom, value=-step_size)
                let num = m.f_mul_scalar(-step_size)?;
                let _ = p.f_addcdiv_(&num, &denom)?;
            }
            Ok(())
        })
    }

    fn params(&self) -> &[Tensor] {
        &self.params
    }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` (L2, CPU path): the global norm of all
/// gradients, then every gradient multiplied by `min(1, max_norm / (norm + 1e-6))`. Returns the
/// norm before clipping. Parameters without a gradient are ignored, as in PyTorch.
pub fn clip_grad_norm_(params: &[Tensor], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(invalid(format!("max_norm must be finite and > 0, got {max_norm}")));
    }
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return Ok(0.0);
    }
    tch::no_grad(|| -> Result<f64> {
        // torch.linalg.vector_norm(g, 2) per gradient, then the norm of the stacked norms.
        let norms: Vec<Tensor> = grads
            .iter()
            .map(|g| g.flatten(0, -1).f_linalg_norm(2.0, None::<&[i64]>, false, None::<Kind>))
            .collect::<std::result::Result<_, _>>()?;
        let total = Tensor::f_stack(&norms, 0)?.f_linalg_norm(2.0, None::<&[i64]>, false, None::<Kind>)?;
        // `max_norm / (total + 1e-6)` on a tensor is `reciprocal() * max_norm` in Python.
        let coef = total.f_add_scalar(1e-6)?.f_reciprocal()?.f_mul_scalar(max_norm)?;
        let coef = coef.f_clamp_max(1.0)?;
        for g in &grads {
            let mut g = g.shallow_clone();
            let _ = g.f_mul_(&coef)?;
        }
        Ok(total.double_value(&[]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn clip_scales_to_max_norm_and_leaves_small_gradients() {
        let w = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        (&w * &w).sum(Kind::Float).f_div_scalar(2.0).unwrap().backward();
        let n = clip_grad_norm_(&[w.shallow_clone()], 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-5);
        let g: Vec<f32> = Vec::try_from(w.grad()).unwrap();
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5, "{g:?}");
        let n2 = clip_grad_norm_(&[w.shallow_clone()], 10.0).unwrap();
        assert!((n2 - 1.0).abs() < 1e-4);
        let g2: Vec<f32> = Vec::try_from(w.grad()).unwrap();
        assert_eq!(g, g2);
        assert!(clip_grad_norm_(&[w], 0.0).is_err());
    }

    #[test]
    fn zero_grad_sets_none_and_step_skips_parameters_without_gradient() {
        let a = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = Adam::new(&[a.shallow_clone(), b.shallow_clone()], 0.1, (0.9, 0.999), 1e-8, 0.0).unwrap();
        (&a * &b).sum(Kind::Float).backward();
        opt.step().unwrap();
        opt.zero_grad().unwrap();
        assert!(!a.grad().defined() && !b.grad().defined());
        let b_before = b.copy();
        // Only `a` takes part: `b` has momentum from step 1 but no gradient, so it must not move.
        (&a * 2.0).sum(Kind::Float).backward();
        opt.step().unwrap();
        assert!(b.equal(&b_before));
        assert!(Sgd::new(&[a], f64::NAN).is_err());
    }
}
