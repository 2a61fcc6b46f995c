//! Adam and AdamW (`torch.optim.Adam`, `torch.optim.AdamW`), with optional AMSGrad and fp32
//! master weights for low-precision parameters.

use super::state::{ParamStates, Target};
use super::{check_groups, impl_groups_state, in_range, Optimizer, ParamGroup};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Hyper-parameters of [`Adam`] / [`AdamW`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// β₁, β₂ (0.9, 0.999).
    pub betas: (f64, f64),
    /// ε (1e-8).
    pub eps: f64,
    /// AMSGrad variant.
    pub amsgrad: bool,
    /// Keep fp32 master weights (and fp32 moments) for bf16/f16 parameters, so that updates
    /// smaller than the bf16 spacing accumulate instead of rounding away.
    pub master_weights: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { betas: (0.9, 0.999), eps: 1e-8, amsgrad: false, master_weights: false }
    }
}

fn validate(name: &str, groups: &[ParamGroup], c: &AdamConfig) -> Result<()> {
    check_groups(name, groups)?;
    in_range(name, "beta1", c.betas.0, 0.0, 1.0)?;
    in_range(name, "beta2", c.betas.1, 0.0, 1.0)?;
    in_range(name, "eps", c.eps, 0.0, f64::INFINITY)
}

fn adam_step(groups: &[ParamGroup], state: &mut ParamStates, c: &AdamConfig, decoupled: bool) {
    let (b1, b2) = c.betas;
    tch::no_grad(|| {
        for (gi, group) in groups.iter().enumerate() {
            for (pi, p) in group.params.iter().enumerate() {
                let Some(t) = Target::new(state, gi, pi, p, c.master_weights) else { continue };
                let mut w = t.w.shallow_clone();
                let step = state.incr_step(gi, pi) as f64;
                let g = t.l2_grad(if decoupled { 0.0 } else { group.weight_decay });
                if decoupled && group.weight_decay != 0.0 {
                    let _ = w.g_mul_scalar_(1.0 - group.lr * group.weight_decay);
                }
                let mut m = state.buf(gi, pi, "exp_avg", || w.zeros_like());
                let mut v = state.buf(gi, pi, "exp_avg_sq", || w.zeros_like());
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = v.g_mul_scalar_(b2);
                let _ = v.addcmul_(&g, &(&g * (1.0 - b2)));
                let bc1 = 1.0 - b1.powf(step);
                let bc2 = 1.0 - b2.powf(step);
                let step_size = group.lr / bc1;
                let second: Tensor = if c.amsgrad {
                    let mut vmax = state.buf(gi, pi, "max_exp_avg_sq", || w.zeros_like());
                    vmax.copy_(&vmax.maximum(&v));
                    vmax
                } else {
                    v
                };
                let denom = second.sqrt() / bc2.sqrt() + c.eps;
                let _ = w.addcdiv_(&(&m * -step_size), &denom);
                t.finish();
            }
        }
    });
}

/// `torch.optim.Adam` (L2 weight decay added to the gradient).
///
/// ```
/// use engram_layers::optim::{Adam, AdamConfig, Optimizer, ParamGroup};
/// let w = tch::Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
/// let mut opt = Adam::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.1)], AdamConfig::default()).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap();
/// // the first Adam step moves every coordinate by about lr
/// assert!((w.double_value(&[0]) - 0.9).abs() < 1e-6);
/// ```
#[derive(Debug)]
pub struct Adam {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: AdamConfig,
}

impl Adam {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: AdamConfig) -> Result<Self> {
        validate("Adam", &groups, &cfg)?;
        Ok(Adam { groups, state: ParamStates::default(), cfg })
    }
}

impl Optimizer for Adam {
    impl_groups_state!();
    fn step(&mut self) -> Result<()> {
        adam_step(&self.groups, &mut self.state, &self.cfg, false);
        Ok(())
    }
}

/// `torch.optim.AdamW`: decoupled weight decay `θ ← θ(1 − ηλ)` before the Adam update.
///
/// ```
/// use engram_layers::optim::{AdamW, AdamConfig, Optimizer, ParamGroup};
/// let w = tch::Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
/// let g = ParamGroup::new("w", vec![w.shallow_clone()], 0.1).weight_decay(0.01);
/// let mut opt = AdamW::new(vec![g], AdamConfig::default()).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap();
/// assert!((w.double_value(&[0]) - (0.999 - 0.1)).abs() < 1e-6);
/// ```
#[derive(Debug)]
pub struct AdamW {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: AdamConfig,
}

impl AdamW {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: AdamConfig) -> Result<Self> {
        validate("AdamW", &groups, &cfg)?;
        Ok(AdamW { groups, state: ParamStates::default(), cfg })
    }
}

impl Optimizer for AdamW {
    impl_groups_state!();
    fn step(&mut self) -> Result<()> {
        adam_step(&self.groups, &mut self.state, &self.cfg, true);
        Ok(())
    }
}
