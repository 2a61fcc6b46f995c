//! Sparse classifiers: the seed-004 MLP (784-1000-1000-1000-10), LeNet-300-100, and the
//! [`MaskedModel`] trait that training, SET/RigL and lottery-ticket pruning work through.

use crate::error::{invalid, Result};
use crate::mask::{DensityRule, MaskedLinear};
use crate::optim::MaskedParam;
use engram_core::seed::HostRng;
use engram_layers::LinearConfig;
use tch::{nn, Kind, Tensor};

/// A classifier built (at least partly) from masked linear layers.
pub trait MaskedModel {
    /// Class logits `[B, C]` for inputs `[B, 784]`.
    fn logits(&self, x: &Tensor) -> Tensor;
    /// The masked layers, in a fixed order (the order of pruning reports).
    fn masked_layers(&self) -> Vec<&MaskedLinear>;
    /// Every trainable tensor, with its mask where it has one.
    fn params(&self) -> Vec<MaskedParam>;
    /// Kept weights over all masked layers.
    fn nnz(&self) -> i64 {
        self.masked_layers().iter().map(|l| l.nnz()).sum()
    }
    /// All weights of the masked layers.
    fn numel(&self) -> i64 {
        self.masked_layers().iter().map(|l| l.numel()).sum()
    }
}

/// A ReLU MLP of masked layers.
///
/// ```
/// use engram_sparse::{model::{SparseMlp, MaskedModel}, mask::DensityRule};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let mut rng = engram_core::seed::HostRng::new(0);
/// let mlp = SparseMlp::new(&vs.root(), &[784, 1000, 1000, 1000, 10],
///     DensityRule::Uniform { density: 0.05 }, true, &mut rng).unwrap();
/// assert_eq!((mlp.nnz(), mlp.numel()), (139_700, 2_794_000));
/// ```
#[derive(Debug)]
pub struct SparseMlp {
    /// The layers, input first.
    pub layers: Vec<MaskedLinear>,
}

impl SparseMlp {
    /// Builds `sizes[0] → … → sizes[last]` with biases, masks drawn by `rule`. With
    /// `scale_to_density` the PyTorch init is divided by `√density` per layer, so that the
    /// kept weights have the variance a dense layer of the same *effective* fan-in would have;
    /// without it a 5%-dense 4-layer net starts with activations shrunk ~√20× per layer.
    pub fn new(path: &nn::Path, sizes: &[i64], rule: DensityRule, scale_to_density: bool, rng: &mut HostRng) -> Result<Self> {
        if sizes.len() < 2 {
            return Err(invalid("an MLP needs at least an input and an output size"));
        }
        let mut layers = Vec::new();
        for (i, w) in sizes.windows(2).enumerate() {
            let mut l = MaskedLinear::new(path / format!("fc{}", i + 1), LinearConfig::new(w[0], w[1]), rule, rng)?;
            if scale_to_density {
                let s = (l.numel() as f64 / l.nnz() as f64).sqrt();
                tch::no_grad(|| {
                    let _ = l.weight.g_mul_scalar_(s);
                });
                l.init_bound *= s;
            }
            layers.push(l);
        }
        Ok(SparseMlp { layers })
    }

    /// The forward pass with explicit effective weights, one per layer.
    pub fn logits_with(&self, x: &Tensor, weights: &[Tensor]) -> Tensor {
        let mut h = x.shallow_clone();
        let last = self.layers.len() - 1;
        for (i, (l, w)) in self.layers.iter().zip(weights).enumerate() {
            h = l.forward_with(&h, w);
            if i < last {
                h = h.relu();
            }
        }
        h
    }

    /// The gradient of the cross-entropy on `(x, y)` with respect to each layer's *effective*
    /// weight `w ∘ m`: dense, so it also scores inactive connections (RigL's growth criterion).
    pub fn dense_grads(&self, x: &Tensor, y: &Tensor) -> Vec<Tensor> {
        let eff: Vec<Tensor> = self.layers.iter().map(|l| (&l.weight * &l.mask).detach().set_requires_grad(true)).collect();
        let loss = self.logits_with(x, &eff).cross_entropy_for_logits(y);
        Tensor::run_backward(&[loss], &eff, false, false)
    }
}

impl MaskedModel for SparseMlp {
    fn logits(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h);
            if i < last {
                h = h.relu();
            }
        }
        h
    }
    fn masked_layers(&self) -> Vec<&MaskedLinear> {
        self.layers.iter().collect()
    }
    fn params(&self) -> Vec<MaskedParam> {
        let mut v = Vec::new();
        for l in &self.layers {
            v.push(MaskedParam::new(&l.weight, Some(&l.mask)));
            if let Some(b) = &l.bias {
                v.push(MaskedParam::new(b, None));
            }
        }
        v
    }
}

/// Classification accuracy of `model` on `(x, y)`, evaluated in batches without gradients.
pub fn accuracy(model: &dyn MaskedModel, x: &Tensor, y: &Tensor, batch: i64) -> f64 {
    let n = y.size()[0];
    let mut correct = 0i64;
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = batch.min(n - start);
            let pred = model.logits(&x.narrow(0, start, len)).argmax(-1, false);
            correct += pred.eq_tensor(&y.narrow(0, start, len)).sum(Kind::Int64).int64_value(&[]);
            start += len;
        }
    });
    correct as f64 / n.max(1) as f64
}
