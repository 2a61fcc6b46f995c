//! Attention masks as boolean tensors, `true` = the query may attend to the key (the
//! convention of `scaled_dot_product_attention`).
//!
//! Queries are aligned to the *end* of the keys: with `q_len` queries and `k_len` keys, query
//! `i` sits at absolute position `k_len − q_len + i`. For `q_len == k_len` this is the usual
//! square mask; for decoding with a KV cache (one new query, many cached keys) it is what makes
//! the last query see the whole past.

use crate::util::ensure;
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The structural part of a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MaskKind {
    /// Every query sees every key (bidirectional / encoder attention).
    #[default]
    Full,
    /// Query at position `p` sees keys at positions `≤ p`.
    Causal,
    /// Causal and local: query at `p` sees keys in `[p − window, p]`, i.e. exactly
    /// `window + 1` keys including itself once enough past exists.
    SlidingWindow {
        /// W, the number of past keys kept besides the query's own.
        window: i64,
    },
    /// Prefix-LM: the first `prefix_len` positions see each other fully, later ones causally.
    PrefixLm {
        /// Length of the bidirectional prefix.
        prefix_len: i64,
    },
}

impl MaskKind {
    /// The `[q_len, k_len]` boolean mask, `None` for [`MaskKind::Full`].
    ///
    /// ```
    /// use engram_layers::attention::MaskKind;
    /// let m = MaskKind::SlidingWindow { window: 1 }.build(3, 3, tch::Device::Cpu).unwrap().unwrap();
    /// let rows: Vec<i64> = Vec::try_from(m.sum_dim_intlist(1, false, tch::Kind::Int64)).unwrap();
    /// assert_eq!(rows, vec![1, 2, 2]);
    /// ```
    pub fn build(&self, q_len: i64, k_len: i64, device: Device) -> Result<Option<Tensor>> {
        ensure(q_len >= 0 && k_len >= q_len, || {
            format!("mask: need k_len ≥ q_len ≥ 0 (queries are the last keys), got q_len {q_len}, k_len {k_len}")
        })?;
        let offset = k_len - q_len;
        let qpos = Tensor::arange_start(offset, k_len, (Kind::Int64, device)).unsqueeze(1);
        let kpos = Tensor::arange(k_len, (Kind::Int64, device)).unsqueeze(0);
        Ok(match *self {
            MaskKind::Full => None,
            MaskKind::Causal => Some(kpos.le_tensor(&qpos)),
            MaskKind::SlidingWindow { window } => {
                if window < 0 {
                    return Err(Error::InvalidArgument(format!("sliding window must be ≥ 0, got {window}")));
                }
                Some(kpos.le_tensor(&qpos).logical_and(&kpos.ge_tensor(&(&qpos - window))))
            }
            MaskKind::PrefixLm { prefix_len } => {
                if prefix_len < 0 {
                    return Err(Error::InvalidArgument(format!("prefix_len must be ≥ 0, got {prefix_len}")));
                }
                Some(kpos.le_tensor(&qpos).logical_or(&kpos.lt(prefix_len)))
            }
        })
    }
}

/// A full mask specification: structure plus optional key padding.
///
/// `key_padding` is `[B, k_len]` boolean with `true` = real token (the opposite of
/// `nn.MultiheadAttention`'s `key_padding_mask`, whose `true` means "ignore"; see
/// [`AttentionMask::from_torch_key_padding`]).
#[derive(Debug, Default)]
pub struct AttentionMask {
    /// Structural mask.
    pub kind: MaskKind,
    /// `[B, k_len]`, `true` where the key is a real token.
    pub key_padding: Option<Tensor>,
}

impl AttentionMask {
    /// A structural mask without padding.
    pub fn new(kind: MaskKind) -> Self {
        AttentionMask { kind, key_padding: None }
    }

    /// Adds a key-padding mask (`true` = keep).
    pub fn with_key_padding(mut self, keep: Tensor) -> Self {
        self.key_padding = Some(keep);
        self
    }

    /// Converts PyTorch's `key_padding_mask` (`true` = padding) into this convention.
    pub fn from_torch_key_padding(kind: MaskKind, torch_mask: &Tensor) -> Self {
        AttentionMask { kind, key_padding: Some(torch_mask.logical_not()) }
    }

    /// The boolean mask broadcastable to `[B, H, q_len, k_len]`, or `None` when nothing is masked.
    pub fn build(&self, batch: i64, q_len: i64, k_len: i64, device: Device) -> Result<Option<Tensor>> {
        let structural = self.kind.build(q_len, k_len, device)?;
        let Some(pad) = &self.key_padding else { return Ok(structural) };
        if pad.size() != [batch, k_len] || pad.kind() != Kind::Bool {
            return Err(Error::Shape(format!(
                "key_padding must be bool [{batch}, {k_len}], got {:?} {:?}",
                pad.kind(),
                pad.size()
            )));
        }
        let pad = pad.to_device(device).view([batch, 1, 1, k_len]);
        Ok(Some(match structural {
            Some(s) => pad.logical_and(&s.view([1, 1, q_len, k_len])),
            None => pad,
        }))
    }
}
