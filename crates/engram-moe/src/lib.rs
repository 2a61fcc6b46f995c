//! # engram-moe
//!
//! Mixture-of-experts routing and layers, and the attention experiments of seeds 000, 001 and 004.
//!
//! * [`routing`]: soft gating, top-k token choice with capacity and dropping, expert choice;
//!   [`routing::RoutingStats`] (tokens per expert, coverage, drop rate, router entropy).
//! * [`losses`]: Switch load balancing, router z-loss.
//! * [`ffn`]: the MoE feed-forward layer with batched dispatch, and the dense baseline.
//! * [`lm`]: a small MoE transformer LM (seed 004) on byte tokens, with a causality probe.
//! * [`experiments`]: seed 001's raw attention (XOR/NAND), seed 000's self-attention cells and
//!   fork-in-the-road MoE.
//! * [`optim`]: `torch.optim`-exact SGD/Adam/AdamW, L-BFGS and the Polyak step.
//! * [`bench`]: the forward+backward throughput benchmark.

pub mod bench;
pub mod corpus;
pub mod error;
pub mod experiments;
pub mod ffn;
pub mod lm;
pub mod losses;
pub mod optim;
pub mod routing;

pub use error::{MoeError, Result};
pub use ffn::{Activation, DenseFfn, MoeFfn, MoeFfnConfig};
pub use routing::{route, Capacity, RouterKind, Routing, RoutingStats};
