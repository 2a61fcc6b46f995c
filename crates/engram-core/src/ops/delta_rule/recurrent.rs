//! Token-by-token references: O(T) sequential steps of plain tch ops, differentiable by tch
//! autograd, any float dtype (computed in f64 for f64 inputs, in f32 otherwise). They are the
//! ground truth every other path is tested against.
//!
//! ```
//! use engram_core::ops::delta_rule::recurrent;
//! use tch::{Device, Kind, Tensor};
//! let o = (Kind::Double, Device::Cpu);
//! let k = Tensor::randn([1, 6, 2, 4], o);
//! let v = Tensor::randn([1, 6, 2, 3], o);
//! let g = Tensor::rand([1, 6, 2], o);          // the seed's g is a sigmoid output in (0, 1)
//! let beta = Tensor::rand([1, 6, 2], o);
//! let (out, state) = recurrent::seed(&k, &v, &g, &beta, None).unwrap();
//! assert_eq!((out.size(), state.size()), (vec![1, 6, 2, 3], vec![1, 2, 4, 3]));
//! ```

use super::{compute_kind, validate};
use crate::Result;
use tch::Tensor;

/// Inputs in the compute kind, heads first: q,k `[B,H,T,K]`, v `[B,H,T,V]`, g, beta `[B,H,T]`,
/// and the initial state `[B,H,K,V]` (zeros when absent).
struct Prepared {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    s0: Tensor,
}

fn prepare(q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, beta: &Tensor, h0: Option<&Tensor>) -> Result<(Prepared, validate::Dims)> {
    let d = validate::check(q, k, v, g, beta, h0)?;
    let ck = compute_kind(v.kind());
    let s0 = match h0 {
        Some(s) => s.to_kind(ck),
        None => Tensor::zeros([d.b, d.h, d.k, d.v], (ck, v.device())),
    };
    let p = Prepared {
        q: q.to_kind(ck).transpose(1, 2),
        k: k.to_kind(ck).transpose(1, 2),
        v: v.to_kind(ck).transpose(1, 2),
        g: g.to_kind(ck).transpose(1, 2),
        beta: beta.to_kind(ck).transpose(1, 2),
        s0,
    };
    Ok((p, d))
}

/// `Sᵀx` for a state `[B,H,K,V]` and a vector `x` `[B,H,K]`: `[B,H,V]`.
fn read(s: &Tensor, x: &Tensor) -> Tensor {
    (s * x.unsqueeze(-1)).sum_dim_intlist(-2, false, s.kind())
}

fn finish(outs: Vec<Tensor>, d: validate::Dims, s: Tensor, like: &Tensor) -> (Tensor, Tensor) {
    let o = if outs.is_empty() {
        Tensor::zeros([d.b, 0, d.h, d.v], (like.kind(), like.device()))
    } else {
        Tensor::stack(&outs, 1).to_kind(like.kind())
    };
    (o, s)
}

/// The standard gated delta rule, one token at a time: with `a_t = exp(g_t)`,
/// `S_t = a_t S_{t−1} + β_t k_t (v_t − a_t S_{t−1}ᵀ k_t)ᵀ` (which is
/// `a_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ`) and `o_t = scale · S_tᵀ q_t`.
/// Returns `o` `[B,T,H,V]` (dtype of `v`) and the final state (compute dtype).
pub fn standard(q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, beta: &Tensor, scale: f64, h0: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
    let (p, d) = prepare(q, k, v, g, beta, h0)?;
    let decay = p.g.exp();
    let mut s = p.s0;
    let mut outs = Vec::with_capacity(d.t as usize);
    for t in 0..d.t {
        let k_t = p.k.select(2, t);
        let a_t = decay.select(2, t).unsqueeze(-1).unsqueeze(-1);
        s = &s * &a_t;
        let delta = (p.v.select(2, t) - read(&s, &k_t)) * p.beta.select(2, t).unsqueeze(-1);
        s = &s + k_t.unsqueeze(-1) * delta.unsqueeze(-2);
        outs.push(read(&s, &p.q.select(2, t)) * scale);
    }
    Ok(finish(outs, d, s, v))
}

/// GroundThink v7's rule in its exact order (seed spec §3.2): `pred = S_{t−1}ᵀ k_t`,
/// `S_t = g_t S_{t−1} + β_t k_t (v_t − pred)ᵀ`, `o_t = S_tᵀ k_t`; `g` is used as given (a
/// sigmoid output, not a log). Returns `o` `[B,T,H,V]` (dtype of `v`) and the final state.
pub fn seed(k: &Tensor, v: &Tensor, g: &Tensor, beta: &Tensor, h0: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
    let (p, d) = prepare(k, k, v, g, beta, h0)?;
    let mut s = p.s0;
    let mut outs = Vec::with_capacity(d.t as usize);
    for t in 0..d.t {
        let k_t = p.k.select(2, t);
        let err = p.v.select(2, t) - read(&s, &k_t);
        let outer = k_t.unsqueeze(-1) * err.unsqueeze(-2);
        let g_t = p.g.select(2, t).unsqueeze(-1).unsqueeze(-1);
        let b_t = p.beta.select(2, t).unsqueeze(-1).unsqueeze(-1);
        s = &s * g_t + outer * b_t;
        outs.push(read(&s, &k_t));
    }
    Ok(finish(outs, d, s, v))
}
