//! The seed-000 notebook's continual-learning cells, reproduced op for op.
//!
//! Under `manual_seed(42)` the four seeded cells (In[3] replay, In[5] EWC-128, In[7] EWC-512 +
//! clipping, In[8] multi-head) consume libtorch's generator exactly as the notebook does
//! (`nn.Linear` inits in construction order, then `torch.rand` for the data, `torch.randperm` for
//! the replay buffer) and apply the same ATen ops (BCE on sigmoid outputs, libtorch's SGD step,
//! PyTorch's `clip_grad_norm_`), so they print the published accuracies digit for digit.
//!
//! The notebook evaluates on its training points. [`run_cell`] also draws fresh held-out points
//! *after* the cell has finished (so the published figures are untouched) for the multi-seed
//! protocol of [`protocol`].

use crate::error::{invalid, Result};
use crate::optim::{clip_grad_norm_, Optimizer, Sgd};
use engram_layers::{Linear, LinearConfig};
use serde::{Deserialize, Serialize};
use std::sync::MutexGuard;
use tch::{nn, nn::Module, Device, Kind, Reduction, Tensor};

/// The notebook's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cell {
    /// In[1]: naive fine-tuning, width 16, SGD 0.1, 500 + 500 steps, one optimizer (unseeded in the notebook).
    Naive,
    /// In[3]: replay, width 64, SGD 0.1, buffer of 300 A points, B without its top-right quadrant.
    Replay,
    /// In[5]: EWC λ=2000, width 128, SGD 0.1 then a new SGD 0.01 for 2000 steps.
    Ewc128,
    /// In[7]: EWC λ=500, width 512, SGD 0.05 then 0.01, gradient clipping at 1.0.
    Ewc512Clip,
    /// In[8]: shared Linear(2,512)+ReLU, a sigmoid head per task, one SGD 0.05.
    MultiHead,
}

impl Cell {
    /// The four seeded cells.
    pub const SEEDED: [Cell; 4] = [Cell::Replay, Cell::Ewc128, Cell::Ewc512Clip, Cell::MultiHead];
    /// All five.
    pub const ALL: [Cell; 5] = [Cell::Naive, Cell::Replay, Cell::Ewc128, Cell::Ewc512Clip, Cell::MultiHead];

    /// Label as in the notebook.
    pub fn label(&self) -> &'static str {
        match self {
            Cell::Naive => "In[1] naive (w16)",
            Cell::Replay => "In[3] replay (w64)",
            Cell::Ewc128 => "In[5] EWC λ2000 (w128)",
            Cell::Ewc512Clip => "In[7] EWC λ500+clip (w512)",
            Cell::MultiHead => "In[8] multi-head (w512)",
        }
    }

    /// The published (A before, B, A after) percentages; In[1] ran without a seed.
    pub fn published(&self) -> [f64; 3] {
        match self {
            Cell::Naive => [94.30, 96.80, 51.30],
            Cell::Replay => [97.80, 85.88, 84.60],
            Cell::Ewc128 => [97.40, 79.50, 67.50],
            Cell::Ewc512Clip => [97.30, 97.80, 51.00],
            Cell::MultiHead => [97.50, 98.00, 97.80],
        }
    }
}

/// What one run of a cell measured. Percentages as the notebook prints them (`acc.item()*100`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// Which cell.
    pub cell: Cell,
    /// Seed given to `manual_seed`.
    pub seed: u64,
    /// Task A accuracy on its training points after phase 1.
    pub a_before: f64,
    /// Task B accuracy on its training points (the full TR-excluded set for replay).
    pub b: f64,
    /// Task A accuracy on its training points after phase 2.
    pub a_after: f64,
    /// Size of the B set (≈750 for replay, 1000 otherwise).
    pub n_b: usize,
    /// Held-out accuracy on fresh A points after phase 2.
    pub heldout_a_after: f64,
    /// Held-out accuracy on fresh points of B's distribution after phase 2.
    pub heldout_b: f64,
    /// Largest phase-2 training loss seen (to check the notebook's "explosion" claim).
    pub max_phase2_loss: f64,
}

/// Number of fresh held-out points per task.
pub const HELDOUT_POINTS: i64 = 4000;

fn quadrant_data(task_a: bool, n: i64, exclude_top_right: bool) -> (Tensor, Tensor) {
    let mut x = Tensor::rand([n, 2], (Kind::Float, Device::Cpu)) * 2 - 1;
    let (c0, c1) = (x.select(1, 0), x.select(1, 1));
    if exclude_top_right {
        let tr = c0.gt(0.0).logical_and(&c1.gt(0.0));
        x = x.index(&[Some(tr.logical_not())]);
    }
    let (c0, c1) = (x.select(1, 0), x.select(1, 1));
    let y = if task_a { c0.gt(0.0).logical_and(&c1.gt(0.0)) } else { c0.lt(0.0).logical_and(&c1.lt(0.0)) };
    (x, y.to_kind(Kind::Float).view([-1, 1]))
}

/// `fc1 → ReLU → fc2 → Sigmoid`, or the multi-head net's shared body and one head.
struct Net {
    _vs: nn::VarStore,
    body: Linear,
    heads: Vec<Linear>,
}

impl Net {
    fn new(width: i64, n_heads: usize) -> Net {
        let vs = nn::VarStore::new(Device::Cpu);
        let body = Linear::new(vs.root() / "fc1", LinearConfig::new(2, width));
        let heads = (0..n_heads).map(|k| Linear::new(vs.root() / format!("head{k}"), LinearConfig::new(width, 1))).collect();
        Net { _vs: vs, body, heads }
    }
    fn forward(&self, x: &Tensor, head: usize) -> Tensor {
        self.heads[head].forward(&self.body.forward(x).relu()).sigmoid()
    }
    /// `named_parameters()` order: fc1.weight, fc1.bias, then each head's weight and bias.
    fn params(&self) -> Vec<Tensor> {
        std::iter::once(&self.body)
            .chain(&self.heads)
            .flat_map(|l| [l.weight.shallow_clone(), l.bias.as_ref().expect("bias").shallow_clone()])
            .collect()
    }
    fn params_of_head(&self, head: usize) -> Vec<Tensor> {
        let h = &self.heads[head];
        vec![
            self.body.weight.shallow_clone(),
            self.body.bias.as_ref().expect("bias").shallow_clone(),
            h.weight.shallow_clone(),
            h.bias.as_ref().expect("bias").shallow_clone(),
        ]
    }
    fn accuracy(&self, x: &Tensor, y: &Tensor, head: usize) -> f64 {
        tch::no_grad(|| {
            let pred = self.forward(x, head).gt(0.5).to_kind(Kind::Float);
            // `acc.item()` is a float32 mean widened to a Python float, then `* 100`.
            pred.eq_tensor(y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]) * 100.0
        })
    }
}

/// The notebook's EWC: empirical Fisher from batch-1 gradients on every A point, penalty
/// `Σ F (θ − θ_A)²` without ½.
struct SeedEwc {
    anchor: Vec<Tensor>,
    fisher: Vec<Tensor>,
}

impl SeedEwc {
    fn new(net: &Net, x: &Tensor, y: &Tensor) -> Result<SeedEwc> {
        let params = net.params_of_head(0);
        let anchor: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
        let mut fisher: Vec<Tensor> = params.iter().map(|p| p.zeros_like().detach()).collect();
        let n = x.size()[0];
        for i in 0..n {
            for p in &params {
                p.shallow_clone().zero_grad();
            }
            let loss = net.forward(&x.narrow(0, i, 1), 0).f_binary_cross_entropy::<Tensor>(&y.narrow(0, i, 1), None, Reduction::Mean)?;
            loss.f_backward()?;
            tch::no_grad(|| -> Result<()> {
                for (f, p) in fisher.iter_mut().zip(&params) {
                    let _ = f.f_add_(&p.grad().f_pow_tensor_scalar(2)?)?;
                }
                Ok(())
            })?;
        }
        for f in &mut fisher {
            let _ = f.f_div_scalar_(n)?;
        }
        Ok(SeedEwc { anchor, fisher })
    }
    fn penalty(&self, params: &[Tensor]) -> Tensor {
        let mut loss: Option<Tensor> = None;
        for ((p, f), a) in params.iter().zip(&self.fisher).zip(&self.anchor) {
            let term = (f * (p - a).pow_tensor_scalar(2)).sum(Kind::Float);
            loss = Some(match loss {
                Some(l) => l + term,
                None => term,
            });
        }
        loss.expect("at least one parameter")
    }
}

#[allow(clippy::too_many_arguments)]
fn train_phase(
    net: &Net,
    head: usize,
    opt: &mut dyn Optimizer,
    x: &Tensor,
    y: &Tensor,
    steps: usize,
    ewc: Option<(&SeedEwc, f64)>,
    clip: Option<f64>,
) -> Result<f64> {
    let params = net.params();
    let mut max_loss = f64::NEG_INFINITY;
    for _ in 0..steps {
        opt.zero_grad()?;
        let mut loss = net.forward(x, head).f_binary_cross_entropy::<Tensor>(y, None, Reduction::Mean)?;
        if let Some((e, lambda)) = ewc {
            // Out of place, as the notebook's `loss_task + ewc_lambda * loss_ewc` (`+=` on a
            // tch tensor would be an in-place add).
            #[allow(clippy::assign_op_pattern)]
            {
                loss = loss + e.penalty(&net.params_of_head(head)) * lambda;
            }
        }
        max_loss = max_loss.max(loss.double_value(&[]));
        loss.f_backward()?;
        if let Some(c) = clip {
            clip_grad_norm_(&params, c)?;
        }
        opt.step()?;
    }
    Ok(max_loss)
}

/// Runs one cell under `manual_seed(seed)`. The caller proves it holds libtorch's generator
/// lock (`engram_core::seed::global_rng_lock()`), since the figures depend on every draw.
pub fn run_cell(cell: Cell, seed: u64, _rng: &MutexGuard<'static, ()>) -> Result<CellResult> {
    engram_core::seed::manual_seed(seed);
    let (width, lr1, n_heads) = match cell {
        Cell::Naive => (16, 0.1, 1),
        Cell::Replay => (64, 0.1, 1),
        Cell::Ewc128 => (128, 0.1, 1),
        Cell::Ewc512Clip => (512, 0.05, 1),
        Cell::MultiHead => (512, 0.05, 2),
    };
    let net = Net::new(width, n_heads);
    let b_head = if cell == Cell::MultiHead { 1 } else { 0 };
    let phase1_steps = if cell == Cell::Naive { 500 } else { 1000 };
    let mut opt = Sgd::new(&net.params(), lr1)?;
    let (xa, ya) = quadrant_data(true, 1000, false);
    train_phase(&net, 0, &mut opt, &xa, &ya, phase1_steps, None, None)?;
    let a_before = net.accuracy(&xa, &ya, 0);

    let (xb, yb, max_phase2_loss) = match cell {
        Cell::Naive | Cell::MultiHead => {
            let (xb, yb) = quadrant_data(false, 1000, false);
            let steps = if cell == Cell::Naive { 500 } else { 1000 };
            let m = train_phase(&net, b_head, &mut opt, &xb, &yb, steps, None, None)?;
            (xb, yb, m)
        }
        Cell::Replay => {
            let idx = Tensor::randperm(1000, (Kind::Int64, Device::Cpu)).narrow(0, 0, 300);
            let (xr, yr) = (xa.index_select(0, &idx), ya.index_select(0, &idx));
            let (xb, yb) = quadrant_data(false, 1000, true);
            if xb.size()[0] < 300 {
                return Err(invalid("fewer than 300 B points left after excluding the top-right quadrant"));
            }
            let x = Tensor::cat(&[&xb.narrow(0, 0, 300), &xr], 0);
            let y = Tensor::cat(&[&yb.narrow(0, 0, 300), &yr], 0);
            let m = train_phase(&net, 0, &mut opt, &x, &y, 1000, None, None)?;
            (xb, yb, m)
        }
        Cell::Ewc128 | Cell::Ewc512Clip => {
            let ewc = SeedEwc::new(&net, &xa, &ya)?;
            let (xb, yb) = quadrant_data(false, 1000, false);
            let mut opt2 = Sgd::new(&net.params(), 0.01)?;
            let (lambda, clip) = if cell == Cell::Ewc128 { (2000.0, None) } else { (500.0, Some(1.0)) };
            let m = train_phase(&net, 0, &mut opt2, &xb, &yb, 2000, Some((&ewc, lambda)), clip)?;
            (xb, yb, m)
        }
    };
    let b = net.accuracy(&xb, &yb, b_head);
    let a_after = net.accuracy(&xa, &ya, 0);
    // Held-out points come after every draw the notebook makes.
    let (ta_x, ta_y) = quadrant_data(true, HELDOUT_POINTS, false);
    let (tb_x, tb_y) = quadrant_data(false, HELDOUT_POINTS, cell == Cell::Replay);
    Ok(CellResult {
        cell,
        seed,
        a_before,
        b,
        a_after,
        n_b: xb.size()[0] as usize,
        heldout_a_after: net.accuracy(&ta_x, &ta_y, 0),
        heldout_b: net.accuracy(&tb_x, &tb_y, b_head),
        max_phase2_loss,
    })
}

/// The four seeded cells under `manual_seed(42)`.
pub fn reproduce_published(rng: &MutexGuard<'static, ()>) -> Result<Vec<CellResult>> {
    Cell::SEEDED.iter().map(|&c| run_cell(c, 42, rng)).collect()
}

/// Every cell over `seeds`.
pub fn protocol(cells: &[Cell], seeds: &[u64], rng: &MutexGuard<'static, ()>, mut on_done: impl FnMut(&CellResult)) -> Result<Vec<CellResult>> {
    let mut out = Vec::new();
    for &c in cells {
        for &s in seeds {
            let r = run_cell(c, s, rng)?;
            on_done(&r);
            out.push(r);
        }
    }
    Ok(out)
}

/// `xx.xx` as the notebook prints it.
pub fn pct(v: f64) -> String {
    format!("{v:.2}")
}
