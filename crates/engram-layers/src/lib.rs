//! # engram-layers
//!
//! Layers, attention, optimizers, LR schedules and losses with PyTorch parity. Built on
//! libtorch's ATen ops through tch; adds what tch lacks, starting with PyTorch-exact
//! initialisation so that a Rust model and a PyTorch model seeded alike start bit-identical.
//!
//! Conventions: every module has a serde config (`deny_unknown_fields`), a constructor
//! `new(path, cfg)` on a tch `nn::Path`, parameter names equal to the PyTorch module it mirrors
//! (so checkpoints map 1:1), a checked `try_forward` returning [`engram_core::Result`], and a
//! tch `Module`/`ModuleT` impl for composition (which panics with the same message on bad input).
//!
//! | module | contents | mirrors |
//! |---|---|---|
//! | [`linear`], [`bilinear`], [`lora`] | `Linear`, `Bilinear`, LoRA adapter | `nn.Linear`, `nn.Bilinear`, PEFT |
//! | [`conv`], [`pooling`] | Conv1d/2d/3d, transposed, grouped/depthwise/dilated; patch embedding; max/avg/adaptive pools | `nn.ConvNd`, `nn.ConvTransposeNd`, timm `PatchEmbed` |
//! | [`recurrent`] | LSTM, GRU | `nn.LSTM`, `nn.GRU` (`weight_ih_l0`…) |
//! | [`norm`] | LayerNorm, RMSNorm, BatchNorm, GroupNorm | `nn.*` |
//! | [`activation`], [`ffn`] | ReLU…Mish, GELU exact/tanh, SELU, softmax with temperature; GLU/ReGLU/GeGLU/SwiGLU, MLP | `nn.*`, HF `LlamaMLP` |
//! | [`embedding`], [`dropout`] | Embedding, learned and sinusoidal positions; Dropout, DropPath | `nn.Embedding` |
//! | [`attention`] | SDPA core + masks (causal, sliding window, prefix-LM, padding), GQA/MQA MHA, RoPE, ALiBi, KV cache, linear attention, `nn.MultiheadAttention` mirror | HF LLaMA attention, `nn.MultiheadAttention` |
//! | [`block`], [`squeeze_excitation`] | pre-norm transformer block, SE | HF `LlamaDecoderLayer`, torchvision SE |
//! | [`optim`] | SGD, Adam(W) (+fp32 master weights), Adagrad, RMSprop, LBFGS, Lion, LAMB, Adafactor, Lookahead, SAM, Polyak; clipping; groups | `torch.optim` |
//! | [`schedule`], [`loss`] | LR schedules; losses | `lr_scheduler`, `nn.functional` |
//!
//! Parity with PyTorch is checked against golden files written by
//! `tests/golden/gen_golden.py` (run with the project venv's python).

// Validation deliberately writes `!(x >= 0.0)` so that NaN is rejected too, and shape checks
// index several parallel per-dimension lists by position.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::needless_range_loop, clippy::manual_is_multiple_of)]

pub mod activation;
pub mod attention;
pub mod bilinear;
pub mod block;
pub mod conv;
pub mod dropout;
pub mod embedding;
pub mod ffn;
pub mod init;
pub mod linear;
pub mod lora;
pub mod norm;
pub mod optim;
pub mod pooling;
pub mod recurrent;
pub mod loss;
pub mod schedule;
pub mod squeeze_excitation;
mod util;

pub use linear::{Linear, LinearConfig};
