//! # engram-sparse
//!
//! Sparse training: masked layers ([`mask`]), mask-aware optimizers ([`optim`]), dynamic sparse
//! topology with SET and RigL ([`topology`], [`set_experiment`]) and lottery tickets by
//! iterative magnitude pruning with rewinding ([`lottery`]), on an MLP, LeNet-300-100 and a small
//! ViT ([`model`], [`vit`]). [`datasets`] reads the offline MNIST/Fashion-MNIST files.
//!
//! ```
//! use engram_sparse::{mask::DensityRule, model::{MaskedModel, SparseMlp}, topology::set_update};
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let mut rng = engram_core::seed::HostRng::new(1);
//! let mlp = SparseMlp::new(&vs.root(), &[20, 30, 5], DensityRule::Uniform { density: 0.2 }, true, &mut rng).unwrap();
//! let before = mlp.nnz();
//! for l in &mlp.layers {
//!     set_update(&l.weight, &l.mask, 0.3, l.init_bound, &mut rng).unwrap();
//! }
//! assert_eq!(mlp.nnz(), before);
//! ```

pub mod datasets;
pub mod error;
pub mod lottery;
pub mod mask;
pub mod model;
pub mod optim;
pub mod plot;
pub mod set_experiment;
pub mod topology;
pub mod train;
pub mod vit;

pub use error::{Result, SparseError};
