//! Attention: the SDPA core, masks, multi-head attention with GQA/MQA, RoPE, ALiBi, a KV cache
//! and linear (kernelised) attention.

mod alibi;
mod kv_cache;
mod linear_attention;
mod mask;
mod mha;
mod rope;
mod sdpa;
mod torch_mha;

pub use alibi::{alibi_bias, alibi_slopes};
pub use kv_cache::KvCache;
pub use linear_attention::{linear_attention, FeatureMap};
pub use mask::{AttentionMask, MaskKind};
pub use mha::{MultiHeadAttention, MultiHeadAttentionConfig};
pub use rope::{rotate_half, Rope, RopeConfig};
pub use sdpa::{attention, attention_with_bias, SdpaOptions};
pub use torch_mha::{TorchMultiheadAttention, TorchMultiheadAttentionConfig};
