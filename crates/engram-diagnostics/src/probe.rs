//! What the diagnostics need from a model: the [`Probeable`] trait and a model-agnostic
//! [`Trace`] of the recurrent layers' internals.
//!
//! The suites never see a concrete architecture, so the same code measures the hybrid model of
//! `engram-gdn`, a constructed model with known behaviour (see [`crate::toy`]) or anything else
//! that can turn token ids into next-token logits.

use anyhow::Result;
use tch::Tensor;

/// The internals of one layer for one forward pass.
#[derive(Debug)]
pub enum LayerTrace {
    /// A delta-rule (GDN) layer.
    Gdn {
        /// Write keys `[B,T,H,K]` (L2-normalised in the models we know; the probes do not assume it).
        keys: Tensor,
        /// Read queries `[B,T,H,K]` when they differ from the keys.
        queries: Option<Tensor>,
        /// Write strength β `[B,T,H]`.
        beta: Tensor,
        /// Retention (decay) `[B,T,H]`, in `(0, 1]`: the factor the old state is multiplied by.
        decay: Tensor,
        /// The state after the last token `[B,H,K,V]`.
        final_state: Tensor,
    },
    /// A sliding-window attention layer.
    Swa {
        /// Entropy (nats) of each query's local attention `[B,H,T]`, when the layer reports it.
        attn_entropy: Option<Tensor>,
    },
}

/// The per-layer internals of one forward pass, in layer order.
#[derive(Debug, Default)]
pub struct Trace {
    /// One entry per layer.
    pub layers: Vec<LayerTrace>,
}

impl Trace {
    /// The GDN layers with their layer index.
    pub fn gdn_layers(&self) -> impl Iterator<Item = (usize, &LayerTrace)> {
        self.layers.iter().enumerate().filter(|(_, l)| matches!(l, LayerTrace::Gdn { .. }))
    }
}

/// A model the diagnostics can probe.
///
/// Only [`Probeable::logits`] is required for the retrieval suites; the mechanism probes use
/// [`Probeable::trace`] and [`Probeable::parameters`] when the model offers them and report
/// "not applicable" otherwise.
pub trait Probeable {
    /// A short human-readable name for tables and plots.
    fn name(&self) -> String;
    /// Number of token ids; inputs are in `[0, vocab_size)`.
    fn vocab_size(&self) -> i64;
    /// The attention window in tokens, if the model has one (`None`: no window / unlimited).
    fn window(&self) -> Option<i64>;
    /// The longest sequence the model accepts, if limited.
    fn max_seq_len(&self) -> Option<i64> {
        None
    }
    /// The device inputs must be on.
    fn device(&self) -> tch::Device {
        tch::Device::Cpu
    }
    /// Next-token logits `[B,T,V]` for `tokens` `[B,T]` (i64). Position `t` predicts token `t+1`.
    fn logits(&self, tokens: &Tensor) -> Result<Tensor>;
    /// Logits and the internal trace; `Ok(None)` when the model has no trace to offer.
    fn trace(&self, tokens: &Tensor) -> Result<Option<(Tensor, Trace)>> {
        let _ = tokens;
        Ok(None)
    }
    /// Trainable parameters by name, for gradient probes (empty when the model has none).
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Whether value writes are shifted (the key of token `t−1` stores the value of token `t`),
    /// as in the seed's `shifted_value` mode. Probes that look for writes use it.
    fn shifted_values(&self) -> bool {
        false
    }
}
