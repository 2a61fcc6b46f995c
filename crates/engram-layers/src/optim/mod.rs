//! Optimizers over lists of parameter tensors, with parameter groups, learning-rate access,
//! weight-decay exclusion, exportable state and gradient clipping.
//!
//! Every optimizer reproduces the update of its PyTorch counterpart (`torch.optim.*`, default
//! `foreach=False` single-tensor path) where one exists, and of the reference implementation
//! named in its doc otherwise; `tests/` checks trajectories against golden files.

mod adafactor;
mod adagrad;
mod adam;
mod clip;
mod lamb;
mod lbfgs;
mod lion;
mod lookahead;
mod polyak;
mod rmsprop;
mod sam;
mod sgd;
mod state;

pub use adafactor::{Adafactor, AdafactorConfig};
pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig, AdamW};
pub use clip::{clip_grad_norm, clip_grad_value, grad_norm};
pub use lamb::{Lamb, LambConfig};
pub use lbfgs::{Lbfgs, LbfgsConfig};
pub use lion::{Lion, LionConfig};
pub use lookahead::{Lookahead, LookaheadConfig};
pub use polyak::{PolyakStep, PolyakConfig};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sam::{Sam, SamConfig};
pub use sgd::{Sgd, SgdConfig};
pub use state::ParamStates;

use engram_core::{Error, Result};
use tch::{nn::VarStore, Tensor};

/// A set of parameters sharing a learning rate and weight decay.
#[derive(Debug)]
pub struct ParamGroup {
    /// A label (used in state names).
    pub name: String,
    /// The parameters (shallow clones of the variables: updates write through).
    pub params: Vec<Tensor>,
    /// Learning rate of this group.
    pub lr: f64,
    /// Weight decay of this group (L2 or decoupled, per optimizer).
    pub weight_decay: f64,
}

impl ParamGroup {
    /// A group of `params` with `lr` and no weight decay.
    pub fn new(name: impl Into<String>, params: Vec<Tensor>, lr: f64) -> Self {
        ParamGroup { name: name.into(), params, lr, weight_decay: 0.0 }
    }

    /// Sets the weight decay.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
}

/// Whether a parameter named `name` of shape `shape` should be exempt from weight decay: biases,
/// every 0/1-D tensor (norm gains, scales), and anything under a `norm`/`ln`/`bn` path — the
/// usual GPT/LLaMA/timm rule.
pub fn is_no_decay(name: &str, shape: &[i64]) -> bool {
    let lower = name.to_ascii_lowercase();
    let last = lower.rsplit('.').next().unwrap_or("");
    shape.len() <= 1
        || last == "bias"
        || lower.split('.').any(|seg| seg.contains("norm") || seg == "ln" || seg.starts_with("ln_") || seg.starts_with("bn"))
}

/// Splits the trainable variables of `vs` into a `"decay"` group (weight decay `wd`) and a
/// `"no_decay"` group (see [`is_no_decay`]), both at `lr`, in sorted-name order so state names
/// are stable across runs. Empty groups are dropped.
///
/// ```
/// use engram_layers::optim::decay_groups;
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let _l = engram_layers::Linear::new(vs.root() / "fc", engram_layers::LinearConfig::new(3, 2));
/// let groups = decay_groups(&vs, 1e-3, 0.1);
/// assert_eq!(groups.len(), 2);
/// assert_eq!(groups[0].params.len(), 1); // fc.weight
/// assert_eq!(groups[1].weight_decay, 0.0); // fc.bias
/// ```
pub fn decay_groups(vs: &VarStore, lr: f64, wd: f64) -> Vec<ParamGroup> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut decay, mut no_decay) = (Vec::new(), Vec::new());
    for (name, t) in named {
        if is_no_decay(&name, &t.size()) {
            no_decay.push(t);
        } else {
            decay.push(t);
        }
    }
    let mut out = Vec::new();
    if !decay.is_empty() {
        out.push(ParamGroup::new("decay", decay, lr).weight_decay(wd));
    }
    if !no_decay.is_empty() {
        out.push(ParamGroup::new("no_decay", no_decay, lr));
    }
    out
}

/// All trainable variables of `vs` in one group, sorted by name.
pub fn single_group(vs: &VarStore, lr: f64) -> Vec<ParamGroup> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    vec![ParamGroup::new("all", named.into_iter().map(|(_, t)| t).collect(), lr)]
}

/// The optimizer interface.
pub trait Optimizer {
    /// The parameter groups.
    fn param_groups(&self) -> &[ParamGroup];
    /// Mutable access (e.g. per-group learning rates).
    fn param_groups_mut(&mut self) -> &mut [ParamGroup];
    /// One update from the current gradients. Optimizers that need the loss or re-evaluation
    /// (LBFGS, SAM, Polyak) return an error here and must be driven by [`Optimizer::step_with_closure`].
    fn step(&mut self) -> Result<()>;
    /// One update with a closure that zeroes gradients, recomputes the loss, calls `backward`
    /// and returns the loss (as `torch.optim`'s closure). Returns the loss of the first call.
    fn step_with_closure(&mut self, closure: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
        let loss = closure()?;
        self.step()?;
        Ok(loss)
    }
    /// Zeroes every parameter's gradient.
    fn zero_grad(&mut self) {
        for g in self.param_groups() {
            for p in &g.params {
                let mut p = p.shallow_clone();
                p.zero_grad();
            }
        }
    }
    /// The learning rate of the first group.
    fn lr(&self) -> f64 {
        self.param_groups().first().map_or(0.0, |g| g.lr)
    }
    /// Sets the learning rate of every group.
    fn set_lr(&mut self, lr: f64) {
        for g in self.param_groups_mut() {
            g.lr = lr;
        }
    }
    /// The optimizer state as named tensors (for checkpoints), e.g. `"0.3.exp_avg"` for group 0,
    /// parameter 3.
    fn state_tensors(&self) -> Vec<(String, Tensor)>;
    /// Restores state written by [`Optimizer::state_tensors`]; every name must refer to an
    /// existing parameter.
    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()>;
}

pub(crate) fn check_groups(name: &str, groups: &[ParamGroup]) -> Result<()> {
    if groups.is_empty() || groups.iter().all(|g| g.params.is_empty()) {
        return Err(Error::InvalidArgument(format!("{name}: no parameters to optimize")));
    }
    for g in groups {
        if !(g.lr >= 0.0 && g.lr.is_finite()) {
            return Err(Error::InvalidArgument(format!("{name}: invalid lr {} in group {}", g.lr, g.name)));
        }
        if !(g.weight_decay >= 0.0 && g.weight_decay.is_finite()) {
            return Err(Error::InvalidArgument(format!("{name}: invalid weight decay {} in group {}", g.weight_decay, g.name)));
        }
    }
    Ok(())
}

pub(crate) fn in_range(name: &str, what: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if !(v >= lo && v < hi) {
        return Err(Error::InvalidArgument(format!("{name}: {what} = {v} not in [{lo}, {hi})")));
    }
    Ok(())
}

/// Defines the four boilerplate trait methods for an optimizer with `groups` and `state` fields.
macro_rules! impl_groups_state {
    () => {
        fn param_groups(&self) -> &[$crate::optim::ParamGroup] {
            &self.groups
        }
        fn param_groups_mut(&mut self) -> &mut [$crate::optim::ParamGroup] {
            &mut self.groups
        }
        fn state_tensors(&self) -> Vec<(String, tch::Tensor)> {
            self.state.export()
        }
        fn load_state_tensors(&mut self, tensors: &[(String, tch::Tensor)]) -> engram_core::Result<()> {
            self.state.import(&self.groups, tensors)
        }
    };
}
pub(crate) use impl_groups_state;
