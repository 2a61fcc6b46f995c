//! PNG encoding lives in engram-core; re-exported here for the plot module.

pub use engram_core::png::encode_rgb;
