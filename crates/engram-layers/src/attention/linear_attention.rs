//! Linear (kernelised) attention (Katharopoulos et al. 2020): `softmax(QKᵀ)V` replaced by
//! `φ(Q)(φ(K)ᵀV) / (φ(Q)·Σφ(K))` with `φ(x) = elu(x) + 1`, linear in the sequence length.

use crate::util::{ensure, ensure_shape};
use engram_core::Result;
use tch::Tensor;

/// The feature map φ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureMap {
    /// `elu(x) + 1` (the paper's).
    EluPlusOne,
    /// `relu(x)`.
    Relu,
}

impl FeatureMap {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            FeatureMap::EluPlusOne => x.elu() + 1.0,
            FeatureMap::Relu => x.relu(),
        }
    }
}

/// Linear attention over `q, k [B, H, L, D]`, `v [B, H, L, Dv]` → `[B, H, L, Dv]`. With `causal`
/// each position uses running sums over the keys up to itself (the RNN form), so the result equals
/// masking `φ(Q)φ(K)ᵀ` causally before normalising.
///
/// ```
/// use engram_layers::attention::{linear_attention, FeatureMap};
/// let x = tch::Tensor::randn([1, 2, 6, 4], tch::kind::FLOAT_CPU);
/// let y = linear_attention(&x, &x, &x, FeatureMap::EluPlusOne, true, 1e-6).unwrap();
/// assert_eq!(y.size(), vec![1, 2, 6, 4]);
/// ```
pub fn linear_attention(q: &Tensor, k: &Tensor, v: &Tensor, phi: FeatureMap, causal: bool, eps: f64) -> Result<Tensor> {
    let (qs, ks, vs) = (q.size(), k.size(), v.size());
    ensure_shape(qs.len() == 4 && qs == ks && vs.len() == 4 && vs[..3] == ks[..3], || {
        format!("linear attention: need q, k [B, H, L, D] equal and v [B, H, L, Dv]; got {qs:?} {ks:?} {vs:?}")
    })?;
    ensure(eps >= 0.0, || format!("linear attention: eps must be ≥ 0, got {eps}"))?;
    let (fq, fk) = (phi.apply(q), phi.apply(k));
    if !causal {
        let kv = fk.transpose(-2, -1).matmul(v); // [B, H, D, Dv]
        let z = fk.sum_dim_intlist(-2, true, fk.kind()); // [B, H, 1, D]
        let num = fq.matmul(&kv);
        let den = (&fq * z).sum_dim_intlist(-1, true, fq.kind()) + eps;
        return Ok(num / den);
    }
    // Running state S_t = Σ_{j≤t} φ(k_j) v_jᵀ and z_t = Σ_{j≤t} φ(k_j).
    let s = fk.unsqueeze(-1).matmul(&v.unsqueeze(-2)).cumsum(2, fk.kind()); // [B, H, L, D, Dv]
    let z = fk.cumsum(2, fk.kind()); // [B, H, L, D]
    let num = fq.unsqueeze(-2).matmul(&s).squeeze_dim(-2);
    let den = (&fq * z).sum_dim_intlist(-1, true, fq.kind()) + eps;
    Ok(num / den)
}
