//! Mechanism probes: what the recurrent state, the keys and the gates look like on retrieval
//! inputs, the capacity curve with the model's own keys, and per-parameter gradient norms.

use crate::algebra::{capacity_curve, random_unit_keys, validate_delta_rule, AlgebraCheck, CapacityPoint};
use crate::probe::{LayerTrace, Probeable};
use crate::stats::{histogram, Summary};
use crate::tasks::{build_trial, Haystack, Needle, TaskTokens, Trial};
use anyhow::{bail, Context, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Bins of the gate histograms over `[0, 1]`.
pub const GATE_BINS: usize = 20;

/// State statistics of one head of one layer (averaged over the probe batch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadState {
    /// Layer index in the model.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// Whether the final state is finite (when not, the statistics below are `None`).
    pub finite: bool,
    /// Frobenius norm of the final state.
    pub norm: Option<f64>,
    /// Largest absolute entry.
    pub max_abs: Option<f64>,
    /// Effective rank `exp(H(σ/Σσ))` (Roy & Vetterli), between 1 and `min(K, V)`.
    pub effective_rank: Option<f64>,
    /// Stable rank `‖S‖_F² / σ_max²`.
    pub stable_rank: Option<f64>,
    /// Singular values above `1e-3·σ_max`.
    pub numerical_rank: Option<f64>,
    /// Mean |cos| between keys of distinct tokens (`None` with fewer than two distinct tokens).
    pub key_mean_abs_cos: Option<f64>,
    /// How strongly the final state answers the needle's write key, relative to ordinary keys
    /// (`‖Sᵀk_needle‖ / mean ‖Sᵀk_other‖`); shift-aware. ≫ 1: the needle survives in the state.
    pub needle_readout_ratio: Option<f64>,
}

/// Gate statistics of one layer (all heads pooled).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerGates {
    /// Layer index.
    pub layer: usize,
    /// β at marker tokens.
    pub beta_marker: Option<Summary>,
    /// β at needle-value tokens (where shifted models write the needle).
    pub beta_needle: Option<Summary>,
    /// β at ordinary haystack tokens.
    pub beta_ordinary: Option<Summary>,
    /// Decay g at marker tokens.
    pub decay_marker: Option<Summary>,
    /// Decay g at needle-value tokens.
    pub decay_needle: Option<Summary>,
    /// Decay g at ordinary tokens.
    pub decay_ordinary: Option<Summary>,
    /// Histogram of ordinary β over `[0,1]` in [`GATE_BINS`] bins.
    pub beta_hist: Vec<u64>,
    /// Histogram of ordinary g over `[0,1]`.
    pub decay_hist: Vec<u64>,
    /// Product of g over the probe sequence, median over heads and batch: how much of a write
    /// at the start survives to the end.
    pub retention_over_sequence: Option<f64>,
}

/// The gradient of one parameter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamGrad {
    /// Parameter name.
    pub name: String,
    /// Gradient L2 norm (`None`: the parameter got no gradient).
    pub grad_norm: Option<f64>,
    /// Gradient contains NaN.
    pub nan: bool,
    /// Gradient contains ±Inf.
    pub inf: bool,
}

/// Gradient probe: one backward pass of a shift-correct loss.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradientReport {
    /// Next-token LM loss on the haystack (logits at t predict token t+1).
    pub lm_loss: f64,
    /// Cross-entropy of the needle at the query position.
    pub retrieval_loss: f64,
    /// Any gradient has NaN.
    pub has_nan: bool,
    /// Any gradient has Inf.
    pub has_inf: bool,
    /// Per parameter, in the model's order.
    pub params: Vec<ParamGrad>,
}

/// All mechanism results of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MechanismReport {
    /// The delta-rule algebra checks.
    pub algebra: Vec<AlgebraCheck>,
    /// Sequence length of the probe batch.
    pub probe_seq_len: usize,
    /// Random-key |cos| baseline `√(2/π)/√K` for the model's key dimension.
    pub key_cos_baseline: Option<f64>,
    /// Per head and layer.
    pub heads: Vec<HeadState>,
    /// Per GDN layer.
    pub gates: Vec<LayerGates>,
    /// Capacity with random unit keys.
    pub capacity_random: Vec<CapacityPoint>,
    /// Capacity with the model's own keys (first GDN layer, head 0, distinct tokens).
    pub capacity_learned: Vec<CapacityPoint>,
    /// Gradient probe (`None` when the model exposes no parameters).
    pub gradients: Option<GradientReport>,
    /// Probes that could not run, and why.
    pub notes: Vec<String>,
}

/// Probe sequences: needles at known places, so gates can be read at markers and values.
fn probe_trials(tt: &TaskTokens, seq_len: usize, batch: usize, seed: u64) -> Result<Vec<Trial>> {
    let mut rng = HostRng::new(seed ^ 0x5eed);
    (0..batch)
        .map(|_| {
            let h = Haystack::Synthetic.draw(seq_len, tt, &mut rng);
            let n = 3.min(tt.markers.len());
            let needles: Vec<Needle> = (0..n)
                .map(|i| Needle { pos: (i + 1) * seq_len / (n + 2), marker: Some(tt.markers[i]), value: rng.below(tt.content_vocab as u64) as i64 })
                .collect();
            build_trial(seq_len, &h, &needles, &[tt.cue, tt.markers[n - 1]], needles[n - 1].value)
        })
        .collect()
}

fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::try_from(t.to_device(Device::Cpu).to_kind(Kind::Double).contiguous().view([-1]))?)
}

fn check_shape(name: &str, t: &Tensor, want: &[Option<i64>]) -> Result<()> {
    let s = t.size();
    if s.len() != want.len() || s.iter().zip(want).any(|(a, b)| b.is_some_and(|b| *a != b)) {
        bail!("trace tensor '{name}' has shape {s:?}, expected {want:?}");
    }
    Ok(())
}

/// Runs every mechanism probe. `key_dim_hint` sizes the algebra checks when the model has no trace.
pub fn run_mechanism(model: &dyn Probeable, tt: &TaskTokens, seq_len: usize, seed: u64, key_dim_hint: i64) -> Result<MechanismReport> {
    let mut notes = Vec::new();
    let seq_len = seq_len.max(32);
    let trials = probe_trials(tt, seq_len, 4, seed)?;
    let (b, t) = (trials.len() as i64, seq_len as i64);
    let flat: Vec<i64> = trials.iter().flat_map(|x| x.tokens.iter().copied()).collect();
    let x = Tensor::from_slice(&flat).view([b, t]);
    let traced = tch::no_grad(|| model.trace(&x.to_device(model.device()))).context("traced forward pass failed")?;

    let mut heads = Vec::new();
    let mut gates = Vec::new();
    let mut key_dim = None;
    let mut learned_pool: Option<Tensor> = None;
    match &traced {
        None => notes.push("the model exposes no trace: state, key and gate probes not applicable".into()),
        Some((_, trace)) => {
            if trace.gdn_layers().next().is_none() {
                notes.push("the trace has no GDN layer: state, key and gate probes not applicable".into());
            }
            // role of each position: 0 ordinary, 1 marker, 2 needle value, 3 query tokens
            let mut role = vec![0u8; flat.len()];
            for (r, tr) in trials.iter().enumerate() {
                for n in &tr.needles {
                    role[r * seq_len + n.pos] = 1;
                    role[r * seq_len + n.pos + 1] = 2;
                }
                role[r * seq_len + seq_len - 2] = 3;
                role[r * seq_len + seq_len - 1] = 3;
            }
            for (li, layer) in trace.gdn_layers() {
                let LayerTrace::Gdn { keys, beta, decay, final_state, .. } = layer else { continue };
                check_shape("keys", keys, &[Some(b), Some(t), None, None])?;
                let (h, kd) = (keys.size()[2], keys.size()[3]);
                check_shape("beta", beta, &[Some(b), Some(t), Some(h)])?;
                check_shape("decay", decay, &[Some(b), Some(t), Some(h)])?;
                check_shape("final_state", final_state, &[Some(b), Some(h), Some(kd), None])?;
                key_dim.get_or_insert(kd);
                let keys = keys.to_device(Device::Cpu).to_kind(Kind::Double);
                let state = final_state.to_device(Device::Cpu).to_kind(Kind::Double);
                heads.extend(head_stats(li, &keys, &state, &flat, &trials, model.shifted_values(), seq_len)?);
                gates.push(gate_stats(li, beta, decay, &role, h as usize)?);
                if learned_pool.is_none() {
                    learned_pool = Some(distinct_token_keys(&keys.select(2, 0), &flat));
                }
            }
        }
    }

    let kd = key_dim.unwrap_or(key_dim_hint).max(2);
    let algebra = validate_delta_rule(kd)?;
    let counts: Vec<usize> = [1usize, 2, 5, 10, 20, 40, 64, 100, 150, 200].iter().copied().filter(|&n| n <= 4 * kd as usize).collect();
    let capacity_random = capacity_curve(&counts, 2 * kd, 5, |n| Some(random_unit_keys(n, kd)));
    let mut rng = HostRng::new(seed ^ 0xcafe);
    let capacity_learned = match &learned_pool {
        Some(pool) => {
            let rows = pool.size()[0] as usize;
            capacity_curve(&counts, 2 * kd, 5, |n| {
                (n <= rows).then(|| {
                    let mut idx: Vec<i64> = (0..rows as i64).collect();
                    rng.shuffle(&mut idx);
                    pool.index_select(0, &Tensor::from_slice(&idx[..n]))
                })
            })
        }
        None => Vec::new(),
    };

    let params = model.parameters();
    let gradients = if params.is_empty() {
        notes.push("the model exposes no parameters: gradient probe not applicable".into());
        None
    } else {
        Some(gradient_probe(model, &params, &x, &trials)?)
    };

    Ok(MechanismReport {
        algebra,
        probe_seq_len: seq_len,
        key_cos_baseline: key_dim.map(|k| (2.0 / std::f64::consts::PI).sqrt() / (k as f64).sqrt()),
        heads,
        gates,
        capacity_random,
        capacity_learned,
        gradients,
        notes,
    })
}

/// Unit keys `[N,K]` of the first occurrence of each distinct token (keys `[B,T,K]`).
fn distinct_token_keys(keys: &Tensor, flat: &[i64]) -> Tensor {
    let kd = keys.size()[2];
    let rows = keys.reshape([-1, kd]);
    let mut seen = std::collections::HashSet::new();
    let idx: Vec<i64> = flat.iter().enumerate().filter(|(_, tok)| seen.insert(**tok)).map(|(i, _)| i as i64).collect();
    let k = rows.index_select(0, &Tensor::from_slice(&idx));
    &k / k.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12)
}

fn head_stats(layer: usize, keys: &Tensor, state: &Tensor, flat: &[i64], trials: &[Trial], shifted: bool, seq_len: usize) -> Result<Vec<HeadState>> {
    let (b, h) = (state.size()[0], state.size()[1]);
    let mut out = Vec::new();
    for hi in 0..h {
        let s_h = state.select(1, hi);
        let finite = bool::try_from(s_h.isfinite().all())?;
        let norm = s_h.square().sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double).sqrt().mean(Kind::Double).double_value(&[]);
        let max_abs = s_h.abs().max().double_value(&[]);
        let (mut eff, mut stable, mut numeric) = (0.0, 0.0, 0.0);
        // SVD of a non-finite matrix does not converge: skip it and say so
        // (torch.svd with compute_uv=false: tch's linalg_svdvals takes a CUDA-only driver argument)
        let sv = if finite { Some(s_h.f_svd(true, false)?.1) } else { None }; // [B,min(K,V)]
        for bi in 0..b {
            let Some(sv) = &sv else { break };
            let sig = to_f64_vec(&sv.get(bi))?;
            let total: f64 = sig.iter().sum();
            let smax = sig.iter().cloned().fold(0.0, f64::max);
            if total > 0.0 {
                let ent: f64 = sig.iter().map(|s| s / total).filter(|p| *p > 0.0).map(|p| -p * p.ln()).sum();
                eff += ent.exp();
                stable += sig.iter().map(|s| s * s).sum::<f64>() / (smax * smax);
                numeric += sig.iter().filter(|&&s| s > 1e-3 * smax).count() as f64;
            }
        }
        let key_h = keys.select(2, hi);
        let uk = distinct_token_keys(&key_h, flat);
        let n = uk.size()[0];
        let key_cos = (n >= 2).then(|| {
            let c = uk.mm(&uk.transpose(0, 1)).abs();
            (c.sum(Kind::Double).double_value(&[]) - c.diagonal(0, 0, 1).sum(Kind::Double).double_value(&[])) / (n * (n - 1)) as f64
        });
        // shift-aware write key of the last needle: shifted models write it at the value position
        let mut ratios = Vec::new();
        for (bi, tr) in trials.iter().enumerate() {
            let Some(last) = tr.needles.last() else { continue };
            let write_pos = if shifted { last.pos + 1 } else { last.pos };
            let s_b = s_h.get(bi as i64);
            let kb = key_h.get(bi as i64);
            let kb = &kb / kb.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
            let read = kb.mm(&s_b).norm_scalaropt_dim(2, [1i64].as_slice(), false); // [T]
            let reads = to_f64_vec(&read)?;
            let others: Vec<f64> = (0..seq_len)
                .filter(|&p| tr.needles.iter().all(|n| p != n.pos && p != n.pos + 1) && p > 0 && p < seq_len - 2)
                .map(|p| reads[p])
                .collect();
            let mean_other = others.iter().sum::<f64>() / others.len().max(1) as f64;
            if mean_other > 0.0 {
                ratios.push(reads[write_pos] / mean_other);
            }
        }
        out.push(HeadState {
            layer,
            head: hi as usize,
            finite,
            norm: finite.then_some(norm),
            max_abs: finite.then_some(max_abs),
            effective_rank: finite.then_some(eff / b as f64),
            stable_rank: finite.then_some(stable / b as f64),
            numerical_rank: finite.then_some(numeric / b as f64),
            key_mean_abs_cos: key_cos,
            needle_readout_ratio: (!ratios.is_empty()).then(|| ratios.iter().sum::<f64>() / ratios.len() as f64),
        });
    }
    Ok(out)
}

fn gate_stats(layer: usize, beta: &Tensor, decay: &Tensor, role: &[u8], h: usize) -> Result<LayerGates> {
    let bv = to_f64_vec(beta)?; // [B*T*H], position-major
    let gv = to_f64_vec(decay)?;
    let pick = |vals: &[f64], want: u8| -> Vec<f64> {
        vals.iter().enumerate().filter(|(i, _)| role[i / h] == want).map(|(_, v)| *v).collect()
    };
    let (b_ord, g_ord) = (pick(&bv, 0), pick(&gv, 0));
    // survival of a write at t=0 to the end: prod_t g_t, per batch element and head
    let logg = decay.to_device(Device::Cpu).to_kind(Kind::Double).clamp_min(1e-300).log().sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    let mut surv = to_f64_vec(&logg.exp())?;
    surv.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(LayerGates {
        layer,
        beta_marker: Summary::of(&pick(&bv, 1)),
        beta_needle: Summary::of(&pick(&bv, 2)),
        beta_ordinary: Summary::of(&b_ord),
        decay_marker: Summary::of(&pick(&gv, 1)),
        decay_needle: Summary::of(&pick(&gv, 2)),
        decay_ordinary: Summary::of(&g_ord),
        beta_hist: histogram(&b_ord, 0.0, 1.0, GATE_BINS),
        decay_hist: histogram(&g_ord, 0.0, 1.0, GATE_BINS),
        retention_over_sequence: surv.get(surv.len() / 2).copied().filter(|v| v.is_finite()),
    })
}

fn gradient_probe(model: &dyn Probeable, params: &[(String, Tensor)], x: &Tensor, trials: &[Trial]) -> Result<GradientReport> {
    for (_, p) in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let dev = model.device();
    let logits = model.logits(&x.to_device(dev)).context("forward pass for the gradient probe failed")?;
    let (b, t, v) = (logits.size()[0], logits.size()[1], logits.size()[2]);
    let logits = logits.to_kind(Kind::Float);
    // logits at t predict token t+1: compare positions 0..T-2 with tokens 1..T-1
    let lm = logits.narrow(1, 0, t - 1).reshape([-1, v]).cross_entropy_for_logits(&x.narrow(1, 1, t - 1).reshape([-1]).to_device(dev));
    let targets = Tensor::from_slice(&trials.iter().map(|tr| tr.target).collect::<Vec<_>>()).to_device(dev);
    let ret = logits.select(1, t - 1).cross_entropy_for_logits(&targets);
    let _ = b;
    let total = &lm + &ret;
    if total.requires_grad() {
        total.backward();
    }
    let mut out = Vec::new();
    let (mut any_nan, mut any_inf) = (false, false);
    for (name, p) in params {
        let g = p.grad();
        if !g.defined() {
            out.push(ParamGrad { name: name.clone(), grad_norm: None, nan: false, inf: false });
            continue;
        }
        let gd = g.to_kind(Kind::Double);
        let nan = bool::try_from(gd.isnan().any())?;
        let inf = bool::try_from(gd.isinf().any())?;
        any_nan |= nan;
        any_inf |= inf;
        out.push(ParamGrad { name: name.clone(), grad_norm: Some(gd.norm().double_value(&[])), nan, inf });
        let mut g = g;
        let _ = g.zero_();
    }
    Ok(GradientReport {
        lm_loss: lm.double_value(&[]),
        retrieval_loss: ret.double_value(&[]),
        has_nan: any_nan,
        has_inf: any_inf,
        params: out,
    })
}
