//! Seed 004's SET experiment: the 784-1000-1000-1000-10 MLP at 5% density trained with SET,
//! beside a dense, a static-random-sparse, an Erdős–Rényi SET and a RigL network, all trained
//! identically (same optimizer, batches, epochs, seed).

use crate::datasets::Split;
use crate::error::{invalid, Result};
use crate::mask::DensityRule;
use crate::model::{accuracy, MaskedModel, SparseMlp};
use crate::optim::{MaskedOptimizer, OptimizerConfig};
use crate::topology::{rigl_fraction, rigl_update, set_update, TopologyPolicy, UpdateStats};
use crate::train::{sample_batch, train_epoch};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

/// One network of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Variant {
    /// Every weight kept.
    Dense,
    /// Uniform density, mask fixed at initialisation.
    StaticUniform,
    /// Uniform density per layer with SET evolution (what seed 004's 139,700 count implies).
    SetUniform,
    /// SET with Erdős–Rényi densities, ε chosen to give the same total number of weights.
    SetErdosRenyi,
    /// Uniform density with RigL evolution.
    RiglUniform,
}

impl Variant {
    /// All variants in report order.
    pub const ALL: [Variant; 5] = [Variant::Dense, Variant::StaticUniform, Variant::SetUniform, Variant::SetErdosRenyi, Variant::RiglUniform];
    /// Short name used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Variant::Dense => "dense",
            Variant::StaticUniform => "static",
            Variant::SetUniform => "set",
            Variant::SetErdosRenyi => "set-er",
            Variant::RiglUniform => "rigl",
        }
    }
    /// Parses [`Variant::name`].
    pub fn parse(s: &str) -> Result<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| invalid(format!("unknown variant '{s}' (dense, static, set, set-er, rigl)")))
    }
}

/// Settings of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetConfig {
    /// Layer sizes, input first.
    pub sizes: Vec<i64>,
    /// Target density of the sparse variants.
    pub density: f64,
    /// Training epochs.
    pub epochs: usize,
    /// Minibatch size.
    pub batch: i64,
    /// Optimizer (the same for every variant).
    pub optimizer: OptimizerConfig,
    /// SET's ζ.
    pub zeta: f64,
    /// RigL's initial α.
    pub rigl_alpha: f64,
    /// Seed of the libtorch init and of the host RNG (masks, shuffles, regrowth).
    pub seed: u64,
    /// Scale sparse inits by `1/√density` (see [`SparseMlp::new`]).
    pub scale_init: bool,
    /// Which networks to train.
    pub variants: Vec<Variant>,
}

impl Default for SetConfig {
    fn default() -> Self {
        SetConfig {
            sizes: vec![784, 1000, 1000, 1000, 10],
            density: 0.05,
            epochs: 10,
            batch: 128,
            optimizer: OptimizerConfig::Sgd { lr: 0.01, momentum: 0.9, weight_decay: 2e-4 },
            zeta: 0.3,
            rigl_alpha: 0.3,
            seed: 0,
            scale_init: true,
            variants: Variant::ALL.to_vec(),
        }
    }
}

/// Per-epoch record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Test accuracy after the epoch (before the topology update).
    pub test_acc: f64,
    /// Kept weights after the epoch's topology update.
    pub nnz: i64,
    /// Connections replaced by the topology update (summed over layers).
    pub replaced: i64,
}

/// Result of one variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantResult {
    /// [`Variant::name`].
    pub variant: String,
    /// Kept weights per layer at the end.
    pub nnz_per_layer: Vec<i64>,
    /// Kept weights in total (biases excluded).
    pub nnz: i64,
    /// Weights of the dense network (biases excluded).
    pub numel: i64,
    /// Per-epoch log.
    pub epochs: Vec<EpochRecord>,
    /// Test accuracy after the last epoch.
    pub final_test_acc: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

fn policy(v: Variant, cfg: &SetConfig) -> TopologyPolicy {
    match v {
        Variant::Dense | Variant::StaticUniform => TopologyPolicy::Static,
        Variant::SetUniform | Variant::SetErdosRenyi => TopologyPolicy::Set { zeta: cfg.zeta },
        Variant::RiglUniform => TopologyPolicy::Rigl { alpha: cfg.rigl_alpha },
    }
}

/// The density rule of a variant; the ER variant gets the ε that matches the uniform total.
pub fn density_rule(v: Variant, cfg: &SetConfig) -> Result<DensityRule> {
    Ok(match v {
        Variant::Dense => DensityRule::Dense,
        Variant::StaticUniform | Variant::SetUniform | Variant::RiglUniform => DensityRule::Uniform { density: cfg.density },
        Variant::SetErdosRenyi => {
            let layers: Vec<(i64, i64)> = cfg.sizes.windows(2).map(|w| (w[0], w[1])).collect();
            let uni = DensityRule::Uniform { density: cfg.density };
            let target: i64 = layers.iter().map(|&(i, o)| uni.nnz(i, o)).sum::<Result<i64>>()?;
            DensityRule::ErdosRenyi { epsilon: DensityRule::erdos_renyi_for_total(&layers, target)? }
        }
    })
}

/// Trains one variant on `data` (already on `device`).
pub fn run_variant(v: Variant, cfg: &SetConfig, data: &Split, device: Device, log: &mut dyn FnMut(&str)) -> Result<VariantResult> {
    let t0 = std::time::Instant::now();
    let rule = density_rule(v, cfg)?;
    let vs = nn::VarStore::new(device);
    let mut rng = HostRng::new(cfg.seed);
    let mlp = {
        let _g = engram_core::seed::global_rng_lock();
        engram_core::seed::manual_seed(cfg.seed);
        SparseMlp::new(&vs.root(), &cfg.sizes, rule, cfg.scale_init && v != Variant::Dense, &mut rng)?
    };
    let mut opt = MaskedOptimizer::new(mlp.params(), cfg.optimizer)?;
    let pol = policy(v, cfg);
    let mut epochs = Vec::new();
    for e in 1..=cfg.epochs {
        let loss = train_epoch(&mlp, &mut opt, &data.train, cfg.batch, &mut rng, || {})?;
        let acc = accuracy(&mlp, &data.test.x, &data.test.y, 1000);
        // Evolve between epochs, never after the last one (the evaluated net is the trained one).
        let mut replaced = 0;
        if e < cfg.epochs {
            let stats: Vec<UpdateStats> = match pol {
                TopologyPolicy::Static => vec![],
                TopologyPolicy::Set { zeta } => {
                    mlp.layers.iter().map(|l| set_update(&l.weight, &l.mask, zeta, l.init_bound, &mut rng)).collect::<Result<_>>()?
                }
                TopologyPolicy::Rigl { alpha } => {
                    let frac = rigl_fraction(alpha, e, (cfg.epochs * 3 / 4).max(1));
                    let (x, y) = sample_batch(&data.train, 1024, &mut rng);
                    let grads = mlp.dense_grads(&x, &y);
                    mlp.layers.iter().zip(&grads).map(|(l, g)| rigl_update(&l.weight, &l.mask, g, frac)).collect::<Result<_>>()?
                }
            };
            opt.mask_state();
            replaced = stats.iter().map(|s| s.regrown).sum();
            for s in &stats {
                if s.nnz_after != s.nnz_before {
                    return Err(invalid(format!("topology update changed nnz {} -> {}", s.nnz_before, s.nnz_after)));
                }
            }
        }
        let nnz = mlp.nnz();
        log(&format!("{:>7} epoch {e:>3}: loss {loss:.4}  test acc {:.2}%  nnz {nnz}  replaced {replaced}", v.name(), acc * 100.0));
        epochs.push(EpochRecord { epoch: e, train_loss: loss, test_acc: acc, nnz, replaced });
    }
    let final_test_acc = epochs.last().map(|r| r.test_acc).unwrap_or(0.0);
    Ok(VariantResult {
        variant: v.name().into(),
        nnz_per_layer: mlp.layers.iter().map(|l| l.nnz()).collect(),
        nnz: mlp.nnz(),
        numel: mlp.numel(),
        epochs,
        final_test_acc,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
