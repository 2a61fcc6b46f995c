//! Token embeddings and absolute position encodings (learned and sinusoidal).
//!
//! ```
//! use engram_layers::embedding::*;
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let tok = Embedding::new(vs.root() / "wte", EmbeddingConfig::new(10, 4)).unwrap();
//! let wpe = LearnedPositions::new(vs.root() / "wpe", 16, 4).unwrap();
//! let ids = tch::Tensor::from_slice(&[1i64, 9, 3]);
//! let h = tok.try_forward(&ids).unwrap() + wpe.positions(3, 0).unwrap();
//! assert_eq!(h.size(), vec![3, 4]);
//! assert!(tok.try_forward(&tch::Tensor::from_slice(&[10i64])).is_err()); // out of range
//! let pe = sinusoidal_positions(5, 4, 0, 10000.0, tch::Device::Cpu).unwrap();
//! assert_eq!(pe.double_value(&[0, 1]), 1.0); // cos(0)
//! ```

use crate::util::{ensure, ensure_shape, or_panic};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// Configuration of [`Embedding`] (`nn.Embedding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// Vocabulary size V.
    pub num_embeddings: i64,
    /// Embedding width d.
    pub embedding_dim: i64,
    /// Row that is zero at init and receives no gradient.
    pub padding_idx: Option<i64>,
}

impl EmbeddingConfig {
    /// No padding index.
    pub fn new(num_embeddings: i64, embedding_dim: i64) -> Self {
        EmbeddingConfig { num_embeddings, embedding_dim, padding_idx: None }
    }
}

/// `nn.Embedding`: a lookup table `weight [V, d]`, initialised `N(0, 1)` with the padding row
/// zeroed, the same draw as PyTorch (so equal seeds give equal tables).
#[derive(Debug)]
pub struct Embedding {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Tensor,
    cfg: EmbeddingConfig,
}

impl Embedding {
    /// Creates `weight` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: EmbeddingConfig) -> Result<Self> {
        ensure(cfg.num_embeddings > 0 && cfg.embedding_dim > 0, || format!("Embedding: bad sizes {cfg:?}"))?;
        let padding_idx = match cfg.padding_idx {
            Some(i) if i < -cfg.num_embeddings || i >= cfg.num_embeddings => {
                return Err(Error::InvalidArgument(format!("Embedding: padding_idx {i} out of range")))
            }
            Some(i) if i < 0 => Some(i + cfg.num_embeddings),
            o => o,
        };
        let cfg = EmbeddingConfig { padding_idx, ..cfg };
        let mut weight = path.borrow().zeros("weight", &[cfg.num_embeddings, cfg.embedding_dim]);
        tch::no_grad(|| {
            let _ = weight.normal_(0.0, 1.0);
            if let Some(i) = cfg.padding_idx {
                let _ = weight.get(i).fill_(0.0);
            }
        });
        Ok(Embedding { weight, cfg })
    }

    /// Looks up integer `ids` of any shape; fails on ids outside `[0, V)` or non-integer ids.
    pub fn try_forward(&self, ids: &Tensor) -> Result<Tensor> {
        ensure_shape(matches!(ids.kind(), Kind::Int64 | Kind::Int), || {
            format!("Embedding: ids must be int64/int32, got {:?}", ids.kind())
        })?;
        if ids.numel() > 0 {
            let lo = ids.min().int64_value(&[]);
            let hi = ids.max().int64_value(&[]);
            ensure_shape(lo >= 0 && hi < self.cfg.num_embeddings, || {
                format!("Embedding: ids in [{lo}, {hi}] outside [0, {})", self.cfg.num_embeddings)
            })?;
        }
        Ok(Tensor::f_embedding(&self.weight, ids, self.cfg.padding_idx.unwrap_or(-1), false, false)?)
    }
}

impl nn::Module for Embedding {
    fn forward(&self, xs: &Tensor) -> Tensor {
        or_panic("Embedding", self.try_forward(xs))
    }
}

/// Learned absolute positions (GPT-2/BERT `wpe`): `nn.Embedding(max_len, d)` indexed by position.
#[derive(Debug)]
pub struct LearnedPositions {
    table: Embedding,
    max_len: i64,
}

impl LearnedPositions {
    /// A table of `max_len` positions of width `dim` (parameter `weight`).
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, max_len: i64, dim: i64) -> Result<Self> {
        Ok(LearnedPositions { table: Embedding::new(path, EmbeddingConfig::new(max_len, dim))?, max_len })
    }

    /// The `[len, d]` encodings of positions `start..start+len`.
    pub fn positions(&self, len: i64, start: i64) -> Result<Tensor> {
        ensure_shape(start >= 0 && start + len <= self.max_len, || {
            format!("LearnedPositions: positions {start}..{} exceed max_len {}", start + len, self.max_len)
        })?;
        self.table.try_forward(&Tensor::arange_start(start, start + len, (Kind::Int64, self.table.weight.device())))
    }

    /// The table `[max_len, d]`.
    pub fn weight(&self) -> &Tensor {
        &self.table.weight
    }
}

/// The sinusoidal table of "Attention Is All You Need": `PE[p, 2i] = sin(p / base^(2i/d))`,
/// `PE[p, 2i+1] = cos(…)`, shape `[len, d]`, positions `start..start+len`. `d` must be even.
pub fn sinusoidal_positions(len: i64, dim: i64, start: i64, base: f64, device: Device) -> Result<Tensor> {
    ensure(dim > 0 && dim % 2 == 0, || format!("sinusoidal positions need an even dim, got {dim}"))?;
    ensure(len >= 0 && start >= 0, || format!("sinusoidal positions: bad range {start}+{len}"))?;
    let pos = Tensor::arange_start(start, start + len, (Kind::Float, device)).unsqueeze(1);
    let two_i = Tensor::arange_start_step(0, dim, 2, (Kind::Float, device));
    let div = (two_i * (-(base.ln()) / dim as f64)).exp();
    let angle = pos * div.unsqueeze(0);
    Ok(Tensor::stack(&[angle.sin(), angle.cos()], 2).reshape([len, dim]))
}
