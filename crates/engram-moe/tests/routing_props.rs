//! Router invariants as property tests, and the batched dispatch against a naive loop.

use engram_moe::ffn::{tokens_of_each_expert, Activation, MoeFfn, MoeFfnConfig};
use engram_moe::losses::{count_mse, load_balance_loss, router_z_loss};
use engram_moe::routing::{route, Capacity, RouterKind};
use proptest::prelude::*;
use std::collections::HashSet;
use tch::{nn, Device, Kind, Tensor};

fn logits_strategy() -> impl Strategy<Value = (i64, i64, i64, Vec<f32>)> {
    (1i64..4, 1i64..24, 1i64..7).prop_flat_map(|(g, n, e)| {
        (Just(g), Just(n), Just(e), proptest::collection::vec(-4.0f32..4.0, (g * n * e) as usize))
    })
}

fn to_vec(t: &Tensor) -> Vec<i64> {
    Vec::try_from(t).unwrap()
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t.to_kind(Kind::Double)).unwrap()
}

fn check_combine_weights(r: &engram_moe::Routing, e: i64) {
    let probs = to_f64(&r.probs.reshape([-1]));
    let toks = to_vec(&r.token_index);
    let exps = to_vec(&r.expert_index);
    let w = to_f64(&r.combine_weight);
    for i in 0..toks.len() {
        let p = probs[(toks[i] * e + exps[i]) as usize];
        assert!((w[i] - p).abs() < 1e-7, "combine weight {} != router prob {p}", w[i]);
    }
    let slots: HashSet<i64> = to_vec(&r.slot_index).into_iter().collect();
    assert_eq!(slots.len(), toks.len(), "two assignments share a dispatch slot");
    assert!(to_vec(&r.slot_index).iter().all(|&s| s >= 0 && s < e * r.slots_per_expert));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn expert_choice_gives_each_expert_exactly_k_distinct_tokens((g, n, e, v) in logits_strategy(), kf in 0.0f64..1.0) {
        let k = 1 + ((n - 1) as f64 * kf) as i64;
        let logits = Tensor::from_slice(&v).view([g, n, e]);
        let r = route(&logits, RouterKind::ExpertChoice { capacity: Capacity::Fixed(k) }).unwrap();
        let toks = to_vec(&r.token_index);
        let exps = to_vec(&r.expert_index);
        for gi in 0..g {
            for ei in 0..e {
                let chosen: Vec<i64> = toks.iter().zip(&exps)
                    .filter(|(t, x)| **x == ei && **t / n == gi).map(|(t, _)| *t).collect();
                prop_assert_eq!(chosen.len() as i64, k);
                let distinct: HashSet<_> = chosen.iter().collect();
                prop_assert_eq!(distinct.len() as i64, k);
                // They are the expert's k highest-probability tokens of the group.
                let probs = to_f64(&r.probs.get(gi).select(1, ei));
                let kth = chosen.iter().map(|t| probs[(*t - gi * n) as usize]).fold(f64::INFINITY, f64::min);
                let above = probs.iter().filter(|p| **p > kth).count() as i64;
                prop_assert!(above < k);
            }
        }
        check_combine_weights(&r, e);
        let s = r.stats();
        prop_assert_eq!(s.tokens_per_expert, vec![g * k; e as usize]);
        prop_assert_eq!(count_mse(&vec![g * k; e as usize]), 0.0);
        prop_assert_eq!(s.coverage.iter().sum::<i64>(), g * n);
    }

    #[test]
    fn top_k_respects_capacity_and_never_routes_a_dropped_token(
        (g, n, e, v) in logits_strategy(), kf in 0.0f64..1.0, cf in 0.1f64..2.0)
    {
        let k = 1 + ((e - 1) as f64 * kf) as i64;
        let logits = Tensor::from_slice(&v).view([g, n, e]);
        let r = route(&logits, RouterKind::TokenChoice { k, capacity: Capacity::Factor(cf) }).unwrap();
        let cap = r.capacity;
        prop_assert_eq!(cap, ((cf * (n * k) as f64) / e as f64).ceil() as i64);
        let toks = to_vec(&r.token_index);
        let exps = to_vec(&r.expert_index);
        let (_, topi) = r.probs.topk(k, -1, true, true);
        let topi = to_vec(&topi.reshape([-1]));
        let routed: HashSet<(i64, i64)> = toks.iter().cloned().zip(exps.iter().cloned()).collect();
        prop_assert_eq!(routed.len(), toks.len());
        for gi in 0..g {
            // Replay the sequence-order queue: a choice is kept iff its expert has room.
            let mut load = vec![0i64; e as usize];
            for t in 0..n {
                let tok = gi * n + t;
                for j in 0..k {
                    let ex = topi[(tok * k + j) as usize];
                    let kept = routed.contains(&(tok, ex));
                    prop_assert_eq!(kept, load[ex as usize] < cap, "token {} expert {}", tok, ex);
                    if kept { load[ex as usize] += 1; }
                }
            }
            prop_assert!(load.iter().all(|&l| l <= cap));
        }
        // Only top-k choices are ever routed.
        for (t, x) in &routed {
            let choices = &topi[(*t * k) as usize..((*t + 1) * k) as usize];
            prop_assert!(choices.contains(x));
        }
        check_combine_weights(&r, e);
        let s = r.stats();
        let dropped = (g * n * k) as usize - toks.len();
        prop_assert!((s.drop_rate - dropped as f64 / (g * n * k) as f64).abs() < 1e-12);
        prop_assert_eq!(s.tokens_per_expert.iter().sum::<i64>(), toks.len() as i64);
    }

    #[test]
    fn batched_moe_equals_a_naive_loop((g, n, e, _v) in logits_strategy(), which in 0usize..3, seed in 0i64..1000) {
        let d = 5;
        let router = match which {
            0 => RouterKind::Soft,
            1 => RouterKind::TokenChoice { k: e.min(2), capacity: Capacity::Factor(1.0) },
            _ => RouterKind::ExpertChoice { capacity: Capacity::Fixed((n / 2).max(1)) },
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let _guard = engram_core::seed::global_rng_lock();
        tch::manual_seed(seed);
        let mut vs = vs;
        let moe = MoeFfn::new(vs.root(), MoeFfnConfig { d_model: d, d_ff: 7, experts: e, router, activation: Activation::Relu }).unwrap();
        vs.double();
        let x = Tensor::randn([g, n, d], (Kind::Double, Device::Cpu));
        drop(_guard);
        let (y, r) = moe.forward_grouped(&x).unwrap();
        let probs = r.probs.reshape([-1, e]);
        let flat = x.reshape([-1, d]);
        let want = Tensor::zeros([g * n, d], (Kind::Double, Device::Cpu));
        for (ei, toks) in tokens_of_each_expert(&r).iter().enumerate() {
            for &t in toks {
                let out = moe.expert_forward(ei as i64, &flat.get(t).unsqueeze(0)).squeeze_dim(0);
                let mut row = want.get(t);
                row += out * probs.double_value(&[t, ei as i64]);
            }
        }
        if which == 0 {
            // The soft MoE is the dense mixture Σ_e g_e·E_e(x) of every expert.
            let mut dense = Tensor::zeros([g * n, d], (Kind::Double, Device::Cpu));
            for ei in 0..e {
                dense += moe.expert_forward(ei, &flat) * probs.select(1, ei).unsqueeze(1);
            }
            prop_assert!((&dense - &want).abs().max().double_value(&[]) < 1e-12);
        }
        let err = (y.reshape([-1, d]) - want).abs().max().double_value(&[]);
        prop_assert!(err < 1e-12, "max error {}", err);
    }

    #[test]
    fn load_balance_loss_is_alpha_at_uniform_and_its_soft_form_is_minimal_there(
        (g, n, e, v) in logits_strategy(), alpha in 0.001f64..1.0)
    {
        let uniform = Tensor::full([g, n, e], 1.0 / e as f64, (Kind::Double, Device::Cpu));
        let l = load_balance_loss(&uniform, alpha).unwrap().double_value(&[]);
        prop_assert!((l - alpha).abs() < 1e-12);
        // With f replaced by its differentiable surrogate P, α·E·Σ P² ≥ α (Cauchy–Schwarz),
        // with equality only at uniform P.
        let probs = Tensor::from_slice(&v).view([g, n, e]).to_kind(Kind::Double).softmax(-1, Kind::Double);
        let p = probs.reshape([-1, e]).mean_dim(0, false, Kind::Double);
        let soft = (&p * &p).sum(Kind::Double).double_value(&[]) * alpha * e as f64;
        prop_assert!(soft >= alpha - 1e-12);
        let z = router_z_loss(&Tensor::from_slice(&v).view([g, n, e])).unwrap().double_value(&[]);
        prop_assert!(z >= 0.0);
    }
}

#[test]
fn switch_loss_rewards_balance() {
    // Half the tokens confidently on expert 0, half on expert 1: balanced, loss = α.
    let balanced = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 1.0]).view([1, 2, 2]);
    assert!((load_balance_loss(&balanced, 0.01).unwrap().double_value(&[]) - 0.01).abs() < 1e-12);
    // Everything on expert 0: f = (1, 0), P = (1, 0), loss = α·E = 2α.
    let collapsed = Tensor::from_slice(&[1.0f64, 0.0, 1.0, 0.0]).view([1, 2, 2]);
    assert!((load_balance_loss(&collapsed, 0.01).unwrap().double_value(&[]) - 0.02).abs() < 1e-12);
}

#[test]
fn bad_inputs_are_errors_not_aborts() {
    let l = Tensor::randn([2, 8, 4], (Kind::Float, Device::Cpu));
    assert!(route(&l.reshape([16, 4]), RouterKind::Soft).is_err());
    assert!(route(&l, RouterKind::TokenChoice { k: 5, capacity: Capacity::Factor(1.0) }).is_err());
    assert!(route(&l, RouterKind::TokenChoice { k: 0, capacity: Capacity::Factor(1.0) }).is_err());
    assert!(route(&l, RouterKind::TokenChoice { k: 1, capacity: Capacity::Factor(-1.0) }).is_err());
    assert!(route(&l, RouterKind::ExpertChoice { capacity: Capacity::Fixed(9) }).is_err());
    assert!(route(&l, RouterKind::ExpertChoice { capacity: Capacity::Fixed(0) }).is_err());
    assert!(route(&l.to_kind(Kind::Int64), RouterKind::Soft).is_err());
    let vs = nn::VarStore::new(Device::Cpu);
    let moe = MoeFfn::new(vs.root(), MoeFfnConfig { d_model: 4, d_ff: 8, experts: 2, router: RouterKind::Soft, activation: Activation::Gelu }).unwrap();
    assert!(moe.forward_grouped(&Tensor::zeros([2, 3, 5], (Kind::Float, Device::Cpu))).is_err());
    assert!(moe.forward_grouped(&Tensor::zeros([3, 4], (Kind::Float, Device::Cpu))).is_err());
}

#[test]
fn gradients_reach_the_router_and_every_used_expert() {
    let vs = nn::VarStore::new(Device::Cpu);
    let moe = MoeFfn::new(vs.root(), MoeFfnConfig {
        d_model: 6, d_ff: 12, experts: 4,
        router: RouterKind::ExpertChoice { capacity: Capacity::Factor(1.0) }, activation: Activation::Gelu,
    }).unwrap();
    let x = Tensor::randn([2, 16, 6], (Kind::Float, Device::Cpu));
    let (y, _) = moe.forward_grouped(&x).unwrap();
    y.square().sum(Kind::Float).backward();
    for t in [&moe.gate.weight, &moe.w1, &moe.w2, &moe.b1, &moe.b2] {
        assert!(t.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
