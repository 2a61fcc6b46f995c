//! Argument checks shared by every delta-rule path, run before any tch op that could abort.

use crate::{dtype, Error, Result};
use tch::Tensor;

/// The sizes of one delta-rule call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Batch size.
    pub b: i64,
    /// Sequence length.
    pub t: i64,
    /// Heads.
    pub h: i64,
    /// Key (and query) head dimension.
    pub k: i64,
    /// Value head dimension.
    pub v: i64,
}

fn rank(name: &str, t: &Tensor, want: usize, layout: &str) -> Result<Vec<i64>> {
    let s = t.size();
    if s.len() != want {
        return Err(Error::Shape(format!("{name} must be {want}-D {layout}, got shape {s:?}")));
    }
    Ok(s)
}

/// Checks ranks, sizes, dtypes and devices; returns the sizes.
pub(crate) fn check(q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, beta: &Tensor, h0: Option<&Tensor>) -> Result<Dims> {
    let qs = rank("q", q, 4, "[B,T,H,K]")?;
    let ks = rank("k", k, 4, "[B,T,H,K]")?;
    let vs = rank("v", v, 4, "[B,T,H,V]")?;
    let gs = rank("g", g, 3, "[B,T,H]")?;
    let bs = rank("beta", beta, 3, "[B,T,H]")?;
    if qs != ks {
        return Err(Error::Shape(format!("q and k must have the same shape [B,T,H,K], got {qs:?} and {ks:?}")));
    }
    let d = Dims { b: ks[0], t: ks[1], h: ks[2], k: ks[3], v: vs[3] };
    if vs[..3] != ks[..3] {
        return Err(Error::Shape(format!("v must be [B,T,H,V] with B,T,H of k {:?}, got {vs:?}", &ks[..3])));
    }
    if gs != ks[..3] {
        return Err(Error::Shape(format!("g must be [B,T,H] = {:?}, got {gs:?}", &ks[..3])));
    }
    if bs != ks[..3] {
        return Err(Error::Shape(format!("beta must be [B,T,H] = {:?}, got {bs:?}", &ks[..3])));
    }
    if d.b < 1 || d.h < 1 || d.k < 1 || d.v < 1 {
        return Err(Error::Shape(format!("B, H, K and V must be positive, got B={} H={} K={} V={}", d.b, d.h, d.k, d.v)));
    }
    if let Some(s) = h0 {
        let ss = s.size();
        let want = vec![d.b, d.h, d.k, d.v];
        if ss != want {
            return Err(Error::Shape(format!("initial_state must be [B,H,K,V] = {want:?}, got {ss:?}")));
        }
    }
    for (name, t) in [("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta)] {
        dtype::ensure_float(name, t.kind())?;
    }
    if let Some(s) = h0 {
        dtype::ensure_float("initial_state", s.kind())?;
    }
    if q.kind() != k.kind() || k.kind() != v.kind() {
        return Err(Error::Dtype(format!(
            "q, k and v must share one dtype, got {}, {} and {}",
            dtype::kind_name(q.kind()),
            dtype::kind_name(k.kind()),
            dtype::kind_name(v.kind())
        )));
    }
    let dev = q.device();
    let mut named: Vec<(&str, &Tensor)> = vec![("k", k), ("v", v), ("g", g), ("beta", beta)];
    if let Some(s) = h0 {
        named.push(("initial_state", s));
    }
    crate::device::ensure_same_device(dev, &named)?;
    Ok(d)
}

/// Errors unless `a` and `b` hold the same values (the seed semantics reads with the write key).
pub(crate) fn same_values(an: &str, a: &Tensor, bn: &str, b: &Tensor) -> Result<()> {
    let aliased = a.data_ptr() == b.data_ptr() && a.stride() == b.stride() && a.size() == b.size();
    if aliased || a.equal(b) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "Semantics::Seed reads with the write key: {an} must hold the same values as {bn} (pass {bn} as {an})"
        )))
    }
}
