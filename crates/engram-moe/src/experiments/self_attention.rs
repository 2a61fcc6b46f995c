//! Seed 000 notebook B, In[4]–In[7]: single-head self-attention with biased Q/K/V projections,
//! the untrained "Bat Cave" matrix and the River/Money "bank" experiments in 2-D and 3-D.
//!
//! **The 2-D symmetry identity.** With river = (1,0), money = (0,1), bank = (½,½) the bank's
//! query `q` is the same in both sentences and the key differences
//! `k(river) − k(bank) = W_k(½,−½)` and `k(money) − k(bank) = W_k(−½,½)` are exact negatives
//! (the key bias cancels). So the bank's attention on its neighbour is `σ(z)` in one sentence
//! and `σ(−z)` in the other: they sum to 1 for every parameter value, and the printed
//! 49.9 % / 50.1 % is forced, not a training failure. [`bank_attention_2d`] computes both.

use crate::optim::{Adam, AdamConfig};
use engram_layers::{Linear, LinearConfig};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// `SelfAttention(embed_dim, head_dim)`: `query`, `key`, `value` = `Linear(embed, head)` with
/// bias; `A = softmax(QKᵀ/√head)`, output `A·V`. Single head, no mask, no output projection.
///
/// ```
/// use engram_moe::experiments::self_attention::SelfAttention;
/// use tch::{nn, Device, Kind, Tensor};
/// let vs = nn::VarStore::new(Device::Cpu);
/// let att = SelfAttention::new(&vs.root(), 4, 4);
/// let (ctx, w) = att.forward(&Tensor::randn([1, 3, 4], (Kind::Float, Device::Cpu)));
/// assert_eq!(ctx.size(), vec![1, 3, 4]);
/// let row_sums = w.sum_dim_intlist(-1, false, Kind::Float);
/// assert!((row_sums - 1.0).abs().max().double_value(&[]) < 1e-6);
/// ```
#[derive(Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    head_dim: i64,
}

impl SelfAttention {
    /// Creates query, key, value in that order (PyTorch init).
    pub fn new(p: &nn::Path, embed_dim: i64, head_dim: i64) -> Self {
        let query = Linear::new(p / "query", LinearConfig::new(embed_dim, head_dim));
        let key = Linear::new(p / "key", LinearConfig::new(embed_dim, head_dim));
        let value = Linear::new(p / "value", LinearConfig::new(embed_dim, head_dim));
        SelfAttention { query, key, value, head_dim }
    }

    /// `x` `[B, T, embed]` → (context `[B, T, head]`, weights `[B, T, T]`).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let q = self.query.forward(x);
        let k = self.key.forward(x);
        let v = self.value.forward(x);
        let scores = q.matmul(&k.transpose(-2, -1)) / (self.head_dim as f64).sqrt();
        let w = scores.softmax(-1, scores.kind());
        (w.matmul(&v), w)
    }

    /// Query and key parameters (what In[7] trains once V is frozen).
    pub fn qk_parameters(&self) -> Vec<Tensor> {
        [&self.query, &self.key]
            .iter()
            .flat_map(|l| [l.weight.shallow_clone(), l.bias.as_ref().expect("bias").shallow_clone()])
            .collect()
    }

    /// All parameters in PyTorch order.
    pub fn parameters(&self) -> Vec<Tensor> {
        let mut p = self.qk_parameters();
        p.push(self.value.weight.shallow_clone());
        p.push(self.value.bias.as_ref().expect("bias").shallow_clone());
        p
    }
}

/// The untrained Bat-Cave cell (In[4]): `manual_seed(seed)`, `SelfAttention(4, 4)`, then
/// `randn(1, 3, 4)`. Returns (input, weights, context), each `[3, ·]`.
pub fn bat_cave(seed: u64) -> (Tensor, Tensor, Tensor) {
    engram_core::seed::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let att = SelfAttention::new(&vs.root(), 4, 4);
    let x = Tensor::randn([1, 3, 4], (Kind::Float, Device::Cpu));
    let (ctx, w) = tch::no_grad(|| att.forward(&x));
    (x.get(0), w.get(0), ctx.get(0))
}

/// The two sentences of the bank experiment in `dim` dimensions: (input A, target A, input B,
/// target B), each `[1, 2, dim]`. 2-D: river (1,0), money (0,1), bank (½,½); 3-D: one-hot.
pub fn bank_batch(dim: i64) -> (Tensor, Tensor, Tensor, Tensor) {
    let (river, money, bank): (Vec<f32>, Vec<f32>, Vec<f32>) = if dim == 2 {
        (vec![1., 0.], vec![0., 1.], vec![0.5, 0.5])
    } else {
        (vec![1., 0., 0.], vec![0., 1., 0.], vec![0., 0., 1.])
    };
    let seq = |a: &[f32], b: &[f32]| Tensor::from_slice(&[a, b].concat()).view([1, 2, dim]);
    (seq(&river, &bank), seq(&river, &river), seq(&money, &bank), seq(&money, &money))
}

/// The bank's attention on its neighbour in the River and the Money sentence (row 1, col 0).
pub fn bank_attention(att: &SelfAttention, dim: i64) -> (f64, f64) {
    let (a, _, b, _) = bank_batch(dim);
    let kind = att.query.weight.kind();
    let (a, b) = (a.to_kind(kind), b.to_kind(kind));
    tch::no_grad(|| {
        let (_, wa) = att.forward(&a);
        let (_, wb) = att.forward(&b);
        (wa.double_value(&[0, 1, 0]), wb.double_value(&[0, 1, 0]))
    })
}

/// [`bank_attention`] in 2-D: the pair always sums to 1 (see the module docs).
pub fn bank_attention_2d(att: &SelfAttention) -> (f64, f64) {
    bank_attention(att, 2)
}

/// The outcome of a bank run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BankResult {
    /// Embedding dimension (2 or 3).
    pub dim: i64,
    /// Loss before each step.
    pub losses: Vec<f64>,
    /// Bank → river attention after training.
    pub att_river: f64,
    /// Bank → money attention after training.
    pub att_money: f64,
}

/// Trains the bank experiment: `manual_seed(seed)`, `SelfAttention(dim, dim)`, Adam(0.05) on
/// `MSE_A + MSE_B` for `steps` steps. `freeze_identity_value` sets `V = I`, bias 0 and trains
/// only Q and K (In[7]); otherwise all 18 (2-D) parameters train (In[5]).
pub fn train_bank(dim: i64, freeze_identity_value: bool, steps: usize, seed: u64) -> BankResult {
    engram_core::seed::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut att = SelfAttention::new(&vs.root(), dim, dim);
    let params = if freeze_identity_value {
        tch::no_grad(|| {
            att.value.weight.copy_(&Tensor::eye(dim, (Kind::Float, Device::Cpu)));
            let _ = att.value.bias.as_mut().expect("bias").fill_(0.0);
        });
        att.value.weight = att.value.weight.detach();
        att.value.bias = att.value.bias.as_ref().map(|b| b.detach());
        att.qk_parameters()
    } else {
        att.parameters()
    };
    let mut opt = Adam::new(params, AdamConfig::adam(0.05));
    let (ia, ta, ib, tb) = bank_batch(dim);
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        opt.zero_grad();
        let l = att.forward(&ia).0.mse_loss(&ta, tch::Reduction::Mean)
            + att.forward(&ib).0.mse_loss(&tb, tch::Reduction::Mean);
        losses.push(l.double_value(&[]));
        l.backward();
        opt.step();
    }
    let (att_river, att_money) = bank_attention(&att, dim);
    BankResult { dim, losses, att_river, att_money }
}
