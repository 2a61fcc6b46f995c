//! The Polyak step size: `θ ← θ − c·(f − f*)/‖g‖² · g`.

use super::state::ParamStates;
use super::{check_groups, impl_groups_state, Optimizer, ParamGroup};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::Kind;

/// Hyper-parameters of [`PolyakStep`] (the group lr is the multiplier `c`, 1 for the classic step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolyakConfig {
    /// The optimal (or a lower-bound) loss value f*; 0 for interpolating models.
    pub f_star: f64,
    /// Upper bound on the step size (stochastic Polyak "SPS_max"); `None` = unbounded.
    pub max_step: Option<f64>,
    /// When `‖g‖²` falls below this the step is skipped (the gradient has vanished).
    pub min_grad_sq: f64,
}

impl Default for PolyakConfig {
    fn default() -> Self {
        PolyakConfig { f_star: 0.0, max_step: None, min_grad_sq: 1e-12 }
    }
}

/// Polyak's step: with `‖g‖²` summed over every parameter, the step size is
/// `c·max(f − f*, 0)/‖g‖²` — for `f* = 0` the Newton–Raphson root step along the gradient
/// (seed 001's "Newton method on the loss"). Needs the loss: drive it with
/// [`Optimizer::step_with_closure`] or [`PolyakStep::step_with_loss`].
///
/// ```
/// use engram_layers::optim::{Optimizer, ParamGroup, PolyakConfig, PolyakStep};
/// let w = tch::Tensor::from_slice(&[2.0f64, -4.0]).set_requires_grad(true);
/// let mut opt = PolyakStep::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 1.0)], PolyakConfig::default()).unwrap();
/// let l = (&w * &w).sum(tch::Kind::Double) * 0.5; // f = ½‖θ‖², f* = 0
/// l.backward();
/// opt.step_with_loss(l.double_value(&[])).unwrap();
/// assert_eq!(Vec::<f64>::try_from(&w).unwrap(), vec![1.0, -2.0]); // lands at θ/2
/// ```
#[derive(Debug)]
pub struct PolyakStep {
    groups: Vec<ParamGroup>,
    state: ParamStates,
    cfg: PolyakConfig,
    last_step: Option<f64>,
}

impl PolyakStep {
    /// Validates and builds.
    pub fn new(groups: Vec<ParamGroup>, cfg: PolyakConfig) -> Result<Self> {
        check_groups("Polyak", &groups)?;
        if !(cfg.min_grad_sq >= 0.0) || cfg.max_step.is_some_and(|m| !(m > 0.0)) {
            return Err(Error::InvalidArgument(format!("Polyak: bad config {cfg:?}")));
        }
        Ok(PolyakStep { groups, state: ParamStates::default(), cfg, last_step: None })
    }

    /// The step size of the last update; `None` before the first or when the gradient vanished.
    pub fn last_step_size(&self) -> Option<f64> {
        self.last_step
    }

    /// One update from the current gradients given the loss `f` at the current weights.
    /// Returns `false` (and leaves the weights) when `‖g‖²` is below `min_grad_sq`.
    pub fn step_with_loss(&mut self, f: f64) -> Result<bool> {
        if !f.is_finite() {
            return Err(Error::InvalidArgument(format!("Polyak: non-finite loss {f}")));
        }
        let gsq: f64 = tch::no_grad(|| {
            self.groups
                .iter()
                .flat_map(|g| g.params.iter())
                .map(|p| p.grad())
                .filter(|g| g.defined())
                .map(|g| g.to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]))
                .sum()
        });
        if gsq < self.cfg.min_grad_sq {
            self.last_step = None;
            return Ok(false);
        }
        let mut gamma = (f - self.cfg.f_star).max(0.0) / gsq;
        if let Some(m) = self.cfg.max_step {
            gamma = gamma.min(m);
        }
        self.last_step = Some(gamma);
        tch::no_grad(|| {
            for g in &self.groups {
                for p in &g.params {
                    let gr = p.grad();
                    if gr.defined() {
                        let _ = p.shallow_clone().g_sub_(&(gr * (g.lr * gamma)));
                    }
                }
            }
        });
        Ok(true)
    }
}

impl Optimizer for PolyakStep {
    impl_groups_state!();
    fn step(&mut self) -> Result<()> {
        Err(Error::InvalidArgument("the Polyak step needs the loss: call step_with_closure or step_with_loss".into()))
    }
    fn step_with_closure(&mut self, closure: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
        let f = closure()?;
        self.step_with_loss(f)?;
        Ok(f)
    }
}
