//! Pooling (ATen's max/avg/adaptive pools) with checked shapes.
//!
//! ```
//! use engram_layers::pooling::{adaptive_pool, Pool, PoolConfig, PoolKind};
//! let x = tch::Tensor::randn([1, 3, 8, 8], tch::kind::FLOAT_CPU);
//! let p = Pool::new(PoolConfig::new(PoolKind::Max, 2, 2)).unwrap();
//! assert_eq!(p.try_forward(&x).unwrap().size(), vec![1, 3, 4, 4]);
//! assert_eq!(adaptive_pool(&x, PoolKind::Avg, &[1, 1]).unwrap().size(), vec![1, 3, 1, 1]); // global
//! ```

use crate::util::{ensure, ensure_shape};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The pooling operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// Maximum.
    Max,
    /// Average (padding counted, as PyTorch's default).
    Avg,
}

/// Configuration of [`Pool`]: spatial dims = `kernel_size.len()` (1–3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Max or average.
    pub kind: PoolKind,
    /// Window per dim.
    pub kernel_size: Vec<i64>,
    /// Stride per dim (PyTorch's default: the kernel size).
    pub stride: Vec<i64>,
    /// Implicit padding per dim (at most half the kernel).
    pub padding: Vec<i64>,
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
}

impl PoolConfig {
    /// `nn.MaxPoolNd(k)` / `nn.AvgPoolNd(k)` with stride = k.
    pub fn new(kind: PoolKind, dims: usize, k: i64) -> Self {
        PoolConfig { kind, kernel_size: vec![k; dims], stride: vec![k; dims], padding: vec![0; dims], ceil_mode: false }
    }
}

/// `nn.MaxPool{1,2,3}d` / `nn.AvgPool{1,2,3}d`; no parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    cfg: PoolConfig,
}

impl Pool {
    /// Validates the configuration.
    pub fn new(cfg: PoolConfig) -> Result<Self> {
        let d = cfg.kernel_size.len();
        ensure((1..=3).contains(&d) && cfg.stride.len() == d && cfg.padding.len() == d, || format!("pool: inconsistent dims {cfg:?}"))?;
        ensure(cfg.kernel_size.iter().zip(&cfg.padding).all(|(&k, &p)| k > 0 && p >= 0 && 2 * p <= k), || {
            format!("pool: kernel must be positive and padding at most half of it: {cfg:?}")
        })?;
        ensure(cfg.stride.iter().all(|&s| s > 0), || format!("pool: stride must be positive {cfg:?}"))?;
        Ok(Pool { cfg })
    }

    /// Pools `x [N, C, *spatial]` (or `[C, *spatial]`).
    pub fn try_forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let d = c.kernel_size.len();
        let s = x.size();
        ensure_shape(s.len() == d + 1 || s.len() == d + 2, || format!("pool{d}d: expected {d} spatial dims, got {s:?}"))?;
        let sp = &s[s.len() - d..];
        for i in 0..d {
            ensure_shape(sp[i] + 2 * c.padding[i] >= c.kernel_size[i], || format!("pool{d}d: input {s:?} smaller than the window"))?;
        }
        let (k, st, p) = (c.kernel_size.as_slice(), c.stride.as_slice(), c.padding.as_slice());
        let dil = vec![1i64; d];
        Ok(match (c.kind, d) {
            (PoolKind::Max, 1) => x.f_max_pool1d(k, st, p, dil.as_slice(), c.ceil_mode)?,
            (PoolKind::Max, 2) => x.f_max_pool2d(k, st, p, dil.as_slice(), c.ceil_mode)?,
            (PoolKind::Max, _) => x.f_max_pool3d(k, st, p, dil.as_slice(), c.ceil_mode)?,
            (PoolKind::Avg, 1) => x.f_avg_pool1d(k, st, p, c.ceil_mode, true)?,
            (PoolKind::Avg, 2) => x.f_avg_pool2d(k, st, p, c.ceil_mode, true, None)?,
            (PoolKind::Avg, _) => x.f_avg_pool3d(k, st, p, c.ceil_mode, true, None)?,
        })
    }
}

/// `AdaptiveAvgPool{1,2}d(output_size)` / `AdaptiveMaxPool{1,2}d`; `output_size = [1, 1]` is
/// global pooling.
pub fn adaptive_pool(x: &Tensor, kind: PoolKind, output_size: &[i64]) -> Result<Tensor> {
    let d = output_size.len();
    let s = x.size();
    ensure((1..=3).contains(&d) && output_size.iter().all(|&o| o > 0), || format!("adaptive pool: bad output size {output_size:?}"))?;
    ensure_shape(s.len() == d + 1 || s.len() == d + 2, || format!("adaptive pool: input {s:?} does not have {d} spatial dims"))?;
    Ok(match (kind, d) {
        (PoolKind::Avg, 1) => x.f_adaptive_avg_pool1d(output_size)?,
        (PoolKind::Avg, 2) => x.f_adaptive_avg_pool2d(output_size)?,
        (PoolKind::Avg, _) => x.f_adaptive_avg_pool3d(output_size)?,
        (PoolKind::Max, 1) => x.f_adaptive_max_pool1d(output_size)?.0,
        (PoolKind::Max, 2) => x.f_adaptive_max_pool2d(output_size)?.0,
        (PoolKind::Max, _) => x.f_adaptive_max_pool3d(output_size)?.0,
    })
}
