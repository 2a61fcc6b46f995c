//! Adagrad (`torch.optim.Adagrad`).

use super::state::{ParamStates, Target};
use super::{check_groups, impl_groups_state, in_range, Optimizer, ParamGroup};
use engram_core::Result;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`Adagrad`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdagradConfig {
    /// Learning-rate decay: `η_t = η / (1 + (t−1)·decay)`.
    pub lr_decay: f64,
    /// Initial value of the squared-gradient sum.
    pub initial_accumulator_value: f64,
    /// ε (1e-10).
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig { lr_decay: 0.0, initial_accumulator_value: 0.0, eps: 1e-10 }
    }
}

/// `torch.optim.Adagrad`: `s ← s + g²`, `θ ← θ − η_t · g / (√s + ε)`.
///
/// ```
/// use engram_layers::optim::{Adagrad, AdagradConfig, Optimizer, ParamGroup};
/// let w = tch::Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
/// let mut opt = Adagrad::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.1)], AdagradConfig::default()).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap();
/// assert!((w.double_value(&[0]) - 0.9).abs() < 1e-9);
/// ```
#[derive(Debug)]
pub struct Adagrad {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: AdagradConfig,
}

impl Adagrad {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: AdagradConfig) -> Result<Self> {
        check_groups("Adagrad", &groups)?;
        in_range("Adagrad", "lr_decay", cfg.lr_decay, 0.0, f64::INFINITY)?;
        in_range("Adagrad", "initial_accumulator_value", cfg.initial_accumulator_value, 0.0, f64::INFINITY)?;
        in_range("Adagrad", "eps", cfg.eps, 0.0, f64::INFINITY)?;
        Ok(Adagrad { groups, state: ParamStates::default(), cfg })
    }
}

impl Optimizer for Adagrad {
    impl_groups_state!();
    fn step(&mut self) -> Result<()> {
        let c = self.cfg;
        tch::no_grad(|| {
            for (gi, group) in self.groups.iter().enumerate() {
                for (pi, p) in group.params.iter().enumerate() {
                    let Some(t) = Target::new(&mut self.state, gi, pi, p, false) else { continue };
                    let mut w = t.w.shallow_clone();
                    let step = self.state.incr_step(gi, pi) as f64;
                    let g = t.l2_grad(group.weight_decay);
                    let clr = group.lr / (1.0 + (step - 1.0) * c.lr_decay);
                    let mut sum = self.state.buf(gi, pi, "sum", || w.full_like(c.initial_accumulator_value));
                    let _ = sum.addcmul_(&g, &g);
                    let std = sum.sqrt() + c.eps;
                    let _ = w.addcdiv_(&(&g * -clr), &std);
                }
            }
        });
        Ok(())
    }
}
