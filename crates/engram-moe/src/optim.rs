//! Optimizers whose updates are op-for-op those of `torch.optim` on CPU (single-tensor code path),
//! so that a seeded run reproduces a PyTorch log bit for bit: SGD, Adam, AdamW, L-BFGS (no line
//! search) and the Polyak step.
//!
//! engram-layers had no optimizers when this crate was written. tch's `nn::AdamW` was checked
//! against PyTorch on seed 001's XOR run: it prints the same 4-decimal log through epoch 400,
//! but its per-step losses drift from PyTorch's (up to 13 % relative within 401 steps), whereas
//! the update here matches PyTorch to float rounding (observed relative difference ≤ 2e-16 over
//! 500 steps; `tests/golden_runs.rs`). So the exact updates live here. Each mirrors the ATen
//! calls of PyTorch 2.11's `_single_tensor_adam` / `_single_tensor_sgd` / `LBFGS.step`, including
//! the places where PyTorch keeps intermediate scalars as float32 0-dim tensors.

use tch::{Kind, Tensor};

/// `p ← p + alpha·other` as ATen's `add_(other, alpha=…)` computes it on CPU: one fused
/// multiply-add (`fmadd(other, alpha, p)`), i.e. a single rounding. tch exposes no `alpha`
/// argument, and `p + (other·alpha)` rounds twice; `addcmul_` with a 0-dim `alpha` tensor goes
/// through the same fused kernel and gives PyTorch's bits.
pub fn add_scaled_(p: &mut Tensor, other: &Tensor, alpha: f64) {
    let a = Tensor::from(alpha).to_kind(p.kind()).to_device(p.device());
    let _ = p.addcmul_(other, &a);
}

/// Zeroes the gradients of `params` (PyTorch ≥ 2 sets them to `None`; zeroing is equivalent
/// for parameters that always receive a gradient, as here).
pub fn zero_grad(params: &[Tensor]) {
    for p in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// Plain SGD (`torch.optim.SGD(lr)`: no momentum, no weight decay).
#[derive(Debug)]
pub struct Sgd {
    params: Vec<Tensor>,
    lr: f64,
}

impl Sgd {
    /// An optimizer over `params` (shallow clones that share storage with the model's tensors).
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Sgd { params, lr }
    }
    /// `p ← p − lr·g` for every parameter with a gradient.
    pub fn step(&mut self) {
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.grad();
                if g.defined() {
                    add_scaled_(p, &g, -self.lr);
                }
            }
        })
    }
    /// Zeroes the gradients.
    pub fn zero_grad(&self) {
        zero_grad(&self.params)
    }
}

/// Hyper-parameters of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε added to the denominator.
    pub eps: f64,
    /// Weight decay: L2 (added to the gradient) for Adam, decoupled for AdamW.
    pub weight_decay: f64,
    /// `true` for AdamW (decoupled decay: `p ← p·(1 − lr·wd)` before the Adam step).
    pub decoupled: bool,
}

impl AdamConfig {
    /// `torch.optim.Adam(lr)` defaults: β = (0.9, 0.999), ε = 1e-8, no weight decay.
    pub fn adam(lr: f64) -> Self {
        AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
    /// `torch.optim.AdamW(lr)` defaults: as Adam with decoupled weight decay 0.01.
    pub fn adamw(lr: f64) -> Self {
        AdamConfig { weight_decay: 0.01, decoupled: true, ..Self::adam(lr) }
    }
}

/// Adam / AdamW with `torch.optim`'s exact update order.
///
/// ```
/// use engram_moe::optim::{Adam, AdamConfig};
/// use tch::{Kind, Tensor};
/// let w = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
/// let mut opt = Adam::new(vec![w.shallow_clone()], AdamConfig::adamw(0.1));
/// for _ in 0..200 {
///     opt.zero_grad();
///     (&w * &w).sum(Kind::Float).backward();
///     opt.step();
/// }
/// assert!(w.abs().max().double_value(&[]) < 0.05);
/// ```
#[derive(Debug)]
pub struct Adam {
    params: Vec<Tensor>,
    cfg: AdamConfig,
    step: u64,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// An optimizer over `params`.
    pub fn new(params: Vec<Tensor>, cfg: AdamConfig) -> Self {
        let exp_avg = params.iter().map(|p| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|p| p.zeros_like()).collect();
        Adam { params, cfg, step: 0, exp_avg, exp_avg_sq }
    }
    /// Zeroes the gradients.
    pub fn zero_grad(&self) {
        zero_grad(&self.params)
    }
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }
    /// Changes the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        let c = self.cfg;
        // PyTorch keeps one step counter per parameter; they advance together here.
        self.step += 1;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - c.beta1.powf(step);
        let bias_correction2 = 1.0 - c.beta2.powf(step);
        let step_size = c.lr / bias_correction1;
        let bias_correction2_sqrt = bias_correction2.sqrt();
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
                let mut grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                if c.weight_decay != 0.0 {
                    if c.decoupled {
                        let _ = p.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
                    } else {
                        grad = grad.g_add(&(&*p * c.weight_decay));
                    }
                }
                let _ = m.lerp_(&grad, 1.0 - c.beta1);
                // addcmul_(g, g, value=1-β₂) computes v + ((1-β₂)·g)·g; multiplying by 1 is exact.
                let _ = v.g_mul_scalar_(c.beta2);
                let _ = v.addcmul_(&(&grad * (1.0 - c.beta2)), &grad);
                let mut denom = v.sqrt() / bias_correction2_sqrt;
                let _ = denom.g_add_scalar_(c.eps);
                let _ = p.addcdiv_(&(&*m * (-step_size)), &denom);
            }
        })
    }
}

/// Hyper-parameters of [`Lbfgs`] (`torch.optim.LBFGS` without a line search).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsConfig {
    /// Fixed step length multiplier.
    pub lr: f64,
    /// Inner iterations per `step`.
    pub max_iter: usize,
    /// Function evaluations per `step` (PyTorch default `max_iter·5/4`).
    pub max_eval: usize,
    /// Stop when the largest gradient entry is at most this.
    pub tolerance_grad: f64,
    /// Stop when the step or the loss change is below this.
    pub tolerance_change: f64,
    /// Curvature pairs kept.
    pub history_size: usize,
}

impl LbfgsConfig {
    /// PyTorch's defaults with the given `lr`, `max_iter` and `history_size`.
    pub fn new(lr: f64, max_iter: usize, history_size: usize) -> Self {
        LbfgsConfig {
            lr,
            max_iter,
            max_eval: max_iter * 5 / 4,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size,
        }
    }
}

/// A step length that PyTorch holds either as a Python float or as a float32 0-dim tensor.
#[derive(Debug)]
enum StepLen {
    Float(f64),
    Tensor(Tensor),
}

impl StepLen {
    fn scalar(&self) -> f64 {
        match self {
            StepLen::Float(x) => *x,
            StepLen::Tensor(t) => t.double_value(&[]),
        }
    }
}

/// L-BFGS with a fixed step (`line_search_fn=None`), a port of `torch.optim.LBFGS.step`.
#[derive(Debug)]
pub struct Lbfgs {
    params: Vec<Tensor>,
    cfg: LbfgsConfig,
    n_iter: usize,
    d: Option<Tensor>,
    t: Option<StepLen>,
    old_dirs: Vec<Tensor>,
    old_stps: Vec<Tensor>,
    ro: Vec<Tensor>,
    h_diag: Option<Tensor>,
    prev_flat_grad: Option<Tensor>,
}

impl Lbfgs {
    /// An optimizer over `params`.
    pub fn new(params: Vec<Tensor>, cfg: LbfgsConfig) -> Self {
        Lbfgs {
            params,
            cfg,
            n_iter: 0,
            d: None,
            t: None,
            old_dirs: vec![],
            old_stps: vec![],
            ro: vec![],
            h_diag: None,
            prev_flat_grad: None,
        }
    }

    fn flat_grad(&self) -> Tensor {
        let parts: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| {
                let g = p.grad();
                if g.defined() {
                    g.reshape([-1])
                } else {
                    p.zeros_like().reshape([-1])
                }
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    fn add_grad(&mut self, t: &StepLen, d: &Tensor) {
        tch::no_grad(|| {
            let mut offset = 0i64;
            for p in &mut self.params {
                let n = p.numel() as i64;
                let slice = d.narrow(0, offset, n).view_as(p);
                add_scaled_(p, &slice, t.scalar());
                offset += n;
            }
        })
    }

    /// One outer step. `closure` zeroes the gradients, evaluates the loss, calls `backward` and
    /// returns the loss; the loss of the first evaluation is returned, as PyTorch does.
    pub fn step(&mut self, mut closure: impl FnMut() -> Tensor) -> f64 {
        let c = self.cfg;
        let orig_loss = closure().double_value(&[]);
        let mut loss = orig_loss;
        let mut current_evals = 1usize;
        let mut flat_grad = self.flat_grad();
        if flat_grad.abs().max().double_value(&[]) <= c.tolerance_grad {
            return orig_loss;
        }
        let mut n_iter = 0usize;
        let mut opt_cond = false;
        while n_iter < c.max_iter {
            n_iter += 1;
            self.n_iter += 1;
            let d: Tensor = if self.n_iter == 1 {
                self.old_dirs.clear();
                self.old_stps.clear();
                self.ro.clear();
                self.h_diag = None;
                flat_grad.neg()
            } else {
                let prev = self.prev_flat_grad.as_ref().expect("set after the first iteration");
                let y = &flat_grad - prev;
                let s = match self.t.as_ref().expect("set after the first iteration") {
                    StepLen::Float(x) => self.d.as_ref().unwrap() * *x,
                    StepLen::Tensor(tt) => self.d.as_ref().unwrap() * tt,
                };
                let ys = y.dot(&s);
                if ys.double_value(&[]) > 1e-10 {
                    if self.old_dirs.len() == c.history_size {
                        let _ = self.old_dirs.remove(0);
                        let _ = self.old_stps.remove(0);
                        let _ = self.ro.remove(0);
                    }
                    self.ro.push(ys.reciprocal());
                    self.h_diag = Some(&ys / y.dot(&y));
                    self.old_dirs.push(y);
                    self.old_stps.push(s);
                }
                let num_old = self.old_dirs.len();
                let mut al: Vec<Option<Tensor>> = (0..num_old).map(|_| None).collect();
                let mut q = flat_grad.neg();
                for i in (0..num_old).rev() {
                    let a = self.old_stps[i].dot(&q) * &self.ro[i];
                    add_scaled_(&mut q, &self.old_dirs[i], -a.double_value(&[]));
                    al[i] = Some(a);
                }
                let mut r = match &self.h_diag {
                    Some(h) => &q * h,
                    None => &q * 1.0,
                };
                for (i, a) in al.iter().enumerate() {
                    let be_i = self.old_dirs[i].dot(&r) * &self.ro[i];
                    let alpha = (a.as_ref().unwrap() - be_i).double_value(&[]);
                    add_scaled_(&mut r, &self.old_stps[i], alpha);
                }
                r
            };
            self.prev_flat_grad = Some(flat_grad.copy());
            let prev_loss = loss;
            let t = if self.n_iter == 1 {
                // Python's `1.0 / tensor` is `tensor.reciprocal() * 1.0`.
                let inv = flat_grad.abs().sum(Kind::Float).reciprocal();
                if inv.double_value(&[]) < 1.0 {
                    StepLen::Tensor(inv * c.lr)
                } else {
                    StepLen::Float(c.lr)
                }
            } else {
                StepLen::Float(c.lr)
            };
            let gtd = flat_grad.dot(&d).double_value(&[]);
            if gtd > -c.tolerance_change {
                self.d = Some(d);
                self.t = Some(t);
                break;
            }
            let mut ls_func_evals = 0;
            self.add_grad(&t, &d);
            if n_iter != c.max_iter {
                loss = closure().double_value(&[]);
                flat_grad = self.flat_grad();
                opt_cond = flat_grad.abs().max().double_value(&[]) <= c.tolerance_grad;
                ls_func_evals = 1;
            }
            current_evals += ls_func_evals;
            let step_small = (match &t {
                StepLen::Float(x) => &d * *x,
                StepLen::Tensor(tt) => &d * tt,
            })
            .abs()
            .max()
            .double_value(&[])
                <= c.tolerance_change;
            self.d = Some(d);
            self.t = Some(t);
            if n_iter == c.max_iter || current_evals >= c.max_eval || opt_cond || step_small {
                break;
            }
            if (loss - prev_loss).abs() < c.tolerance_change {
                break;
            }
        }
        orig_loss
    }
}

/// The Polyak step with optimal value 0 (seed 001's "Newton method on the loss"):
/// `θ ← θ − L/‖∇L‖²·∇L`, the Newton root step for `L(θ) = 0` along the gradient.
///
/// Returns `false` (and leaves θ alone) when `‖∇L‖² < 1e-12`, the seed's "gradient vanished".
/// `loss` must be the 0-dim loss whose `backward` produced the gradients.
pub fn polyak_step(params: &mut [Tensor], loss: &Tensor) -> bool {
    let g2 = params
        .iter()
        .map(|p| p.grad().square().sum(Kind::Float))
        .fold(Tensor::from(0.0f32), |a, b| a + b);
    if g2.double_value(&[]) < 1e-12 {
        return false;
    }
    let ratio = loss.detach() / g2;
    tch::no_grad(|| {
        for p in params.iter_mut() {
            let _ = p.g_sub_(&(&ratio * p.grad()));
        }
    });
    true
}
