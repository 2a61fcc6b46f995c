//! Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"); reference:
//! `lion-pytorch`'s `update_fn` (not in `torch.optim`).

use super::state::{ParamStates, Target};
use super::{check_groups, impl_groups_state, in_range, Optimizer, ParamGroup};
use engram_core::Result;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`Lion`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LionConfig {
    /// β₁ (interpolation for the update sign) and β₂ (momentum), (0.9, 0.99).
    pub betas: (f64, f64),
}

impl Default for LionConfig {
    fn default() -> Self {
        LionConfig { betas: (0.9, 0.99) }
    }
}

/// Lion: `θ ← θ(1 − ηλ) − η·sign(β₁m + (1−β₁)g)`, then `m ← β₂m + (1−β₂)g`. Use an lr 3–10×
/// smaller than AdamW's and a larger weight decay.
///
/// ```
/// use engram_layers::optim::{Lion, LionConfig, Optimizer, ParamGroup};
/// let w = tch::Tensor::from_slice(&[1.0f64, -1.0]).set_requires_grad(true);
/// let mut opt = Lion::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.1)], LionConfig::default()).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap();
/// assert_eq!(Vec::<f64>::try_from(&w).unwrap(), vec![0.9, -0.9]);
/// ```
#[derive(Debug)]
pub struct Lion {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: LionConfig,
}

impl Lion {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: LionConfig) -> Result<Self> {
        check_groups("Lion", &groups)?;
        in_range("Lion", "beta1", cfg.betas.0, 0.0, 1.0)?;
        in_range("Lion", "beta2", cfg.betas.1, 0.0, 1.0)?;
        Ok(Lion { groups, state: ParamStates::default(), cfg })
    }
}

impl Optimizer for Lion {
    impl_groups_state!();
    fn step(&mut self) -> Result<()> {
        let (b1, b2) = self.cfg.betas;
        tch::no_grad(|| {
            for (gi, group) in self.groups.iter().enumerate() {
                for (pi, p) in group.params.iter().enumerate() {
                    let Some(t) = Target::new(&mut self.state, gi, pi, p, false) else { continue };
                    let mut w = t.w.shallow_clone();
                    self.state.incr_step(gi, pi);
                    let _ = w.g_mul_scalar_(1.0 - group.lr * group.weight_decay);
                    let mut m = self.state.buf(gi, pi, "exp_avg", || w.zeros_like());
                    let update = m.lerp(&t.grad, 1.0 - b1).sign();
                    let _ = w.g_sub_(&(update * group.lr));
                    let _ = m.lerp_(&t.grad, 1.0 - b2);
                }
            }
        });
        Ok(())
    }
}
