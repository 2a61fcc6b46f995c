//! Masked linear layers and the rules that decide how many weights a sparse layer keeps.
//!
//! A [`MaskedLinear`] multiplies its weight by a 0/1 mask in the forward pass, so the gradient
//! that reaches a masked weight is exactly zero; the masked optimizers in [`crate::optim`] also
//! zero their state there and re-apply the mask after every step, so weight decay and momentum
//! cannot revive a pruned connection.

use crate::error::{invalid, Result};
use engram_core::seed::HostRng;
use engram_layers::{Linear, LinearConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// How many weights each layer of a sparse network keeps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DensityRule {
    /// Every weight is kept.
    Dense,
    /// The same fraction of weights in every layer, `nnz = round(density · n_in · n_out)`.
    Uniform {
        /// Fraction of weights kept, in `(0, 1]`.
        density: f64,
    },
    /// SET's Erdős–Rényi rule: layer density `ε (n_in + n_out) / (n_in · n_out)`, capped at 1.
    ErdosRenyi {
        /// SET's ε (20 in the paper).
        epsilon: f64,
    },
}

impl DensityRule {
    /// The number of weights a `[n_out, n_in]` layer keeps under this rule.
    ///
    /// ```
    /// use engram_sparse::mask::DensityRule;
    /// let r = DensityRule::Uniform { density: 0.05 };
    /// let total: i64 = [(784, 1000), (1000, 1000), (1000, 1000), (1000, 10)]
    ///     .iter().map(|&(i, o)| r.nnz(i, o).unwrap()).sum();
    /// assert_eq!(total, 139_700);
    /// ```
    pub fn nnz(&self, n_in: i64, n_out: i64) -> Result<i64> {
        if n_in <= 0 || n_out <= 0 {
            return Err(invalid(format!("layer shape [{n_out}, {n_in}] must be positive")));
        }
        let n = n_in * n_out;
        let density = match *self {
            DensityRule::Dense => 1.0,
            DensityRule::Uniform { density } => {
                if !(density > 0.0 && density <= 1.0) {
                    return Err(invalid(format!("density {density} must be in (0, 1]")));
                }
                density
            }
            DensityRule::ErdosRenyi { epsilon } => {
                if !(epsilon > 0.0 && epsilon.is_finite()) {
                    return Err(invalid(format!("epsilon {epsilon} must be positive")));
                }
                (epsilon * (n_in + n_out) as f64 / n as f64).min(1.0)
            }
        };
        Ok(((density * n as f64).round() as i64).clamp(1, n))
    }

    /// The ε for which the Erdős–Rényi rule keeps `target` weights over `layers` (`(n_in, n_out)`
    /// pairs) in total, found by bisection (the cap at density 1 makes it piecewise linear), so
    /// that an ER network can be compared with a uniform one at the same parameter count.
    pub fn erdos_renyi_for_total(layers: &[(i64, i64)], target: i64) -> Result<f64> {
        let total = |eps: f64| -> Result<i64> {
            layers.iter().map(|&(i, o)| DensityRule::ErdosRenyi { epsilon: eps }.nnz(i, o)).sum()
        };
        let full: i64 = layers.iter().map(|&(i, o)| i * o).sum();
        if target <= 0 || target > full {
            return Err(invalid(format!("target {target} must be in 1..={full}")));
        }
        let (mut lo, mut hi) = (1e-9f64, 1e9f64);
        for _ in 0..200 {
            let mid = (lo * hi).sqrt();
            if total(mid)? < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(hi)
    }
}

/// A `[n_out, n_in]` 0/1 mask (f32) with exactly `nnz` ones at uniformly random positions.
pub fn random_mask(n_out: i64, n_in: i64, nnz: i64, rng: &mut HostRng) -> Result<Tensor> {
    let n = n_out * n_in;
    if n_out <= 0 || n_in <= 0 || nnz < 0 || nnz > n {
        return Err(invalid(format!("cannot place {nnz} ones in a [{n_out}, {n_in}] mask")));
    }
    let mut m = vec![0f32; n as usize];
    if nnz * 2 <= n {
        // Rejection sampling is cheap while at most half the positions are taken.
        let mut placed = 0;
        while placed < nnz {
            let i = rng.below(n as u64) as usize;
            if m[i] == 0.0 {
                m[i] = 1.0;
                placed += 1;
            }
        }
    } else {
        let mut idx: Vec<usize> = (0..n as usize).collect();
        rng.shuffle(&mut idx);
        for &i in &idx[..nnz as usize] {
            m[i] = 1.0;
        }
    }
    Ok(Tensor::from_slice(&m).view([n_out, n_in]))
}

/// A linear layer whose weight is multiplied by a fixed-shape 0/1 mask.
///
/// ```
/// use engram_sparse::mask::{DensityRule, MaskedLinear};
/// use engram_layers::LinearConfig;
/// use engram_core::seed::HostRng;
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let layer = MaskedLinear::new(&vs.root() / "fc", LinearConfig::new(100, 50),
///     DensityRule::Uniform { density: 0.1 }, &mut HostRng::new(0)).unwrap();
/// assert_eq!(layer.nnz(), 500);
/// let y = layer.forward(&tch::Tensor::ones([2, 100], (tch::Kind::Float, tch::Device::Cpu)));
/// assert_eq!(y.size(), vec![2, 50]);
/// ```
#[derive(Debug)]
pub struct MaskedLinear {
    /// `[out, in]`, trainable; exactly zero wherever the mask is zero.
    pub weight: Tensor,
    /// `[out]`, dense (biases are not counted as sparse parameters).
    pub bias: Option<Tensor>,
    /// `[out, in]` f32 of 0/1, not trainable; changed only in place so optimizers see updates.
    pub mask: Tensor,
    /// The PyTorch init bound `1/√fan_in`, reused when SET regrows a connection.
    pub init_bound: f64,
}

impl MaskedLinear {
    /// A layer initialised as `torch.nn.Linear` whose mask keeps `rule.nnz(in, out)` random weights.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: LinearConfig, rule: DensityRule, rng: &mut HostRng) -> Result<Self> {
        let nnz = rule.nnz(cfg.in_features, cfg.out_features)?;
        let mask = random_mask(cfg.out_features, cfg.in_features, nnz, rng)?;
        Self::with_mask(path, cfg, mask)
    }

    /// A layer with a given mask (`[out, in]`, 0/1).
    pub fn with_mask<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: LinearConfig, mask: Tensor) -> Result<Self> {
        if mask.size() != [cfg.out_features, cfg.in_features] {
            return Err(invalid(format!("mask shape {:?} != [{}, {}]", mask.size(), cfg.out_features, cfg.in_features)));
        }
        let path = path.borrow();
        let lin = Linear::new(path, cfg);
        let mask = mask.to_kind(Kind::Float).to_device(path.device());
        let layer = MaskedLinear { weight: lin.weight, bias: lin.bias, mask, init_bound: 1.0 / (cfg.in_features as f64).sqrt() };
        layer.apply_mask();
        Ok(layer)
    }

    /// `x (w ∘ m)ᵀ + b`. Because the mask multiplies the weight inside the graph, the gradient of
    /// a masked weight is exactly zero.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&(&self.weight * &self.mask), self.bias.as_ref())
    }

    /// The forward pass with an explicit effective weight (RigL reads the dense gradient through it).
    pub fn forward_with(&self, x: &Tensor, weight: &Tensor) -> Tensor {
        x.linear(weight, self.bias.as_ref())
    }

    /// Sets masked weights to exactly zero.
    pub fn apply_mask(&self) {
        tch::no_grad(|| {
            let mut w = self.weight.shallow_clone();
            let _ = w.g_mul_(&self.mask);
        });
    }

    /// Number of kept weights (ones in the mask).
    pub fn nnz(&self) -> i64 {
        self.mask.sum(Kind::Float).double_value(&[]).round() as i64
    }

    /// Number of weights in the full layer.
    pub fn numel(&self) -> i64 {
        self.mask.numel() as i64
    }
}
