//! Normalisation layers: LayerNorm, RMSNorm, BatchNorm, GroupNorm, each with the parameter and
//! buffer names of its PyTorch module and the ATen kernel behind it.
//!
//! ```
//! use engram_layers::norm::*;
//! use tch::nn::ModuleT;
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let x = tch::Tensor::randn([4, 6, 5], tch::kind::FLOAT_CPU);
//! let ln = LayerNorm::new(vs.root() / "ln", LayerNormConfig::new(5));
//! let rms = RmsNorm::new(vs.root() / "rms", RmsNormConfig::new(5, 1e-6));
//! let gn = GroupNorm::new(vs.root() / "gn", GroupNormConfig::new(3, 6)).unwrap();
//! let bn = BatchNorm::new(vs.root() / "bn", BatchNormConfig::new(6));
//! for y in [ln.try_forward(&x).unwrap(), rms.try_forward(&x).unwrap(), gn.try_forward(&x).unwrap(), bn.forward_t(&x, true)] {
//!     assert_eq!(y.size(), x.size());
//! }
//! assert!(ln.try_forward(&tch::Tensor::zeros([2, 4], tch::kind::FLOAT_CPU)).is_err());
//! ```

use crate::util::{ensure, ensure_shape, or_panic};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

fn check_trailing(layer: &str, x: &Tensor, shape: &[i64]) -> Result<()> {
    let s = x.size();
    ensure_shape(s.len() >= shape.len() && s[s.len() - shape.len()..] == *shape, || {
        format!("{layer}: input {s:?} does not end with normalized_shape {shape:?}")
    })
}

/// Configuration of [`LayerNorm`] (`nn.LayerNorm`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNormConfig {
    /// The trailing shape normalised over.
    pub normalized_shape: Vec<i64>,
    /// Added to the variance, 1e-5 in PyTorch.
    pub eps: f64,
    /// Learn `weight` (ones) and `bias` (zeros).
    pub elementwise_affine: bool,
    /// Learn `bias` (only with `elementwise_affine`).
    pub bias: bool,
}

impl LayerNormConfig {
    /// PyTorch's defaults over a last dimension of `dim`.
    pub fn new(dim: i64) -> Self {
        LayerNormConfig { normalized_shape: vec![dim], eps: 1e-5, elementwise_affine: true, bias: true }
    }
}

/// `nn.LayerNorm`: `(x − mean)/√(var + eps)·weight + bias` over the trailing dims.
#[derive(Debug)]
pub struct LayerNorm {
    /// `weight`, ones at init.
    pub weight: Option<Tensor>,
    /// `bias`, zeros at init.
    pub bias: Option<Tensor>,
    cfg: LayerNormConfig,
}

impl LayerNorm {
    /// Creates `weight`/`bias` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: LayerNormConfig) -> Self {
        let p = path.borrow();
        let weight = cfg.elementwise_affine.then(|| p.ones("weight", &cfg.normalized_shape));
        let bias = (cfg.elementwise_affine && cfg.bias).then(|| p.zeros("bias", &cfg.normalized_shape));
        LayerNorm { weight, bias, cfg }
    }

    /// Normalises `x`, whose trailing dims must equal `normalized_shape`.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        check_trailing("LayerNorm", x, &self.cfg.normalized_shape)?;
        Ok(x.f_layer_norm(
            self.cfg.normalized_shape.as_slice(),
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.cfg.eps,
            true,
        )?)
    }
}

impl nn::Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        or_panic("LayerNorm", self.try_forward(xs))
    }
}

/// Configuration of [`RmsNorm`] (`nn.RMSNorm`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmsNormConfig {
    /// The trailing shape normalised over.
    pub normalized_shape: Vec<i64>,
    /// Added to `mean(x²)` inside the root; `None` = `finfo(dtype).eps` as in PyTorch.
    pub eps: Option<f64>,
    /// Learn `weight` (ones).
    pub elementwise_affine: bool,
}

impl RmsNormConfig {
    /// Over a last dim of `dim`, with an explicit `eps` (LLaMA uses 1e-6, 1e-5 is also common).
    pub fn new(dim: i64, eps: f64) -> Self {
        RmsNormConfig { normalized_shape: vec![dim], eps: Some(eps), elementwise_affine: true }
    }
}

/// `nn.RMSNorm`: `x / √(mean(x²) + eps) · weight`, on ATen's `rms_norm`.
#[derive(Debug)]
pub struct RmsNorm {
    /// `weight`, ones at init.
    pub weight: Option<Tensor>,
    cfg: RmsNormConfig,
}

impl RmsNorm {
    /// Creates `weight` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: RmsNormConfig) -> Self {
        let weight = cfg.elementwise_affine.then(|| path.borrow().ones("weight", &cfg.normalized_shape));
        RmsNorm { weight, cfg }
    }

    /// Normalises `x`, whose trailing dims must equal `normalized_shape`.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        check_trailing("RMSNorm", x, &self.cfg.normalized_shape)?;
        Ok(x.f_rms_norm(self.cfg.normalized_shape.as_slice(), self.weight.as_ref(), self.cfg.eps)?)
    }
}

impl nn::Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        or_panic("RMSNorm", self.try_forward(xs))
    }
}

/// Configuration of [`BatchNorm`] (`nn.BatchNorm1d/2d/3d`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormConfig {
    /// Channels (dim 1 of the input).
    pub num_features: i64,
    /// 1e-5 in PyTorch.
    pub eps: f64,
    /// Running-statistics momentum, 0.1 in PyTorch.
    pub momentum: f64,
    /// Learn `weight`/`bias`.
    pub affine: bool,
    /// Keep `running_mean`/`running_var`/`num_batches_tracked` and use them in eval.
    pub track_running_stats: bool,
}

impl BatchNormConfig {
    /// PyTorch's defaults.
    pub fn new(num_features: i64) -> Self {
        BatchNormConfig { num_features, eps: 1e-5, momentum: 0.1, affine: true, track_running_stats: true }
    }
}

/// `nn.BatchNorm{1,2,3}d` (any input `[N, C, *]`): batch statistics in training (updating the
/// running buffers with the unbiased variance, as PyTorch), running statistics in eval.
#[derive(Debug)]
pub struct BatchNorm {
    /// `weight`, ones.
    pub weight: Option<Tensor>,
    /// `bias`, zeros.
    pub bias: Option<Tensor>,
    /// `running_mean` buffer (not trainable).
    pub running_mean: Option<Tensor>,
    /// `running_var` buffer (not trainable).
    pub running_var: Option<Tensor>,
    /// `num_batches_tracked` buffer (int64).
    pub num_batches_tracked: Option<Tensor>,
    cfg: BatchNormConfig,
}

impl BatchNorm {
    /// Creates parameters and buffers under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: BatchNormConfig) -> Self {
        let p = path.borrow();
        let c = cfg.num_features;
        let weight = cfg.affine.then(|| p.ones("weight", &[c]));
        let bias = cfg.affine.then(|| p.zeros("bias", &[c]));
        let (rm, rv, nb) = if cfg.track_running_stats {
            (
                Some(p.zeros_no_train("running_mean", &[c])),
                Some(p.ones_no_train("running_var", &[c])),
                Some(p.add("num_batches_tracked", Tensor::zeros([], (tch::Kind::Int64, p.device())), false)),
            )
        } else {
            (None, None, None)
        };
        BatchNorm { weight, bias, running_mean: rm, running_var: rv, num_batches_tracked: nb, cfg }
    }

    /// Normalises `x [N, C, *]`.
    pub fn try_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let s = x.size();
        ensure_shape(s.len() >= 2 && s[1] == self.cfg.num_features, || {
            format!("BatchNorm: expected [N, {}, *], got {s:?}", self.cfg.num_features)
        })?;
        let use_batch = train || self.running_mean.is_none();
        if use_batch {
            let per_channel = s.iter().product::<i64>() / s[1];
            ensure_shape(per_channel > 1, || {
                format!("BatchNorm: training needs more than one value per channel, got {s:?}")
            })?;
        }
        if train {
            if let Some(nb) = &self.num_batches_tracked {
                tch::no_grad(|| {
                    let mut nb = nb.shallow_clone();
                    let _ = nb.g_add_scalar_(1i64);
                });
            }
        }
        Ok(Tensor::f_batch_norm(
            x,
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.running_mean.as_ref(),
            self.running_var.as_ref(),
            use_batch,
            self.cfg.momentum,
            self.cfg.eps,
            false,
        )?)
    }
}

impl nn::ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        or_panic("BatchNorm", self.try_forward_t(xs, train))
    }
}

/// Configuration of [`GroupNorm`] (`nn.GroupNorm`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupNormConfig {
    /// Groups G; `num_channels` must be divisible by it.
    pub num_groups: i64,
    /// Channels C.
    pub num_channels: i64,
    /// 1e-5 in PyTorch.
    pub eps: f64,
    /// Learn per-channel `weight`/`bias`.
    pub affine: bool,
}

impl GroupNormConfig {
    /// PyTorch's defaults.
    pub fn new(num_groups: i64, num_channels: i64) -> Self {
        GroupNormConfig { num_groups, num_channels, eps: 1e-5, affine: true }
    }
}

/// `nn.GroupNorm`: statistics within each of G channel groups per sample.
#[derive(Debug)]
pub struct GroupNorm {
    /// `weight`, ones.
    pub weight: Option<Tensor>,
    /// `bias`, zeros.
    pub bias: Option<Tensor>,
    cfg: GroupNormConfig,
}

impl GroupNorm {
    /// Creates `weight`/`bias` under `path`; fails when C is not divisible by G.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: GroupNormConfig) -> Result<Self> {
        ensure(cfg.num_groups > 0 && cfg.num_channels % cfg.num_groups == 0, || {
            format!("GroupNorm: {} channels not divisible into {} groups", cfg.num_channels, cfg.num_groups)
        })?;
        let p = path.borrow();
        let weight = cfg.affine.then(|| p.ones("weight", &[cfg.num_channels]));
        let bias = cfg.affine.then(|| p.zeros("bias", &[cfg.num_channels]));
        Ok(GroupNorm { weight, bias, cfg })
    }

    /// Normalises `x [N, C, *]`.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.size();
        if s.len() < 2 || s[1] != self.cfg.num_channels {
            return Err(Error::Shape(format!("GroupNorm: expected [N, {}, *], got {s:?}", self.cfg.num_channels)));
        }
        Ok(x.f_group_norm(self.cfg.num_groups, self.weight.as_ref(), self.bias.as_ref(), self.cfg.eps, true)?)
    }
}

impl nn::Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        or_panic("GroupNorm", self.try_forward(xs))
    }
}
