//! The learners' network: an MLP body (Linear + ReLU) with one shared head or one head per task.
//!
//! Layers are `engram_layers::Linear`, drawn in construction order (body, then heads) exactly
//! as PyTorch's `nn.Linear` would be. Outputs always live in the scenario's global label space
//! (`[B, n_classes]`): a task head writes its task's columns and leaves the others at
//! [`MASKED`], so losses, distillation and buffers need not care which architecture is used.

use crate::error::{invalid, Error, Result};
use engram_layers::{init, Linear, LinearConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// The logit given to outputs a sample may not choose (other tasks' classes).
pub const MASKED: f64 = -1e9;

/// Output heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Heads {
    /// One head of this many outputs, shared by all tasks.
    Single(i64),
    /// One head per task; entry `k` lists task `k`'s classes (its head has that many outputs).
    PerTask { n_classes: i64, classes: Vec<Vec<i64>> },
}

/// Shape of an [`Mlp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input width.
    pub input: i64,
    /// Hidden widths (each followed by ReLU).
    pub hidden: Vec<i64>,
    /// Heads.
    pub heads: Heads,
}

/// One application of a linear layer, kept for per-sample gradient formulas.
#[derive(Debug)]
pub struct LayerTrace {
    /// Index of the layer's weight in [`Mlp::params`] (its bias follows it).
    pub weight_index: usize,
    /// The layer's input `[B, in]`.
    pub input: Tensor,
    /// The layer's output before any non-linearity `[B, out]`.
    pub output: Tensor,
}

/// An MLP with PyTorch-exact initialisation.
///
/// ```
/// use engram_continual::model::{Heads, Mlp, MlpConfig};
/// use tch::{Device, Kind, Tensor};
/// let cfg = MlpConfig { input: 4, hidden: vec![8], heads: Heads::PerTask { n_classes: 4, classes: vec![vec![0, 1], vec![2, 3]] } };
/// let m = Mlp::new(&cfg, Device::Cpu).unwrap();
/// let y = m.forward(&Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)), &Tensor::from_slice(&[1i64, 1, 0])).unwrap();
/// assert_eq!(y.size(), vec![3, 4]);
/// ```
pub struct Mlp {
    _vs: nn::VarStore,
    body: Vec<Linear>,
    heads: Vec<Linear>,
    cfg: MlpConfig,
}

impl std::fmt::Debug for Mlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mlp({:?})", self.cfg)
    }
}

impl Mlp {
    /// Builds the network; parameters are drawn from libtorch's global generator.
    pub fn new(cfg: &MlpConfig, device: Device) -> Result<Self> {
        if cfg.input <= 0 || cfg.hidden.iter().any(|&h| h <= 0) {
            return Err(invalid(format!("MLP widths must be positive: {cfg:?}")));
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut body = Vec::new();
        let mut width = cfg.input;
        for (i, &h) in cfg.hidden.iter().enumerate() {
            body.push(Linear::new(&root / format!("body{i}"), LinearConfig::new(width, h)));
            width = h;
        }
        let heads = match &cfg.heads {
            Heads::Single(n) if *n > 0 => vec![Linear::new(&root / "head", LinearConfig::new(width, *n))],
            Heads::PerTask { n_classes, classes } if !classes.is_empty() => {
                if classes.iter().flatten().any(|&c| c < 0 || c >= *n_classes) || classes.iter().any(|c| c.is_empty()) {
                    return Err(invalid(format!("task heads' classes must be non-empty and lie in 0..{n_classes}")));
                }
                classes
                    .iter()
                    .enumerate()
                    .map(|(k, c)| Linear::new(&root / format!("head{k}"), LinearConfig::new(width, c.len() as i64)))
                    .collect()
            }
            other => return Err(invalid(format!("invalid heads {other:?}"))),
        };
        Ok(Mlp { _vs: vs, body, heads, cfg: cfg.clone() })
    }

    /// The configuration.
    pub fn config(&self) -> &MlpConfig {
        &self.cfg
    }

    /// Width of the global output space.
    pub fn n_classes(&self) -> i64 {
        match &self.cfg.heads {
            Heads::Single(n) => *n,
            Heads::PerTask { n_classes, .. } => *n_classes,
        }
    }

    /// Whether each task has its own head.
    pub fn is_multi_head(&self) -> bool {
        matches!(self.cfg.heads, Heads::PerTask { .. })
    }

    /// Every parameter (shallow handles), body first, then heads; weight before bias.
    pub fn params(&self) -> Vec<Tensor> {
        self.body
            .iter()
            .chain(self.heads.iter())
            .flat_map(|l| std::iter::once(l.weight.shallow_clone()).chain(l.bias.iter().map(|b| b.shallow_clone())))
            .collect()
    }

    /// Detached copies of every parameter (a frozen snapshot of the network).
    pub fn snapshot(&self) -> Vec<Tensor> {
        self.params().iter().map(|p| p.detach().copy()).collect()
    }

    /// Overwrites the parameters with `values` (same order and shapes as [`Mlp::params`]).
    pub fn load(&self, values: &[Tensor]) -> Result<()> {
        let ps = self.params();
        check_params(&ps, values)?;
        tch::no_grad(|| {
            for (p, v) in ps.iter().zip(values) {
                p.shallow_clone().copy_(v);
            }
        });
        Ok(())
    }

    /// Re-draws every parameter with PyTorch's default init (in construction order).
    pub fn reset_parameters(&self) {
        for l in self.body.iter().chain(self.heads.iter()) {
            let mut w = l.weight.shallow_clone();
            init::kaiming_uniform_(&mut w, 5f64.sqrt());
            if let Some(b) = &l.bias {
                let bound = 1.0 / (init::fan_in(&l.weight.size()) as f64).sqrt();
                init::uniform_(&mut b.shallow_clone(), -bound, bound);
            }
        }
    }

    /// Logits `[B, n_classes]` for inputs `x [B, D]` of tasks `t [B]`.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.forward_with(&self.params(), x, t)
    }

    /// The same network evaluated with other parameter values (a snapshot, for distillation).
    pub fn forward_with(&self, params: &[Tensor], x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.forward_inner(params, x, t, None)
    }

    /// Forward for samples that all belong to `task`, recording every linear layer used.
    pub fn forward_traced(&self, x: &Tensor, task: i64) -> Result<(Tensor, Vec<LayerTrace>)> {
        let n = x.size().first().copied().unwrap_or(0);
        let t = Tensor::full([n], task, (Kind::Int64, x.device()));
        let mut traces = Vec::new();
        let y = self.forward_inner(&self.params(), x, &t, Some(&mut traces))?;
        Ok((y, traces))
    }

    fn forward_inner(&self, params: &[Tensor], x: &Tensor, t: &Tensor, mut trace: Option<&mut Vec<LayerTrace>>) -> Result<Tensor> {
        check_params(&self.params(), params)?;
        let xs = x.size();
        if xs.len() != 2 || xs[1] != self.cfg.input || t.size() != [xs[0]] {
            return Err(Error::Shape(format!("MLP input must be [B, {}] with tasks [B]; got {xs:?} and {:?}", self.cfg.input, t.size())));
        }
        let mut h = x.shallow_clone();
        for i in 0..self.body.len() {
            let z = h.linear(&params[2 * i], Some(&params[2 * i + 1]));
            if let Some(tr) = trace.as_deref_mut() {
                tr.push(LayerTrace { weight_index: 2 * i, input: h.shallow_clone(), output: z.shallow_clone() });
            }
            h = z.relu();
        }
        let head_param = |k: usize| (2 * (self.body.len() + k), &params[2 * (self.body.len() + k)], &params[2 * (self.body.len() + k) + 1]);
        match &self.cfg.heads {
            Heads::Single(_) => {
                let (wi, w, b) = head_param(0);
                let z = h.linear(w, Some(b));
                if let Some(tr) = trace.as_deref_mut() {
                    tr.push(LayerTrace { weight_index: wi, input: h.shallow_clone(), output: z.shallow_clone() });
                }
                Ok(z)
            }
            Heads::PerTask { n_classes, classes } => {
                let tasks: Vec<i64> = Vec::try_from(&t.to_device(Device::Cpu))?;
                let mut present: Vec<i64> = tasks.clone();
                present.sort_unstable();
                present.dedup();
                if let Some(bad) = present.iter().find(|&&k| k < 0 || k as usize >= classes.len()) {
                    return Err(invalid(format!("task id {bad} has no head ({} heads)", classes.len())));
                }
                let b = xs[0];
                let dev = x.device();
                let mut out = Tensor::full([b, *n_classes], MASKED, (Kind::Float, dev));
                // Only the heads of tasks present in the batch run, so the others get no
                // gradient at all (and an optimizer skips them, as PyTorch does).
                for &k in &present {
                    let (wi, w, bias) = head_param(k as usize);
                    let cols = Tensor::from_slice(&classes[k as usize]).to_device(dev);
                    if present.len() == 1 {
                        let z = h.linear(w, Some(bias));
                        if let Some(tr) = trace.as_deref_mut() {
                            tr.push(LayerTrace { weight_index: wi, input: h.shallow_clone(), output: z.shallow_clone() });
                        }
                        out = out.index_copy(1, &cols, &z);
                    } else {
                        let rows: Vec<i64> = (0..b).filter(|&i| tasks[i as usize] == k).collect();
                        let rows = Tensor::from_slice(&rows).to_device(dev);
                        let z = h.index_select(0, &rows).linear(w, Some(bias));
                        let full = Tensor::full([rows.size()[0], *n_classes], MASKED, (Kind::Float, dev)).index_copy(1, &cols, &z);
                        out = out.index_copy(0, &rows, &full);
                    }
                }
                Ok(out)
            }
        }
    }
}

fn check_params(have: &[Tensor], given: &[Tensor]) -> Result<()> {
    if have.len() != given.len() || have.iter().zip(given).any(|(a, b)| a.size() != b.size()) {
        return Err(Error::Shape("parameter list does not match the network".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_matches_torch_linear_order() {
        let _g = engram_core::seed::global_rng_lock();
        engram_core::seed::manual_seed(42);
        let m = Mlp::new(&MlpConfig { input: 2, hidden: vec![3], heads: Heads::Single(1) }, Device::Cpu).unwrap();
        // torch.manual_seed(42); nn.Linear(2, 3).weight[0] == [0.5406, 0.5869]
        let w: Vec<f32> = Vec::try_from(m.params()[0].get(0)).unwrap();
        assert!((w[0] - 0.5406).abs() < 1e-4 && (w[1] - 0.5869).abs() < 1e-4, "{w:?}");
        let snap = m.snapshot();
        m.reset_parameters();
        assert!(!m.params()[0].equal(&snap[0]));
        m.load(&snap).unwrap();
        assert!(m.params()[0].equal(&snap[0]));
    }

    #[test]
    fn multi_head_routes_samples_and_rejects_unknown_tasks() {
        // draws from torch's global RNG: hold the lock so a seeded test never sees these draws
        let _g = engram_core::seed::global_rng_lock();
        let cfg = MlpConfig { input: 3, hidden: vec![5], heads: Heads::PerTask { n_classes: 4, classes: vec![vec![0, 1], vec![2, 3]] } };
        let m = Mlp::new(&cfg, Device::Cpu).unwrap();
        let x = Tensor::rand([4, 3], (Kind::Float, Device::Cpu));
        let y = m.forward(&x, &Tensor::from_slice(&[0i64, 1, 1, 0])).unwrap();
        let row0: Vec<f32> = Vec::try_from(y.get(0)).unwrap();
        let row1: Vec<f32> = Vec::try_from(y.get(1)).unwrap();
        assert!(row0[2] as f64 == MASKED && row0[0] as f64 != MASKED);
        assert!(row1[0] as f64 == MASKED && row1[3] as f64 != MASKED);
        // Same sample alone gives the same logits as in the mixed batch.
        let alone = m.forward(&x.narrow(0, 1, 1), &Tensor::from_slice(&[1i64])).unwrap();
        assert!(alone.get(0).allclose(&y.get(1), 1e-6, 1e-6, false));
        assert!(m.forward(&x, &Tensor::from_slice(&[0i64, 2, 1, 0])).is_err());
        assert!(m.forward(&Tensor::rand([4, 2], (Kind::Float, Device::Cpu)), &Tensor::from_slice(&[0i64; 4])).is_err());
    }
}
