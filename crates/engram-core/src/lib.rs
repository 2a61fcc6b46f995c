//! # engram-core
//!
//! The lowest layer of engram: device selection, seeding that matches PyTorch, dtype helpers,
//! the crate error type, atomic and verified checkpoints, the delta-rule op and the loader of
//! the optional CUDA kernel library.
//!
//! ```
//! use engram_core::{device::DeviceChoice, seed};
//! let dev = DeviceChoice::Cpu.resolve().unwrap();
//! seed::manual_seed(42);
//! let x = tch::Tensor::rand([2, 3], (tch::Kind::Float, dev));
//! assert_eq!(x.size(), vec![2, 3]);
//! ```

pub mod checkpoint;
pub mod cuda_memory;
pub mod device;
pub mod distributed;
pub mod dtype;
pub mod error;
pub mod info;
pub mod kernels;
pub mod ops;
pub mod png;
pub mod profiler;
pub mod seed;

pub use error::{Error, Result};
