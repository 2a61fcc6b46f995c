//! Routers: soft (dense) gating, top-k token choice with a capacity, and expert choice.
//!
//! Every router turns logits `[groups, tokens, experts]` into a [`Routing`]: a flat list of
//! (token, expert, slot, weight) assignments that the batched dispatch of
//! [`crate::ffn::MoeFfn`] consumes with `index_select` / `index_copy` / `index_add`. Routing
//! happens independently inside each group (a sequence, or a whole batch flattened into one
//! group), which is where capacities are counted.
//!
//! Slot layout: expert `e` owns slots `e·S .. (e+1)·S` of the dispatch buffer, with
//! `S = groups · capacity`; group `g` owns `g·capacity .. (g+1)·capacity` of them.

use crate::error::{config_err, shape_err, Result};
use tch::{Kind, Tensor};

/// How many tokens an expert may take per group.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Capacity {
    /// `ceil(factor · tokens · k / experts)` (token choice) or `ceil(factor · tokens / experts)`
    /// (expert choice): the capacity factor of Switch / expert-choice papers.
    Factor(f64),
    /// A fixed number of tokens per expert per group (seed 004's `expert_capacity = 32`).
    Fixed(i64),
}

impl Capacity {
    fn resolve(self, tokens: i64, k: i64, experts: i64) -> Result<i64> {
        let c = match self {
            Capacity::Factor(f) => {
                if !(f.is_finite() && f > 0.0) {
                    return config_err(format!("capacity factor must be positive, got {f}"));
                }
                ((f * (tokens * k) as f64) / experts as f64).ceil() as i64
            }
            Capacity::Fixed(c) => c,
        };
        if c < 1 {
            return config_err(format!("capacity must be at least 1, got {c}"));
        }
        Ok(c)
    }
}

/// Which router.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RouterKind {
    /// Every expert sees every token, weighted by the softmax (seed 000's "soft" MoE).
    Soft,
    /// Each token picks its top `k` experts; an expert keeps at most `capacity` tokens per group,
    /// in sequence order (earlier tokens first, a token's choices in rank order), so a token's
    /// routing never depends on later tokens: this router is causal. Overflow is dropped.
    TokenChoice {
        /// Experts per token.
        k: i64,
        /// Tokens an expert accepts per group.
        capacity: Capacity,
    },
    /// Each expert picks its top `capacity` tokens of the group (Zhou et al. 2022); a token may
    /// get 0..E experts. The choice looks at the whole group, future tokens included: NOT causal.
    ExpertChoice {
        /// Tokens per expert per group (`k = n·c/e` for a factor `c`).
        capacity: Capacity,
    },
}

/// Expert-utilisation statistics of one routing call (host values, for logging).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoutingStats {
    /// Tokens processed by each expert (summed over groups).
    pub tokens_per_expert: Vec<i64>,
    /// `coverage[j]` = tokens processed by exactly `j` experts (`j = 0..=E`).
    pub coverage: Vec<i64>,
    /// Token choice: dropped (token, expert) choices over all `n·k` choices. Other routers: 0.
    pub drop_rate: f64,
    /// Fraction of tokens that no expert processed (they pass through the residual only).
    pub unrouted_fraction: f64,
    /// Mean entropy of the router distribution per token, in nats (`ln E` = uniform).
    pub router_entropy: f64,
    /// Slots per expert per group.
    pub capacity: i64,
}

/// The result of routing: assignments plus what the auxiliary losses need.
#[derive(Debug)]
pub struct Routing {
    /// Router logits `[G, n, E]` (kept for the z-loss).
    pub logits: Tensor,
    /// Router probabilities `softmax(logits)` `[G, n, E]`.
    pub probs: Tensor,
    /// Flat token index (`g·n + t`) of each assignment, `[M]` int64.
    pub token_index: Tensor,
    /// Expert of each assignment, `[M]` int64.
    pub expert_index: Tensor,
    /// Slot of each assignment in the `[E·S]` dispatch buffer, `[M]` int64.
    pub slot_index: Tensor,
    /// Combine weight of each assignment: the router probability `probs[g, t, e]` (differentiable).
    pub combine_weight: Tensor,
    /// Number of experts.
    pub experts: i64,
    /// Slots per expert in the dispatch buffer (`groups · capacity`).
    pub slots_per_expert: i64,
    /// Tokens per expert per group.
    pub capacity: i64,
    /// Number of (token, expert) choices a token-choice router made before dropping (`n·G·k`).
    pub choices: i64,
}

/// Routes `logits` `[G, n, E]`.
///
/// ```
/// use engram_moe::routing::{route, Capacity, RouterKind};
/// use tch::{Device, Kind, Tensor};
/// let logits = Tensor::randn([2, 8, 4], (Kind::Float, Device::Cpu));
/// let r = route(&logits, RouterKind::ExpertChoice { capacity: Capacity::Fixed(3) }).unwrap();
/// let s = r.stats();
/// assert_eq!(s.tokens_per_expert, vec![6, 6, 6, 6]); // 3 per expert in each of 2 groups
/// ```
pub fn route(logits: &Tensor, kind: RouterKind) -> Result<Routing> {
    let size = logits.size();
    if size.len() != 3 {
        return shape_err(format!("router logits must be [groups, tokens, experts], got {size:?}"));
    }
    if !matches!(logits.kind(), Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half) {
        return shape_err(format!("router logits must be floating point, got {:?}", logits.kind()));
    }
    let (g, n, e) = (size[0], size[1], size[2]);
    if g < 1 || n < 1 || e < 1 {
        return shape_err(format!("router logits must be non-empty, got {size:?}"));
    }
    let dev = logits.device();
    let opts = (Kind::Int64, dev);
    let probs = logits.softmax(-1, logits.kind());
    let group_base = (Tensor::arange(g, opts) * n).view([g, 1, 1]);
    match kind {
        RouterKind::Soft => {
            // Assignment (g, t, e) in that order; slot e·(G·n) + g·n + t.
            let token = (Tensor::arange(g * n, opts).view([g, n, 1])).expand([g, n, e], false);
            let expert = Tensor::arange(e, opts).view([1, 1, e]).expand([g, n, e], false);
            let slot = &expert * (g * n) + &token;
            Ok(Routing {
                logits: logits.shallow_clone(),
                token_index: token.reshape([-1]),
                expert_index: expert.reshape([-1]),
                slot_index: slot.reshape([-1]),
                combine_weight: probs.reshape([-1]),
                probs,
                experts: e,
                slots_per_expert: g * n,
                capacity: n,
                choices: g * n * e,
            })
        }
        RouterKind::TokenChoice { k, capacity } => {
            if k < 1 || k > e {
                return config_err(format!("top-k needs 1 <= k <= experts ({e}), got k = {k}"));
            }
            let cap = capacity.resolve(n, k, e)?;
            let (vals, idx) = probs.topk(k, -1, true, true); // [G, n, k]
            // Position of each choice in its expert's queue, counting choices in sequence order
            // (token-major, then rank): an exclusive cumulative count per expert.
            let onehot = idx.one_hot(e).view([g, n * k, e]); // int64
            let pos_all = onehot.cumsum(1, Kind::Int64) - &onehot;
            let pos = (pos_all * &onehot).sum_dim_intlist(-1, false, Kind::Int64); // [G, n·k]
            let keep = pos.lt(cap).reshape([-1]);
            let kept = keep.nonzero().squeeze_dim(1);
            let token = (Tensor::arange(n, opts).view([1, n, 1]) + &group_base).expand([g, n, k], false);
            let group_slot = (Tensor::arange(g, opts) * cap).view([g, 1, 1]);
            let expert = idx.reshape([-1]);
            let slot = (&idx * (g * cap)).reshape([-1])
                + group_slot.expand([g, n, k], false).reshape([-1])
                + pos.reshape([-1]);
            Ok(Routing {
                logits: logits.shallow_clone(),
                token_index: token.reshape([-1]).index_select(0, &kept),
                expert_index: expert.index_select(0, &kept),
                slot_index: slot.index_select(0, &kept),
                combine_weight: vals.reshape([-1]).index_select(0, &kept),
                probs,
                experts: e,
                slots_per_expert: g * cap,
                capacity: cap,
                choices: g * n * k,
            })
        }
        RouterKind::ExpertChoice { capacity } => {
            let cap = capacity.resolve(n, 1, e)?;
            if cap > n {
                return config_err(format!(
                    "expert choice: each expert takes {cap} tokens but a group has only {n}"
                ));
            }
            let (vals, idx) = probs.transpose(1, 2).topk(cap, -1, true, true); // [G, E, cap]
            let token = &idx + &group_base;
            let expert = Tensor::arange(e, opts).view([1, e, 1]).expand([g, e, cap], false);
            let slot = &expert * (g * cap)
                + (Tensor::arange(g, opts) * cap).view([g, 1, 1])
                + Tensor::arange(cap, opts).view([1, 1, cap]);
            Ok(Routing {
                logits: logits.shallow_clone(),
                token_index: token.reshape([-1]),
                expert_index: expert.reshape([-1]),
                slot_index: slot.reshape([-1]),
                combine_weight: vals.reshape([-1]),
                probs,
                experts: e,
                slots_per_expert: g * cap,
                capacity: cap,
                choices: g * e * cap,
            })
        }
    }
}

impl Routing {
    /// Number of tokens routed (`G·n`).
    pub fn tokens(&self) -> i64 {
        let s = self.probs.size();
        s[0] * s[1]
    }

    /// Number of assignments actually dispatched.
    pub fn assignments(&self) -> i64 {
        self.token_index.size()[0]
    }

    /// Expert-utilisation statistics (copies a few small tensors to the host).
    pub fn stats(&self) -> RoutingStats {
        let n_tok = self.tokens();
        let per_expert = self.expert_index.bincount(None::<Tensor>, self.experts);
        let per_token = self.token_index.bincount(None::<Tensor>, n_tok);
        let coverage = per_token.bincount(None::<Tensor>, self.experts + 1);
        let to_vec = |t: &Tensor| -> Vec<i64> { Vec::<i64>::try_from(t.to_device(tch::Device::Cpu)).unwrap_or_default() };
        let coverage = to_vec(&coverage);
        let m = self.assignments();
        let drop_rate = if self.choices > 0 { (self.choices - m).max(0) as f64 / self.choices as f64 } else { 0.0 };
        let p = self.probs.detach().to_kind(Kind::Float);
        let entropy = -(&p * p.clamp_min(1e-30).log()).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float);
        RoutingStats {
            tokens_per_expert: to_vec(&per_expert),
            unrouted_fraction: coverage.first().copied().unwrap_or(0) as f64 / n_tok as f64,
            coverage,
            drop_rate,
            router_entropy: entropy.double_value(&[]),
            capacity: self.capacity,
        }
    }
}
