//! Attention: the SDPA core, masks, multi-head attention with GQA/MQA, RoPE, ALiBi, a KV cache
//! and linear (kernelised) attention.

mod kv_cache;
mod mask;
mod mha;
mod rope;
mod sdpa;

pub use kv_cache::KvCache;
pub use mask::{AttentionMask, MaskKind};
pub use mha::{MultiHeadAttention, MultiHeadAttentionConfig};
pub use rope::{rotate_half, Rope, RopeConfig};
pub use sdpa::{attention, SdpaOptions};
