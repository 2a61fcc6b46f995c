//! Dynamic sparse topology: SET (magnitude prune, random regrow) and RigL (magnitude prune,
//! gradient-magnitude regrow). Both keep the number of kept weights of every layer constant.
//!
//! Regrowth chooses among positions that were inactive *before* the prune, so a connection is
//! never dropped and re-added in the same update (which would be a silent no-op).

use crate::error::{invalid, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which topology update runs between epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum TopologyPolicy {
    /// The mask never changes (static random sparsity, the baseline).
    Static,
    /// SET: drop the fraction ζ of the smallest positive and of the largest negative weights,
    /// regrow as many at random, initialised like the layer (`U(-1/√fan_in, 1/√fan_in)`).
    Set {
        /// ζ, the fraction pruned per sign (0.3 in the SET paper).
        zeta: f64,
    },
    /// RigL: drop the fraction α of active weights with the smallest magnitude, regrow as many
    /// where the dense gradient is largest, initialised at zero. α follows a cosine decay.
    Rigl {
        /// Initial α (0.3 in the RigL paper).
        alpha: f64,
    },
}

/// What one topology update did to one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateStats {
    /// Kept weights before the update.
    pub nnz_before: i64,
    /// Kept weights after the update.
    pub nnz_after: i64,
    /// Connections removed.
    pub pruned: i64,
    /// Connections added.
    pub regrown: i64,
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_kind(Kind::Float).to_device(tch::Device::Cpu).flatten(0, -1))?)
}

fn write_back(dst: &Tensor, src: &[f32]) {
    let src = Tensor::from_slice(src).view(dst.size().as_slice()).to_device(dst.device()).to_kind(dst.kind());
    tch::no_grad(|| {
        let mut d = dst.shallow_clone();
        d.copy_(&src);
    });
}

fn check(weight: &Tensor, mask: &Tensor, frac: f64) -> Result<()> {
    if weight.size() != mask.size() {
        return Err(invalid(format!("weight {:?} and mask {:?} differ in shape", weight.size(), mask.size())));
    }
    if !(0.0..=1.0).contains(&frac) {
        return Err(invalid(format!("prune fraction {frac} must be in [0, 1]")));
    }
    Ok(())
}

/// The SET rule: prune `⌊ζ·n₊⌋` of the smallest non-negative kept weights and `⌊ζ·n₋⌋` of the
/// negative ones closest to zero, then regrow the same number at random positions that were
/// inactive before, with values from `U(-init_bound, init_bound)`. A layer with fewer inactive
/// positions than it would prune (e.g. a dense layer) is left unchanged.
pub fn set_update(weight: &Tensor, mask: &Tensor, zeta: f64, init_bound: f64, rng: &mut HostRng) -> Result<UpdateStats> {
    check(weight, mask, zeta)?;
    let mut w = to_vec(weight)?;
    let mut m = to_vec(mask)?;
    let nnz = m.iter().filter(|&&x| x != 0.0).count();
    let mut pos: Vec<usize> = (0..w.len()).filter(|&i| m[i] != 0.0 && w[i] >= 0.0).collect();
    let mut neg: Vec<usize> = (0..w.len()).filter(|&i| m[i] != 0.0 && w[i] < 0.0).collect();
    pos.sort_by(|&a, &b| w[a].total_cmp(&w[b]));
    neg.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
    let k_pos = (zeta * pos.len() as f64).floor() as usize;
    let k_neg = (zeta * neg.len() as f64).floor() as usize;
    let k = k_pos + k_neg;
    let free = w.len() - nnz;
    if k == 0 || free < k {
        return Ok(UpdateStats { nnz_before: nnz as i64, nnz_after: nnz as i64, pruned: 0, regrown: 0 });
    }
    let was_free: Vec<bool> = m.iter().map(|&x| x == 0.0).collect();
    for &i in pos[..k_pos].iter().chain(&neg[..k_neg]) {
        m[i] = 0.0;
        w[i] = 0.0;
    }
    let grown = sample_free(&was_free, k, rng);
    for i in grown {
        m[i] = 1.0;
        w[i] = ((rng.uniform() * 2.0 - 1.0) * init_bound) as f32;
    }
    write_back(weight, &w);
    write_back(mask, &m);
    let after = m.iter().filter(|&&x| x != 0.0).count();
    Ok(UpdateStats { nnz_before: nnz as i64, nnz_after: after as i64, pruned: k as i64, regrown: k as i64 })
}

/// `k` distinct positions where `free` is true, uniformly at random.
fn sample_free(free: &[bool], k: usize, rng: &mut HostRng) -> Vec<usize> {
    let n_free = free.iter().filter(|&&f| f).count();
    if 2 * k <= n_free {
        let mut taken = std::collections::HashSet::with_capacity(k);
        while taken.len() < k {
            let i = rng.below(free.len() as u64) as usize;
            if free[i] {
                taken.insert(i);
            }
        }
        let mut v: Vec<usize> = taken.into_iter().collect();
        v.sort_unstable();
        v
    } else {
        let mut cand: Vec<usize> = (0..free.len()).filter(|&i| free[i]).collect();
        rng.shuffle(&mut cand);
        cand.truncate(k);
        cand
    }
}

/// The RigL rule: drop the `⌊α·nnz⌋` kept weights of smallest magnitude and grow as many at the
/// previously inactive positions with the largest `|dense_grad|` (ties by position), new weights
/// at zero. `dense_grad` is the gradient with respect to the effective (masked) weight, so it is
/// defined at inactive positions too.
pub fn rigl_update(weight: &Tensor, mask: &Tensor, dense_grad: &Tensor, alpha: f64) -> Result<UpdateStats> {
    check(weight, mask, alpha)?;
    if dense_grad.size() != weight.size() {
        return Err(invalid(format!("gradient {:?} != weight {:?}", dense_grad.size(), weight.size())));
    }
    let mut w = to_vec(weight)?;
    let mut m = to_vec(mask)?;
    let g = to_vec(dense_grad)?;
    let mut active: Vec<usize> = (0..w.len()).filter(|&i| m[i] != 0.0).collect();
    let nnz = active.len();
    let mut inactive: Vec<usize> = (0..w.len()).filter(|&i| m[i] == 0.0).collect();
    let k = ((alpha * nnz as f64).floor() as usize).min(inactive.len());
    if k == 0 {
        return Ok(UpdateStats { nnz_before: nnz as i64, nnz_after: nnz as i64, pruned: 0, regrown: 0 });
    }
    active.sort_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()).then(a.cmp(&b)));
    inactive.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()).then(a.cmp(&b)));
    for &i in &active[..k] {
        m[i] = 0.0;
        w[i] = 0.0;
    }
    for &i in &inactive[..k] {
        m[i] = 1.0;
        w[i] = 0.0;
    }
    write_back(weight, &w);
    write_back(mask, &m);
    let after = m.iter().filter(|&&x| x != 0.0).count();
    Ok(UpdateStats { nnz_before: nnz as i64, nnz_after: after as i64, pruned: k as i64, regrown: k as i64 })
}

/// RigL's cosine decay of the update fraction: `α/2 · (1 + cos(π t / t_end))`, zero after `t_end`.
pub fn rigl_fraction(alpha: f64, t: usize, t_end: usize) -> f64 {
    if t >= t_end || t_end == 0 {
        return 0.0;
    }
    alpha / 2.0 * (1.0 + (std::f64::consts::PI * t as f64 / t_end as f64).cos())
}
