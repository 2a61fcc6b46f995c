//! PyTorch-exact parameter initialisation.
//!
//! `torch.nn.Linear.reset_parameters` draws the weight with `kaiming_uniform_(a=√5)`, which for
//! fan-in `n` is `U(-1/√n, 1/√n)`, and then the bias with `U(-1/√n, 1/√n)`, both from the global
//! CPU generator, in that order. Reproducing the order and the draw exactly (one `uniform_` call
//! on a tensor of the same shape) makes the numbers bit-identical under the same `manual_seed`.

use tch::{nn, Tensor};

/// `kaiming_uniform_(w, a)` as in PyTorch, with fan-in = `size[1] * prod(size[2..])`.
pub fn kaiming_uniform_(w: &mut Tensor, a: f64) {
    let fan_in = fan_in(&w.size());
    // Same f64 operation order as torch.nn.init.kaiming_uniform_, so the bound (and therefore
    // every drawn value) is bit-identical.
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    let bound = (3.0f64).sqrt() * std;
    tch::no_grad(|| {
        let _ = w.uniform_(-bound, bound);
    });
}

/// `uniform_(t, lo, hi)` without recording gradients.
pub fn uniform_(t: &mut Tensor, lo: f64, hi: f64) {
    tch::no_grad(|| {
        let _ = t.uniform_(lo, hi);
    });
}

/// PyTorch's fan-in of a weight of shape `[out, in, *kernel]`.
pub fn fan_in(size: &[i64]) -> i64 {
    if size.len() < 2 {
        return size.first().copied().unwrap_or(1).max(1);
    }
    (size[1] * size[2..].iter().product::<i64>()).max(1)
}

/// Creates a parameter of `shape` under `path` and fills it with PyTorch's default
/// weight init (`kaiming_uniform_(a=√5)`).
pub fn torch_default_weight(path: &nn::Path, name: &str, shape: &[i64]) -> Tensor {
    let mut w = path.zeros(name, shape);
    kaiming_uniform_(&mut w, 5f64.sqrt());
    w
}

/// Creates a bias of `shape` filled from `U(-1/√fan_in, 1/√fan_in)` as PyTorch does.
pub fn torch_default_bias(path: &nn::Path, name: &str, shape: &[i64], fan_in: i64) -> Tensor {
    let mut b = path.zeros(name, shape);
    let bound = if fan_in > 0 { 1.0 / (fan_in as f64).sqrt() } else { 0.0 };
    uniform_(&mut b, -bound, bound);
    b
}
