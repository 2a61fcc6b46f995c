//! # engram-continual
//!
//! Continual learning on libtorch: scenarios (the seed's quadrant tasks, Split / Permuted /
//! Rotated Fashion-MNIST and MNIST-5k in task-, domain- and class-incremental settings),
//! strategies as plugins on one training template (naive, joint, replay, EWC, online EWC, SI,
//! MAS, LwF, A-GEM, GDumb, DER++, multi-head; plugins combine), metrics over the accuracy
//! matrix (average accuracy, BWT, FWT, forgetting; JSON and a heatmap PNG), and the seed-000
//! notebook's cells reproduced exactly ([`seed000`]).
//!
//! ```
//! use engram_continual::{scenario, strategies::{run_strategy, StrategyKind, StrategyParams}, template::TrainConfig};
//! let data = scenario::synthetic_images(20, 0.2, 1).unwrap();
//! let s = scenario::split("synthetic", &data, 2, scenario::Setting::ClassIncremental).unwrap();
//! let cfg = TrainConfig { epochs: 1, batch_size: 32, ..TrainConfig::default() };
//! let params = StrategyParams { memory: 50, ..StrategyParams::default() };
//! let r = run_strategy(StrategyKind::Replay, &s, &[32], &params, &cfg).unwrap();
//! assert_eq!(r.accuracy.n_tasks(), 5);
//! println!("ACC {:.3}", r.accuracy.average_accuracy());
//! ```

pub mod benchmark;
pub mod data;
pub mod error;
pub mod heatmap;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod scenario;
pub mod seed000;
pub mod strategies;
pub mod template;

pub use error::{Error, Result};
