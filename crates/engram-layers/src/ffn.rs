//! Feed-forward blocks: the GLU family (GLU, ReGLU, GeGLU, SwiGLU) and the plain MLP.
//!
//! ```
//! use engram_layers::{activation::Activation, ffn::*};
//! use tch::nn::Module;
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let x = tch::Tensor::randn([2, 3, 8], tch::kind::FLOAT_CPU);
//! let swiglu = GatedFfn::new(vs.root() / "mlp", GatedFfnConfig::swiglu(8, 16)).unwrap();
//! let geglu = GatedFfn::new(vs.root() / "geglu", GatedFfnConfig { gate: GateKind::Gelu, ..GatedFfnConfig::swiglu(8, 16) }).unwrap();
//! let mlp = Mlp::new(vs.root() / "gpt2_mlp", MlpConfig { dim: 8, hidden_dim: 32, activation: Activation::GeluTanh, bias: true }).unwrap();
//! for y in [swiglu.forward(&x), geglu.forward(&x), mlp.forward(&x)] {
//!     assert_eq!(y.size(), x.size());
//! }
//! assert_eq!(glu(&x, -1).unwrap().size(), vec![2, 3, 4]);
//! ```

use crate::activation::Activation;
use crate::linear::{Linear, LinearConfig};
use crate::util::{ensure, ensure_shape, expect_last, or_panic};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Tensor};

/// `nn.GLU(dim)`: splits `x` in halves `a, b` along `dim` and returns `a · σ(b)`.
pub fn glu(x: &Tensor, dim: i64) -> Result<Tensor> {
    let s = x.size();
    let n = s.len() as i64;
    ensure_shape(n > 0 && (-n..n).contains(&dim), || format!("glu: dim {dim} out of range for {s:?}"))?;
    let d = s[dim.rem_euclid(n) as usize];
    ensure_shape(d % 2 == 0, || format!("glu: dim {dim} of {s:?} has odd size {d}"))?;
    Ok(x.f_glu(dim)?)
}

/// The gate non-linearity of a gated FFN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    /// σ gate: GLU (Dauphin et al.).
    Sigmoid,
    /// ReLU gate: ReGLU.
    Relu,
    /// exact GELU gate: GeGLU.
    Gelu,
    /// tanh-approximate GELU gate (GeGLU as in T5 v1.1 / Gemma).
    GeluTanh,
    /// SiLU gate: SwiGLU (LLaMA).
    Silu,
}

impl GateKind {
    fn activation(self) -> Activation {
        match self {
            GateKind::Sigmoid => Activation::Sigmoid,
            GateKind::Relu => Activation::Relu,
            GateKind::Gelu => Activation::Gelu,
            GateKind::GeluTanh => Activation::GeluTanh,
            GateKind::Silu => Activation::Silu,
        }
    }
}

/// Configuration of [`GatedFfn`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatedFfnConfig {
    /// Model width.
    pub dim: i64,
    /// Hidden width (LLaMA: about 8/3·dim rounded).
    pub hidden_dim: i64,
    /// Gate non-linearity.
    pub gate: GateKind,
    /// Biases on the three projections (LLaMA: none).
    pub bias: bool,
}

impl GatedFfnConfig {
    /// A SwiGLU FFN without biases.
    pub fn swiglu(dim: i64, hidden_dim: i64) -> Self {
        GatedFfnConfig { dim, hidden_dim, gate: GateKind::Silu, bias: false }
    }
}

/// `down_proj(act(gate_proj(x)) · up_proj(x))`, parameter names of Hugging Face's `LlamaMLP`
/// (init drawn in the order gate, up, down).
#[derive(Debug)]
pub struct GatedFfn {
    /// `[hidden, dim]`.
    pub gate_proj: Linear,
    /// `[hidden, dim]`.
    pub up_proj: Linear,
    /// `[dim, hidden]`.
    pub down_proj: Linear,
    cfg: GatedFfnConfig,
}

impl GatedFfn {
    /// Creates the projections under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: GatedFfnConfig) -> Result<Self> {
        ensure(cfg.dim > 0 && cfg.hidden_dim > 0, || format!("GatedFfn: bad sizes {cfg:?}"))?;
        let p = path.borrow();
        let lc = |i, o| LinearConfig { in_features: i, out_features: o, bias: cfg.bias };
        Ok(GatedFfn {
            gate_proj: Linear::new(p / "gate_proj", lc(cfg.dim, cfg.hidden_dim)),
            up_proj: Linear::new(p / "up_proj", lc(cfg.dim, cfg.hidden_dim)),
            down_proj: Linear::new(p / "down_proj", lc(cfg.hidden_dim, cfg.dim)),
            cfg,
        })
    }

    /// Applies the block to `x [..., dim]`.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        expect_last("GatedFfn", x, self.cfg.dim)?;
        let g = self.cfg.gate.activation().apply(&self.gate_proj.forward(x));
        Ok(self.down_proj.forward(&(g * self.up_proj.forward(x))))
    }
}

impl Module for GatedFfn {
    fn forward(&self, xs: &Tensor) -> Tensor {
        or_panic("GatedFfn", self.try_forward(xs))
    }
}

/// Configuration of [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Model width.
    pub dim: i64,
    /// Hidden width (4·dim in GPT-2).
    pub hidden_dim: i64,
    /// Non-linearity.
    pub activation: Activation,
    /// Biases.
    pub bias: bool,
}

/// The classic transformer FFN `fc2(act(fc1(x)))` (names of timm's `Mlp`: `fc1`, `fc2`).
#[derive(Debug)]
pub struct Mlp {
    /// `[hidden, dim]`.
    pub fc1: Linear,
    /// `[dim, hidden]`.
    pub fc2: Linear,
    cfg: MlpConfig,
}

impl Mlp {
    /// Creates `fc1`, `fc2` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: MlpConfig) -> Result<Self> {
        ensure(cfg.dim > 0 && cfg.hidden_dim > 0, || format!("Mlp: bad sizes {cfg:?}"))?;
        let p = path.borrow();
        let lc = |i, o| LinearConfig { in_features: i, out_features: o, bias: cfg.bias };
        Ok(Mlp { fc1: Linear::new(p / "fc1", lc(cfg.dim, cfg.hidden_dim)), fc2: Linear::new(p / "fc2", lc(cfg.hidden_dim, cfg.dim)), cfg })
    }

    /// Applies the block to `x [..., dim]`.
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        expect_last("Mlp", x, self.cfg.dim)?;
        Ok(self.fc2.forward(&self.cfg.activation.apply(&self.fc1.forward(x))))
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        or_panic("Mlp", self.try_forward(xs))
    }
}
