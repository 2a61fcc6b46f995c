//! The `S` layer: causal sliding-window attention plus a gated read of the latest G layer's state.

use crate::blocks::{linear, linear_const_bias, project, rope, RmsNorm};
use crate::config::HybridConfig;
use crate::delta::{delta_rule, seed_to_standard, DeltaRuleOptions, Semantics};
use crate::gdn::WriteStream;
use crate::Result;
use engram_layers::Linear;
use tch::{nn, Kind, Tensor};

/// Decoding cache: the last `window` keys and values `[B,H,≤W,hd]`.
#[derive(Debug, Default)]
pub(crate) struct SwaCache {
    pub keys: Option<Tensor>,
    pub values: Option<Tensor>,
}

/// Sliding-window attention layer with the retrieval path (spec §2.7).
#[derive(Debug)]
pub(crate) struct SwaLayer {
    cfg: HybridConfig,
    norm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    global_q_proj: Linear,
    retrieval_o_proj: Linear,
    gate_proj: Linear,
}

impl SwaLayer {
    pub fn new(p: &nn::Path, cfg: &HybridConfig) -> Self {
        let (d, h, k, v) = (cfg.d_model, cfg.heads, cfg.key_dim, cfg.value_dim);
        let q_proj = linear(p, "q_proj", d, d);
        let k_proj = linear(p, "k_proj", d, d);
        let v_proj = linear(p, "v_proj", d, d);
        let o_proj = linear(p, "o_proj", d, d);
        let global_q_proj = linear(p, "global_q_proj", d, h * k);
        tch::no_grad(|| {
            let _ = global_q_proj.weight.shallow_clone().normal_(0.0, cfg.init_std);
        });
        let retrieval_o_proj = linear(p, "retrieval_o_proj", h * v, d);
        let gate_proj = linear_const_bias(p, "gate_proj", d, h, cfg.gate_bias);
        let norm = RmsNorm::new(&(p / "norm"), d, cfg.norm_eps);
        SwaLayer { cfg: cfg.clone(), norm, q_proj, k_proj, v_proj, o_proj, global_q_proj, retrieval_o_proj, gate_proj }
    }

    /// `x [B,T,D]` at absolute positions `pos..pos+T` → (`x + local + retrieval`, attention
    /// entropy `[B,H,T]` when asked). `writes` is the latest G layer's stream (None before any G);
    /// `seed_compat` reads its final state at every position instead of the causal per-position read.
    pub fn forward(
        &self,
        x: &Tensor,
        writes: Option<&WriteStream>,
        pos: i64,
        cache: Option<&mut SwaCache>,
        want_entropy: bool,
        seed_compat: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let c = &self.cfg;
        let (b, t, d) = x.size3()?;
        let (h, hd) = (c.heads, c.attn_head_dim());
        let xn = self.norm.forward(x);
        let heads = |l: &Linear| project(l, &xn).view([b, t, h, hd]);
        let (mut q, mut k, v) = (heads(&self.q_proj), heads(&self.k_proj), heads(&self.v_proj));
        if c.swa_rope {
            q = rope(&q, pos, c.rope_base);
            k = rope(&k, pos, c.rope_base);
        }
        let (q, mut k, mut v) = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)); // [B,H,T,hd]
        let mut past = 0;
        if let Some(cache) = cache {
            if let (Some(pk), Some(pv)) = (cache.keys.take(), cache.values.take()) {
                past = pk.size()[2];
                k = Tensor::cat(&[&pk.to_kind(k.kind()), &k], 2);
                v = Tensor::cat(&[&pv.to_kind(v.kind()), &v], 2);
            }
            let total = past + t;
            let keep = total.min(c.window);
            cache.keys = Some(k.narrow(2, total - keep, keep));
            cache.values = Some(v.narrow(2, total - keep, keep));
        }
        // Query i (absolute pos+i) sees key j (absolute pos-past+j) iff 0 ≤ qpos-kpos ≤ window.
        let dev = x.device();
        let qpos = Tensor::arange_start(past, past + t, (Kind::Int64, dev)).unsqueeze(1);
        let kpos = Tensor::arange(past + t, (Kind::Int64, dev)).unsqueeze(0);
        let diff = qpos - kpos;
        let allowed = diff.ge(0).logical_and(&diff.le(c.window));
        let scale = (hd as f64).powf(-0.5);
        let (att, entropy) = if want_entropy {
            let scores = q.to_kind(Kind::Float).matmul(&k.to_kind(Kind::Float).transpose(-2, -1)) * scale;
            let scores = scores.masked_fill(&allowed.logical_not(), f64::NEG_INFINITY);
            let p = scores.softmax(-1, Kind::Float);
            let ent = -(&p * p.clamp_min(1e-30).log()).sum_dim_intlist(-1, false, Kind::Float);
            (p.matmul(&v.to_kind(Kind::Float)).to_kind(x.kind()), Some(ent))
        } else {
            (Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&allowed), 0.0, false, scale, false), None)
        };
        let local = project(&self.o_proj, &att.transpose(1, 2).reshape([b, t, d]));
        let mut out = x + local;
        if let Some(ws) = writes {
            let qg = project(&self.global_q_proj, &xn).view([b, t, h, c.key_dim]).relu();
            let retrieved = if seed_compat {
                // The seed's read: the final state, at every position (non-causal, spec §2.9).
                Tensor::einsum("bhkv,bthk->bthv", &[&ws.final_state.to_kind(qg.kind()), &qg], None::<i64>)
            } else {
                // Causal read: o_t = S_tᵀ q_t with S_t the G state after step t. The seed
                // semantics only reads with the write key, so the seed's writes go through the
                // exact seed → standard map (same states) and are read with q_g, unscaled.
                let opts = DeltaRuleOptions {
                    scale: Some(1.0),
                    initial_state: ws.initial_state.as_ref().map(|s| s.shallow_clone()),
                    output_final_state: false,
                    chunk_size: c.chunk_size,
                    semantics: Semantics::Standard,
                    ..Default::default()
                };
                let qg = qg.to_kind(ws.keys.kind());
                match ws.semantics {
                    Semantics::Seed => {
                        let (_, k, v, g, beta) = seed_to_standard(&ws.keys, &ws.values, &ws.gate, &ws.beta);
                        delta_rule(&qg, &k, &v, &g, &beta, &opts)?.0
                    }
                    Semantics::Standard => delta_rule(&qg, &ws.keys, &ws.values, &ws.gate, &ws.beta, &opts)?.0,
                }
            };
            let r = project(&self.retrieval_o_proj, &retrieved.to_kind(x.kind()).reshape([b, t, h * c.value_dim]));
            let gate = project(&self.gate_proj, &xn).sigmoid().mean_dim(-1, true, r.kind());
            out = out + r * gate;
        }
        Ok((out, entropy))
    }
}
