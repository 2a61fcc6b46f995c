//! # engram-memory
//!
//! Memory-augmented networks: the Differentiable Neural Computer ([`dnc`]) with the copy and
//! repeat-copy tasks ([`tasks`]), and a memory-augmented transformer for few-shot
//! classification ([`fewshot`]).
//!
//! ```
//! use engram_memory::tasks::Task;
//! let b = Task::Copy.batch(2, 4, 3, &mut engram_core::seed::HostRng::new(0)).unwrap();
//! assert_eq!(b.input.size()[2], 5); // 4 bits + delimiter
//! ```

pub mod dnc;
pub mod error;
pub mod fewshot;
pub mod lstm;
pub mod tasks;

pub use error::{MemoryError, Result};
