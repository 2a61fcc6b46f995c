//! LoRA (Hu et al. 2021) around a [`Linear`]: `y = W₀x + b + (α/r)·B A dropout(x)`.

use crate::linear::{Linear, LinearConfig};
use crate::util::{ensure, expect_last, or_panic};
use engram_core::Result;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Tensor};

/// Configuration of [`LoraLinear`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// The wrapped linear layer.
    pub base: LinearConfig,
    /// Rank r.
    pub rank: i64,
    /// Scale numerator α (scaling = α/r).
    pub alpha: f64,
    /// Dropout on the adapter input (training only).
    pub dropout: f64,
}

/// A linear layer with a low-rank adapter, named as in PEFT (`base_layer.weight`,
/// `base_layer.bias`, `lora_A.weight [r, in]`, `lora_B.weight [out, r]`). `lora_A` is drawn with
/// PyTorch's kaiming init and `lora_B` is zero, so the adapter starts as an exact no-op; the
/// base parameters are frozen (`requires_grad = false`).
///
/// ```
/// use engram_layers::{LinearConfig, lora::{LoraConfig, LoraLinear}};
/// use tch::nn::ModuleT;
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let l = LoraLinear::new(vs.root() / "q_proj", LoraConfig { base: LinearConfig::new(8, 8), rank: 2, alpha: 4.0, dropout: 0.0 }).unwrap();
/// let x = tch::Tensor::randn([3, 8], tch::kind::FLOAT_CPU);
/// assert_eq!(l.forward_t(&x, false), x.linear(&l.base.weight, l.base.bias.as_ref()));
/// assert_eq!(vs.trainable_variables().len(), 2); // only the adapter trains
/// ```
#[derive(Debug)]
pub struct LoraLinear {
    /// The frozen pretrained layer.
    pub base: Linear,
    /// `[r, in]`.
    pub lora_a: Tensor,
    /// `[out, r]`.
    pub lora_b: Tensor,
    scaling: f64,
    cfg: LoraConfig,
}

impl LoraLinear {
    /// Creates `base_layer`, `lora_A`, `lora_B` under `path`.
    pub fn new<'a>(path: impl std::borrow::Borrow<nn::Path<'a>>, cfg: LoraConfig) -> Result<Self> {
        ensure(cfg.rank > 0 && cfg.rank <= cfg.base.in_features.min(cfg.base.out_features), || format!("LoRA: bad rank {}", cfg.rank))?;
        ensure((0.0..1.0).contains(&cfg.dropout), || format!("LoRA: dropout {} not in [0, 1)", cfg.dropout))?;
        let p = path.borrow();
        let base = frozen_linear(&(p / "base_layer"), cfg.base);
        let lora_a = crate::init::torch_default_weight(&(p / "lora_A"), "weight", &[cfg.rank, cfg.base.in_features]);
        let lora_b = (p / "lora_B").zeros("weight", &[cfg.base.out_features, cfg.rank]);
        Ok(LoraLinear { base, lora_a, lora_b, scaling: cfg.alpha / cfg.rank as f64, cfg })
    }

    /// `W₀ + (α/r)·B A`, the weight to deploy without the adapter.
    pub fn merged_weight(&self) -> Tensor {
        tch::no_grad(|| &self.base.weight + self.lora_b.matmul(&self.lora_a) * self.scaling)
    }

    /// Applies the layer to `x [..., in]`.
    pub fn try_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        expect_last("LoRA", x, self.cfg.base.in_features)?;
        let h = if train && self.cfg.dropout > 0.0 { x.dropout(self.cfg.dropout, true) } else { x.shallow_clone() };
        Ok(self.base.forward(x) + h.matmul(&self.lora_a.tr()).matmul(&self.lora_b.tr()) * self.scaling)
    }
}

/// A `Linear` drawn exactly like [`Linear::new`] (same RNG order) but registered as
/// non-trainable, so neither `VarStore::trainable_variables` nor tch's optimizers see it.
fn frozen_linear(p: &nn::Path, c: LinearConfig) -> Linear {
    let opts = (p.kind(), p.device());
    let mut w = Tensor::zeros([c.out_features, c.in_features], opts);
    crate::init::kaiming_uniform_(&mut w, 5f64.sqrt());
    let weight = p.add("weight", w, false);
    let bias = c.bias.then(|| {
        let mut b = Tensor::zeros([c.out_features], opts);
        let bound = 1.0 / (c.in_features as f64).sqrt();
        crate::init::uniform_(&mut b, -bound, bound);
        p.add("bias", b, false)
    });
    Linear { weight, bias }
}

impl nn::ModuleT for LoraLinear {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        or_panic("LoRA", self.try_forward_t(xs, train))
    }
}
