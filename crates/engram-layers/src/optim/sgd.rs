//! SGD with momentum, dampening and Nesterov (`torch.optim.SGD`).

use super::state::{ParamStates, Target};
use super::{check_groups, impl_groups_state, in_range, Optimizer, ParamGroup};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`Sgd`] (learning rate and weight decay live in the groups).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// Momentum factor (0 = plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum accumulation.
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
    /// Keep fp32 master weights for bf16/f16 parameters.
    pub master_weights: bool,
}

/// `torch.optim.SGD`: `g ← ∇ + λθ`; `b ← μb + (1−τ)g` (`b = g` at step 1); `g ← g + μb`
/// (Nesterov) or `b`; `θ ← θ − ηg`.
///
/// ```
/// use engram_layers::optim::{Optimizer, ParamGroup, Sgd, SgdConfig};
/// let w = tch::Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
/// let mut opt = Sgd::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.1)], SgdConfig::default()).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap();
/// assert!((w.double_value(&[0]) - 0.8).abs() < 1e-12);
/// ```
#[derive(Debug)]
pub struct Sgd {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: SgdConfig,
}

impl Sgd {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: SgdConfig) -> Result<Self> {
        check_groups("SGD", &groups)?;
        in_range("SGD", "momentum", cfg.momentum, 0.0, f64::INFINITY)?;
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(Error::InvalidArgument("SGD: Nesterov momentum requires a momentum and zero dampening".into()));
        }
        Ok(Sgd { groups, state: ParamStates::default(), cfg })
    }
}

impl Optimizer for Sgd {
    impl_groups_state!();

    fn step(&mut self) -> Result<()> {
        let c = self.cfg;
        tch::no_grad(|| {
            for (gi, group) in self.groups.iter().enumerate() {
                for (pi, p) in group.params.iter().enumerate() {
                    let Some(t) = Target::new(&mut self.state, gi, pi, p, c.master_weights) else { continue };
                    let mut g = t.l2_grad(group.weight_decay);
                    if c.momentum != 0.0 {
                        let first = !self.state.has(gi, pi, "momentum_buffer");
                        let mut buf = self.state.buf(gi, pi, "momentum_buffer", || g.detach().copy());
                        if !first {
                            let _ = buf.g_mul_scalar_(c.momentum);
                            let _ = buf.g_add_(&(&g * (1.0 - c.dampening)));
                        }
                        g = if c.nesterov { &g + &buf * c.momentum } else { buf };
                    }
                    let mut w = t.w.shallow_clone();
                    let _ = w.g_sub_(&(&g * group.lr));
                    t.finish();
                }
            }
        });
        Ok(())
    }
}
