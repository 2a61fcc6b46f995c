//! AdamW on fp32 master weights (state in fp32, checkpointable), warmup + cosine schedule and
//! global-norm clipping.
//!
//! The seed ran AdamW on bf16 weights, which froze every parameter with |w| ≳ 0.08 at lr 3e-4
//! (its gate biases never moved, spec §5.6); here weights, gradients and moments are fp32.

use crate::{GdnError, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// AdamW hyper-parameters (PyTorch's defaults except weight decay 0.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// β₁.
    #[serde(default = "d_b1")]
    pub beta1: f64,
    /// β₂.
    #[serde(default = "d_b2")]
    pub beta2: f64,
    /// ε.
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not to norms, biases, gates' A/dt).
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
}
fn d_b1() -> f64 { 0.9 }
fn d_b2() -> f64 { 0.95 }
fn d_eps() -> f64 { 1e-8 }
fn d_wd() -> f64 { 0.1 }
impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: d_b1(), beta2: d_b2(), eps: d_eps(), weight_decay: d_wd() }
    }
}

struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
}

/// AdamW over the trainable variables of a VarStore.
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    /// Optimizer steps taken.
    pub step: u64,
}

impl AdamW {
    /// One slot per trainable variable, sorted by name.
    pub fn new(vs: &nn::VarStore, cfg: AdamWConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, param)| Slot {
                decay: param.dim() >= 2 && !name.ends_with("embed.weight"),
                exp_avg: param.zeros_like().to_kind(Kind::Float),
                exp_avg_sq: param.zeros_like().to_kind(Kind::Float),
                name,
                param,
            })
            .collect();
        AdamW { cfg, slots, step: 0 }
    }

    /// Zeroes every gradient.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Global L2 norm of the gradients; when `max_norm > 0` they are multiplied by
    /// `min(max_norm / (norm + 1e-6), 1)`, as `torch.nn.utils.clip_grad_norm_`. Returns the norm
    /// before clipping as a 0-dim f32 tensor on the parameters' device (a CPU zero when no
    /// gradient is defined) and never waits for the GPU: read it (`double_value`) only when it is
    /// logged. See [`engram_core::ops::clip_grad_norm()`].
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<Tensor> {
        let grads: Vec<Tensor> = self.slots.iter().map(|s| s.param.grad()).filter(Tensor::defined).collect();
        Ok(engram_core::ops::clip_grad_norm(&grads, max_norm)?)
    }

    /// One AdamW update with learning rate `lr`: libtorch's fused multi-tensor kernel on CUDA when
    /// the kernel library provides it, else the eager update below (same arithmetic).
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.step += 1;
        if self.fused_step(lr)? {
            return Ok(());
        }
        let c = &self.cfg;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                let _ = s.exp_avg.lerp_(&g, 1.0 - c.beta1);
                let _ = s.exp_avg_sq.g_mul_scalar_(c.beta2);
                let _ = s.exp_avg_sq.g_add_(&(&g * &g * (1.0 - c.beta2)));
                if s.decay && c.weight_decay > 0.0 {
                    let _ = s.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let denom = (&s.exp_avg_sq / bc2).sqrt() + c.eps;
                let upd = (&s.exp_avg / &denom) * (lr / bc1);
                let _ = s.param.g_sub_(&upd.to_kind(s.param.kind()));
            }
        });
        Ok(())
    }

    /// On CUDA with the kernel library: the same update through libtorch's fused multi-tensor
    /// AdamW, one call for the decayed group and one for the rest. `Ok(false)` when it cannot run
    /// (CPU, no library, non-f32 weights), so the eager update takes over; an error after a
    /// launch is returned, never retried eagerly (that would apply the update twice).
    fn fused_step(&mut self, lr: f64) -> Result<bool> {
        use engram_core::ops::fused_adamw::{available, fused_adamw, AdamWStep};
        let Some(first) = self.slots.first() else { return Ok(false) };
        let dev = first.param.device();
        if !available(dev) || self.slots.iter().any(|s| s.param.kind() != Kind::Float || s.param.device() != dev) {
            return Ok(false);
        }
        let c = &self.cfg;
        for decay in [true, false] {
            let mut lists: [Vec<Tensor>; 4] = Default::default();
            for s in self.slots.iter().filter(|s| s.decay == decay) {
                let g = s.param.grad();
                if g.defined() {
                    lists[0].push(s.param.shallow_clone());
                    lists[1].push(g);
                    lists[2].push(s.exp_avg.shallow_clone());
                    lists[3].push(s.exp_avg_sq.shallow_clone());
                }
            }
            let h = AdamWStep {
                lr,
                beta1: c.beta1,
                beta2: c.beta2,
                weight_decay: if decay { c.weight_decay } else { 0.0 },
                eps: c.eps,
                step: self.step,
            };
            fused_adamw(&lists[0], &lists[1], &lists[2], &lists[3], h)?;
        }
        Ok(true)
    }

    /// The moments as named tensors (`{param}.exp_avg`, `{param}.exp_avg_sq`) for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for s in &self.slots {
            v.push((format!("{}.exp_avg", s.name), s.exp_avg.shallow_clone()));
            v.push((format!("{}.exp_avg_sq", s.name), s.exp_avg_sq.shallow_clone()));
        }
        v
    }

    /// Restores moments written by [`AdamW::state_tensors`]; every slot must be present.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> Result<()> {
        let map: std::collections::HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tch::no_grad(|| -> Result<()> {
            for s in &mut self.slots {
                for (suffix, dst) in [("exp_avg", &mut s.exp_avg), ("exp_avg_sq", &mut s.exp_avg_sq)] {
                    let key = format!("{}.{suffix}", s.name);
                    let src = map.get(key.as_str()).ok_or_else(|| GdnError::Checkpoint(format!("optimizer state lacks '{key}'")))?;
                    if src.size() != dst.size() {
                        return Err(GdnError::Checkpoint(format!("optimizer state '{key}' has shape {:?}, expected {:?}", src.size(), dst.size())));
                    }
                    dst.copy_(src);
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

/// Linear warmup to `lr`, then cosine decay to `lr·min_ratio` at `total` steps.
///
/// ```
/// use engram_gdn::optim::warmup_cosine;
/// assert_eq!(warmup_cosine(0, 10, 100, 1.0, 0.1), 0.1);
/// assert!((warmup_cosine(100, 10, 100, 1.0, 0.1) - 0.1).abs() < 1e-12);
/// ```
pub fn warmup_cosine(step: u64, warmup: u64, total: u64, lr: f64, min_ratio: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    lr * (min_ratio + (1.0 - min_ratio) * cos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // After one step from zero moments, AdamW moves each weight by lr·sign(g) (bias-corrected),
        // plus decoupled decay on matrices.
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5]).view([2, 2]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[1.0f32, 1.0]));
        let mut opt = AdamW::new(&vs, AdamWConfig { weight_decay: 0.1, ..Default::default() });
        let loss = (&w * Tensor::from_slice(&[1.0f32, -1.0, 2.0, -2.0]).view([2, 2])).sum(Kind::Float) + b.sum(Kind::Float) * 3.0;
        loss.backward();
        opt.step(0.01).unwrap();
        let got: Vec<f32> = Vec::try_from(w.flatten(0, -1)).unwrap();
        let want = [1.0 * 0.999 - 0.01, -2.0 * 0.999 + 0.01, 3.0 * 0.999 - 0.01, 0.5 * 0.999 + 0.01];
        for (g, e) in got.iter().zip(want) {
            assert!((*g as f64 - e).abs() < 1e-5, "{got:?}");
        }
        let gb: Vec<f32> = Vec::try_from(&b).unwrap();
        assert!((gb[0] as f64 - 0.99).abs() < 1e-5, "no decay on vectors: {gb:?}");
        // Gradients: w → [1, -1, 2, -2], b → [3, 3]; global norm √28.
        let before = opt.clip_grad_norm(0.0).unwrap();
        assert_eq!((before.dim(), before.kind()), (0, Kind::Float));
        assert!((before.double_value(&[]) - 28f64.sqrt()).abs() < 1e-5);
        let clipped = opt.clip_grad_norm(0.5).unwrap().double_value(&[]);
        assert!((clipped - 28f64.sqrt()).abs() < 1e-5, "returns the norm before clipping");
        assert!((opt.clip_grad_norm(0.0).unwrap().double_value(&[]) - 0.5).abs() < 1e-5);
        let bg: Vec<f32> = Vec::try_from(b.grad()).unwrap();
        assert!((bg[0] as f64 - 3.0 * 0.5 / 28f64.sqrt()).abs() < 1e-5, "every gradient scaled alike: {bg:?}");
        // Below the threshold nothing changes; with no gradient the norm is zero.
        assert!((opt.clip_grad_norm(10.0).unwrap().double_value(&[]) - 0.5).abs() < 1e-5);
        let empty = AdamW::new(&nn::VarStore::new(Device::Cpu), AdamWConfig::default()).clip_grad_norm(1.0).unwrap();
        assert_eq!(empty.double_value(&[]), 0.0);
    }

    #[test]
    fn schedule_shape() {
        assert!(warmup_cosine(4, 5, 100, 1.0, 0.0) <= 1.0);
        assert_eq!(warmup_cosine(5, 5, 100, 1.0, 0.0), 1.0);
        assert!((warmup_cosine(52, 5, 99, 1.0, 0.0) - 0.5).abs() < 0.02);
    }
}
