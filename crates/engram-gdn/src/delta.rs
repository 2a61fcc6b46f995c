//! The delta-rule op used by the G layers and the retrieval reads.
//!
//! TEMPORARY: engram-core's `ops::delta_rule` (issue 11) is being written in parallel. Until it
//! lands this module provides the same signature with a plain token-by-token recurrence so the
//! model can be built and tested; it is replaced by a re-export of the core op.

use tch::{Kind, Tensor};

/// How `g` is read and how the output is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantics {
    /// Gated DeltaNet: `g` is a log decay, `S_t = e^{g_t}(I − β_t k_t k_tᵀ)S_{t−1} + β_t k_t v_tᵀ`,
    /// `o_t = scale·S_tᵀ q_t`.
    #[default]
    Standard,
    /// The seed: `g` is a factor, `S_t = g_t S_{t−1} + β_t k_t (v_t − S_{t−1}ᵀ k_t)`, `o_t = scale·S_tᵀ q_t`.
    Seed,
}

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Best available.
    #[default]
    Auto,
}

/// Options of [`delta_rule`].
#[derive(Debug, Default)]
pub struct DeltaRuleOptions {
    /// Output scale (default `K^-0.5`).
    pub scale: Option<f64>,
    /// Initial state `[B,H,K,V]`.
    pub initial_state: Option<Tensor>,
    /// Return the final state.
    pub output_final_state: bool,
    /// Chunk size.
    pub chunk_size: i64,
    /// Implementation.
    pub backend: Backend,
    /// Recurrence semantics.
    pub semantics: Semantics,
}

/// Token-loop placeholder with the core op's signature.
pub fn delta_rule(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: &Tensor,
    beta: &Tensor,
    opts: &DeltaRuleOptions,
) -> engram_core::Result<(Tensor, Option<Tensor>)> {
    let (b, t, h, kd) = k.size4()?;
    let vd = v.size()[3];
    let out_kind = v.kind();
    let scale = opts.scale.unwrap_or((kd as f64).powf(-0.5));
    let (q, k, v, g, beta) = (
        q.to_kind(Kind::Float),
        k.to_kind(Kind::Float),
        v.to_kind(Kind::Float),
        g.to_kind(Kind::Float),
        beta.to_kind(Kind::Float),
    );
    let mut s = match &opts.initial_state {
        Some(s0) => s0.to_kind(Kind::Float),
        None => Tensor::zeros([b, h, kd, vd], (Kind::Float, k.device())),
    };
    let mut outs = Vec::with_capacity(t as usize);
    for i in 0..t {
        let kt = k.select(1, i); // [B,H,K]
        let vt = v.select(1, i);
        let qt = q.select(1, i);
        let gt = g.select(1, i).unsqueeze(-1).unsqueeze(-1);
        let bt = beta.select(1, i).unsqueeze(-1);
        let pred = |s: &Tensor| (s * kt.unsqueeze(-1)).sum_dim_intlist(-2, false, Kind::Float); // [B,H,V]
        s = match opts.semantics {
            Semantics::Seed => {
                let err = (&vt - pred(&s)) * &bt;
                &s * &gt + kt.unsqueeze(-1) * err.unsqueeze(-2)
            }
            Semantics::Standard => {
                let sd = &s * gt.exp();
                let err = (&vt - pred(&sd)) * &bt;
                sd + kt.unsqueeze(-1) * err.unsqueeze(-2)
            }
        };
        outs.push((&s * qt.unsqueeze(-1)).sum_dim_intlist(-2, false, Kind::Float) * scale);
    }
    let o = Tensor::stack(&outs, 1).to_kind(out_kind);
    Ok((o, opts.output_final_state.then(|| s.to_kind(out_kind))))
}
