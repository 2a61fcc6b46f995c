//! `nn.Bilinear`: `y_k = x₁ᵀ W_k x₂ + b_k`.

use crate::util::{ensure, ensure_shape, or_panic};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`Bilinear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BilinearConfig {
    /// Width of the first input.
    pub in1_features: i64,
    /// Width of the second input.
    pub in2_features: i64,
    /// Output width.
    pub out_features: i64,
    /// Learn a bias.
    pub bias: bool,
}

/// `nn.Bilinear` with `weight [out, in1, in2]`, `bias [out]`, both drawn from
/// `U(−1/√in1, 1/√in1)` in that order as PyTorch does.
///
/// ```
/// use engram_layers::bilinear::{Bilinear, BilinearConfig};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let b = Bilinear::new(vs.root() / "bil", BilinearConfig { in1_features: 3, in2_features: 4, out_features: 2, bias: true }).unwrap();
/// let f = tch::kind::FLOAT_CPU;
/// let y = b.try_forward(&tch::Tensor::randn([5, 3], f), &tch::Tensor::randn([5, 4], f)).unwrap();
/// assert_eq!(y.size(), vec![5, 2]);
/// ```
#[derive(Debug)]
pub struct Bilinear {
    /// `[out, in1, in2]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    cfg: BilinearConfig,
}

impl Bilinear {
    /// Creates `weight`/`bias` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: BilinearConfig) -> Result<Self> {
        ensure(cfg.in1_features > 0 && cfg.in2_features > 0 && cfg.out_features > 0, || format!("Bilinear: bad sizes {cfg:?}"))?;
        let p = path.borrow();
        let bound = 1.0 / (cfg.in1_features as f64).sqrt();
        let mut weight = p.zeros("weight", &[cfg.out_features, cfg.in1_features, cfg.in2_features]);
        crate::init::uniform_(&mut weight, -bound, bound);
        let bias = cfg.bias.then(|| {
            let mut b = p.zeros("bias", &[cfg.out_features]);
            crate::init::uniform_(&mut b, -bound, bound);
            b
        });
        Ok(Bilinear { weight, bias, cfg })
    }

    /// `x1 [..., in1]`, `x2 [..., in2]` with equal leading dims → `[..., out]`.
    pub fn try_forward(&self, x1: &Tensor, x2: &Tensor) -> Result<Tensor> {
        let (s1, s2) = (x1.size(), x2.size());
        ensure_shape(
            !s1.is_empty() && s1.len() == s2.len() && s1[..s1.len() - 1] == s2[..s2.len() - 1]
                && s1[s1.len() - 1] == self.cfg.in1_features && s2[s2.len() - 1] == self.cfg.in2_features,
            || format!("Bilinear: inputs {s1:?} and {s2:?} do not fit in1 {} / in2 {}", self.cfg.in1_features, self.cfg.in2_features),
        )?;
        Ok(Tensor::f_bilinear(x1, x2, &self.weight, self.bias.as_ref())?)
    }

    /// [`Bilinear::try_forward`] for use where a panic on bad shapes is acceptable.
    pub fn forward(&self, x1: &Tensor, x2: &Tensor) -> Tensor {
        or_panic("Bilinear", self.try_forward(x1, x2))
    }
}
