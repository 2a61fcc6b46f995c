//! Per-parameter optimizer state with named buffers, exportable as tensors.

use super::ParamGroup;
use engram_core::{Error, Result};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Buffers (`exp_avg`, `momentum_buffer`, ...) and a step counter for each parameter, indexed
/// by (group, parameter).
#[derive(Debug, Default)]
pub struct ParamStates {
    bufs: BTreeMap<(usize, usize), BTreeMap<String, Tensor>>,
    steps: BTreeMap<(usize, usize), i64>,
}

impl ParamStates {
    /// The buffer `key` of parameter `(g, i)`, created by `init` on first use. The returned
    /// tensor shares storage with the stored one, so in-place updates persist.
    pub fn buf(&mut self, g: usize, i: usize, key: &str, init: impl FnOnce() -> Tensor) -> Tensor {
        self.bufs.entry((g, i)).or_default().entry(key.to_string()).or_insert_with(init).shallow_clone()
    }

    /// Whether `(g, i)` already has buffer `key`.
    pub fn has(&self, g: usize, i: usize, key: &str) -> bool {
        self.bufs.get(&(g, i)).is_some_and(|m| m.contains_key(key))
    }

    /// Replaces buffer `key` of `(g, i)`.
    pub fn set(&mut self, g: usize, i: usize, key: &str, t: Tensor) {
        self.bufs.entry((g, i)).or_default().insert(key.to_string(), t);
    }

    /// Increments and returns the step count of `(g, i)` (1 on the first step).
    pub fn incr_step(&mut self, g: usize, i: usize) -> i64 {
        let s = self.steps.entry((g, i)).or_insert(0);
        *s += 1;
        *s
    }

    /// The step count of `(g, i)`.
    pub fn step(&self, g: usize, i: usize) -> i64 {
        self.steps.get(&(g, i)).copied().unwrap_or(0)
    }

    /// Names `"{group}.{param}.{buffer}"` and `"{group}.{param}.step"` (a float64 scalar).
    pub fn export(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for ((g, i), m) in &self.bufs {
            for (k, t) in m {
                out.push((format!("{g}.{i}.{k}"), t.detach().copy()));
            }
        }
        for ((g, i), s) in &self.steps {
            out.push((format!("{g}.{i}.step"), Tensor::from(*s as f64).to_kind(Kind::Double)));
        }
        out
    }

    /// Inverse of [`ParamStates::export`], checked against the groups' sizes.
    pub fn import(&mut self, groups: &[ParamGroup], tensors: &[(String, Tensor)]) -> Result<()> {
        let mut fresh = ParamStates::default();
        for (name, t) in tensors {
            let mut parts = name.splitn(3, '.');
            let (Some(g), Some(i), Some(k)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(Error::InvalidArgument(format!("optimizer state: bad name {name:?}")));
            };
            let (g, i): (usize, usize) = match (g.parse(), i.parse()) {
                (Ok(g), Ok(i)) => (g, i),
                _ => return Err(Error::InvalidArgument(format!("optimizer state: bad name {name:?}"))),
            };
            let Some(p) = groups.get(g).and_then(|gr| gr.params.get(i)) else {
                return Err(Error::InvalidArgument(format!("optimizer state: {name} names no parameter")));
            };
            if k == "step" {
                fresh.steps.insert((g, i), t.double_value(&[]) as i64);
            } else {
                // Factored and scalar buffers (Adafactor rows/cols) may differ in shape from the
                // parameter; they must at least share its device.
                let t = t.to_device(p.device()).detach().copy();
                fresh.bufs.entry((g, i)).or_default().insert(k.to_string(), t);
            }
        }
        *self = fresh;
        Ok(())
    }
}

/// The tensor an update is applied to and the gradient to use. With `master` set and a
/// low-precision parameter (bf16/f16), the update goes to an fp32 copy kept in the state as
/// `master` and is then rounded into the parameter; otherwise the parameter itself.
pub(crate) struct Target {
    pub w: Tensor,
    pub grad: Tensor,
    param: Option<Tensor>,
}

impl Target {
    pub(crate) fn new(states: &mut ParamStates, g: usize, i: usize, p: &Tensor, master: bool) -> Option<Target> {
        let grad = p.grad();
        if !grad.defined() {
            return None;
        }
        if master && matches!(p.kind(), Kind::BFloat16 | Kind::Half) {
            let w = states.buf(g, i, "master", || p.detach().to_kind(Kind::Float));
            Some(Target { w, grad: grad.to_kind(Kind::Float), param: Some(p.shallow_clone()) })
        } else {
            Some(Target { w: p.shallow_clone(), grad, param: None })
        }
    }

    /// The gradient with L2-coupled weight decay (`g + wd·w`, as torch's SGD, Adam, Adagrad and
    /// RMSprop apply `weight_decay`); the plain gradient when `weight_decay` is 0.
    pub(crate) fn l2_grad(&self, weight_decay: f64) -> Tensor {
        if weight_decay != 0.0 {
            &self.grad + &self.w * weight_decay
        } else {
            self.grad.shallow_clone()
        }
    }

    /// Writes the master copy back into the parameter (no-op without master weights).
    pub(crate) fn finish(self) {
        if let Some(mut p) = self.param {
            p.copy_(&self.w);
        }
    }
}
