//! RMSprop (`torch.optim.RMSprop`), optionally centred and with momentum.

use super::state::{ParamStates, Target};
use super::{check_groups, impl_groups_state, in_range, Optimizer, ParamGroup};
use engram_core::Result;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`RmsProp`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmsPropConfig {
    /// Smoothing constant α (0.99).
    pub alpha: f64,
    /// ε (1e-8).
    pub eps: f64,
    /// Momentum (0).
    pub momentum: f64,
    /// Normalise by the centred second moment (an estimate of the variance).
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig { alpha: 0.99, eps: 1e-8, momentum: 0.0, centered: false }
    }
}

/// `torch.optim.RMSprop`: `v ← αv + (1−α)g²`, `θ ← θ − η g/(√v + ε)` (centred: `√(v − ḡ²)`).
///
/// ```
/// use engram_layers::optim::{Optimizer, ParamGroup, RmsProp, RmsPropConfig};
/// let w = tch::Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
/// let mut opt = RmsProp::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.01)], RmsPropConfig::default()).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap();
/// assert!((w.double_value(&[0]) - 0.9).abs() < 1e-6); // 0.01·2/√(0.01·4) = 0.1
/// ```
#[derive(Debug)]
pub struct RmsProp {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: RmsPropConfig,
}

impl RmsProp {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: RmsPropConfig) -> Result<Self> {
        check_groups("RMSprop", &groups)?;
        in_range("RMSprop", "alpha", cfg.alpha, 0.0, 1.0 + f64::EPSILON)?;
        in_range("RMSprop", "eps", cfg.eps, 0.0, f64::INFINITY)?;
        in_range("RMSprop", "momentum", cfg.momentum, 0.0, f64::INFINITY)?;
        Ok(RmsProp { groups, state: ParamStates::default(), cfg })
    }
}

impl Optimizer for RmsProp {
    impl_groups_state!();
    fn step(&mut self) -> Result<()> {
        let c = self.cfg;
        tch::no_grad(|| {
            for (gi, group) in self.groups.iter().enumerate() {
                for (pi, p) in group.params.iter().enumerate() {
                    let Some(t) = Target::new(&mut self.state, gi, pi, p, false) else { continue };
                    let mut w = t.w.shallow_clone();
                    self.state.incr_step(gi, pi);
                    let g = t.l2_grad(group.weight_decay);
                    let mut sq = self.state.buf(gi, pi, "square_avg", || w.zeros_like());
                    let _ = sq.g_mul_scalar_(c.alpha);
                    let _ = sq.addcmul_(&g, &(&g * (1.0 - c.alpha)));
                    let avg = if c.centered {
                        let mut ga = self.state.buf(gi, pi, "grad_avg", || w.zeros_like());
                        let _ = ga.lerp_(&g, 1.0 - c.alpha);
                        (&sq - &ga * &ga).sqrt() + c.eps
                    } else {
                        sq.sqrt() + c.eps
                    };
                    if c.momentum > 0.0 {
                        let mut buf = self.state.buf(gi, pi, "momentum_buffer", || w.zeros_like());
                        let _ = buf.g_mul_scalar_(c.momentum);
                        let _ = buf.addcdiv_(&g, &avg);
                        let _ = w.g_sub_(&(&buf * group.lr));
                    } else {
                        let _ = w.addcdiv_(&(&g * -group.lr), &avg);
                    }
                }
            }
        });
        Ok(())
    }
}
