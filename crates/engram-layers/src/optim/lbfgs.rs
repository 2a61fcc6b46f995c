//! L-BFGS as `torch.optim.LBFGS` (a port of its single-group algorithm, including the optional
//! strong-Wolfe line search), driven by a closure.

use super::{check_groups, Optimizer, ParamGroup};
use engram_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Hyper-parameters of [`Lbfgs`] (PyTorch's defaults; lr lives in the single group, 1 there).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbfgsConfig {
    /// Iterations per `step` (20).
    pub max_iter: usize,
    /// Function evaluations per `step`; `None` = `max_iter·5/4`.
    pub max_eval: Option<usize>,
    /// Stop when `max|g| ≤` this (1e-7).
    pub tolerance_grad: f64,
    /// Stop when the loss or the step changes less than this (1e-9).
    pub tolerance_change: f64,
    /// Curvature pairs kept (100).
    pub history_size: usize,
    /// Use the strong-Wolfe line search instead of a fixed step.
    pub strong_wolfe: bool,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig { max_iter: 20, max_eval: None, tolerance_grad: 1e-7, tolerance_change: 1e-9, history_size: 100, strong_wolfe: false }
    }
}

/// L-BFGS. Only [`Optimizer::step_with_closure`] steps; the closure must zero the gradients,
/// compute the loss, call `backward` and return the loss. One group only, as in PyTorch.
///
/// ```
/// use engram_layers::optim::{Lbfgs, LbfgsConfig, Optimizer, ParamGroup};
/// let w = tch::Tensor::from_slice(&[3.0f64, -2.0]).set_requires_grad(true);
/// let cfg = LbfgsConfig { strong_wolfe: true, ..Default::default() };
/// let mut opt = Lbfgs::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 1.0)], cfg).unwrap();
/// let mut w2 = w.shallow_clone();
/// let mut closure = || {
///     w2.zero_grad();
///     let l = ((&w2 - 1.0).square() * tch::Tensor::from_slice(&[1.0f64, 10.0])).sum(tch::Kind::Double);
///     l.backward();
///     Ok(l.double_value(&[]))
/// };
/// opt.step_with_closure(&mut closure).unwrap();
/// assert!(closure().unwrap() < 1e-10);
/// ```
pub struct Lbfgs {
    groups: Vec<ParamGroup>,
    cfg: LbfgsConfig,
    st: LbfgsState,
}

#[derive(Default)]
struct LbfgsState {
    func_evals: usize,
    n_iter: usize,
    d: Option<Tensor>,
    t: f64,
    old_dirs: Vec<Tensor>,
    old_stps: Vec<Tensor>,
    ro: Vec<f64>,
    h_diag: f64,
    prev_flat_grad: Option<Tensor>,
    prev_loss: Option<f64>,
}

impl std::fmt::Debug for Lbfgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lbfgs").field("cfg", &self.cfg).field("n_iter", &self.st.n_iter).finish()
    }
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.dot(b).to_kind(Kind::Double).double_value(&[])
}

fn max_abs(a: &Tensor) -> f64 {
    a.abs().max().to_kind(Kind::Double).double_value(&[])
}

impl Lbfgs {
    /// Validates and builds (exactly one group).
    pub fn new(groups: Vec<ParamGroup>, cfg: LbfgsConfig) -> Result<Self> {
        check_groups("LBFGS", &groups)?;
        if groups.len() != 1 {
            return Err(Error::InvalidArgument("LBFGS doesn't support parameter groups (pass exactly one)".into()));
        }
        if cfg.max_iter == 0 || cfg.history_size == 0 {
            return Err(Error::InvalidArgument(format!("LBFGS: bad config {cfg:?}")));
        }
        Ok(Lbfgs { groups, cfg, st: LbfgsState { h_diag: 1.0, ..Default::default() } })
    }

    /// Function evaluations so far and iterations so far.
    pub fn counters(&self) -> (usize, usize) {
        (self.st.func_evals, self.st.n_iter)
    }

    fn params(&self) -> &[Tensor] {
        &self.groups[0].params
    }

    fn gather_flat_grad(&self) -> Tensor {
        let views: Vec<Tensor> = self
            .params()
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
        Tensor::cat(&views, 0)
    }

    fn add_grad(&self, step: f64, update: &Tensor) {
        tch::no_grad(|| {
            let mut off = 0;
            for p in self.params() {
                let n = p.numel() as i64;
                let u = update.narrow(0, off, n).view_as(p);
                let _ = p.shallow_clone().g_add_(&(u * step));
                off += n;
            }
        });
    }

    fn clone_params(&self) -> Vec<Tensor> {
        self.params().iter().map(|p| p.detach().copy()).collect()
    }

    fn set_params(&self, xs: &[Tensor]) {
        tch::no_grad(|| {
            for (p, x) in self.params().iter().zip(xs) {
                p.shallow_clone().copy_(x);
            }
        });
    }

    fn directional_evaluate(
        &self,
        closure: &mut dyn FnMut() -> Result<f64>,
        x: &[Tensor],
        t: f64,
        d: &Tensor,
    ) -> Result<(f64, Tensor)> {
        self.add_grad(t, d);
        let loss = closure()?;
        let g = self.gather_flat_grad();
        self.set_params(x);
        Ok((loss, g))
    }

    #[allow(clippy::too_many_arguments)]
    fn strong_wolfe(
        &self,
        closure: &mut dyn FnMut() -> Result<f64>,
        x: &[Tensor],
        mut t: f64,
        d: &Tensor,
        f: f64,
        g: &Tensor,
        gtd: f64,
        max_ls: usize,
    ) -> Result<(f64, Tensor, f64, usize)> {
        let (c1, c2, tolerance_change) = (1e-4, 0.9, 1e-9);
        let d_norm = max_abs(d);
        let g = g.copy();
        let (mut f_new, mut g_new) = self.directional_evaluate(closure, x, t, d)?;
        let mut ls_func_evals = 1;
        let mut gtd_new = dot(&g_new, d);
        let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (0.0, f, g.copy(), gtd);
        let mut done = false;
        let mut ls_iter = 0;
        let mut bracket: Vec<f64> = Vec::new();
        let mut bracket_f: Vec<f64> = Vec::new();
        let mut bracket_g: Vec<Tensor> = Vec::new();
        let mut bracket_gtd: Vec<f64> = Vec::new();
        while ls_iter < max_ls {
            if f_new > f + c1 * t * gtd || (ls_iter > 1 && f_new >= f_prev) {
                bracket = vec![t_prev, t];
                bracket_f = vec![f_prev, f_new];
                bracket_g = vec![g_prev.shallow_clone(), g_new.copy()];
                bracket_gtd = vec![gtd_prev, gtd_new];
                break;
            }
            if gtd_new.abs() <= -c2 * gtd {
                bracket = vec![t];
                bracket_f = vec![f_new];
                bracket_g = vec![g_new.shallow_clone()];
                done = true;
                break;
            }
            if gtd_new >= 0.0 {
                bracket = vec![t_prev, t];
                bracket_f = vec![f_prev, f_new];
                bracket_g = vec![g_prev.shallow_clone(), g_new.copy()];
                bracket_gtd = vec![gtd_prev, gtd_new];
                break;
            }
            let min_step = t + 0.01 * (t - t_prev);
            let max_step = t * 10.0;
            let tmp = t;
            t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, Some((min_step, max_step)));
            t_prev = tmp;
            f_prev = f_new;
            g_prev = g_new.copy();
            gtd_prev = gtd_new;
            let (fz, gz) = self.directional_evaluate(closure, x, t, d)?;
            f_new = fz;
            g_new = gz;
            ls_func_evals += 1;
            gtd_new = dot(&g_new, d);
            ls_iter += 1;
        }
        if ls_iter == max_ls {
            bracket = vec![0.0, t];
            bracket_f = vec![f, f_new];
            bracket_g = vec![g.shallow_clone(), g_new.shallow_clone()];
        }
        let mut insuf_progress = false;
        let (mut low, mut high) = if bracket_f[0] <= *bracket_f.last().unwrap() { (0, 1) } else { (1, 0) };
        while !done && ls_iter < max_ls {
            if (bracket[1] - bracket[0]).abs() * d_norm < tolerance_change {
                break;
            }
            t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1], None);
            let (bmax, bmin) = (bracket[0].max(bracket[1]), bracket[0].min(bracket[1]));
            let eps = 0.1 * (bmax - bmin);
            if (bmax - t).min(t - bmin) < eps {
                if insuf_progress || t >= bmax || t <= bmin {
                    t = if (t - bmax).abs() < (t - bmin).abs() { bmax - eps } else { bmin + eps };
                    insuf_progress = false;
                } else {
                    insuf_progress = true;
                }
            } else {
                insuf_progress = false;
            }
            let (fz, gz) = self.directional_evaluate(closure, x, t, d)?;
            f_new = fz;
            g_new = gz;
            ls_func_evals += 1;
            gtd_new = dot(&g_new, d);
            ls_iter += 1;
            if f_new > f + c1 * t * gtd || f_new >= bracket_f[low] {
                bracket[high] = t;
                bracket_f[high] = f_new;
                bracket_g[high] = g_new.copy();
                bracket_gtd[high] = gtd_new;
                (low, high) = if bracket_f[0] <= bracket_f[1] { (0, 1) } else { (1, 0) };
            } else {
                if gtd_new.abs() <= -c2 * gtd {
                    done = true;
                } else if gtd_new * (bracket[high] - bracket[low]) >= 0.0 {
                    bracket[high] = bracket[low];
                    bracket_f[high] = bracket_f[low];
                    bracket_g[high] = bracket_g[low].shallow_clone();
                    bracket_gtd[high] = bracket_gtd[low];
                }
                bracket[low] = t;
                bracket_f[low] = f_new;
                bracket_g[low] = g_new.copy();
                bracket_gtd[low] = gtd_new;
            }
        }
        Ok((bracket_f[low], bracket_g[low].shallow_clone(), bracket[low], ls_func_evals))
    }
}

/// Minimiser of the cubic through two points with values and derivatives, clamped to `bounds`
/// (torch's `_cubic_interpolate`).
fn cubic_interpolate(x1: f64, f1: f64, g1: f64, x2: f64, f2: f64, g2: f64, bounds: Option<(f64, f64)>) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        min_pos.max(lo).min(hi)
    } else {
        (lo + hi) / 2.0
    }
}

impl Optimizer for Lbfgs {
    fn param_groups(&self) -> &[ParamGroup] {
        &self.groups
    }
    fn param_groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }
    fn step(&mut self) -> Result<()> {
        Err(Error::InvalidArgument("LBFGS re-evaluates the loss: call step_with_closure".into()))
    }

    fn step_with_closure(&mut self, closure: &mut dyn FnMut() -> Result<f64>) -> Result<f64> {
        let c = self.cfg;
        let lr = self.groups[0].lr;
        let max_eval = c.max_eval.unwrap_or(c.max_iter * 5 / 4);
        let orig_loss = closure()?;
        let mut loss = orig_loss;
        let mut current_evals = 1;
        self.st.func_evals += 1;
        let mut flat_grad = tch::no_grad(|| self.gather_flat_grad());
        if max_abs(&flat_grad) <= c.tolerance_grad {
            return Ok(orig_loss);
        }
        let mut st = std::mem::take(&mut self.st);
        let mut n_iter = 0;
        let result: Result<()> = tch::no_grad(|| {
            while n_iter < c.max_iter {
                n_iter += 1;
                st.n_iter += 1;
                let d = if st.n_iter == 1 {
                    st.old_dirs.clear();
                    st.old_stps.clear();
                    st.ro.clear();
                    st.h_diag = 1.0;
                    flat_grad.neg()
                } else {
                    let prev = st.prev_flat_grad.as_ref().expect("set after the first iteration");
                    let d_prev = st.d.as_ref().expect("set after the first iteration");
                    let y = &flat_grad - prev;
                    let s = d_prev * st.t;
                    let ys = dot(&y, &s);
                    if ys > 1e-10 {
                        if st.old_dirs.len() == c.history_size {
                            let _ = st.old_dirs.remove(0);
                            let _ = st.old_stps.remove(0);
                            st.ro.remove(0);
                        }
                        st.h_diag = ys / dot(&y, &y);
                        st.old_dirs.push(y);
                        st.old_stps.push(s);
                        st.ro.push(1.0 / ys);
                    }
                    let num_old = st.old_dirs.len();
                    let mut al = vec![0.0; num_old];
                    let mut q = flat_grad.neg();
                    for i in (0..num_old).rev() {
                        al[i] = dot(&st.old_stps[i], &q) * st.ro[i];
                        q -= &st.old_dirs[i] * al[i];
                    }
                    let mut r = q * st.h_diag;
                    for i in 0..num_old {
                        let be_i = dot(&st.old_dirs[i], &r) * st.ro[i];
                        r += &st.old_stps[i] * (al[i] - be_i);
                    }
                    r
                };
                st.prev_flat_grad = Some(flat_grad.copy());
                let prev_loss = loss;
                st.prev_loss = Some(prev_loss);
                st.t = if st.n_iter == 1 {
                    (1.0f64).min(1.0 / flat_grad.abs().sum(Kind::Double).double_value(&[])) * lr
                } else {
                    lr
                };
                let gtd = dot(&flat_grad, &d);
                st.d = Some(d.shallow_clone());
                if gtd > -c.tolerance_change {
                    break;
                }
                let mut ls_func_evals = 0;
                let mut opt_cond = false;
                if c.strong_wolfe {
                    let x_init = self.clone_params();
                    let max_ls = max_eval.saturating_sub(current_evals);
                    let (l, g, t, evals) = tch::with_grad(|| self.strong_wolfe(closure, &x_init, st.t, &d, loss, &flat_grad, gtd, max_ls))?;
                    loss = l;
                    flat_grad = g;
                    st.t = t;
                    ls_func_evals = evals;
                    self.add_grad(st.t, &d);
                    opt_cond = max_abs(&flat_grad) <= c.tolerance_grad;
                } else {
                    self.add_grad(st.t, &d);
                    if n_iter != c.max_iter {
                        loss = tch::with_grad(&mut *closure)?;
                        flat_grad = self.gather_flat_grad();
                        opt_cond = max_abs(&flat_grad) <= c.tolerance_grad;
                        ls_func_evals = 1;
                    }
                }
                current_evals += ls_func_evals;
                st.func_evals += ls_func_evals;
                if n_iter == c.max_iter || current_evals >= max_eval || opt_cond {
                    break;
                }
                if max_abs(&(&d * st.t)) <= c.tolerance_change {
                    break;
                }
                if (loss - prev_loss).abs() < c.tolerance_change {
                    break;
                }
            }
            Ok(())
        });
        self.st = st;
        result?;
        Ok(orig_loss)
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        // The curvature history is a cache rebuilt within a few iterations; checkpoints keep only
        // the counters, so a resumed LBFGS restarts its history like a fresh torch LBFGS would.
        vec![
            ("func_evals".into(), Tensor::from(self.st.func_evals as f64)),
            ("n_iter".into(), Tensor::from(self.st.n_iter as f64)),
        ]
    }

    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        self.st = LbfgsState { h_diag: 1.0, ..Default::default() };
        for (n, t) in tensors {
            match n.as_str() {
                "func_evals" => self.st.func_evals = t.double_value(&[]) as usize,
                "n_iter" => {}
                other => return Err(Error::InvalidArgument(format!("LBFGS state: unknown tensor {other}"))),
            }
        }
        Ok(())
    }
}
