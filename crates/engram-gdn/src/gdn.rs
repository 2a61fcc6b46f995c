//! The `G` layer: a gated delta-rule memory in the seed's or the standard flavour.

use crate::blocks::{causal_conv, l2norm, linear, linear_const_bias, project, rope, shift_right, RmsNorm};
use crate::config::{GdnFlavour, HybridConfig};
use crate::delta::{delta_rule, DeltaRuleOptions, Semantics};
use crate::Result;
use engram_layers::Linear;
use tch::{nn, Kind, Tensor};

/// What a G layer wrote, aligned so that the state after step t may be read at position t
/// (shifted values are already folded in). S layers read it causally.
#[derive(Debug)]
pub(crate) struct WriteStream {
    pub keys: Tensor,
    pub values: Tensor,
    /// As given to the op: a factor (seed) or a log decay (standard).
    pub gate: Tensor,
    pub beta: Tensor,
    pub semantics: Semantics,
    /// State before the first step of this call (None = zeros).
    pub initial_state: Option<Tensor>,
    /// State after the last step.
    pub final_state: Tensor,
    /// The G layer's own queries (standard flavour).
    pub queries: Option<Tensor>,
}

impl WriteStream {
    /// Decay as a factor in (0, 1].
    pub fn decay_factor(&self) -> Tensor {
        match self.semantics {
            Semantics::Seed => self.gate.shallow_clone(),
            _ => self.gate.to_kind(Kind::Float).exp(),
        }
    }
}

/// Per-layer decoding cache: recurrent state, conv inputs and the last step for shifted values.
#[derive(Debug, Default)]
pub(crate) struct GdnCache {
    pub state: Option<Tensor>,
    pub conv: Vec<Option<Tensor>>,
    pub shift: Option<(Tensor, Tensor, Tensor)>,
}

#[derive(Debug)]
enum KeyPath {
    Proj(Linear),
    /// Seed `key_conv_width > 1`: a full causal Conv1d(D, H·K, W) replacing `k_proj`.
    Conv(Tensor),
}

#[derive(Debug)]
enum Flavour {
    Seed { k: KeyPath, v_proj: Linear, beta_proj: Linear, g_proj: Linear },
    Standard {
        q_proj: Linear,
        k_proj: Linear,
        v_proj: Linear,
        q_conv: Tensor,
        k_conv: Tensor,
        v_conv: Tensor,
        a_proj: Linear,
        b_proj: Linear,
        a_log: Tensor,
        dt_bias: Tensor,
        gate_proj: Linear,
        o_norm: RmsNorm,
    },
}

/// A pre-norm gated delta-rule layer with its residual.
#[derive(Debug)]
pub(crate) struct GdnLayer {
    cfg: HybridConfig,
    norm: RmsNorm,
    flavour: Flavour,
    o_proj: Linear,
}

impl GdnLayer {
    pub fn new(p: &nn::Path, cfg: &HybridConfig) -> Self {
        let (d, h, k, v) = (cfg.d_model, cfg.heads, cfg.key_dim, cfg.value_dim);
        let norm = RmsNorm::new(&(p / "norm"), d, cfg.norm_eps);
        let (flavour, o_proj) = match cfg.flavour {
            GdnFlavour::Seed => {
                let kp = if cfg.key_conv_width > 1 {
                    let mut w = (p / "k_conv").zeros("weight", &[h * k, d, cfg.key_conv_width]);
                    engram_layers::init::kaiming_uniform_(&mut w, 5f64.sqrt());
                    KeyPath::Conv(w)
                } else {
                    KeyPath::Proj(linear(p, "k_proj", d, h * k))
                };
                let v_proj = linear(p, "v_proj", d, h * v);
                let o_proj = linear(p, "o_proj", h * v, d);
                let beta_proj = linear_const_bias(p, "beta_proj", d, h, cfg.beta_bias);
                let g_proj = linear_const_bias(p, "g_proj", d, h, cfg.g_bias);
                (Flavour::Seed { k: kp, v_proj, beta_proj, g_proj }, o_proj)
            }
            GdnFlavour::Standard => {
                let q_proj = linear(p, "q_proj", d, h * k);
                let k_proj = linear(p, "k_proj", d, h * k);
                let v_proj = linear(p, "v_proj", d, h * v);
                let conv = |name: &str, c: i64| {
                    let mut w = (p / name).zeros("weight", &[c, 1, cfg.conv_width]);
                    engram_layers::init::kaiming_uniform_(&mut w, 5f64.sqrt());
                    w
                };
                let q_conv = conv("q_conv", h * k);
                let k_conv = conv("k_conv", h * k);
                let v_conv = conv("v_conv", h * v);
                let a_proj = linear(p, "a_proj", d, h);
                let b_proj = linear_const_bias(p, "b_proj", d, h, cfg.beta_bias);
                // Mamba-2 / GDN init: A ~ U(1, 16), dt ~ logU(1e-3, 1e-1) stored as softplus⁻¹(dt).
                let mut a = Tensor::empty([h], (Kind::Float, p.device()));
                let _ = a.uniform_(1.0, 16.0);
                let a_log = p.var_copy("A_log", &a.log());
                let mut u = Tensor::empty([h], (Kind::Float, p.device()));
                let _ = u.uniform_(0.0, 1.0);
                let dt = (u * (0.1f64.ln() - 0.001f64.ln()) + 0.001f64.ln()).exp().clamp_min(1e-4);
                let inv_softplus = &dt + dt.neg().expm1().neg().log();
                let dt_bias = p.var_copy("dt_bias", &inv_softplus);
                let gate_proj = linear(p, "gate_proj", d, h * v);
                let o_norm = RmsNorm::new(&(p / "o_norm"), v, cfg.norm_eps);
                let o_proj = linear(p, "o_proj", h * v, d);
                (
                    Flavour::Standard {
                        q_proj, k_proj, v_proj, q_conv, k_conv, v_conv, a_proj, b_proj, a_log, dt_bias, gate_proj, o_norm,
                    },
                    o_proj,
                )
            }
        };
        GdnLayer { cfg: cfg.clone(), norm, flavour, o_proj }
    }

    /// `x [B,T,D]` → (`x + out`, what was written). `initial_state` threads the seed's state
    /// between G layers in `seed_compat` mode; `cache` makes the call incremental (decoding).
    pub fn forward(&self, x: &Tensor, initial_state: Option<&Tensor>, pos: i64, mut cache: Option<&mut GdnCache>) -> Result<(Tensor, WriteStream)> {
        let (b, t, _) = x.size3()?;
        let c = &self.cfg;
        let (h, kd, vd) = (c.heads, c.key_dim, c.value_dim);
        let xn = self.norm.forward(x);
        let dev = x.device();
        let kind = x.kind();
        let mut take_conv = |i: usize| -> Option<Tensor> {
            cache.as_deref_mut().and_then(|c| c.conv.get_mut(i).and_then(|s| s.take()))
        };
        let mut new_conv: Vec<Option<Tensor>> = Vec::new();
        let (q, k, v, gate, beta, semantics) = match &self.flavour {
            Flavour::Seed { k: kp, v_proj, beta_proj, g_proj } => {
                let k_raw = match kp {
                    KeyPath::Proj(l) => project(l, &xn),
                    KeyPath::Conv(w) => {
                        let (y, prev) = causal_conv(&xn, w, 1, take_conv(0).as_ref());
                        new_conv.push(prev);
                        y
                    }
                };
                let mut k = k_raw.reshape([b, t, h, kd]);
                if c.rope_on_keys {
                    k = rope(&k, pos, c.rope_base);
                }
                let k = l2norm(&k);
                let v = project(v_proj, &xn).view([b, t, h, vd]);
                // Gates in fp32 even under bf16 activations: g ≈ 0.88 has a bf16 step of 0.004,
                // which compounds over hundreds of tokens of decay.
                let beta = project(beta_proj, &xn).to_kind(Kind::Float).sigmoid();
                let g = project(g_proj, &xn).to_kind(Kind::Float).sigmoid();
                (None, k, v, g, beta, Semantics::Seed)
            }
            Flavour::Standard { q_proj, k_proj, v_proj, q_conv, k_conv, v_conv, a_proj, b_proj, a_log, dt_bias, gate_proj: _, o_norm: _ } => {
                let mut conv = |l: &Linear, w: &Tensor, i: usize| {
                    let (y, prev) = causal_conv(&project(l, &xn), w, w.size()[0], take_conv(i).as_ref());
                    new_conv.push(prev);
                    y.silu()
                };
                let q = l2norm(&conv(q_proj, q_conv, 0).reshape([b, t, h, kd]));
                let k = l2norm(&conv(k_proj, k_conv, 1).reshape([b, t, h, kd]));
                let v = conv(v_proj, v_conv, 2).reshape([b, t, h, vd]);
                let beta = project(b_proj, &xn).to_kind(Kind::Float).sigmoid();
                let a = (project(a_proj, &xn).to_kind(Kind::Float) + dt_bias).softplus();
                let g = a * a_log.exp().neg();
                (Some(q), k, v, g, beta, Semantics::Standard)
            }
        };
        // Shifted values: step t writes (k_{t-1}, v_t) with the gates of t-1, so the state after
        // step t holds tokens ≤ t only; step 0 is an identity write (β=0, decay factor 1).
        let (k, gate, beta) = if c.shifted_value {
            let (k0, b0, g0) = match cache.as_deref_mut().and_then(|c| c.shift.take()) {
                Some(prev) => prev,
                None => {
                    let g_id = if semantics == Semantics::Seed { 1.0 } else { 0.0 };
                    (
                        Tensor::zeros([b, 1, h, kd], (kind, dev)),
                        Tensor::zeros([b, 1, h], (beta.kind(), dev)),
                        Tensor::full([b, 1, h], g_id, (gate.kind(), dev)),
                    )
                }
            };
            let (k_s, k_last) = shift_right(&k, &k0);
            let (b_s, b_last) = shift_right(&beta, &b0);
            let (g_s, g_last) = shift_right(&gate, &g0);
            if let Some(cache) = cache.as_deref_mut() {
                cache.shift = Some((k_last, b_last, g_last));
            }
            (k_s, g_s, b_s)
        } else {
            (k, gate, beta)
        };
        let init = match cache.as_deref_mut().and_then(|c| c.state.take()) {
            Some(s) => Some(s),
            None => initial_state.map(|s| s.shallow_clone()),
        };
        let scale = if semantics == Semantics::Seed { 1.0 } else { (kd as f64).powf(-0.5) };
        let read = q.as_ref().unwrap_or(&k);
        let opts = DeltaRuleOptions {
            scale: Some(scale),
            initial_state: init.as_ref().map(|s| s.shallow_clone()),
            output_final_state: true,
            chunk_size: c.chunk_size,
            semantics,
            ..Default::default()
        };
        let (o, fin) = delta_rule(read, &k, &v, &gate, &beta, &opts)?;
        let fin = fin.ok_or_else(|| crate::GdnError::Input("delta_rule returned no final state".into()))?;
        let o = o.to_kind(kind);
        let o = match &self.flavour {
            Flavour::Standard { gate_proj, o_norm, .. } => {
                o_norm.forward(&o) * project(gate_proj, &xn).view([b, t, h, vd]).silu()
            }
            Flavour::Seed { .. } => o,
        };
        let out = x + project(&self.o_proj, &o.reshape([b, t, h * vd]));
        if let Some(cache) = cache {
            cache.state = Some(fin.shallow_clone());
            cache.conv = new_conv;
        }
        Ok((out, WriteStream { keys: k, values: v, gate, beta, semantics, initial_state: init, final_state: fin, queries: q }))
    }
}
