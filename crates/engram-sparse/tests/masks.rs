//! Mask invariants: density rules, SET/RigL bookkeeping, magnitude-pruning schedules and the
//! masked optimizers.

use engram_core::seed::HostRng;
use engram_sparse::lottery::{magnitude_prune, restore, snapshot, sparsity, PruneScope};
use engram_sparse::mask::{random_mask, DensityRule, MaskedLinear};
use engram_sparse::model::{MaskedModel, SparseMlp};
use engram_sparse::optim::{MaskedOptimizer, MaskedParam, OptimizerConfig};
use engram_sparse::topology::{rigl_fraction, rigl_update, set_update};
use engram_layers::LinearConfig;
use proptest::prelude::*;
use tch::{nn, Device, Kind, Tensor};

fn vecf(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

#[test]
fn seed004_uniform_density_gives_exactly_139700() {
    let layers = [(784, 1000), (1000, 1000), (1000, 1000), (1000, 10)];
    let r = DensityRule::Uniform { density: 0.05 };
    let nnz: Vec<i64> = layers.iter().map(|&(i, o)| r.nnz(i, o).unwrap()).collect();
    assert_eq!(nnz, vec![39_200, 50_000, 50_000, 500]);
    assert_eq!(nnz.iter().sum::<i64>(), 139_700);
    assert_eq!(layers.iter().map(|&(i, o)| i * o).sum::<i64>(), 2_794_000);
    // SET's Erdős–Rényi rule with the paper's ε = 20 does not give 139,700 (the output layer is capped dense).
    let er = DensityRule::ErdosRenyi { epsilon: 20.0 };
    let er_nnz: Vec<i64> = layers.iter().map(|&(i, o)| er.nnz(i, o).unwrap()).collect();
    assert_eq!(er_nnz, vec![35_680, 40_000, 40_000, 10_000]);
    // The ε matched to 139,700 lands within a few weights of it.
    let eps = DensityRule::erdos_renyi_for_total(&layers, 139_700).unwrap();
    let total: i64 = layers.iter().map(|&(i, o)| DensityRule::ErdosRenyi { epsilon: eps }.nnz(i, o).unwrap()).sum();
    assert!((total - 139_700).abs() <= 4, "ER total {total} with eps {eps}");
}

#[test]
fn bad_density_is_an_error() {
    assert!(DensityRule::Uniform { density: 0.0 }.nnz(10, 10).is_err());
    assert!(DensityRule::Uniform { density: 1.5 }.nnz(10, 10).is_err());
    assert!(DensityRule::ErdosRenyi { epsilon: -1.0 }.nnz(10, 10).is_err());
    assert!(random_mask(3, 3, 10, &mut HostRng::new(0)).is_err());
    let vs = nn::VarStore::new(Device::Cpu);
    let bad = MaskedLinear::with_mask(vs.root() / "l", LinearConfig::new(3, 2), Tensor::ones([3, 2], (Kind::Float, Device::Cpu)));
    assert!(bad.is_err());
}

fn layer(n_out: i64, n_in: i64, density: f64, seed: u64) -> MaskedLinear {
    let vs = nn::VarStore::new(Device::Cpu);
    let l = MaskedLinear::new(vs.root() / "l", LinearConfig::new(n_in, n_out), DensityRule::Uniform { density }, &mut HostRng::new(seed)).unwrap();
    // Perturb so that the weights are not just the init (any real values do).
    tch::no_grad(|| {
        let mut w = l.weight.shallow_clone();
        let _ = w.g_add_(&(Tensor::randn([n_out, n_in], (Kind::Float, Device::Cpu)) * 0.1));
    });
    l.apply_mask();
    l
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn set_keeps_nnz_and_regrows_only_where_inactive(n_out in 4i64..40, n_in in 4i64..40, density in 0.05f64..0.5, zeta in 0.05f64..0.5, seed in 0u64..1000) {
        let l = layer(n_out, n_in, density, seed);
        let (w0, m0) = (vecf(&l.weight), vecf(&l.mask));
        let stats = set_update(&l.weight, &l.mask, zeta, l.init_bound, &mut HostRng::new(seed + 1)).unwrap();
        let (w1, m1) = (vecf(&l.weight), vecf(&l.mask));
        let nnz0 = m0.iter().filter(|&&x| x == 1.0).count();
        prop_assert_eq!(m1.iter().filter(|&&x| x == 1.0).count(), nnz0);
        prop_assert_eq!(stats.nnz_after, stats.nnz_before);
        let mut pruned = 0;
        let mut grown = 0;
        let pos_kept_min = (0..w0.len()).filter(|&i| m0[i] == 1.0 && m1[i] == 1.0 && w0[i] >= 0.0).map(|i| w0[i]).fold(f32::INFINITY, f32::min);
        let neg_kept_max = (0..w0.len()).filter(|&i| m0[i] == 1.0 && m1[i] == 1.0 && w0[i] < 0.0).map(|i| w0[i]).fold(f32::NEG_INFINITY, f32::max);
        for i in 0..w0.len() {
            // Masked weights are exactly zero.
            if m1[i] == 0.0 { prop_assert_eq!(w1[i], 0.0); }
            if m0[i] == 1.0 && m1[i] == 0.0 {
                pruned += 1;
                // A pruned weight was no larger in magnitude than every kept weight of its sign.
                if w0[i] >= 0.0 { prop_assert!(w0[i] <= pos_kept_min); } else { prop_assert!(w0[i] >= neg_kept_max); }
            }
            if m0[i] == 0.0 && m1[i] == 1.0 {
                grown += 1;
                prop_assert_eq!(w0[i], 0.0, "regrown position held a non-zero weight");
                prop_assert!(w1[i].abs() as f64 <= l.init_bound);
            }
            if m0[i] == 1.0 && m1[i] == 1.0 { prop_assert_eq!(w1[i], w0[i]); }
        }
        prop_assert_eq!(pruned, grown);
        prop_assert_eq!(pruned as i64, stats.pruned);
    }

    #[test]
    fn rigl_keeps_nnz_and_grows_at_largest_gradients(n_out in 4i64..40, n_in in 4i64..40, density in 0.05f64..0.5, alpha in 0.05f64..0.5, seed in 0u64..1000) {
        let l = layer(n_out, n_in, density, seed);
        let g = Tensor::randn([n_out, n_in], (Kind::Float, Device::Cpu));
        let (w0, m0, gv) = (vecf(&l.weight), vecf(&l.mask), vecf(&g));
        let stats = rigl_update(&l.weight, &l.mask, &g, alpha).unwrap();
        let (w1, m1) = (vecf(&l.weight), vecf(&l.mask));
        prop_assert_eq!(stats.nnz_after, stats.nnz_before);
        prop_assert_eq!(m1.iter().filter(|&&x| x == 1.0).count(), m0.iter().filter(|&&x| x == 1.0).count());
        let grown: Vec<usize> = (0..w0.len()).filter(|&i| m0[i] == 0.0 && m1[i] == 1.0).collect();
        let not_grown_max = (0..w0.len()).filter(|&i| m0[i] == 0.0 && m1[i] == 0.0).map(|i| gv[i].abs()).fold(0f32, f32::max);
        for &i in &grown {
            prop_assert_eq!(w0[i], 0.0);
            prop_assert_eq!(w1[i], 0.0, "RigL grows at zero");
            prop_assert!(gv[i].abs() >= not_grown_max);
        }
        for i in 0..w0.len() { if m1[i] == 0.0 { prop_assert_eq!(w1[i], 0.0); } }
        prop_assert_eq!(grown.len() as i64, stats.regrown);
    }

    #[test]
    fn imp_rounds_give_sparsity_one_minus_point8_pow_r(rounds in 1usize..7, global in any::<bool>(), seed in 0u64..100) {
        let vs = nn::VarStore::new(Device::Cpu);
        let _g = engram_core::seed::global_rng_lock();
        tch::manual_seed(seed as i64);
        let mlp = SparseMlp::new(&vs.root(), &[60, 50, 40, 10], DensityRule::Dense, false, &mut HostRng::new(seed)).unwrap();
        let scope = if global { PruneScope::Global } else { PruneScope::PerLayer };
        for r in 1..=rounds {
            magnitude_prune(&mlp.masked_layers(), 0.2, scope).unwrap();
            let want = 1.0 - 0.8f64.powi(r as i32);
            prop_assert!((sparsity(&mlp) - want).abs() < 1e-3, "round {r}: {} vs {want}", sparsity(&mlp));
        }
        for l in &mlp.layers {
            let (w, m) = (vecf(&l.weight), vecf(&l.mask));
            for i in 0..w.len() { if m[i] == 0.0 { prop_assert_eq!(w[i], 0.0); } }
        }
    }
}

#[test]
fn global_pruning_removes_the_smallest_magnitudes_overall() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _g = engram_core::seed::global_rng_lock();
    tch::manual_seed(3);
    let mlp = SparseMlp::new(&vs.root(), &[30, 20, 10], DensityRule::Dense, false, &mut HostRng::new(3)).unwrap();
    let before: Vec<Vec<f32>> = mlp.layers.iter().map(|l| vecf(&l.weight)).collect();
    magnitude_prune(&mlp.masked_layers(), 0.5, PruneScope::Global).unwrap();
    let mut kept_min = f32::INFINITY;
    let mut pruned_max = 0f32;
    for (l, w) in mlp.layers.iter().zip(&before) {
        for (x, m) in w.iter().zip(vecf(&l.mask)) {
            if m == 1.0 { kept_min = kept_min.min(x.abs()) } else { pruned_max = pruned_max.max(x.abs()) }
        }
    }
    assert!(pruned_max <= kept_min, "{pruned_max} > {kept_min}");
}

#[test]
fn rewinding_restores_init_values_of_survivors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _g = engram_core::seed::global_rng_lock();
    tch::manual_seed(5);
    let mlp = SparseMlp::new(&vs.root(), &[12, 8, 3], DensityRule::Dense, false, &mut HostRng::new(5)).unwrap();
    let init = snapshot(&mlp);
    let w_init = vecf(&mlp.layers[0].weight);
    // "Train": move every weight.
    tch::no_grad(|| {
        for l in &mlp.layers {
            let mut w = l.weight.shallow_clone();
            let _ = w.g_add_(&Tensor::randn(w.size(), (Kind::Float, Device::Cpu)));
        }
    });
    magnitude_prune(&mlp.masked_layers(), 0.2, PruneScope::Global).unwrap();
    restore(&mlp, &init);
    let (w, m) = (vecf(&mlp.layers[0].weight), vecf(&mlp.layers[0].mask));
    assert!(m.contains(&0.0));
    for i in 0..w.len() {
        assert_eq!(w[i], if m[i] == 1.0 { w_init[i] } else { 0.0 });
    }
}

#[test]
fn rigl_schedule_decays_to_zero() {
    assert!((rigl_fraction(0.3, 0, 10) - 0.3).abs() < 1e-12);
    assert!((rigl_fraction(0.3, 5, 10) - 0.15).abs() < 1e-12);
    assert_eq!(rigl_fraction(0.3, 10, 10), 0.0);
}

/// Momentum and weight decay must not revive a pruned weight, and a regrown weight must not
/// inherit stale optimizer state.
fn optimizer_keeps_masked_weights_zero(cfg: OptimizerConfig) {
    let w = (Tensor::ones([3, 3], (Kind::Float, Device::Cpu)) * 0.5).set_requires_grad(true);
    let mask = Tensor::from_slice(&[1f32, 1., 0., 1., 0., 1., 1., 1., 0.]).view([3, 3]);
    tch::no_grad(|| {
        let mut t = w.shallow_clone();
        let _ = t.g_mul_(&mask);
    });
    let mut opt = MaskedOptimizer::new(vec![MaskedParam::new(&w, Some(&mask))], cfg).unwrap();
    let target = Tensor::full([3, 3], 3.0, (Kind::Float, Device::Cpu));
    let step = |opt: &mut MaskedOptimizer| {
        // The loss pulls every weight (masked or not) towards 3, so any leak would show.
        let loss = (&w * &mask - &target).square().sum(Kind::Float) + w.square().sum(Kind::Float) * 0.0;
        opt.zero_grad();
        loss.backward();
        opt.step();
    };
    for _ in 0..20 {
        step(&mut opt);
    }
    let v = vecf(&w);
    for (i, m) in vecf(&mask).iter().enumerate() {
        if *m == 0.0 {
            assert_eq!(v[i], 0.0, "masked weight {i} moved under {cfg:?}");
        } else {
            assert!(v[i] > 0.5, "kept weight {i} did not train");
        }
    }
    // Prune position 0 (which has momentum), grow position 2.
    tch::no_grad(|| {
        let mut m = mask.shallow_clone();
        m.copy_(&Tensor::from_slice(&[0f32, 1., 1., 1., 0., 1., 1., 1., 0.]).view([3, 3]));
        let mut t = w.shallow_clone();
        let _ = t.g_mul_(&mask);
    });
    opt.mask_state();
    let buf = vecf(opt.momentum_buffer(0).unwrap());
    assert_eq!(buf[0], 0.0);
    assert_eq!(buf[2], 0.0, "a regrown weight must start without momentum");
    for _ in 0..5 {
        step(&mut opt);
    }
    assert_eq!(vecf(&w)[0], 0.0, "pruned weight revived by stale state under {cfg:?}");
    assert!(vecf(&w)[2] > 0.0, "regrown weight must train");
}

#[test]
fn masked_sgd_with_momentum_and_weight_decay_keeps_zeros() {
    optimizer_keeps_masked_weights_zero(OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, weight_decay: 0.1 });
}

#[test]
fn masked_adam_with_weight_decay_keeps_zeros() {
    optimizer_keeps_masked_weights_zero(OptimizerConfig::Adam { lr: 0.05, weight_decay: 0.1 });
}

#[test]
fn masked_forward_gives_zero_gradient_at_masked_weights() {
    let l = layer(6, 5, 0.3, 9);
    let x = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
    l.forward(&x).square().sum(Kind::Float).backward();
    let g = vecf(&l.weight.grad());
    for (i, m) in vecf(&l.mask).iter().enumerate() {
        if *m == 0.0 {
            assert_eq!(g[i], 0.0);
        }
    }
    assert!(g.iter().any(|&x| x != 0.0));
}

#[test]
fn bad_optimizer_settings_are_errors() {
    assert!(MaskedOptimizer::new(vec![], OptimizerConfig::Sgd { lr: -1.0, momentum: 0.0, weight_decay: 0.0 }).is_err());
    assert!(MaskedOptimizer::new(vec![], OptimizerConfig::Sgd { lr: 0.1, momentum: 1.5, weight_decay: 0.0 }).is_err());
}
