//! Seed 000 notebook B, In[2]–In[3]: the "fork in the road" soft MoE (2 linear experts, a
//! softmax gate) on `y = x + 1` if `x₀ > 0` else `x − 1`, and its expert autopsy.
//!
//! The autopsy here goes further than the seed's (which printed one weight and one bias per
//! expert): it returns both full 4×4 maps and biases, the gate at `x₀ = ±5`, and runs the
//! "lobotomy" the seed only described (zero the negative-side expert, keep the gate).

use crate::optim::{Adam, AdamConfig};
use engram_layers::{Linear, LinearConfig};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// The seed's `MoE(input_dim, num_experts)` with `Expert = Linear(d, d)`, dense soft gating.
#[derive(Debug)]
pub struct ForkMoe {
    /// `experts[i].net`.
    pub experts: Vec<Linear>,
    /// `gate`.
    pub gate: Linear,
}

impl ForkMoe {
    /// Experts first, then the gate, as the seed constructs them.
    pub fn new(p: &nn::Path, dim: i64, experts: i64) -> Self {
        let ex = (0..experts)
            .map(|i| Linear::new(p / "experts" / i / "net", LinearConfig::new(dim, dim)))
            .collect();
        let gate = Linear::new(p / "gate", LinearConfig::new(dim, experts));
        ForkMoe { experts: ex, gate }
    }

    /// All parameters in PyTorch order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.experts
            .iter()
            .chain(std::iter::once(&self.gate))
            .flat_map(|l| [l.weight.shallow_clone(), l.bias.as_ref().expect("bias").shallow_clone()])
            .collect()
    }

    /// (output `[B, d]`, gate scores `[B, E]`); `mask` multiplies each expert's output (1 = on).
    pub fn forward_masked(&self, x: &Tensor, mask: &[f64]) -> (Tensor, Tensor) {
        let g = self.gate.forward(x).softmax(-1, Kind::Float);
        let outs: Vec<Tensor> =
            self.experts.iter().zip(mask).map(|(e, m)| e.forward(x) * *m).collect();
        let stacked = Tensor::stack(&outs, 1);
        ((g.unsqueeze(-1) * stacked).sum_dim_intlist(1, false, Kind::Float), g)
    }

    /// (output, gate scores) with every expert on.
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        self.forward_masked(x, &vec![1.0; self.experts.len()])
    }
}

/// The seed's `get_batch`: `x = randn(B, d)·2`, `y = x ± 1` by the sign of `x₀`.
pub fn fork_batch(batch: i64, dim: i64) -> (Tensor, Tensor) {
    let x = Tensor::randn([batch, dim], (Kind::Float, Device::Cpu)) * 2.0;
    let pos = x.select(1, 0).gt(0.0).to_kind(Kind::Float).unsqueeze(1);
    let y = (&x + 1.0) * &pos + (&x - 1.0) * (1.0 - &pos);
    (x, y)
}

/// What the autopsy found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForkResult {
    /// Seed.
    pub seed: u64,
    /// Minibatch loss before each step.
    pub losses: Vec<f64>,
    /// Gate at `[5, 0, 0, 0]`.
    pub gate_pos: Vec<f64>,
    /// Gate at `[−5, 0, 0, 0]`.
    pub gate_neg: Vec<f64>,
    /// Whether the argmaxes differ (the seed's "SUCCESS").
    pub partitioned: bool,
    /// Expert preferred at +5 (the "optimist").
    pub optimist: usize,
    /// Full weight matrices of each expert.
    pub expert_weights: Vec<Vec<Vec<f64>>>,
    /// Biases of each expert.
    pub expert_biases: Vec<Vec<f64>>,
    /// Held-out MSE (10k fresh points) of the full model.
    pub heldout_mse: f64,
    /// Held-out MSE on `x₀ > 0` / `x₀ < 0`, full model.
    pub mse_pos_full: f64,
    /// See `mse_pos_full`.
    pub mse_neg_full: f64,
    /// The same with the pessimist's output zeroed (gate kept): the lobotomy.
    pub mse_pos_lobotomy: f64,
    /// See `mse_pos_lobotomy`.
    pub mse_neg_lobotomy: f64,
}

fn to_vec2(t: &Tensor) -> Vec<Vec<f64>> {
    let s = t.size();
    (0..s[0]).map(|i| (0..s[1]).map(|j| t.double_value(&[i, j])).collect()).collect()
}

/// Trains as In[2] (`manual_seed(seed)` first: the seed itself set none): Adam(0.01), MSE,
/// `steps` steps of fresh batches of 128, then runs the autopsy and the lobotomy.
pub fn train_fork(seed: u64, steps: usize) -> ForkResult {
    engram_core::seed::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let moe = ForkMoe::new(&vs.root(), 4, 2);
    let mut opt = Adam::new(moe.parameters(), AdamConfig::adam(0.01));
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let (x, y) = fork_batch(128, 4);
        opt.zero_grad();
        let l = moe.forward(&x).0.mse_loss(&y, tch::Reduction::Mean);
        losses.push(l.double_value(&[]));
        l.backward();
        opt.step();
    }
    tch::no_grad(|| {
        let probe = |v: f32| {
            let g = moe.forward(&Tensor::from_slice(&[v, 0., 0., 0.]).view([1, 4])).1;
            vec![g.double_value(&[0, 0]), g.double_value(&[0, 1])]
        };
        let gate_pos = probe(5.0);
        let gate_neg = probe(-5.0);
        let argmax = |g: &[f64]| if g[0] >= g[1] { 0 } else { 1 };
        let optimist = argmax(&gate_pos);
        let pessimist = argmax(&gate_neg);
        let (x, y) = fork_batch(10_000, 4);
        let pos = x.select(1, 0).gt(0.0);
        let mse_on = |pred: &Tensor, m: &Tensor| {
            let idx = m.nonzero().squeeze_dim(1);
            pred.index_select(0, &idx).mse_loss(&y.index_select(0, &idx), tch::Reduction::Mean).double_value(&[])
        };
        let full = moe.forward(&x).0;
        let mut mask = vec![1.0; 2];
        // Without a partition there is no pessimist distinct from the optimist; zero expert 1.
        mask[if pessimist != optimist { pessimist } else { 1 }] = 0.0;
        let lob = moe.forward_masked(&x, &mask).0;
        let neg = pos.logical_not();
        ForkResult {
            seed,
            losses,
            partitioned: optimist != pessimist,
            optimist,
            gate_pos,
            gate_neg,
            expert_weights: moe.experts.iter().map(|e| to_vec2(&e.weight)).collect(),
            expert_biases: moe
                .experts
                .iter()
                .map(|e| Vec::<f64>::try_from(e.bias.as_ref().expect("bias").to_kind(Kind::Double)).unwrap_or_default())
                .collect(),
            heldout_mse: full.mse_loss(&y, tch::Reduction::Mean).double_value(&[]),
            mse_pos_full: mse_on(&full, &pos),
            mse_neg_full: mse_on(&full, &neg),
            mse_pos_lobotomy: mse_on(&lob, &pos),
            mse_neg_lobotomy: mse_on(&lob, &neg),
        }
    })
}
