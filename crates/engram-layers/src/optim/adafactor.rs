//! Adafactor as `torch.optim.Adafactor` (PyTorch ≥ 2.5): factored second moments for ≥2-D
//! parameters, relative step sizes, no first moment.

use super::state::{ParamStates, Target};
use super::{check_groups, impl_groups_state, in_range, Optimizer, ParamGroup};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Hyper-parameters of [`Adafactor`] (PyTorch's defaults; lr 1e-2 there).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdafactorConfig {
    /// Exponent of the second-moment decay `1 − β₂,t = t^decay` (−0.8).
    pub beta2_decay: f64,
    /// ε₁ floor of the variance; `None` = the dtype's machine epsilon.
    pub eps1: Option<f64>,
    /// ε₂ floor of the parameter RMS in the relative step (1e-3).
    pub eps2: f64,
    /// Update clipping threshold d (1.0).
    pub d: f64,
}

impl Default for AdafactorConfig {
    fn default() -> Self {
        AdafactorConfig { beta2_decay: -0.8, eps1: None, eps2: 1e-3, d: 1.0 }
    }
}

/// `torch.optim.Adafactor`: for a matrix gradient keeps row and column means of `g²` (along the
/// last two dims), estimates `v ≈ r cᵀ / mean(r)`, updates by `g/√v` clipped to RMS ≤ d and scaled
/// by `max(ε₂, RMS(θ))·min(η, 1/√t)`; weight decay is decoupled.
///
/// ```
/// use engram_layers::optim::{Adafactor, AdafactorConfig, Optimizer, ParamGroup};
/// let w = tch::Tensor::ones([2, 3], tch::kind::DOUBLE_CPU).set_requires_grad(true);
/// let mut opt = Adafactor::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 1e-2)], AdafactorConfig::default()).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap();
/// assert_eq!(opt.state_tensors().len(), 3); // row_var, col_var, step
/// ```
#[derive(Debug)]
pub struct Adafactor {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: AdafactorConfig,
}

impl Adafactor {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: AdafactorConfig) -> Result<Self> {
        check_groups("Adafactor", &groups)?;
        in_range("Adafactor", "beta2_decay", cfg.beta2_decay, -f64::INFINITY, 0.0 + f64::EPSILON)?;
        in_range("Adafactor", "eps2", cfg.eps2, 0.0, f64::INFINITY)?;
        in_range("Adafactor", "d", cfg.d, 1.0, f64::INFINITY)?;
        Ok(Adafactor { groups, state: ParamStates::default(), cfg })
    }
}

fn machine_eps(k: Kind) -> f64 {
    match k {
        Kind::Double => f64::EPSILON,
        Kind::BFloat16 => 0.0078125,
        Kind::Half => 0.0009765625,
        _ => f32::EPSILON as f64,
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).double_value(&[])
}

impl Optimizer for Adafactor {
    impl_groups_state!();
    fn step(&mut self) -> Result<()> {
        let c = self.cfg;
        tch::no_grad(|| {
            for (gi, group) in self.groups.iter().enumerate() {
                for (pi, p) in group.params.iter().enumerate() {
                    let Some(t) = Target::new(&mut self.state, gi, pi, p, false) else { continue };
                    let mut w = t.w.shallow_clone();
                    let g = &t.grad;
                    let eps1 = c.eps1.unwrap_or_else(|| machine_eps(w.kind()));
                    let step = self.state.incr_step(gi, pi) as f64;
                    let one_minus_beta2 = step.powf(c.beta2_decay);
                    let rho = group.lr.min(1.0 / step.sqrt());
                    let alpha = c.eps2.max(scalar(&w.norm()) / (w.numel() as f64).sqrt()) * rho;
                    if group.weight_decay != 0.0 {
                        let _ = w.g_mul_scalar_(1.0 - group.lr * group.weight_decay);
                    }
                    let var_est = if g.dim() > 1 {
                        let s = g.size();
                        let (n_last, n_prev) = (s[s.len() - 1], s[s.len() - 2]);
                        let mut row_shape = s.clone();
                        *row_shape.last_mut().unwrap() = 1;
                        let mut col_shape = s.clone();
                        let k = col_shape.len() - 2;
                        col_shape[k] = 1;
                        let mut row = self.state.buf(gi, pi, "row_var", || Tensor::zeros(row_shape.as_slice(), (g.kind(), g.device())));
                        let mut col = self.state.buf(gi, pi, "col_var", || Tensor::zeros(col_shape.as_slice(), (g.kind(), g.device())));
                        let row_mean = g.norm_scalaropt_dim(2, &[-1i64][..], true).square() / n_last as f64;
                        let _ = row.lerp_(&row_mean, one_minus_beta2);
                        let col_mean = g.norm_scalaropt_dim(2, &[-2i64][..], true).square() / n_prev as f64;
                        let _ = col.lerp_(&col_mean, one_minus_beta2);
                        row.matmul(&col) / row.mean_dim(&[-2i64][..], true, row.kind()).clamp_min(eps1)
                    } else {
                        let mut var = self.state.buf(gi, pi, "variance", || g.zeros_like());
                        let _ = var.lerp_(&(g * g), one_minus_beta2);
                        var.copy()
                    };
                    let update = var_est.clamp_min(eps1 * eps1).rsqrt() * g;
                    let denom = 1f64.max(scalar(&update.norm()) / ((update.numel() as f64).sqrt() * c.d));
                    let _ = w.g_sub_(&(update * (alpha / denom)));
                }
            }
        });
        Ok(())
    }
}
