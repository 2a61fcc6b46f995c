//! Sharpness-Aware Minimization (Foret et al. 2021), reference: davda54/sam, with the ASAM
//! (`adaptive`) variant.

use super::{in_range, Optimizer, ParamGroup};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Hyper-parameters of [`Sam`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamConfig {
    /// Neighbourhood radius ρ (0.05; ASAM uses ~2.0).
    pub rho: f64,
    /// ASAM: scale the perturbation element-wise by `θ²`.
    pub adaptive: bool,
}

impl Default for SamConfig {
    fn default() -> Self {
        SamConfig { rho: 0.05, adaptive: false }
    }
}

/// SAM around a base optimizer. Each step needs two gradient evaluations, so it is driven by
/// [`Optimizer::step_with_closure`]: the closure is evaluated at `θ`, the weights move to
/// `θ + ε` with `ε = ρ·g/‖g‖` (ASAM: `ρ·θ²g/‖θg‖`), the closure is evaluated again, the weights
/// return to `θ` and the base optimizer steps with the perturbed gradient.
///
/// ```
/// use engram_layers::optim::{Optimizer, ParamGroup, Sam, SamConfig, Sgd, SgdConfig};
/// let w = tch::Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
/// let base = Sgd::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.1)], SgdConfig::default()).unwrap();
/// let mut opt = Sam::new(Box::new(base), SamConfig { rho: 0.5, adaptive: false }).unwrap();
/// let mut w2 = w.shallow_clone();
/// let loss = opt.step_with_closure(&mut || {
///     w2.zero_grad();
///     let l = (&w2 * &w2).sum(tch::Kind::Double);
///     l.backward();
///     Ok(l.double_value(&[]))
/// }).unwrap();
/// assert_eq!(loss, 1.0);
/// // gradient taken at 1.5 is 3.0, so w = 1 − 0.1·3 = 0.7
/// assert!((w.double_value(&[0]) - 0.7).abs() < 1e-12);
/// ```
pub struct Sam {
    base: Box<dyn Optimizer>,
    cfg: SamConfig,
}

impl std::fmt::Debug for Sam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sam").field("cfg", &self.cfg).finish()
    }
}

impl Sam {
    /// Wraps `base`.
    pub fn new(base: Box<dyn Optimizer>, cfg: SamConfig) -> Result<Self> {
        in_range("SAM", "rho", cfg.rho, 0.0, f64::INFINITY)?;
        Ok(Sam { base, cfg })
    }

    /// Moves the weights to `θ + ε` and returns the `ε` applied (per group, per parameter;
    /// `None` where a parameter has no gradient).
    pub fn first_step(&mut self) -> Vec<Vec<Option<Tensor>>> {
        let adaptive = self.cfg.adaptive;
        tch::no_grad(|| {
            let mut norms = Vec::new();
            for g in self.base.param_groups() {
                for p in &g.params {
                    let gr = p.grad();
                    if gr.defined() {
                        let v = if adaptive { p.abs() * &gr } else { gr };
                        norms.push(v.to_kind(Kind::Double).norm());
                    }
                }
            }
            let total = if norms.is_empty() { 0.0 } else { Tensor::stack(&norms, 0).norm().double_value(&[]) };
            let scale = self.cfg.rho / (total + 1e-12);
            self.base
                .param_groups()
                .iter()
                .map(|g| {
                    g.params
                        .iter()
                        .map(|p| {
                            let gr = p.grad();
                            if !gr.defined() {
                                return None;
                            }
                            let e = if adaptive { p.square() * &gr * scale } else { &gr * scale };
                            let mut pm = p.shallow_clone();
                            let _ = pm.g_add_(&e);
                            Some(e)
                        })
                        .collect()
                })
                .collect()
        })
    }

    /// Undoes `eps` and lets the base optimizer step with the current gradients.
    pub fn second_step(&mut self, eps: Vec<Vec<Option<Tensor>>>) -> Result<()> {
        tch::no_grad(|| {
            for (g, es) in self.base.param_groups().iter().zip(&eps) {
                for (p, e) in g.params.iter().zip(es) {
                    if let Some(e) = e {
                        let mut pm = p.shallow_clone();
                        let _ = pm.g_sub_(e);
                    }
                }
            }
        });
        self.base.step()
    }
}

impl Optimizer for Sam {
    fn param_groups(&self) -> &[ParamGroup] {
        self.base.param_groups()
    }
    fn param_groups_mut(&mut self) -> &mut [ParamGroup] {
        self.base.param_groups_mut()
    }
    fn step(&mut self) -> Result<()> {
        Err(Error::InvalidArgument("SAM needs two gradient evaluations: call step_with_closure".into()))
    }
    fn step_with_closure(&mut self, closure: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
        let loss = closure()?;
        let eps = self.first_step();
        self.base.zero_grad();
        if let Err(e) = closure() {
            // Leave the weights where they were before the step.
            tch::no_grad(|| {
                for (g, es) in self.base.param_groups().iter().zip(&eps) {
                    for (p, e) in g.params.iter().zip(es) {
                        if let Some(e) = e {
                            let _ = p.shallow_clone().g_sub_(e);
                        }
                    }
                }
            });
            return Err(e);
        }
        self.second_step(eps)?;
        Ok(loss)
    }
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.base.state_tensors()
    }
    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        self.base.load_state_tensors(tensors)
    }
}
