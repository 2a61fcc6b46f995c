//! Optimizers that respect masks: SGD with momentum and Adam (L2 weight decay, as
//! `torch.optim.SGD`/`Adam`). After each step the mask is re-applied to the parameter and the
//! optimizer state is zeroed where the mask is zero, so a pruned weight stays exactly zero and a
//! regrown one starts with no stale momentum.

use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Optimizer settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum OptimizerConfig {
    /// SGD with (heavy-ball) momentum and L2 weight decay, `torch.optim.SGD` semantics.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0 for plain SGD).
        momentum: f64,
        /// L2 weight decay added to the gradient.
        weight_decay: f64,
    },
    /// Adam with L2 weight decay added to the gradient, `torch.optim.Adam` semantics.
    Adam {
        /// Learning rate.
        lr: f64,
        /// Weight decay.
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    fn validate(&self) -> Result<()> {
        let (lr, wd, mom) = match *self {
            OptimizerConfig::Sgd { lr, momentum, weight_decay } => (lr, weight_decay, momentum),
            OptimizerConfig::Adam { lr, weight_decay } => (lr, weight_decay, 0.0),
        };
        let lr_ok = lr > 0.0 && lr.is_finite();
        let wd_ok = wd.is_finite() && wd >= 0.0;
        if !lr_ok || !wd_ok || !(0.0..1.0).contains(&mom) {
            return Err(invalid(format!("bad optimizer settings {self:?}")));
        }
        Ok(())
    }
}

/// One trainable tensor and, for sparse weights, its mask (shared, updated in place).
#[derive(Debug)]
pub struct MaskedParam {
    /// The parameter (a leaf that requires grad).
    pub param: Tensor,
    /// `Some` for masked weights.
    pub mask: Option<Tensor>,
}

impl MaskedParam {
    /// A parameter with an optional mask; both are shallow clones, so later in-place changes to
    /// the mask (SET, RigL, pruning) are seen by the optimizer.
    pub fn new(param: &Tensor, mask: Option<&Tensor>) -> Self {
        MaskedParam { param: param.shallow_clone(), mask: mask.map(|m| m.shallow_clone()) }
    }
}

/// A mask-aware optimizer over a fixed list of parameters.
///
/// ```
/// use engram_sparse::optim::{MaskedOptimizer, MaskedParam, OptimizerConfig};
/// use tch::{Kind, Device, Tensor};
/// let w = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
/// let m = Tensor::from_slice(&[1f32, 0., 0., 1.]).view([2, 2]);
/// let mut opt = MaskedOptimizer::new(vec![MaskedParam::new(&w, Some(&m))],
///     OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.01 }).unwrap();
/// let loss = (&w * &m).sum(Kind::Float);
/// opt.zero_grad();
/// loss.backward();
/// opt.step();
/// assert_eq!(w.double_value(&[0, 1]), 0.0);
/// ```
#[derive(Debug)]
pub struct MaskedOptimizer {
    cfg: OptimizerConfig,
    params: Vec<MaskedParam>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    steps: i64,
}

impl MaskedOptimizer {
    /// An optimizer with zeroed state.
    pub fn new(params: Vec<MaskedParam>, cfg: OptimizerConfig) -> Result<Self> {
        cfg.validate()?;
        let first = params.iter().map(|p| p.param.zeros_like()).collect();
        let second = params.iter().map(|p| p.param.zeros_like()).collect();
        Ok(MaskedOptimizer { cfg, params, first, second, steps: 0 })
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.param.zero_grad();
        }
    }

    /// Changes the learning rate.
    pub fn set_lr(&mut self, new_lr: f64) {
        match &mut self.cfg {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => *lr = new_lr,
        }
    }

    /// Zeroes all state (used when lottery-ticket rewinding restarts training).
    pub fn reset(&mut self) {
        tch::no_grad(|| {
            for (m, v) in self.first.iter_mut().zip(self.second.iter_mut()) {
                let _ = m.zero_();
                let _ = v.zero_();
            }
        });
        self.steps = 0;
    }

    /// One update from the current gradients; parameters without a gradient are skipped.
    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for (i, p) in self.params.iter_mut().enumerate() {
                let grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                let mut g = grad.shallow_clone();
                let (buf1, buf2) = (&mut self.first[i], &mut self.second[i]);
                match self.cfg {
                    OptimizerConfig::Sgd { lr, momentum, weight_decay } => {
                        if weight_decay > 0.0 {
                            g = &g + &p.param * weight_decay;
                        }
                        if let Some(m) = &p.mask {
                            g = &g * m;
                        }
                        let update = if momentum > 0.0 {
                            let _ = buf1.g_mul_scalar_(momentum).g_add_(&g);
                            buf1.shallow_clone()
                        } else {
                            g
                        };
                        let _ = p.param.g_add_(&(update * -lr));
                    }
                    OptimizerConfig::Adam { lr, weight_decay } => {
                        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
                        if weight_decay > 0.0 {
                            g = &g + &p.param * weight_decay;
                        }
                        if let Some(m) = &p.mask {
                            g = &g * m;
                        }
                        let _ = buf1.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                        let _ = buf2.g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                        let mhat = &*buf1 / (1.0 - b1.powf(t));
                        let vhat = &*buf2 / (1.0 - b2.powf(t));
                        let _ = p.param.g_add_(&(mhat / (vhat.sqrt() + eps) * -lr));
                    }
                }
                if let Some(m) = &p.mask {
                    let _ = p.param.g_mul_(m);
                    let _ = buf1.g_mul_(m);
                    let _ = buf2.g_mul_(m);
                }
            }
        });
    }

    /// Zeroes the state wherever the current masks are zero; call after a topology change.
    pub fn mask_state(&mut self) {
        tch::no_grad(|| {
            for (i, p) in self.params.iter().enumerate() {
                if let Some(m) = &p.mask {
                    let _ = self.first[i].g_mul_(m);
                    let _ = self.second[i].g_mul_(m);
                }
            }
        });
    }

    /// The first-moment (momentum) buffer of parameter `i`, for tests and diagnostics.
    pub fn momentum_buffer(&self, i: usize) -> Option<&Tensor> {
        self.first.get(i)
    }
}
