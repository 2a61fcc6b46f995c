//! The gated delta rule: a token-by-token reference, a chunkwise-parallel tch path and the
//! dispatch to the optional CUDA kernel.
//!
//! # Two semantics
//!
//! Per batch element and head, with a state `S ∈ ℝ^{K×V}`:
//!
//! * [`Semantics::Standard`] (Gated DeltaNet, fla's `chunk_gated_delta_rule`), `g` a log decay:
//!   `S_t = exp(g_t)·(I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ`,  `o_t = scale · S_tᵀ q_t`.
//! * [`Semantics::Seed`] (GroundThink v7's `chunk_delta_rule`), `g ∈ (0, 1)` a sigmoid, not a log:
//!   `S_t = g_t S_{t−1} + β_t k_t (v_t − S_{t−1}ᵀ k_t)ᵀ`,  `o_t = S_tᵀ k_t` (read after write, with
//!   the write key, unscaled). The prediction uses the *undecayed* state, so along `k_t` the
//!   eigenvalue is `g_t − β_t`, not `g_t(1 − β_t)`.
//!
//! # The seed as a standard rule
//!
//! Writing the seed update as `S_t = (g_t I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ` and the standard
//! one as `S_t = a_t I S_{t−1} − a_t β'_t k_t k_tᵀ S_{t−1} + β'_t k_t v'_tᵀ`, the two agree for every
//! state exactly when `a_t = g_t`, `a_t β'_t = β_t` and `β'_t v'_t = β_t v_t`, i.e.
//! `log-decay = ln g_t`, `β'_t = β_t / g_t`, `v'_t = g_t v_t`, and with `q = k`, `scale = 1` the
//! outputs agree too. [`seed_to_standard`] applies this map; it is how the CUDA kernel (standard
//! only) serves the seed. Two caveats: `β' = β/g` exceeds 1 whenever `β > g` (harmless: the
//! standard rule never assumes `β ≤ 1`), and `g → 0` is singular (`β' → ∞`, `v' → 0` while their
//! product stays `β v`). The map therefore floors `g` at [`SEED_G_FLOOR`]; this perturbs only the
//! decay of the old state, by less than `SEED_G_FLOOR·|S|` per step. The tch paths do not use the
//! map: they run the seed rule natively (see [`chunked`]) and need no floor beyond `g ≥ 1e-30`.
//!
//! # Example
//! ```
//! use engram_core::ops::delta_rule::{delta_rule, DeltaRuleOptions};
//! use tch::{Device, Kind, Tensor};
//! let (b, t, h, k, v) = (1, 10, 2, 4, 3);
//! let opts = (Kind::Float, Device::Cpu);
//! let q = Tensor::randn([b, t, h, k], opts);
//! let kk = Tensor::randn([b, t, h, k], opts).softmax(-1, Kind::Float);
//! let vv = Tensor::randn([b, t, h, v], opts);
//! let g = Tensor::rand([b, t, h], opts).log_sigmoid();
//! let beta = Tensor::rand([b, t, h], opts).sigmoid();
//! let o_opts = DeltaRuleOptions { output_final_state: true, ..Default::default() };
//! let (o, state) = delta_rule(&q, &kk, &vv, &g, &beta, &o_opts).unwrap();
//! assert_eq!(o.size(), vec![b, t, h, v]);
//! assert_eq!(state.unwrap().size(), vec![b, h, k, v]);
//! // Bad input is an error, not an abort.
//! assert!(delta_rule(&q, &kk, &vv.narrow(1, 0, 5), &g, &beta, &o_opts).is_err());
//! ```

pub mod chunked;
pub mod cuda;
pub mod recurrent;
mod validate;

use crate::{Error, Result};
use std::sync::Once;
use tch::{Kind, Tensor};

pub use validate::Dims;

/// Which recurrence [`delta_rule`] computes (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantics {
    /// The standard gated delta rule (log-space decay `g ≤ 0`, `o_t = scale·S_tᵀ q_t`).
    #[default]
    Standard,
    /// GroundThink v7's rule (`g ∈ (0,1)` a sigmoid, prediction on the undecayed state,
    /// `o_t = S_tᵀ k_t`). `q` must hold the same values as `k` (pass `k` as `q`).
    Seed,
}

/// Which implementation [`delta_rule`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The CUDA kernel when the tensors are on CUDA, the library is loaded and the shape, dtype
    /// and chunk length are supported ([`cuda::supports`]: K, V ∈ {64, 128}, f32/bf16/f16,
    /// chunk 64, T > 0); the chunked tch path otherwise.
    #[default]
    Auto,
    /// The token-by-token reference ([`recurrent`]): O(T) sequential steps.
    Recurrent,
    /// The chunkwise-parallel tch path ([`chunked`]): O(T/C) sequential steps.
    Chunked,
    /// The CUDA kernel; an error when it cannot run.
    Cuda,
}

/// Default chunk length of the chunked paths.
pub const DEFAULT_CHUNK_SIZE: i64 = 64;

/// Floor applied to the seed's `g` by [`seed_to_standard`] (where `β' = β/g` would blow up).
pub const SEED_G_FLOOR: f64 = 1e-6;

/// Options of [`delta_rule`].
#[derive(Debug)]
pub struct DeltaRuleOptions {
    /// Which recurrence.
    pub semantics: Semantics,
    /// Output scale. Standard: `None` means `K^-0.5`. Seed: must be `None` or `1.0` (the seed's
    /// output is unscaled).
    pub scale: Option<f64>,
    /// Initial state `[B, H, K, V]` (zeros when `None`).
    pub initial_state: Option<Tensor>,
    /// Whether to return the final state `[B, H, K, V]`.
    pub output_final_state: bool,
    /// Chunk length of the chunked paths and the kernel (default 64); must be positive.
    pub chunk_size: i64,
    /// Which implementation.
    pub backend: Backend,
}

impl Default for DeltaRuleOptions {
    fn default() -> Self {
        DeltaRuleOptions {
            semantics: Semantics::Standard,
            scale: None,
            initial_state: None,
            output_final_state: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            backend: Backend::Auto,
        }
    }
}

/// The gated delta rule over a whole sequence.
///
/// Shapes: `q`, `k` `[B,T,H,K]`, `v` `[B,T,H,V]`, `g` and `beta` `[B,T,H]`, all on one device;
/// `q`, `k`, `v` share one float dtype (f32, f64, bf16 or f16); `g`, `beta` and the initial
/// state may be any float dtype. Returns `o` `[B,T,H,V]` in the dtype of `v` and, when asked
/// for, the final state `[B,H,K,V]` in the accumulation dtype (f64 for f64 inputs, else f32).
/// The tch paths compute in that accumulation dtype. Everything is differentiable (tch
/// autograd, or the kernel's own backward) with respect to q, k, v, g, beta and the initial
/// state.
///
/// Errors (never aborts): wrong ranks or sizes, mixed devices or dtypes, `chunk_size ≤ 0`, a
/// non-finite scale, a scale other than 1 or a `q` different from `k` with
/// [`Semantics::Seed`], and, for [`Backend::Cuda`], no kernel or an unsupported shape.
pub fn delta_rule(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: &Tensor,
    beta: &Tensor,
    opts: &DeltaRuleOptions,
) -> Result<(Tensor, Option<Tensor>)> {
    let dims = validate::check(q, k, v, g, beta, opts.initial_state.as_ref())?;
    if opts.chunk_size <= 0 {
        return Err(Error::InvalidArgument(format!("chunk_size must be positive, got {}", opts.chunk_size)));
    }
    let scale = resolve_scale(opts, &dims)?;
    if opts.semantics == Semantics::Seed {
        validate::same_values("q", q, "k", k)?;
    }
    let h0 = opts.initial_state.as_ref();
    let use_cuda = match opts.backend {
        Backend::Cuda => {
            cuda::ensure_runnable(q, v, opts.chunk_size)?;
            true
        }
        Backend::Auto => cuda::supports(q, v, opts.chunk_size),
        Backend::Recurrent | Backend::Chunked => false,
    };
    let (o, state) = if use_cuda {
        log_path_once(&CUDA_ONCE, "CUDA kernel");
        let (q, k, v, g, beta) = match opts.semantics {
            Semantics::Standard => (q.shallow_clone(), k.shallow_clone(), v.shallow_clone(), g.shallow_clone(), beta.shallow_clone()),
            Semantics::Seed => seed_to_standard(k, v, g, beta),
        };
        let (o, st) = cuda::forward(&q, &k, &v, &g, &beta, h0, scale, opts.chunk_size, opts.output_final_state)?;
        (o.to_kind(v.kind()), st)
    } else if opts.backend == Backend::Recurrent {
        log_path_once(&RECURRENT_ONCE, "token-by-token reference (tch)");
        let r = match opts.semantics {
            Semantics::Standard => recurrent::standard(q, k, v, g, beta, scale, h0)?,
            Semantics::Seed => recurrent::seed(k, v, g, beta, h0)?,
        };
        (r.0, Some(r.1))
    } else {
        log_path_once(&CHUNKED_ONCE, "chunked tch path");
        let r = match opts.semantics {
            Semantics::Standard => chunked::standard(q, k, v, g, beta, scale, h0, opts.chunk_size)?,
            Semantics::Seed => chunked::seed(k, v, g, beta, h0, opts.chunk_size)?,
        };
        (r.0, Some(r.1))
    };
    let state = if opts.output_final_state {
        match state {
            Some(s) => Some(s.to_kind(crate::dtype::accum_kind(v.kind()))),
            None => return Err(Error::Kernel("the kernel returned no final state although one was requested".into())),
        }
    } else {
        None
    };
    Ok((o, state))
}

fn resolve_scale(opts: &DeltaRuleOptions, dims: &Dims) -> Result<f64> {
    match (opts.semantics, opts.scale) {
        (Semantics::Standard, None) => Ok((dims.k as f64).powf(-0.5)),
        (_, Some(s)) if !s.is_finite() => Err(Error::InvalidArgument(format!("scale must be finite, got {s}"))),
        (Semantics::Standard, Some(s)) => Ok(s),
        (Semantics::Seed, None) => Ok(1.0),
        (Semantics::Seed, Some(1.0)) => Ok(1.0),
        (Semantics::Seed, Some(s)) => Err(Error::InvalidArgument(format!(
            "the seed semantics has an unscaled output: scale must be None or 1.0, got {s}"
        ))),
    }
}

static CUDA_ONCE: Once = Once::new();
static CHUNKED_ONCE: Once = Once::new();
static RECURRENT_ONCE: Once = Once::new();

fn log_path_once(once: &'static Once, what: &str) {
    once.call_once(|| log::info!("delta_rule: running the {what}"));
}

/// Maps the seed's inputs `(k, v, g, β)` to a standard rule's `(q, k, v', log-decay, β')`
/// with `q = k`, `log-decay = ln g`, `β' = β/g`, `v' = g·v` (derivation in the module
/// documentation); use it with `scale = 1`. `g` is floored at [`SEED_G_FLOOR`] first. The map is
/// differentiable; `q` and `k` are the same tensor, so their gradients add up in `k`.
pub fn seed_to_standard(k: &Tensor, v: &Tensor, g: &Tensor, beta: &Tensor) -> (Tensor, Tensor, Tensor, Tensor, Tensor) {
    let gf = g.clamp_min(SEED_G_FLOOR);
    let log_g = gf.log();
    let beta_p = beta / &gf;
    let v_p = v * gf.unsqueeze(-1).to_kind(v.kind());
    (k.shallow_clone(), k.shallow_clone(), v_p, log_g, beta_p)
}

/// The kind the tch paths compute in for inputs of kind `k`.
pub(crate) fn compute_kind(k: Kind) -> Kind {
    crate::dtype::accum_kind(k)
}
