//! Seed 001: a softmax-free, 3-scalar "raw attention" plus a biased linear readout learns XOR
//! and NAND.
//!
//! With `C = w_q·w_k·w_v` and `S = x₁² + x₂²` the model is exactly
//! `out = (w₁x₁ + w₂x₂)(1 + C·S) + b`, so only `(C, w₁, w₂, b)` matter. Exact solutions:
//! XOR at `C = −½, w₁ = w₂ = 2, b = 0` (unique); NAND at `C = −1, w₁ + w₂ = 1, b = 1`.

use crate::optim::{polyak_step, Adam, AdamConfig, Lbfgs, LbfgsConfig, Sgd};
use engram_layers::{Linear, LinearConfig};
use tch::{nn, nn::Module, Device, Tensor};

/// Which truth table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Gate {
    /// 0,1,1,0.
    Xor,
    /// 1,1,1,0.
    Nand,
}

impl Gate {
    /// Targets `[4, 1]` for inputs 00, 01, 10, 11.
    pub fn targets(self) -> Tensor {
        let y: [f32; 4] = match self {
            Gate::Xor => [0., 1., 1., 0.],
            Gate::Nand => [1., 1., 1., 0.],
        };
        Tensor::from_slice(&y).view([4, 1])
    }
}

/// The four binary inputs `[4, 2]`.
pub fn inputs() -> Tensor {
    Tensor::from_slice(&[0f32, 0., 0., 1., 1., 0., 1., 1.]).view([4, 2])
}

/// `RawAttentionWithTopNeuron`: `Wq, Wk, Wv = Linear(1,1,bias=False)`, `attn_out = Linear(2,1)`,
/// parameters drawn in the seed's order.
///
/// ```
/// use engram_moe::experiments::raw_attention::{inputs, RawAttentionNet};
/// use tch::{nn, Device};
/// let vs = nn::VarStore::new(Device::Cpu);
/// let net = RawAttentionNet::new(&vs.root());
/// assert_eq!(net.forward(&inputs()).size(), vec![4, 1]);
/// ```
#[derive(Debug)]
pub struct RawAttentionNet {
    /// `raw_attention.Wq`.
    pub wq: Linear,
    /// `raw_attention.Wk`.
    pub wk: Linear,
    /// `raw_attention.Wv`.
    pub wv: Linear,
    /// `attn_out`.
    pub attn_out: Linear,
}

/// The invariants that determine the function.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Invariants {
    /// `w_q·w_k·w_v`.
    pub c: f64,
    /// Readout weight on `x₁`.
    pub w1: f64,
    /// Readout weight on `x₂`.
    pub w2: f64,
    /// Readout bias.
    pub b: f64,
}

impl Invariants {
    /// `out(x) = (w₁x₁ + w₂x₂)(1 + C(x₁² + x₂²)) + b`.
    pub fn eval(&self, x1: f64, x2: f64) -> f64 {
        (self.w1 * x1 + self.w2 * x2) * (1.0 + self.c * (x1 * x1 + x2 * x2)) + self.b
    }
}

impl RawAttentionNet {
    /// Creates the parameters (Wq, Wk, Wv, attn_out.weight, attn_out.bias, in that order).
    pub fn new(p: &nn::Path) -> Self {
        let ra = p / "raw_attention";
        let wq = Linear::new(&ra / "Wq", LinearConfig::new(1, 1).no_bias());
        let wk = Linear::new(&ra / "Wk", LinearConfig::new(1, 1).no_bias());
        let wv = Linear::new(&ra / "Wv", LinearConfig::new(1, 1).no_bias());
        let attn_out = Linear::new(p / "attn_out", LinearConfig::new(2, 1));
        RawAttentionNet { wq, wk, wv, attn_out }
    }

    /// The parameters in PyTorch's `parameters()` order.
    pub fn parameters(&self) -> Vec<Tensor> {
        vec![
            self.wq.weight.shallow_clone(),
            self.wk.weight.shallow_clone(),
            self.wv.weight.shallow_clone(),
            self.attn_out.weight.shallow_clone(),
            self.attn_out.bias.as_ref().expect("attn_out has a bias").shallow_clone(),
        ]
    }

    /// `x` `[B, 2]` → `[B, 1]`, op for op as the seed's module.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let tokens = Tensor::stack(&[x.narrow(1, 0, 1), x.narrow(1, 1, 1)], 1);
        let q = self.wq.forward(&tokens);
        let k = self.wk.forward(&tokens);
        let v = self.wv.forward(&tokens);
        let attended = q.matmul(&k.transpose(1, 2)).matmul(&v).squeeze_dim(-1);
        self.attn_out.forward(&(attended + x))
    }

    /// `(C, w₁, w₂, b)` of the current parameters.
    pub fn invariants(&self) -> Invariants {
        let s = |t: &Tensor, i: i64| t.reshape([-1]).double_value(&[i]);
        Invariants {
            c: s(&self.wq.weight, 0) * s(&self.wk.weight, 0) * s(&self.wv.weight, 0),
            w1: s(&self.attn_out.weight, 0),
            w2: s(&self.attn_out.weight, 1),
            b: s(self.attn_out.bias.as_ref().expect("bias"), 0),
        }
    }
}

/// Which optimizer a run uses (seed 001's cells).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Optimizer {
    /// `AdamW(lr)`, weight decay 0.01 (the executed cell: lr 5e-2).
    AdamW {
        /// Learning rate.
        lr: f64,
        /// Decoupled weight decay (0.01 is PyTorch's default).
        weight_decay: f64,
    },
    /// `Adam(lr)`.
    Adam {
        /// Learning rate.
        lr: f64,
    },
    /// `SGD(lr)`.
    Sgd {
        /// Learning rate.
        lr: f64,
    },
    /// `LBFGS(lr, max_iter, history_size=100)`, one outer step per "epoch".
    Lbfgs {
        /// Fixed step length.
        lr: f64,
        /// Inner iterations per step.
        max_iter: usize,
    },
    /// The Polyak step with `f* = 0`.
    Polyak,
}

impl Optimizer {
    /// A short name for tables.
    pub fn name(&self) -> String {
        match self {
            Optimizer::AdamW { lr, weight_decay } => format!("AdamW(lr={lr}, wd={weight_decay})"),
            Optimizer::Adam { lr } => format!("Adam(lr={lr})"),
            Optimizer::Sgd { lr } => format!("SGD(lr={lr})"),
            Optimizer::Lbfgs { lr, max_iter } => format!("LBFGS(lr={lr}, max_iter={max_iter})"),
            Optimizer::Polyak => "Polyak(f*=0)".into(),
        }
    }
}

/// The outcome of one training run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunResult {
    /// Truth table.
    pub gate: Gate,
    /// Optimizer.
    pub optimizer: String,
    /// Loss before each step (for LBFGS: the loss at the start of each outer step).
    pub losses: Vec<f64>,
    /// Invariants after training.
    pub invariants: Invariants,
    /// Outputs on 00, 01, 10, 11 after training.
    pub outputs: Vec<f64>,
    /// First step whose loss is ≤ 1e-4, if any.
    pub first_below_1e4: Option<usize>,
    /// Steps after that one where the loss rose (the seed's post-convergence analysis).
    pub increases_after_convergence: usize,
    /// Times the loss climbed back above 1e-4 after first reaching it (C13's spike count).
    pub spikes_above_1e4: usize,
    /// Largest loss after first reaching 1e-4.
    pub worst_spike: f64,
    /// Whether the Polyak step stopped because the gradient vanished.
    pub stopped_early: bool,
}

/// Trains a fresh net (after `manual_seed(seed)`, as seed 001's In[7]) for `steps` steps.
/// Callers that need exact reproduction must hold `engram_core::seed::global_rng_lock()`.
pub fn train(gate: Gate, opt: Optimizer, steps: usize, seed: u64) -> RunResult {
    engram_core::seed::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = RawAttentionNet::new(&vs.root());
    let x = inputs();
    let y = gate.targets();
    let mut params = net.parameters();
    let loss_of = |net: &RawAttentionNet| net.forward(&x).mse_loss(&y, tch::Reduction::Mean);
    let mut losses = Vec::with_capacity(steps);
    let mut stopped_early = false;
    match opt {
        Optimizer::AdamW { .. } | Optimizer::Adam { .. } => {
            let cfg = match opt {
                Optimizer::AdamW { lr, weight_decay } => AdamConfig { weight_decay, ..AdamConfig::adamw(lr) },
                Optimizer::Adam { lr } => AdamConfig::adam(lr),
                _ => unreachable!(),
            };
            let mut o = Adam::new(params, cfg);
            for _ in 0..steps {
                o.zero_grad();
                let l = loss_of(&net);
                losses.push(l.double_value(&[]));
                l.backward();
                o.step();
            }
        }
        Optimizer::Sgd { lr } => {
            let mut o = Sgd::new(params, lr);
            for _ in 0..steps {
                o.zero_grad();
                let l = loss_of(&net);
                losses.push(l.double_value(&[]));
                l.backward();
                o.step();
            }
        }
        Optimizer::Lbfgs { lr, max_iter } => {
            let mut o = Lbfgs::new(params.iter().map(|p| p.shallow_clone()).collect(), LbfgsConfig::new(lr, max_iter, 100));
            for _ in 0..steps {
                let l = o.step(|| {
                    crate::optim::zero_grad(&params);
                    let l = loss_of(&net);
                    l.backward();
                    l
                });
                losses.push(l);
            }
        }
        Optimizer::Polyak => {
            for _ in 0..steps {
                crate::optim::zero_grad(&params);
                let l = loss_of(&net);
                losses.push(l.double_value(&[]));
                l.backward();
                if !polyak_step(&mut params, &l) {
                    stopped_early = true;
                    break;
                }
            }
        }
    }
    let outputs: Vec<f64> = tch::no_grad(|| {
        let o = net.forward(&x).reshape([-1]);
        (0..4).map(|i| o.double_value(&[i])).collect()
    });
    let first = losses.iter().position(|&l| l <= 1e-4);
    let spikes = first.map_or(0, |f| (f + 1..losses.len()).filter(|&t| losses[t] > 1e-4 && losses[t - 1] <= 1e-4).count());
    let (increases, worst) = match first {
        Some(f) => (
            (f + 1..losses.len()).filter(|&t| losses[t] > losses[t - 1]).count(),
            losses[f..].iter().cloned().fold(0.0, f64::max),
        ),
        None => (0, f64::NAN),
    };
    RunResult {
        gate,
        optimizer: opt.name(),
        losses,
        invariants: net.invariants(),
        outputs,
        first_below_1e4: first,
        increases_after_convergence: increases,
        spikes_above_1e4: spikes,
        worst_spike: worst,
        stopped_early,
    }
}
