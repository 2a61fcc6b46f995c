//! [`HybridConfig`]: the architecture of a hybrid GDN + sliding-window-attention model.

use crate::{GdnError, Result};
use serde::{Deserialize, Serialize};

/// Which recurrence the `G` layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GdnFlavour {
    /// The seed's layer: no query (read with the write key), sigmoid β and g, prediction from the
    /// undecayed state (spec §2.3, §3.2).
    #[default]
    Seed,
    /// Gated DeltaNet as published: q/k/v projections, short causal depthwise conv, SiLU,
    /// L2-normalised q and k, log-space decay, gated RMS-normed output.
    Standard,
}

/// Architecture of a [`crate::HybridModel`]. Unknown JSON fields are rejected; every optional
/// field has the default named in its doc.
///
/// ```
/// use engram_gdn::HybridConfig;
/// let cfg: HybridConfig = serde_json::from_str(
///     r#"{"d_model":64,"heads":2,"key_dim":16,"value_dim":32,"vocab":256,"pattern":"GS","window":16}"#,
/// ).unwrap();
/// cfg.validate().unwrap();
/// assert!(serde_json::from_str::<HybridConfig>(r#"{"d_modle":64}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridConfig {
    /// Width of the residual stream.
    pub d_model: i64,
    /// Heads of both the delta-rule state and the local attention (local head dim = d_model/heads).
    pub heads: i64,
    /// Key dimension of the delta-rule state per head.
    pub key_dim: i64,
    /// Value dimension of the delta-rule state per head.
    pub value_dim: i64,
    /// Vocabulary size.
    pub vocab: i64,
    /// Layer pattern over {G, S}: G = gated delta-rule layer, S = sliding-window attention.
    pub pattern: String,
    /// Sliding window: each query sees itself and the `window` previous tokens.
    pub window: i64,
    /// Chunk size of the delta-rule op. Default 64.
    #[serde(default = "d_chunk")]
    pub chunk_size: i64,
    /// Bias of the write-strength projection (β = sigmoid). Default -2 (β ≈ 0.12).
    #[serde(default = "d_beta_bias")]
    pub beta_bias: f64,
    /// Bias of the retention projection of the seed flavour (g = sigmoid). Default 2 (g ≈ 0.88).
    #[serde(default = "d_g_bias")]
    pub g_bias: f64,
    /// Bias of the S layers' retrieval gate. Default 1 (sigmoid ≈ 0.73).
    #[serde(default = "d_gate_bias")]
    pub gate_bias: f64,
    /// `seed` or `standard`. Default `seed`.
    #[serde(default)]
    pub flavour: GdnFlavour,
    /// Store `(k_t, v_{t+1})` instead of `(k_t, v_t)` (spec §2.4). Default true.
    #[serde(default = "d_true")]
    pub shifted_value: bool,
    /// Rotary position embedding on the keys of the G layers (seed flavour, spec §2.5). Default false.
    #[serde(default)]
    pub rope_on_keys: bool,
    /// Rotary position embedding on the local queries and keys of S layers. Default false.
    #[serde(default)]
    pub swa_rope: bool,
    /// RoPE base. Default 10000.
    #[serde(default = "d_rope_base")]
    pub rope_base: f64,
    /// Seed flavour: width of a causal conv that replaces `k_proj` (1 = plain projection). Default 1.
    #[serde(default = "d_one")]
    pub key_conv_width: i64,
    /// Standard flavour: width of the short causal depthwise conv on q, k, v. Default 4.
    #[serde(default = "d_four")]
    pub conv_width: i64,
    /// Reproduce the seed's non-causal reads: S layers read the *final* G state at every position
    /// and G layers start from the previous G layer's final state (spec §2.9). Default false.
    #[serde(default)]
    pub seed_compat: bool,
    /// Share the embedding with the LM head. Default true.
    #[serde(default = "d_true")]
    pub tie_embeddings: bool,
    /// Std of the embedding and retrieval-query init. Default 0.02.
    #[serde(default = "d_init_std")]
    pub init_std: f64,
    /// RMSNorm epsilon. Default 1e-6.
    #[serde(default = "d_eps")]
    pub norm_eps: f64,
}

fn d_chunk() -> i64 { 64 }
fn d_beta_bias() -> f64 { -2.0 }
fn d_g_bias() -> f64 { 2.0 }
fn d_gate_bias() -> f64 { 1.0 }
fn d_true() -> bool { true }
fn d_rope_base() -> f64 { 10000.0 }
fn d_one() -> i64 { 1 }
fn d_four() -> i64 { 4 }
fn d_init_std() -> f64 { 0.02 }
fn d_eps() -> f64 { 1e-6 }

/// Kind of one layer of the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Gated delta-rule layer.
    Gdn,
    /// Sliding-window attention layer with the state-retrieval path.
    Swa,
}

impl HybridConfig {
    /// The seed's model (spec §1, §2.8): d=512, H=8, K=64, V=128, GPT-2 vocabulary, "GS",
    /// window 64, shifted values, tied embedding: exactly 33,217,560 parameters. Reads are
    /// causal (`seed_compat = false`); set it to reproduce the seed's leak.
    pub fn seed_gs() -> Self {
        HybridConfig {
            d_model: 512,
            heads: 8,
            key_dim: 64,
            value_dim: 128,
            vocab: 50257,
            pattern: "GS".into(),
            window: 64,
            ..Self::base()
        }
    }

    /// A tiny model for tests: d=32, H=2, K=8, V=16, vocab 64, "GS", window 8.
    pub fn tiny() -> Self {
        HybridConfig {
            d_model: 32,
            heads: 2,
            key_dim: 8,
            value_dim: 16,
            vocab: 64,
            pattern: "GS".into(),
            window: 8,
            chunk_size: 16,
            ..Self::base()
        }
    }

    fn base() -> Self {
        HybridConfig {
            d_model: 0,
            heads: 0,
            key_dim: 0,
            value_dim: 0,
            vocab: 0,
            pattern: String::new(),
            window: 0,
            chunk_size: d_chunk(),
            beta_bias: d_beta_bias(),
            g_bias: d_g_bias(),
            gate_bias: d_gate_bias(),
            flavour: GdnFlavour::Seed,
            shifted_value: true,
            rope_on_keys: false,
            swa_rope: false,
            rope_base: d_rope_base(),
            key_conv_width: 1,
            conv_width: 4,
            seed_compat: false,
            tie_embeddings: true,
            init_std: d_init_std(),
            norm_eps: d_eps(),
        }
    }

    /// The layer kinds in order. Call [`HybridConfig::validate`] first.
    pub fn layers(&self) -> Vec<LayerKind> {
        self.pattern.chars().map(|c| if c == 'G' { LayerKind::Gdn } else { LayerKind::Swa }).collect()
    }

    /// Head dimension of the local attention.
    pub fn attn_head_dim(&self) -> i64 {
        self.d_model / self.heads
    }

    /// Hidden width of the SwiGLU FFN: `8/3·d` rounded up to a multiple of 64, as the seed does.
    pub fn ffn_hidden(&self) -> i64 {
        ((self.d_model * 8 / 3 + 63) / 64) * 64
    }

    /// Checks every field; the error names the field and the rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(GdnError::Config(m));
        for (name, v) in [
            ("d_model", self.d_model),
            ("heads", self.heads),
            ("key_dim", self.key_dim),
            ("value_dim", self.value_dim),
            ("window", self.window),
            ("chunk_size", self.chunk_size),
            ("key_conv_width", self.key_conv_width),
            ("conv_width", self.conv_width),
        ] {
            if v < 1 {
                return bad(format!("{name} must be at least 1, got {v}"));
            }
        }
        if self.vocab < 2 {
            return bad(format!("vocab must be at least 2, got {}", self.vocab));
        }
        if self.pattern.is_empty() {
            return bad("pattern must not be empty (a string over G and S, e.g. \"GS\")".into());
        }
        if let Some(c) = self.pattern.chars().find(|c| *c != 'G' && *c != 'S') {
            return bad(format!("pattern '{}' contains '{c}': only G (delta-rule) and S (attention) are allowed", self.pattern));
        }
        if self.d_model % self.heads != 0 {
            return bad(format!("d_model ({}) must be divisible by heads ({})", self.d_model, self.heads));
        }
        if self.swa_rope && self.attn_head_dim() % 2 != 0 {
            return bad(format!("swa_rope needs an even attention head dim, got {}", self.attn_head_dim()));
        }
        if self.rope_on_keys {
            if self.key_dim % 2 != 0 {
                return bad(format!("rope_on_keys needs an even key_dim, got {}", self.key_dim));
            }
            if self.flavour != GdnFlavour::Seed {
                return bad("rope_on_keys is an option of the seed flavour".into());
            }
        }
        if self.key_conv_width > 1 && self.flavour != GdnFlavour::Seed {
            return bad("key_conv_width is an option of the seed flavour (the standard flavour has conv_width)".into());
        }
        if !(self.rope_base > 1.0) {
            return bad(format!("rope_base must be > 1, got {}", self.rope_base));
        }
        if !(self.norm_eps > 0.0) || !(self.init_std > 0.0) {
            return bad("norm_eps and init_std must be positive".into());
        }
        for (name, v) in [("beta_bias", self.beta_bias), ("g_bias", self.g_bias), ("gate_bias", self.gate_bias)] {
            if !v.is_finite() {
                return bad(format!("{name} must be finite, got {v}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn presets_validate() {
        HybridConfig::seed_gs().validate().unwrap();
        HybridConfig::tiny().validate().unwrap();
        assert_eq!(HybridConfig::seed_gs().ffn_hidden(), 1408);
    }
    #[test]
    fn bad_fields_are_named() {
        let mut c = HybridConfig::tiny();
        c.pattern = "GXS".into();
        assert!(c.validate().unwrap_err().to_string().contains("'X'"));
        let mut c = HybridConfig::tiny();
        c.heads = 3;
        assert!(c.validate().unwrap_err().to_string().contains("divisible"));
        let mut c = HybridConfig::tiny();
        c.window = 0;
        assert!(c.validate().unwrap_err().to_string().contains("window"));
        let mut c = HybridConfig::tiny();
        c.flavour = GdnFlavour::Standard;
        c.key_conv_width = 4;
        assert!(c.validate().is_err());
        assert!(serde_json::from_str::<HybridConfig>(r#"{"d_model":1,"bogus":2}"#).is_err());
    }
    #[test]
    fn json_round_trip() {
        let c = HybridConfig::seed_gs();
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<HybridConfig>(&s).unwrap(), c);
    }
}
