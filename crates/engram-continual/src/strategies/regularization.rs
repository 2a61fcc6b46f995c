//! Weight-importance regularisers: EWC (separate and online), SI and MAS. Each adds
//! `strength · Σ_i Ω_i (θ_i − θ*_i)²` to the loss, with different importances Ω.

use crate::data::Dataset;
use crate::error::{invalid, Result};
use crate::scenario::Experience;
use crate::template::{Context, Learner, Plugin};
use tch::{Kind, Tensor};

/// Gradients of `loss` with respect to `params` without touching `.grad` (None where unused).
pub fn grads_of(loss: &Tensor, params: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
    let gs = Tensor::f_run_backward(&[loss], params, false, false)?;
    Ok(gs.into_iter().map(|g| g.defined().then_some(g)).collect())
}

/// `Σ_k Σ_i Ω_k,i (θ_i − θ*_k,i)²` over anchors `(Ω_k, θ*_k)`.
pub fn quadratic_penalty(params: &[Tensor], anchors: &[(&[Tensor], &[Tensor])]) -> Option<Tensor> {
    let mut total: Option<Tensor> = None;
    for (omega, star) in anchors {
        for ((p, o), s) in params.iter().zip(omega.iter()).zip(star.iter()) {
            let term = (o * (p - s).pow_tensor_scalar(2)).sum(Kind::Float);
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
    }
    total
}

/// The diagonal empirical Fisher: for every parameter, the mean over samples of the squared
/// gradient of that sample's cross-entropy at its true label.
///
/// Per-sample gradients come in closed form rather than from `N` backward passes: for a linear
/// layer `z = W a + b`, sample `n`'s gradient is `δ_n a_nᵀ` (and `δ_n` for the bias), where
/// `δ_n = ∂L_n/∂z_n`. One backward of `Σ_n L_n` to the layer outputs gives every `δ_n` (a
/// sample's loss depends only on its own row), and `Σ_n (δ_n a_nᵀ)² = (δ²)ᵀ (a²)` elementwise.
/// At most `max_samples` samples are used (the first ones); `None` uses all.
pub fn fisher_diagonal(learner: &Learner, data: &Dataset, max_samples: Option<usize>) -> Result<Vec<Tensor>> {
    let params = learner.model.params();
    let mut fisher: Vec<Tensor> = params.iter().map(|p| p.zeros_like().detach()).collect();
    let n = max_samples.map_or(data.len(), |m| m.min(data.len()));
    if n == 0 {
        return Err(invalid("Fisher information of an empty set"));
    }
    let data = data.subset(&(0..n as i64).collect::<Vec<_>>())?;
    let tasks = data.tasks();
    let mut present = tasks.clone();
    present.sort_unstable();
    present.dedup();
    for task in present {
        let rows: Vec<i64> = (0..n).filter(|&i| tasks[i] == task).map(|i| i as i64).collect();
        for chunk in rows.chunks(1024) {
            let part = data.subset(chunk)?;
            let (z, traces) = learner.model.forward_traced(&part.x, task)?;
            let z = if learner.setting == crate::scenario::Setting::TaskIncremental && !learner.model.is_multi_head() {
                z.masked_fill(&learner.valid_outputs(&part.t).logical_not(), crate::model::MASKED)
            } else {
                z
            };
            let loss = z.log_softmax(-1, Kind::Float).nll_loss_nd::<Tensor>(&part.y, None, tch::Reduction::Sum, -100);
            let outs: Vec<&Tensor> = traces.iter().map(|t| &t.output).collect();
            let deltas = Tensor::f_run_backward(&[&loss], &outs, false, false)?;
            tch::no_grad(|| {
                for (tr, d) in traces.iter().zip(deltas) {
                    let d2 = d.square();
                    let a2 = tr.input.detach().square();
                    let _ = fisher[tr.weight_index].f_add_(&d2.transpose(0, 1).matmul(&a2));
                    let _ = fisher[tr.weight_index + 1].f_add_(&d2.sum_dim_intlist(0, false, Kind::Float));
                }
            });
        }
    }
    for f in &mut fisher {
        let _ = f.f_div_scalar_(n as f64)?;
    }
    Ok(fisher)
}

/// Elastic Weight Consolidation (Kirkpatrick et al. 2017), penalty `(λ/2) Σ F (θ − θ*)²`.
/// *Separate*: one (F, θ*) per past task. *Online* (Schwarz et al. 2018): one running
/// `F ← γ F + F_new`, anchored at the latest parameters.
#[derive(Debug)]
pub struct Ewc {
    lambda: f64,
    online_gamma: Option<f64>,
    fisher_samples: Option<usize>,
    anchors: Vec<(Vec<Tensor>, Vec<Tensor>)>,
}

impl Ewc {
    /// Separate-penalty EWC.
    pub fn separate(lambda: f64, fisher_samples: Option<usize>) -> Self {
        Ewc { lambda, online_gamma: None, fisher_samples, anchors: Vec::new() }
    }
    /// Online EWC with decay `gamma`.
    pub fn online(lambda: f64, gamma: f64, fisher_samples: Option<usize>) -> Self {
        Ewc { lambda, online_gamma: Some(gamma), fisher_samples, anchors: Vec::new() }
    }
    /// Number of stored (Fisher, anchor) pairs.
    pub fn n_anchors(&self) -> usize {
        self.anchors.len()
    }
    /// Registers the current parameters and their Fisher on `data` as a consolidated task.
    pub fn consolidate(&mut self, learner: &Learner, data: &Dataset) -> Result<()> {
        let f = fisher_diagonal(learner, data, self.fisher_samples)?;
        let star = learner.model.snapshot();
        match (self.online_gamma, self.anchors.pop()) {
            (Some(g), Some((old, _))) => {
                let merged = old.iter().zip(&f).map(|(o, n)| o * g + n).collect();
                self.anchors.push((merged, star));
            }
            (_, prev) => {
                if let Some(p) = prev {
                    self.anchors.push(p);
                }
                self.anchors.push((f, star));
            }
        }
        Ok(())
    }
    /// The penalty at the learner's current parameters (None before the first consolidation).
    pub fn penalty(&self, learner: &Learner) -> Option<Tensor> {
        quadratic_penalty(&learner.model.params(), &self.anchors.iter().map(|(f, s)| (f.as_slice(), s.as_slice())).collect::<Vec<_>>()).map(|p| p * (self.lambda / 2.0))
    }
}

impl Plugin for Ewc {
    fn name(&self) -> String {
        if self.online_gamma.is_some() { "online-ewc".into() } else { "ewc".into() }
    }
    fn loss_terms(&mut self, l: &Learner, _b: &crate::template::Batch, _z: &Tensor, _c: &Context) -> Result<Vec<Tensor>> {
        Ok(self.penalty(l).into_iter().collect())
    }
    fn after_experience(&mut self, l: &mut Learner, exp: &Experience, _c: &Context) -> Result<()> {
        self.consolidate(l, &exp.train)
    }
}

/// Synaptic Intelligence (Zenke et al. 2017): importance from each parameter's contribution to
/// the loss decrease along the training path, `ω += −g·Δθ` per step, `Ω += ω / (Δ² + ξ)` per task.
#[derive(Debug)]
pub struct Si {
    strength: f64,
    xi: f64,
    omega: Option<Vec<Tensor>>,
    star: Option<Vec<Tensor>>,
    path: Vec<Tensor>,
    start: Vec<Tensor>,
    before_step: Vec<Tensor>,
    grads: Vec<Option<Tensor>>,
}

impl Si {
    /// SI with penalty strength `c` and damping `xi`.
    pub fn new(strength: f64, xi: f64) -> Self {
        Si { strength, xi, omega: None, star: None, path: Vec::new(), start: Vec::new(), before_step: Vec::new(), grads: Vec::new() }
    }
}

impl Plugin for Si {
    fn name(&self) -> String {
        "si".into()
    }
    fn before_experience(&mut self, l: &mut Learner, _e: &Experience, _c: &Context) -> Result<()> {
        self.start = l.model.snapshot();
        self.before_step = l.model.snapshot();
        self.path = self.start.iter().map(|p| p.zeros_like()).collect();
        Ok(())
    }
    fn loss_terms(&mut self, l: &Learner, _b: &crate::template::Batch, _z: &Tensor, _c: &Context) -> Result<Vec<Tensor>> {
        match (&self.omega, &self.star) {
            (Some(o), Some(s)) => Ok(quadratic_penalty(&l.model.params(), &[(o.as_slice(), s.as_slice())])
                .map(|p| p * self.strength)
                .into_iter()
                .collect()),
            _ => Ok(Vec::new()),
        }
    }
    fn after_backward(&mut self, l: &Learner, _c: &Context) -> Result<()> {
        self.grads = l.model.params().iter().map(|p| {
            let g = p.grad();
            g.defined().then(|| g.detach().copy())
        }).collect();
        Ok(())
    }
    fn after_step(&mut self, l: &Learner, _b: &crate::template::Batch, _z: &Tensor, _c: &Context) -> Result<()> {
        let now = l.model.snapshot();
        tch::no_grad(|| {
            for (i, g) in self.grads.iter().enumerate() {
                if let Some(g) = g {
                    let delta = &now[i] - &self.before_step[i];
                    let _ = self.path[i].f_sub_(&(g * delta));
                }
            }
        });
        self.before_step = now;
        Ok(())
    }
    fn after_experience(&mut self, l: &mut Learner, _e: &Experience, _c: &Context) -> Result<()> {
        let now = l.model.snapshot();
        let new: Vec<Tensor> = now
            .iter()
            .zip(&self.start)
            .zip(&self.path)
            .map(|((n, s), w)| (w / ((n - s).square() + self.xi)).clamp_min(0.0))
            .collect();
        self.omega = Some(match self.omega.take() {
            Some(old) => old.iter().zip(&new).map(|(o, n)| o + n).collect(),
            None => new,
        });
        self.star = Some(now);
        Ok(())
    }
}

/// Memory Aware Synapses (Aljundi et al. 2018): importance = mean over samples of
/// `|∂‖f(x)‖²/∂θ|`, the sensitivity of the output's squared L2 norm (no labels needed).
/// Importances of successive tasks are blended as `Ω ← α Ω + (1 − α) Ω_new` (Avalanche's rule).
#[derive(Debug)]
pub struct Mas {
    lambda: f64,
    alpha: f64,
    max_samples: Option<usize>,
    omega: Option<Vec<Tensor>>,
    star: Option<Vec<Tensor>>,
}

impl Mas {
    /// MAS with penalty weight `lambda` and blending `alpha`.
    pub fn new(lambda: f64, alpha: f64, max_samples: Option<usize>) -> Self {
        Mas { lambda, alpha, max_samples, omega: None, star: None }
    }
    /// The importance of every parameter on `data`.
    pub fn importance(learner: &Learner, data: &Dataset, max_samples: Option<usize>) -> Result<Vec<Tensor>> {
        let params = learner.model.params();
        let mut imp: Vec<Tensor> = params.iter().map(|p| p.zeros_like().detach()).collect();
        let n = max_samples.map_or(data.len(), |m| m.min(data.len()));
        let mut start = 0i64;
        while start < n as i64 {
            let len = 256.min(n as i64 - start);
            let (x, t) = (data.x.narrow(0, start, len), data.t.narrow(0, start, len));
            let z = learner.logits(&x, &t)?;
            let valid = learner.valid_outputs(&t);
            let z = z.where_self(&valid.logical_and(&z.gt(crate::model::MASKED / 2.0)), &z.zeros_like());
            let loss = z.square().sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float);
            for (acc, g) in imp.iter_mut().zip(grads_of(&loss, &params)?) {
                if let Some(g) = g {
                    let _ = acc.f_add_(&(g.abs() * len as f64))?;
                }
            }
            start += len;
        }
        for i in &mut imp {
            let _ = i.f_div_scalar_(n.max(1) as f64)?;
        }
        Ok(imp)
    }
}

impl Plugin for Mas {
    fn name(&self) -> String {
        "mas".into()
    }
    fn loss_terms(&mut self, l: &Learner, _b: &crate::template::Batch, _z: &Tensor, _c: &Context) -> Result<Vec<Tensor>> {
        match (&self.omega, &self.star) {
            (Some(o), Some(s)) => Ok(quadratic_penalty(&l.model.params(), &[(o.as_slice(), s.as_slice())])
                .map(|p| p * self.lambda)
                .into_iter()
                .collect()),
            _ => Ok(Vec::new()),
        }
    }
    fn after_experience(&mut self, l: &mut Learner, e: &Experience, _c: &Context) -> Result<()> {
        let new = Mas::importance(l, &e.train, self.max_samples)?;
        self.omega = Some(match self.omega.take() {
            Some(old) => old.iter().zip(&new).map(|(o, n)| o * self.alpha + n * (1.0 - self.alpha)).collect(),
            None => new,
        });
        self.star = Some(l.model.snapshot());
        Ok(())
    }
}
