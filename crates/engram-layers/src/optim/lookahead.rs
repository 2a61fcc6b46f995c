//! Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back").

use super::{in_range, Optimizer, ParamGroup};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Hyper-parameters of [`Lookahead`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookaheadConfig {
    /// Fast steps between synchronisations (5).
    pub k: u32,
    /// Slow-weight step α (0.5).
    pub alpha: f64,
}

impl Default for LookaheadConfig {
    fn default() -> Self {
        LookaheadConfig { k: 5, alpha: 0.5 }
    }
}

/// Wraps any optimizer: every `k` inner steps, `slow ← slow + α(fast − slow)` and the fast
/// weights are reset to `slow`. As in the paper, the slow weights start at the parameters' values
/// when the wrapper is built (timm instead starts them at the first synchronisation).
///
/// ```
/// use engram_layers::optim::{Lookahead, LookaheadConfig, Optimizer, ParamGroup, Sgd, SgdConfig};
/// let w = tch::Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
/// let sgd = Sgd::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.1)], SgdConfig::default()).unwrap();
/// let mut opt = Lookahead::new(Box::new(sgd), LookaheadConfig { k: 1, alpha: 0.5 }).unwrap();
/// (&w * &w).sum(tch::Kind::Double).backward();
/// opt.step().unwrap(); // fast: 0.8, slow: 1 + 0.5·(0.8 − 1) = 0.9
/// assert!((w.double_value(&[0]) - 0.9).abs() < 1e-12);
/// ```
pub struct Lookahead {
    inner: Box<dyn Optimizer>,
    slow: Vec<Vec<Tensor>>,
    steps: u64,
    cfg: LookaheadConfig,
}

impl std::fmt::Debug for Lookahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookahead").field("steps", &self.steps).field("cfg", &self.cfg).finish()
    }
}

impl Lookahead {
    /// Wraps `inner`, snapshotting the slow weights.
    pub fn new(inner: Box<dyn Optimizer>, cfg: LookaheadConfig) -> Result<Self> {
        if cfg.k == 0 {
            return Err(Error::InvalidArgument("Lookahead: k must be ≥ 1".into()));
        }
        in_range("Lookahead", "alpha", cfg.alpha, 0.0, 1.0 + f64::EPSILON)?;
        let slow = inner.param_groups().iter().map(|g| g.params.iter().map(|p| p.detach().copy()).collect()).collect();
        Ok(Lookahead { inner, slow, steps: 0, cfg })
    }

    fn after_inner_step(&mut self) {
        self.steps += 1;
        if self.steps % u64::from(self.cfg.k) != 0 {
            return;
        }
        let alpha = self.cfg.alpha;
        tch::no_grad(|| {
            for (g, slows) in self.inner.param_groups().iter().zip(&mut self.slow) {
                for (p, s) in g.params.iter().zip(slows.iter_mut()) {
                    let _ = s.lerp_(p, alpha);
                    let mut p = p.shallow_clone();
                    p.copy_(s);
                }
            }
        });
    }
}

impl Optimizer for Lookahead {
    fn param_groups(&self) -> &[ParamGroup] {
        self.inner.param_groups()
    }
    fn param_groups_mut(&mut self) -> &mut [ParamGroup] {
        self.inner.param_groups_mut()
    }
    fn step(&mut self) -> Result<()> {
        self.inner.step()?;
        self.after_inner_step();
        Ok(())
    }
    fn step_with_closure(&mut self, closure: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
        let loss = self.inner.step_with_closure(closure)?;
        self.after_inner_step();
        Ok(loss)
    }
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self.inner.state_tensors().into_iter().map(|(n, t)| (format!("inner.{n}"), t)).collect();
        for (g, slows) in self.slow.iter().enumerate() {
            for (i, s) in slows.iter().enumerate() {
                out.push((format!("slow.{g}.{i}"), s.copy()));
            }
        }
        out.push(("lookahead_steps".into(), Tensor::from(self.steps as f64)));
        out
    }
    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let inner: Vec<(String, Tensor)> =
            tensors.iter().filter_map(|(n, t)| n.strip_prefix("inner.").map(|r| (r.to_string(), t.shallow_clone()))).collect();
        self.inner.load_state_tensors(&inner)?;
        for (n, t) in tensors {
            if let Some(rest) = n.strip_prefix("slow.") {
                let mut it = rest.split('.').map(|x| x.parse::<usize>());
                let (Some(Ok(g)), Some(Ok(i))) = (it.next(), it.next()) else {
                    return Err(Error::InvalidArgument(format!("Lookahead state: bad name {n}")));
                };
                let slot = self.slow.get_mut(g).and_then(|v| v.get_mut(i));
                match slot {
                    Some(s) if s.size() == t.size() => *s = t.to_device(s.device()).to_kind(s.kind()).copy(),
                    _ => return Err(Error::InvalidArgument(format!("Lookahead state: {n} does not match a parameter"))),
                }
            } else if n == "lookahead_steps" {
                self.steps = t.double_value(&[]) as u64;
            }
        }
        Ok(())
    }
}
