//! Activations (ATen ops) and the softmax with temperature.
//!
//! ```
//! use engram_layers::activation::{softmax_with_temperature, Activation};
//! use tch::nn::Module;
//! let x = tch::Tensor::from_slice(&[-1.0f32, 2.0]);
//! assert_eq!(Vec::<f32>::try_from(Activation::Relu.forward(&x)).unwrap(), vec![0.0, 2.0]);
//! let a: Activation = serde_json::from_str(r#"{"leaky_relu":{"negative_slope":0.1}}"#).unwrap();
//! assert!((a.forward(&x).double_value(&[0]) + 0.1).abs() < 1e-7);
//! let p = softmax_with_temperature(&x, 0.5, -1).unwrap();
//! assert!((p.sum(tch::Kind::Float).double_value(&[]) - 1.0).abs() < 1e-6);
//! ```

use crate::util::ensure;
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// An element-wise activation, each the ATen op behind the PyTorch module of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Activation {
    /// `x`.
    Identity,
    /// `max(0, x)` (`nn.ReLU`).
    Relu,
    /// `max(0, x) + slope·min(0, x)` (`nn.LeakyReLU`, default slope 0.01).
    LeakyRelu {
        /// Negative slope.
        negative_slope: f64,
    },
    /// `x·Φ(x)` (`nn.GELU(approximate='none')`).
    #[default]
    Gelu,
    /// `nn.GELU(approximate='tanh')`.
    GeluTanh,
    /// `x·σ(x)` (`nn.SiLU`, Swish with β = 1).
    Silu,
    /// `x·tanh(softplus(x))` (`nn.Mish`).
    Mish,
    /// `nn.ELU(alpha)`.
    Elu {
        /// α, 1.0 in PyTorch.
        alpha: f64,
    },
    /// `nn.SELU` (λ ≈ 1.0507, α ≈ 1.6733).
    Selu,
    /// `nn.Sigmoid`.
    Sigmoid,
    /// `nn.Tanh`.
    Tanh,
    /// `nn.Hardswish`.
    Hardswish,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        match *self {
            Activation::Identity => x.shallow_clone(),
            Activation::Relu => x.relu(),
            Activation::LeakyRelu { negative_slope } => leaky_relu_with(x, negative_slope),
            Activation::Gelu => x.gelu("none"),
            Activation::GeluTanh => x.gelu("tanh"),
            Activation::Silu => x.silu(),
            Activation::Mish => x.mish(),
            Activation::Elu { alpha } => elu_with(x, alpha),
            Activation::Selu => x.selu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Hardswish => x.hardswish(),
        }
    }
}

/// ATen's leaky_relu and elu with non-default parameters are not on tch's surface; these are
/// their definitions with identical values and gradients (slope for x ≤ 0, 1 otherwise; the
/// negative branch of ELU sees `min(x, 0)` so its unused side never overflows into a NaN grad).
fn leaky_relu_with(x: &Tensor, slope: f64) -> Tensor {
    if slope == 0.01 {
        return x.leaky_relu();
    }
    x.where_self(&x.gt(0.0), &(x * slope))
}

fn elu_with(x: &Tensor, alpha: f64) -> Tensor {
    if alpha == 1.0 {
        return x.elu();
    }
    x.where_self(&x.gt(0.0), &(x.clamp_max(0.0).expm1() * alpha))
}

impl nn::Module for Activation {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.apply(xs)
    }
}

/// `softmax(x / T)` along `dim`; `T → 0` approaches argmax, `T → ∞` the uniform distribution.
pub fn softmax_with_temperature(x: &Tensor, temperature: f64, dim: i64) -> Result<Tensor> {
    ensure(temperature > 0.0 && temperature.is_finite(), || {
        format!("softmax temperature must be positive and finite, got {temperature}")
    })?;
    Ok((x / temperature).softmax(dim, x.kind()))
}

/// Log-softmax with temperature, the numerically safe form for losses.
pub fn log_softmax_with_temperature(x: &Tensor, temperature: f64, dim: i64) -> Result<Tensor> {
    ensure(temperature > 0.0 && temperature.is_finite(), || {
        format!("softmax temperature must be positive and finite, got {temperature}")
    })?;
    Ok((x / temperature).log_softmax(dim, Kind::Float).to_kind(x.kind()))
}
