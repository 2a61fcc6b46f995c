//! Rotary position embedding, rotate-half form (GPT-NeoX / LLaMA / Hugging Face): the first and
//! second halves of each head vector form the rotated pairs `(x_i, x_{i+D/2})`, rotated by
//! angle `p·θ_i` with `θ_i = base^(−2i/D)`.

use crate::util::ensure;
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Configuration of [`Rope`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeConfig {
    /// θ base, 10000 in the original paper (LLaMA-3 uses 500000).
    pub base: f64,
}

impl Default for RopeConfig {
    fn default() -> Self {
        RopeConfig { base: 10000.0 }
    }
}

/// Applies RoPE to `[B, H, L, D]` tensors; no parameters.
///
/// ```
/// use engram_layers::attention::{Rope, RopeConfig};
/// let rope = Rope::new(8, RopeConfig::default()).unwrap();
/// let x = tch::Tensor::randn([1, 2, 5, 8], tch::kind::FLOAT_CPU);
/// let y = rope.apply(&x, 0).unwrap();
/// // rotations preserve each vector's norm
/// let d = (x.norm_scalaropt_dim(2, &[-1i64][..], false) - y.norm_scalaropt_dim(2, &[-1i64][..], false)).abs().max();
/// assert!(d.double_value(&[]) < 1e-5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    head_dim: i64,
    cfg: RopeConfig,
}

impl Rope {
    /// For heads of width `head_dim` (even).
    pub fn new(head_dim: i64, cfg: RopeConfig) -> Result<Self> {
        ensure(head_dim > 0 && head_dim % 2 == 0, || format!("RoPE needs an even head_dim, got {head_dim}"))?;
        ensure(cfg.base > 1.0, || format!("RoPE base must be > 1, got {}", cfg.base))?;
        Ok(Rope { head_dim, cfg })
    }

    /// `θ_i = 1 / base^(2i/D)`, computed in the same order of f32 operations as Hugging Face's
    /// LLaMA so that angles agree bit-for-bit.
    pub fn inv_freq(&self, device: tch::Device) -> Tensor {
        let d = self.head_dim;
        let expo = Tensor::arange_start_step(0, d, 2, (Kind::Int64, device)).to_kind(Kind::Float) / d as f64;
        Tensor::pow_scalar(self.cfg.base, &expo).reciprocal()
    }

    /// `(cos, sin)` of shape `[L, D]` for absolute positions `start..start+len`, in f32.
    pub fn cos_sin(&self, len: i64, start: i64, device: tch::Device) -> (Tensor, Tensor) {
        let inv_freq = self.inv_freq(device);
        let pos = Tensor::arange_start(start, start + len, (Kind::Float, device));
        let freqs = pos.outer(&inv_freq);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos(), emb.sin())
    }

    /// Rotates `x [B, H, L, D]` whose positions are `start..start+L`.
    pub fn apply(&self, x: &Tensor, start: i64) -> Result<Tensor> {
        let s = x.size();
        ensure(s.len() == 4 && s[3] == self.head_dim, || format!("RoPE: expected [B, H, L, {}], got {s:?}", self.head_dim))?;
        ensure(start >= 0, || format!("RoPE: negative start position {start}"))?;
        let (cos, sin) = self.cos_sin(s[2], start, x.device());
        let (cos, sin) = (cos.to_kind(x.kind()), sin.to_kind(x.kind()));
        Ok(x * cos + rotate_half(x) * sin)
    }

    /// Rotates `x [B, H, L, D]` at explicit integer `positions [L]` (or `[B, L]`).
    pub fn apply_at(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let s = x.size();
        ensure(s.len() == 4 && s[3] == self.head_dim, || format!("RoPE: expected [B, H, L, {}], got {s:?}", self.head_dim))?;
        let ps = positions.size();
        ensure(ps.last() == Some(&s[2]) && ps.len() <= 2, || format!("RoPE: positions {ps:?} do not match length {}", s[2]))?;
        let inv_freq = self.inv_freq(x.device());
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = (emb.cos().to_kind(x.kind()), emb.sin().to_kind(x.kind()));
        // [L, D] broadcasts directly; [B, L, D] needs the head axis.
        let (cos, sin) = if ps.len() == 2 { (cos.unsqueeze(1), sin.unsqueeze(1)) } else { (cos, sin) };
        Ok(x * cos + rotate_half(x) * sin)
    }
}

/// `cat(−x₂, x₁)` over the last dim, the rotate-half partner of RoPE.
pub fn rotate_half(x: &Tensor) -> Tensor {
    let d = *x.size().last().expect("rotate_half needs at least one dim");
    let x1 = x.narrow(-1, 0, d / 2);
    let x2 = x.narrow(-1, d / 2, d - d / 2);
    Tensor::cat(&[&x2.neg(), &x1], -1)
}
