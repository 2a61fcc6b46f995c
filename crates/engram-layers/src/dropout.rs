//! Dropout and DropPath (stochastic depth).
//!
//! ```
//! use engram_layers::dropout::{DropPath, Dropout};
//! use tch::nn::ModuleT;
//! let x = tch::Tensor::ones([8, 3], tch::kind::FLOAT_CPU);
//! assert_eq!(Dropout::new(0.5).unwrap().forward_t(&x, false), x); // identity in eval
//! // DropPath keeps or drops whole samples: every row is all 0 or all 1/(1-p)
//! let y = DropPath::new(0.25).unwrap().forward_t(&x, true);
//! for r in Vec::<f32>::try_from(y.sum_dim_intlist(1, false, tch::Kind::Float)).unwrap() {
//!     assert!(r == 0.0 || (r - 4.0).abs() < 1e-5);
//! }
//! ```

use crate::util::ensure;
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// `nn.Dropout(p)`: zeroes elements with probability `p` in training and scales the rest by
/// `1/(1−p)`; identity in eval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    /// Drop probability in `[0, 1)`.
    pub p: f64,
}

impl Dropout {
    /// Fails unless `0 ≤ p < 1`.
    pub fn new(p: f64) -> Result<Self> {
        ensure((0.0..1.0).contains(&p), || format!("dropout p must be in [0, 1), got {p}"))?;
        Ok(Dropout { p })
    }
}

impl nn::ModuleT for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if !train || self.p == 0.0 {
            return xs.shallow_clone();
        }
        xs.dropout(self.p, train)
    }
}

/// DropPath / stochastic depth (timm's `DropPath`, torchvision's `StochasticDepth(mode="row")`):
/// drops the whole residual branch per sample with probability `p`, scaling kept samples by
/// `1/(1−p)`. Applied to the branch output before the residual add.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropPath {
    /// Drop probability per sample in `[0, 1)`.
    pub p: f64,
}

impl DropPath {
    /// Fails unless `0 ≤ p < 1`.
    pub fn new(p: f64) -> Result<Self> {
        ensure((0.0..1.0).contains(&p), || format!("drop-path p must be in [0, 1), got {p}"))?;
        Ok(DropPath { p })
    }
}

impl nn::ModuleT for DropPath {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if !train || self.p == 0.0 || xs.dim() == 0 {
            return xs.shallow_clone();
        }
        let keep = 1.0 - self.p;
        let mut shape = vec![xs.size()[0]];
        shape.resize(xs.dim(), 1);
        let mask = Tensor::empty(shape.as_slice(), (xs.kind(), xs.device())).bernoulli_float_(keep);
        xs * mask / keep
    }
}

