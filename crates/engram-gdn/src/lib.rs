//! # engram-gdn
//!
//! The Gated DeltaNet + sliding-window-attention hybrid LM of seed 003 ("GroundThink v7"), done
//! right: the model ([`HybridModel`], configured by [`HybridConfig`]), data with byte-level or
//! BPE tokenizers ([`data`]), training with AdamW on fp32 master weights ([`train`]),
//! incremental generation ([`generate`]) and checkpoints ([`checkpoint`]).
//!
//! Differences from the seed, all deliberate (spec §2.9, §5.6, §7): S layers read the G state
//! causally at each position (`seed_compat` restores the seed's final-state read), G layers do
//! not inherit the previous G layer's final state, training uses the next-token shift, and
//! the optimizer keeps fp32 master weights.
//!
//! ```
//! use engram_gdn::{HybridConfig, HybridModel};
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let model = HybridModel::new(&vs.root(), &HybridConfig::tiny()).unwrap();
//! assert_eq!(model.config().pattern, "GS");
//! ```

mod blocks;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
mod delta;
mod gdn;
pub mod generate;
pub mod model;
pub mod optim;
pub mod plot;
mod swa;
pub mod tasks;
pub mod train;

pub use checkpoint::LoadedModel;
pub use config::{GdnFlavour, HybridConfig, LayerKind};
pub use data::{AnyTokenizer, BpeTokenizer, ByteTokenizer, Tokenizer, TokenizerSpec};
pub use model::{parameter_count, DecodeState, HybridModel, LayerTrace, Trace};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum GdnError {
    /// An invalid model or training configuration.
    #[error("invalid config: {0}")]
    Config(String),
    /// Bad input to the model (shape, dtype, token range, device).
    #[error("invalid input: {0}")]
    Input(String),
    /// Corpus or tokenizer problem.
    #[error("data: {0}")]
    Data(String),
    /// A checkpoint that cannot be used.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// From engram-core (checkpoint I/O, devices, the delta-rule op).
    #[error(transparent)]
    Core(#[from] engram_core::Error),
    /// From libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with [`GdnError`].
pub type Result<T, E = GdnError> = std::result::Result<T, E>;
