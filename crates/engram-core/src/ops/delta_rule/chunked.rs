//! The chunkwise-parallel delta rule in tch ops (WY representation / UT transform, as in the
//! Gated DeltaNet paper and fla), differentiable by tch autograd, on any device.
//!
//! # The algorithm
//! Both semantics are instances of `S_t = a_t S_{t−1} + k_t δ_tᵀ` with the "new value"
//! `δ_t = β_t v_t − b_t S_{t−1}ᵀ k_t`, where `b_t = a_t β_t` (standard: the prediction reads the
//! decayed state) or `b_t = β_t` (seed: it reads the undecayed state). Inside a chunk that starts
//! from `S_0`, with `Γ_t = a_1⋯a_t` and `Γ_t/Γ_i = exp(Σ_{s=i+1..t} log a_s)`:
//!
//! * `S_t = Γ_t S_0 + Σ_{i≤t} (Γ_t/Γ_i) k_i δ_iᵀ`,
//! * so `(I + A) δ = β⊙V − W S_0` with the strictly lower `A_ti = b_t (Γ_{t−1}/Γ_i) k_t·k_i`
//!   and `W_t = b_t Γ_{t−1} k_t`, i.e. `δ = u − w S_0` with `u = (I+A)⁻¹ β⊙V`, `w = (I+A)⁻¹ W`.
//!   Standard: `b_t Γ_{t−1} = β_t Γ_t` (fla's form). Seed: `β_t Γ_{t−1}` (exclusive decay).
//! * The next chunk starts from `Γ_C S_0 + Σ_i (Γ_C/Γ_i) k_i δ_iᵀ`.
//! * `o_t = scale·[Γ_t q_tᵀ S_0 + Σ_{i≤t} (Γ_t/Γ_i)(q_t·k_i) δ_i]` (seed: `q = k`, scale 1).
//!
//! `A`, `u` and `w` come from one batched `linalg_solve_triangular` over all chunks; the only
//! sequential part is one loop over chunks that carries the state (O(T/C) steps); the outputs
//! are then computed for all chunks at once.
//!
//! Every decay ratio is a segment sum `Σ_{s=j+1..i} log a_s` computed directly (a masked
//! cumulative sum, as in Mamba-2's `segsum`), never as a difference of cumulative sums, so very
//! negative gates cannot cancel catastrophically; the masked entries are set to `−∞` *before*
//! `exp`, so no `inf·0` appears in the forward or the backward pass. A tail shorter than a chunk
//! is padded with `log a = 0`, `β = 0`, `k = q = v = 0` (a no-op step) and sliced off.

use super::{compute_kind, validate, Dims};
use crate::Result;
use tch::{Kind, Tensor};

/// The standard gated delta rule (`g` a log decay), chunk length `chunk`. Returns `o`
/// `[B,T,H,V]` (dtype of `v`) and the final state `[B,H,K,V]` (compute dtype).
#[allow(clippy::too_many_arguments)]
pub fn standard(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: &Tensor,
    beta: &Tensor,
    scale: f64,
    h0: Option<&Tensor>,
    chunk: i64,
) -> Result<(Tensor, Tensor)> {
    let d = validate::check(q, k, v, g, beta, h0)?;
    check_chunk(chunk)?;
    let ck = compute_kind(v.kind());
    Ok(run(q, k, v, &g.to_kind(ck), beta, scale, h0, chunk, d, false))
}

/// GroundThink v7's rule (`g ∈ (0,1)` a sigmoid, undecayed prediction, `o_t = S_tᵀ k_t`),
/// computed natively (no `β/g`), chunk length `chunk`. `g` is floored at `1e-30` before its
/// logarithm so that `g = 0` cannot produce `−∞ − (−∞)` or an infinite gradient; the effect is
/// below `1e-30·|S|`. Returns `o` `[B,T,H,V]` (dtype of `v`) and the final state.
pub fn seed(k: &Tensor, v: &Tensor, g: &Tensor, beta: &Tensor, h0: Option<&Tensor>, chunk: i64) -> Result<(Tensor, Tensor)> {
    let d = validate::check(k, k, v, g, beta, h0)?;
    check_chunk(chunk)?;
    let ck = compute_kind(v.kind());
    let log_g = g.to_kind(ck).clamp_min(1e-30).log();
    Ok(run(k, k, v, &log_g, beta, 1.0, h0, chunk, d, true))
}

fn check_chunk(chunk: i64) -> Result<()> {
    if chunk <= 0 {
        return Err(crate::Error::InvalidArgument(format!("chunk_size must be positive, got {chunk}")));
    }
    Ok(())
}

/// `[B,T,H,X]` → `[B,H,N,C,X]` in kind `ck`, the tail padded with zeros.
fn to_chunks4(x: &Tensor, ck: Kind, n: i64, c: i64, pad: i64) -> Tensor {
    let s = x.size();
    let x = x.to_kind(ck).transpose(1, 2);
    let x = if pad > 0 { x.constant_pad_nd([0, 0, 0, pad]) } else { x };
    x.reshape([s[0], s[2], n, c, s[3]])
}

/// `[B,T,H]` → `[B,H,N,C]` in kind `ck`, the tail padded with zeros.
fn to_chunks3(x: &Tensor, ck: Kind, n: i64, c: i64, pad: i64) -> Tensor {
    let s = x.size();
    let x = x.to_kind(ck).transpose(1, 2);
    let x = if pad > 0 { x.constant_pad_nd([0, pad]) } else { x };
    x.reshape([s[0], s[2], n, c])
}

/// `seg[..., i, j] = Σ_{s=j+1..i} x_s` for `i ≥ j` and `−∞` above the diagonal; `x` `[..., C]`.
fn segsum(x: &Tensor) -> Tensor {
    let c = *x.size().last().unwrap();
    let opts = (Kind::Bool, x.device());
    let strict_lower = Tensor::ones([c, c], opts).tril(-1);
    let upper = Tensor::ones([c, c], opts).triu(1);
    let mut shape = x.size();
    shape.push(c);
    // rep[..., i, j] = x_i
    let rep = x.unsqueeze(-1).expand(&shape, false);
    let rep = rep.masked_fill(&strict_lower.logical_not(), 0.0);
    rep.cumsum(-2, x.kind()).masked_fill(&upper, f64::NEG_INFINITY)
}

#[allow(clippy::too_many_arguments)]
fn run(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    log_a: &Tensor,
    beta: &Tensor,
    scale: f64,
    h0: Option<&Tensor>,
    chunk: i64,
    d: Dims,
    exclusive: bool,
) -> (Tensor, Tensor) {
    let ck = compute_kind(v.kind());
    let dev = v.device();
    let mut s = match h0 {
        Some(s) => s.to_kind(ck),
        None => Tensor::zeros([d.b, d.h, d.k, d.v], (ck, dev)),
    };
    if d.t == 0 {
        return (Tensor::zeros([d.b, 0, d.h, d.v], (v.kind(), dev)), s);
    }
    let c = chunk.min(d.t);
    let n = (d.t + c - 1) / c;
    let pad = n * c - d.t;
    let qc = to_chunks4(q, ck, n, c, pad);
    let kc = to_chunks4(k, ck, n, c, pad);
    let vc = to_chunks4(v, ck, n, c, pad);
    let la = to_chunks3(log_a, ck, n, c, pad);
    let bc = to_chunks3(beta, ck, n, c, pad);

    // Decays, all as direct segment sums (no cancellation): seg[i,j] = log(Γ_i/Γ_j), i ≥ j.
    let seg = segsum(&la);
    let cum = la.cumsum(-1, ck); // log Γ_t
    let (row_seg, row_cum) = if exclusive {
        // log(Γ_{i−1}/Γ_j) = seg[i−1, j]: shift rows down by one (row 0 has no i−1 ≥ j).
        let shifted = seg.narrow(-2, 0, c - 1).constant_pad_nd([0, 0, 1, 0]);
        let row0_masked = shifted.masked_fill(&Tensor::ones([c, c], (Kind::Bool, dev)).triu(0), f64::NEG_INFINITY);
        // log Γ_{i−1}: the cumulative sum shifted right, not `cum − la` (which could cancel).
        let cum_excl = cum.narrow(-1, 0, c - 1).constant_pad_nd([1, 0]);
        (row0_masked, cum_excl)
    } else {
        let strict = seg.masked_fill(&Tensor::eye(c, (Kind::Bool, dev)), f64::NEG_INFINITY);
        (strict, cum.shallow_clone())
    };
    let kk = kc.matmul(&kc.transpose(-1, -2));
    let beta_col = bc.unsqueeze(-1);
    let a = &kk * row_seg.exp() * &beta_col;
    let eye = Tensor::eye(c, (ck, dev));
    let rhs = Tensor::cat(&[&kc * (&beta_col * row_cum.exp().unsqueeze(-1)), &vc * &beta_col], -1);
    let wu = (a + eye).linalg_solve_triangular(&rhs, false, true, true);
    let w = wu.narrow(-1, 0, d.k);
    let u = wu.narrow(-1, d.k, d.v);

    let last = seg.select(-2, c - 1); // log(Γ_C/Γ_i), [B,H,N,C]
    let total = cum.select(-1, c - 1); // log Γ_C, [B,H,N]
    let k_to_end = &kc * last.exp().unsqueeze(-1);
    let mut starts = Vec::with_capacity(n as usize);
    let mut deltas = Vec::with_capacity(n as usize);
    for i in 0..n {
        let delta = u.select(2, i) - w.select(2, i).matmul(&s);
        let decay = total.select(2, i).exp().unsqueeze(-1).unsqueeze(-1);
        let next = &s * decay + k_to_end.select(2, i).transpose(-1, -2).matmul(&delta);
        starts.push(s);
        deltas.push(delta);
        s = next;
    }
    let starts = Tensor::stack(&starts, 2); // [B,H,N,K,V]
    let deltas = Tensor::stack(&deltas, 2); // [B,H,N,C,V]
    let inter = (&qc * cum.exp().unsqueeze(-1)).matmul(&starts);
    let intra = (qc.matmul(&kc.transpose(-1, -2)) * seg.exp()).matmul(&deltas);
    let o = (inter + intra) * scale;
    let o = o.reshape([d.b, d.h, n * c, d.v]).narrow(2, 0, d.t).transpose(1, 2).to_kind(v.kind());
    (o, s)
}
