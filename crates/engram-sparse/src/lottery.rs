//! Lottery tickets by iterative magnitude pruning (Frankle & Carbin 2019; rewinding from
//! Frankle et al. 2020): train, prune a fraction of the remaining weights by magnitude (over all
//! layers at once or per layer), rewind the survivors to their values at initialisation or at an
//! early step, and train again. The random-reinit control trains the same masks from a fresh init.

use crate::datasets::Split;
use crate::error::{invalid, Result};
use crate::mask::MaskedLinear;
use crate::model::{accuracy, MaskedModel};
use crate::optim::{MaskedOptimizer, OptimizerConfig};
use crate::train::train_epoch;
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use tch::{nn, Device, Tensor};

/// Where magnitudes are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PruneScope {
    /// One threshold over all masked layers.
    Global,
    /// The same fraction removed from every layer.
    PerLayer,
}

/// What the surviving weights are reset to after each pruning round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rewind {
    /// Their values at initialisation (the original lottery ticket).
    Init,
    /// Their values after this many optimizer steps of the first (dense) training run.
    Step(usize),
}

/// Removes `rate` of the currently kept weights with the smallest magnitude, by zeroing the mask
/// (in place) and the weight. Exactly `round(rate · nnz)` weights go (per layer, or in total for
/// [`PruneScope::Global`]); ties are broken by position so the result is deterministic.
pub fn magnitude_prune(layers: &[&MaskedLinear], rate: f64, scope: PruneScope) -> Result<()> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(invalid(format!("prune rate {rate} must be in [0, 1]")));
    }
    let data: Vec<(Vec<f32>, Vec<f32>)> = layers
        .iter()
        .map(|l| -> Result<_> {
            let w = Vec::<f32>::try_from(l.weight.to_device(Device::Cpu).flatten(0, -1))?;
            let m = Vec::<f32>::try_from(l.mask.to_device(Device::Cpu).flatten(0, -1))?;
            Ok((w, m))
        })
        .collect::<Result<_>>()?;
    let mut new_masks: Vec<Vec<f32>> = data.iter().map(|(_, m)| m.clone()).collect();
    let mut drop = |cands: &mut Vec<(f32, usize, usize)>| {
        let k = (rate * cands.len() as f64).round() as usize;
        cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for &(_, li, i) in &cands[..k] {
            new_masks[li][i] = 0.0;
        }
    };
    let active = |li: usize| -> Vec<(f32, usize, usize)> {
        let (w, m) = &data[li];
        (0..w.len()).filter(|&i| m[i] != 0.0).map(|i| (w[i].abs(), li, i)).collect()
    };
    match scope {
        PruneScope::Global => {
            let mut all: Vec<_> = (0..layers.len()).flat_map(active).collect();
            drop(&mut all);
        }
        PruneScope::PerLayer => {
            for li in 0..layers.len() {
                drop(&mut active(li));
            }
        }
    }
    for (l, m) in layers.iter().zip(new_masks) {
        let t = Tensor::from_slice(&m).view(l.mask.size().as_slice()).to_device(l.mask.device());
        tch::no_grad(|| {
            let mut mask = l.mask.shallow_clone();
            mask.copy_(&t);
        });
        l.apply_mask();
    }
    Ok(())
}

/// Fraction of masked-layer weights that are pruned.
pub fn sparsity(model: &dyn MaskedModel) -> f64 {
    1.0 - model.nnz() as f64 / model.numel() as f64
}

/// Copies of every parameter of `model` (the rewinding point).
pub fn snapshot(model: &dyn MaskedModel) -> Vec<Tensor> {
    model.params().iter().map(|p| p.param.detach().copy()).collect()
}

/// Writes `snap` back into `model`'s parameters and re-applies the masks (rewinding).
pub fn restore(model: &dyn MaskedModel, snap: &[Tensor]) {
    tch::no_grad(|| {
        for (p, s) in model.params().iter().zip(snap) {
            let mut t = p.param.shallow_clone();
            t.copy_(s);
        }
    });
    for l in model.masked_layers() {
        l.apply_mask();
    }
}

fn copy_masks(from: &dyn MaskedModel, to: &dyn MaskedModel) {
    for (a, b) in from.masked_layers().iter().zip(to.masked_layers()) {
        tch::no_grad(|| {
            let mut m = b.mask.shallow_clone();
            m.copy_(&a.mask);
        });
        b.apply_mask();
    }
}

/// Settings of an iterative-magnitude-pruning run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LotteryConfig {
    /// Pruning rounds after the dense run (round r has sparsity ≈ 1 − (1 − rate)^r).
    pub rounds: usize,
    /// Fraction of the remaining weights pruned per round (0.2 in seed 004).
    pub rate: f64,
    /// Global or per-layer magnitude comparison.
    pub scope: PruneScope,
    /// Rewinding point.
    pub rewind: Rewind,
    /// Training epochs per round.
    pub epochs: usize,
    /// Minibatch size.
    pub batch: i64,
    /// Optimizer, restarted from zero state each round.
    pub optimizer: OptimizerConfig,
    /// Seed of the init and of the batch order.
    pub seed: u64,
    /// Also train each round's mask from a fresh random init (the control).
    pub random_reinit: bool,
}

/// One point of the accuracy-vs-sparsity curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundResult {
    /// Pruning round (0 = dense).
    pub round: usize,
    /// Measured sparsity of the masked layers.
    pub sparsity: f64,
    /// Kept weights.
    pub nnz: i64,
    /// Test accuracy of the rewound ticket after training.
    pub ticket_acc: f64,
    /// Test accuracy of the same mask trained from a fresh init (rounds ≥ 1, when enabled).
    pub reinit_acc: Option<f64>,
}

fn train_round(model: &dyn MaskedModel, cfg: &LotteryConfig, data: &Split, rng_seed: u64, mut on_step: impl FnMut(usize)) -> Result<f64> {
    let mut opt = MaskedOptimizer::new(model.params(), cfg.optimizer)?;
    let mut rng = HostRng::new(rng_seed);
    let mut step = 0usize;
    for _ in 0..cfg.epochs {
        train_epoch(model, &mut opt, &data.train, cfg.batch, &mut rng, || {
            step += 1;
            on_step(step);
        })?;
    }
    Ok(accuracy(model, &data.test.x, &data.test.y, 500))
}

/// Runs IMP with `build` creating the network under a path (it draws from libtorch's generator,
/// which is seeded here under the global RNG lock). Calls `log` once per finished round.
pub fn run_lottery<M: MaskedModel>(
    build: &dyn Fn(&nn::Path) -> Result<M>,
    cfg: &LotteryConfig,
    data: &Split,
    device: Device,
    log: &mut dyn FnMut(&RoundResult),
) -> Result<Vec<RoundResult>> {
    if let Rewind::Step(k) = cfg.rewind {
        let steps_per_epoch = ((data.train.len() + cfg.batch - 1) / cfg.batch.max(1)) as usize;
        if k > steps_per_epoch * cfg.epochs {
            return Err(invalid(format!("rewind step {k} is past the {} steps of a round", steps_per_epoch * cfg.epochs)));
        }
    }
    let vs = nn::VarStore::new(device);
    let model = {
        let _g = engram_core::seed::global_rng_lock();
        engram_core::seed::manual_seed(cfg.seed);
        build(&vs.root())?
    };
    let init = snapshot(&model);
    let rewind_to: RefCell<Option<Vec<Tensor>>> = RefCell::new(match cfg.rewind {
        Rewind::Init | Rewind::Step(0) => Some(init),
        Rewind::Step(_) => None,
    });
    let mut out = Vec::new();
    for round in 0..=cfg.rounds {
        if round > 0 {
            magnitude_prune(&model.masked_layers(), cfg.rate, cfg.scope)?;
            let snap = rewind_to.borrow();
            restore(&model, snap.as_ref().ok_or_else(|| invalid("rewind point was never reached"))?);
        }
        let acc = train_round(&model, cfg, data, cfg.seed ^ round as u64, |step| {
            if round == 0 {
                if let Rewind::Step(k) = cfg.rewind {
                    if step == k {
                        *rewind_to.borrow_mut() = Some(snapshot(&model));
                    }
                }
            }
        })?;
        let reinit_acc = if cfg.random_reinit && round > 0 {
            let vs2 = nn::VarStore::new(device);
            let fresh = {
                let _g = engram_core::seed::global_rng_lock();
                engram_core::seed::manual_seed(cfg.seed.wrapping_add(1_000_003 + round as u64));
                build(&vs2.root())?
            };
            copy_masks(&model, &fresh);
            Some(train_round(&fresh, cfg, data, cfg.seed ^ round as u64, |_| {})?)
        } else {
            None
        };
        let r = RoundResult { round, sparsity: sparsity(&model), nnz: model.nnz(), ticket_acc: acc, reinit_acc };
        log(&r);
        out.push(r);
    }
    Ok(out)
}
