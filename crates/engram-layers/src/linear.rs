//! `Linear`: `y = x Wᵀ + b`, initialised exactly as `torch.nn.Linear`.

use crate::init;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`Linear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {
    /// Input features.
    pub in_features: i64,
    /// Output features.
    pub out_features: i64,
    /// Whether to add a bias.
    pub bias: bool,
}

impl LinearConfig {
    /// A config with bias.
    pub fn new(in_features: i64, out_features: i64) -> Self {
        LinearConfig { in_features, out_features, bias: true }
    }
    /// The same config without bias.
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }
}

/// A fully connected layer with parameters `weight [out, in]` and `bias [out]`, the names and
/// shapes of `torch.nn.Linear`, drawn in PyTorch's order from the same generator.
///
/// ```
/// use engram_layers::{Linear, LinearConfig};
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// let vs = nn::VarStore::new(Device::Cpu);
/// tch::manual_seed(0);
/// let lin = Linear::new(&vs.root() / "fc", LinearConfig::new(3, 2));
/// let y = lin.forward(&Tensor::ones([4, 3], (Kind::Float, Device::Cpu)));
/// assert_eq!(y.size(), vec![4, 2]);
/// ```
#[derive(Debug)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Tensor,
    /// `[out_features]` when configured.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Creates the layer's parameters under `path` (`<path>.weight`, `<path>.bias`).
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: LinearConfig) -> Self {
        let p = path.borrow();
        let weight = init::torch_default_weight(p, "weight", &[cfg.out_features, cfg.in_features]);
        let bias = cfg.bias.then(|| init::torch_default_bias(p, "bias", &[cfg.out_features], cfg.in_features));
        Linear { weight, bias }
    }
}

impl nn::Module for Linear {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, self.bias.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::Module, Device, Kind};

    #[test]
    fn matches_pytorch_linear_init() {
        // torch.manual_seed(42); l = nn.Linear(2, 3)
        // l.weight = [[ 0.5406,  0.5869], [-0.1657,  0.6496], [-0.1549,  0.1427]]
        // l.bias   = [-0.3443,  0.4153,  0.6233]
        let vs = nn::VarStore::new(Device::Cpu);
        let _g = engram_core::seed::global_rng_lock();
        tch::manual_seed(42);
        let l = Linear::new(vs.root() / "l", LinearConfig::new(2, 3));
        let w: Vec<f32> = Vec::try_from(l.weight.flatten(0, -1)).unwrap();
        let b: Vec<f32> = Vec::try_from(l.bias.as_ref().unwrap()).unwrap();
        let want_w = [0.5406, 0.5869, -0.1657, 0.6496, -0.1549, 0.1427];
        let want_b = [-0.3443, 0.4153, 0.6233];
        for (x, y) in w.iter().zip(want_w) {
            assert!((x - y).abs() < 1e-4, "weight {w:?}");
        }
        for (x, y) in b.iter().zip(want_b) {
            assert!((x - y).abs() < 1e-4, "bias {b:?}");
        }
        let y = l.forward(&Tensor::ones([1, 2], (Kind::Float, Device::Cpu)));
        assert_eq!(y.size(), vec![1, 3]);
    }
}
