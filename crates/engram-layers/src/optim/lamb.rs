//! LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning"), in the form of timm's
//! `Lamb` with `max_grad_norm=None` (clip separately with [`super::clip_grad_norm`]).

use super::state::{ParamStates, Target};
use super::{check_groups, impl_groups_state, in_range, Optimizer, ParamGroup};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::Kind;

/// Hyper-parameters of [`Lamb`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambConfig {
    /// β₁, β₂ (0.9, 0.999).
    pub betas: (f64, f64),
    /// ε (1e-6).
    pub eps: f64,
    /// Apply the trust ratio also to parameters without weight decay (timm's `always_adapt`).
    pub always_adapt: bool,
    /// Clip the trust ratio at 1 (LAMBC).
    pub trust_clip: bool,
}

impl Default for LambConfig {
    fn default() -> Self {
        LambConfig { betas: (0.9, 0.999), eps: 1e-6, always_adapt: false, trust_clip: false }
    }
}

/// LAMB: the bias-corrected Adam direction `u = m̂/(√v̂ + ε) + λθ`, rescaled per parameter
/// tensor by the trust ratio `‖θ‖/‖u‖` (1 when either norm is 0), then `θ ← θ − η·ratio·u`.
///
/// ```
/// use engram_layers::optim::{Lamb, LambConfig, Optimizer, ParamGroup};
/// let w = tch::Tensor::from_slice(&[3.0f64, 4.0]).set_requires_grad(true);
/// let g = ParamGroup::new("w", vec![w.shallow_clone()], 0.1).weight_decay(0.01);
/// let mut opt = Lamb::new(vec![g], LambConfig::default()).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap();
/// // the step has length lr·‖θ‖ = 0.5
/// let moved = (Vec::<f64>::try_from(&w).unwrap()[0] - 3.0f64).hypot(Vec::<f64>::try_from(&w).unwrap()[1] - 4.0);
/// assert!((moved - 0.5).abs() < 1e-6);
/// ```
#[derive(Debug)]
pub struct Lamb {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: LambConfig,
}

impl Lamb {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: LambConfig) -> Result<Self> {
        check_groups("LAMB", &groups)?;
        in_range("LAMB", "beta1", cfg.betas.0, 0.0, 1.0)?;
        in_range("LAMB", "beta2", cfg.betas.1, 0.0, 1.0)?;
        in_range("LAMB", "eps", cfg.eps, 0.0, f64::INFINITY)?;
        Ok(Lamb { groups, state: ParamStates::default(), cfg })
    }
}

impl Optimizer for Lamb {
    impl_groups_state!();
    fn step(&mut self) -> Result<()> {
        let c = self.cfg;
        let (b1, b2) = c.betas;
        tch::no_grad(|| {
            for (gi, group) in self.groups.iter().enumerate() {
                for (pi, p) in group.params.iter().enumerate() {
                    let Some(t) = Target::new(&mut self.state, gi, pi, p, false) else { continue };
                    let mut w = t.w.shallow_clone();
                    let step = self.state.incr_step(gi, pi) as f64;
                    let g = &t.grad;
                    let mut m = self.state.buf(gi, pi, "exp_avg", || w.zeros_like());
                    let mut v = self.state.buf(gi, pi, "exp_avg_sq", || w.zeros_like());
                    let _ = m.g_mul_scalar_(b1);
                    let _ = m.g_add_(&(g * (1.0 - b1)));
                    let _ = v.g_mul_scalar_(b2);
                    let _ = v.addcmul_(g, &(g * (1.0 - b2)));
                    let bc1 = 1.0 - b1.powf(step);
                    let bc2 = 1.0 - b2.powf(step);
                    let denom = v.sqrt() / bc2.sqrt() + c.eps;
                    let mut update = (&m / bc1) / denom;
                    if group.weight_decay != 0.0 {
                        update += &w * group.weight_decay;
                    }
                    if group.weight_decay != 0.0 || c.always_adapt {
                        let wn = w.norm().to_kind(Kind::Double).double_value(&[]);
                        let un = update.norm().to_kind(Kind::Double).double_value(&[]);
                        let mut ratio = if wn > 0.0 && un > 0.0 { wn / un } else { 1.0 };
                        if c.trust_clip {
                            ratio = ratio.min(1.0);
                        }
                        update *= ratio;
                    }
                    let _ = w.g_sub_(&(update * group.lr));
                }
            }
        });
        Ok(())
    }
}
