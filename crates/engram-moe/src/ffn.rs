//! The MoE feed-forward layer: a router plus `E` two-layer experts, dispatched in one batch.
//!
//! Dispatch is three gathers/scatters and two grouped matmuls regardless of the token count:
//! `index_select` the routed tokens, `index_copy` them into a `[E, S, d]` buffer, run every
//! expert at once with `bmm`, then `index_add` the weighted outputs back per token. Empty
//! slots (under-filled capacity) are computed and ignored, the usual price of static shapes.

use crate::error::{shape_err, Result};
use crate::routing::{route, Routing, RouterKind};
use engram_layers::{init, Linear, LinearConfig};
use tch::{nn, nn::Module, Tensor};

/// The experts' hidden activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// `max(0, x)` (seed 000's experts).
    Relu,
    /// GELU with the exact erf form (PyTorch's default).
    Gelu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu("none"),
        }
    }
}

/// Configuration of [`MoeFfn`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MoeFfnConfig {
    /// Model width.
    pub d_model: i64,
    /// Hidden width of each expert.
    pub d_ff: i64,
    /// Number of experts.
    pub experts: i64,
    /// The router.
    pub router: RouterKind,
    /// The experts' activation.
    pub activation: Activation,
}

/// A mixture-of-experts feed-forward layer with batched dispatch.
///
/// Parameters (PyTorch `nn.Linear` init per expert, bounds `1/√fan_in`): `gate.weight [E, d]`
/// (no bias), `w1 [E, d, d_ff]`, `b1 [E, 1, d_ff]`, `w2 [E, d_ff, d]`, `b2 [E, 1, d]`.
///
/// ```
/// use engram_moe::ffn::{Activation, MoeFfn, MoeFfnConfig};
/// use engram_moe::routing::{Capacity, RouterKind};
/// use tch::{nn, Device, Kind, Tensor};
/// let vs = nn::VarStore::new(Device::Cpu);
/// let cfg = MoeFfnConfig { d_model: 8, d_ff: 16, experts: 4, activation: Activation::Gelu,
///     router: RouterKind::TokenChoice { k: 2, capacity: Capacity::Factor(1.25) } };
/// let moe = MoeFfn::new(&vs.root() / "moe", cfg).unwrap();
/// let x = Tensor::randn([2, 10, 8], (Kind::Float, Device::Cpu));
/// let (y, routing) = moe.forward_grouped(&x).unwrap();
/// assert_eq!(y.size(), vec![2, 10, 8]);
/// assert!(routing.stats().drop_rate <= 1.0);
/// ```
#[derive(Debug)]
pub struct MoeFfn {
    cfg: MoeFfnConfig,
    /// Router `Linear(d, E, bias=False)`.
    pub gate: Linear,
    /// `[E, d, d_ff]`.
    pub w1: Tensor,
    /// `[E, 1, d_ff]`.
    pub b1: Tensor,
    /// `[E, d_ff, d]`.
    pub w2: Tensor,
    /// `[E, 1, d]`.
    pub b2: Tensor,
}

impl MoeFfn {
    /// Creates the layer's parameters under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: MoeFfnConfig) -> Result<Self> {
        if cfg.d_model < 1 || cfg.d_ff < 1 || cfg.experts < 1 {
            return crate::error::config_err(format!("MoeFfn sizes must be positive: {cfg:?}"));
        }
        let p = path.borrow();
        let gate = Linear::new(p / "gate", LinearConfig::new(cfg.d_model, cfg.experts).no_bias());
        let (e, d, h) = (cfg.experts, cfg.d_model, cfg.d_ff);
        let mk = |name: &str, shape: &[i64], fan_in: i64| {
            let mut t = p.zeros(name, shape);
            let b = 1.0 / (fan_in as f64).sqrt();
            init::uniform_(&mut t, -b, b);
            t
        };
        let w1 = mk("w1", &[e, d, h], d);
        let b1 = mk("b1", &[e, 1, h], d);
        let w2 = mk("w2", &[e, h, d], h);
        let b2 = mk("b2", &[e, 1, d], h);
        Ok(MoeFfn { cfg, gate, w1, b1, w2, b2 })
    }

    /// The configuration.
    pub fn config(&self) -> &MoeFfnConfig {
        &self.cfg
    }

    /// Runs expert `e` densely on `x` `[m, d]` (for tests, autopsies and ablations).
    pub fn expert_forward(&self, e: i64, x: &Tensor) -> Tensor {
        let h = self.cfg.activation.apply(&(x.matmul(&self.w1.get(e)) + self.b1.get(e)));
        h.matmul(&self.w2.get(e)) + self.b2.get(e)
    }

    /// Routes and runs `x` `[G, n, d]`, each group routed on its own. Returns the combined
    /// expert outputs `[G, n, d]` (zero for tokens no expert took) and the routing.
    pub fn forward_grouped(&self, x: &Tensor) -> Result<(Tensor, Routing)> {
        let s = x.size();
        if s.len() != 3 || s[2] != self.cfg.d_model {
            return shape_err(format!("MoeFfn input must be [groups, tokens, {}], got {s:?}", self.cfg.d_model));
        }
        let logits = self.gate.forward(x);
        let routing = route(&logits, self.cfg.router)?;
        let y = self.dispatch(x, &routing);
        Ok((y, routing))
    }

    /// Runs the experts on already-routed tokens (the batched dispatch/combine).
    pub fn dispatch(&self, x: &Tensor, r: &Routing) -> Tensor {
        let s = x.size();
        let d = self.cfg.d_model;
        let e = self.cfg.experts;
        let flat = x.reshape([-1, d]);
        let routed = flat.index_select(0, &r.token_index);
        let buffer = Tensor::zeros([e * r.slots_per_expert, d], (x.kind(), x.device()))
            .index_copy(0, &r.slot_index, &routed)
            .view([e, r.slots_per_expert, d]);
        let h = self.cfg.activation.apply(&(buffer.bmm(&self.w1) + &self.b1));
        let out = (h.bmm(&self.w2) + &self.b2).view([e * r.slots_per_expert, d]);
        let weighted = out.index_select(0, &r.slot_index) * r.combine_weight.unsqueeze(1).to_kind(x.kind());
        Tensor::zeros([flat.size()[0], d], (x.kind(), x.device()))
            .index_add(0, &r.token_index, &weighted)
            .view(s.as_slice())
    }
}

/// A dense two-layer FFN `Linear(d, h) → act → Linear(h, d)`: the baseline with the same active
/// parameters as a routed layer (for the benchmark).
#[derive(Debug)]
pub struct DenseFfn {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl DenseFfn {
    /// Creates `fc1`, `fc2` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, d: i64, h: i64, act: Activation) -> Self {
        let p = path.borrow();
        DenseFfn {
            fc1: Linear::new(p / "fc1", LinearConfig::new(d, h)),
            fc2: Linear::new(p / "fc2", LinearConfig::new(h, d)),
            act,
        }
    }
}

impl nn::Module for DenseFfn {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc2.forward(&self.act.apply(&self.fc1.forward(xs)))
    }
}

/// The tokens a routing gives each expert, as `[E]` lists of flat token indices (host side;
/// for tests and autopsies).
pub fn tokens_of_each_expert(r: &Routing) -> Vec<Vec<i64>> {
    let toks = Vec::<i64>::try_from(r.token_index.to_device(tch::Device::Cpu)).unwrap_or_default();
    let exps = Vec::<i64>::try_from(r.expert_index.to_device(tch::Device::Cpu)).unwrap_or_default();
    let mut out = vec![Vec::new(); r.experts as usize];
    for (t, e) in toks.into_iter().zip(exps) {
        out[e as usize].push(t);
    }
    out
}
