//! Strategy behaviour: EWC's Fisher and penalty, multi-head isolation, A-GEM's projection,
//! plugin composition, and every strategy end to end on a small synthetic stream.

use engram_continual::data::Dataset;
use engram_continual::model::{Heads, Mlp, MlpConfig};
use engram_continual::optim::{Adam, Optimizer, Sgd};
use engram_continual::scenario::{split, synthetic_images, Experience, Scenario, Setting};
use engram_continual::strategies::{fisher_diagonal, run_strategy, AGem, Ewc, StrategyKind, StrategyParams};
use engram_continual::template::{train_stream, Context, Learner, Plugin, TrainConfig};
use std::cell::RefCell;
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

fn small_scenario(setting: Setting) -> Scenario {
    let data = synthetic_images(12, 0.3, 5).unwrap();
    split("syn", &data, 2, setting).unwrap()
}

fn learner(s: &Scenario, heads: Heads, seed: u64) -> Learner {
    let m = {
        let _g = engram_core::seed::global_rng_lock();
        engram_core::seed::manual_seed(seed);
        Mlp::new(&MlpConfig { input: 784, hidden: vec![16, 12], heads }, Device::Cpu).unwrap()
    };
    Learner::new(m, s).unwrap()
}

/// Mean of squared per-sample gradients by brute force: one backward per sample.
fn brute_force_fisher(l: &Learner, d: &Dataset) -> Vec<Tensor> {
    let params = l.model.params();
    let mut acc: Vec<Tensor> = params.iter().map(|p| p.zeros_like().detach()).collect();
    for i in 0..d.len() as i64 {
        let z = l.logits(&d.x.narrow(0, i, 1), &d.t.narrow(0, i, 1)).unwrap();
        let loss = Learner::loss(&z, &d.y.narrow(0, i, 1));
        let gs = Tensor::run_backward(&[&loss], &params, false, false);
        for (a, g) in acc.iter_mut().zip(gs) {
            if g.defined() {
                *a = &*a + g.square();
            }
        }
    }
    acc.iter().map(|a| a / d.len() as f64).collect()
}

#[test]
fn ewc_fisher_equals_mean_of_squared_per_sample_gradients() {
    for (setting, multi) in [(Setting::ClassIncremental, false), (Setting::TaskIncremental, false), (Setting::TaskIncremental, true)] {
        let s = small_scenario(setting);
        let heads = if multi {
            Heads::PerTask { n_classes: 10, classes: s.experiences.iter().map(|e| e.classes.clone()).collect() }
        } else {
            Heads::Single(10)
        };
        let l = learner(&s, heads, 3);
        let d = &s.experiences[1].train;
        let fast = fisher_diagonal(&l, d, None).unwrap();
        let slow = brute_force_fisher(&l, d);
        for (i, (f, b)) in fast.iter().zip(&slow).enumerate() {
            let scale = b.abs().max().double_value(&[]).max(1e-12);
            let err = (f - b).abs().max().double_value(&[]);
            assert!(err <= 1e-5 * scale, "{setting:?} multi={multi} param {i}: max err {err} vs scale {scale}");
        }
        // Something was actually measured.
        assert!(fast.iter().map(|f| f.sum(Kind::Float).double_value(&[])).sum::<f64>() > 0.0);
    }
}

#[test]
fn ewc_penalty_pulls_parameters_back_to_the_anchor() {
    let s = small_scenario(Setting::ClassIncremental);
    let l = learner(&s, Heads::Single(10), 4);
    let mut ewc = Ewc::separate(1000.0, None);
    ewc.consolidate(&l, &s.experiences[0].train).unwrap();
    assert!(ewc.penalty(&l).unwrap().double_value(&[]).abs() < 1e-12, "zero at the anchor");
    let anchor = l.model.snapshot();
    // Perturb, then descend on the penalty alone: every coordinate moves toward its anchor value
    // (never away), and the penalty falls.
    tch::no_grad(|| {
        // A fixed perturbation: unseeded, the draw (and how far 50 steps get) varied run to run (seen failing once in CI).
        let _g = engram_core::seed::global_rng_lock();
        engram_core::seed::manual_seed(11);
        for p in l.model.params() {
            let _ = p.shallow_clone().f_add_(&(p.randn_like() * 0.1)).unwrap();
        }
    });
    let gap = |l: &Learner| -> Vec<Tensor> { l.model.params().iter().zip(&anchor).map(|(p, a)| (p - a).abs().detach()).collect() };
    let g0 = gap(&l);
    let p0 = ewc.penalty(&l).unwrap().double_value(&[]);
    // The penalty's curvature is λ·F per coordinate: a step below 1/(λ max F) cannot overshoot.
    let fisher = fisher_diagonal(&l, &s.experiences[0].train, None).unwrap();
    let max_f = fisher.iter().map(|f| f.max().double_value(&[])).fold(0.0, f64::max);
    let mut opt = Sgd::new(&l.model.params(), 0.5 / (1000.0 * max_f)).unwrap();
    // Coordinates with a small Fisher contract slowly at this safe step size; 300 steps get the
    // (Fisher-weighted) penalty well below half for any perturbation of this size.
    for _ in 0..300 {
        opt.zero_grad().unwrap();
        ewc.penalty(&l).unwrap().backward();
        opt.step().unwrap();
    }
    let p1 = ewc.penalty(&l).unwrap().double_value(&[]);
    assert!(p1 < 0.5 * p0, "penalty {p0} -> {p1}");
    for (a, b) in gap(&l).iter().zip(&g0) {
        assert!(a.le_tensor(&(b + 1e-7)).all().int64_value(&[]) == 1, "a coordinate moved away from its anchor");
    }

    // Trained on task 1 after task 0, EWC stays closer to the task-0 solution than fine-tuning.
    let cfg = TrainConfig { epochs: 3, batch_size: 16, seed: 1, ..TrainConfig::default() };
    let two = Scenario { experiences: s.experiences[..2].to_vec(), ..s.clone() };
    let mut moved = Vec::new();
    for with_ewc in [false, true] {
        let mut l = learner(&two, Heads::Single(10), 5);
        let state = Rc::new(RefCell::new(SnapState::default()));
        let mut plugins: Vec<Box<dyn Plugin>> = vec![Box::new(Snapshot(state.clone()))];
        if with_ewc {
            plugins.push(Box::new(Ewc::separate(1e4, None)));
        }
        train_stream(&mut l, &two, &mut plugins, &cfg).unwrap();
        let st = state.borrow();
        let first = st.after_first.as_ref().unwrap();
        // Movement weighted by task 0's Fisher: what EWC is meant to hold down.
        let f = st.fisher_first.as_ref().unwrap();
        let d: f64 = l.model.params().iter().zip(first).zip(f).map(|((p, a), f)| (f * (p - a).square()).sum(Kind::Double).double_value(&[])).sum();
        moved.push(d);
    }
    assert!(moved[1] < 0.5 * moved[0], "EWC moved {} vs naive {}", moved[1], moved[0]);
}

#[derive(Default)]
struct SnapState {
    after_first: Option<Vec<Tensor>>,
    fisher_first: Option<Vec<Tensor>>,
    head0_after_first: Option<Vec<Tensor>>,
    head0_identical_after_second: Option<bool>,
}

/// Records the parameters after the first experience and compares head 0 after the second.
struct Snapshot(Rc<RefCell<SnapState>>);

impl Plugin for Snapshot {
    fn name(&self) -> String {
        "snapshot".into()
    }
    fn after_experience(&mut self, l: &mut Learner, e: &Experience, _c: &Context) -> engram_continual::Result<()> {
        let params = l.model.snapshot();
        let mut st = self.0.borrow_mut();
        if e.task == 0 {
            if l.model.is_multi_head() {
                // Body of 2 layers = 4 tensors; head 0 is the next two.
                st.head0_after_first = Some(vec![params[4].copy(), params[5].copy()]);
            }
            st.after_first = Some(params);
            st.fisher_first = Some(fisher_diagonal(l, &e.train, None)?);
        } else if e.task == 1 {
            if let Some(h) = &st.head0_after_first {
                let same = h[0].equal(&params[4]) && h[1].equal(&params[5]);
                st.head0_identical_after_second = Some(same);
            }
        }
        Ok(())
    }
}

#[test]
fn multi_head_leaves_head_a_bit_identical_while_training_head_b() {
    let s = small_scenario(Setting::TaskIncremental);
    let two = Scenario { experiences: s.experiences[..2].to_vec(), ..s.clone() };
    let heads = Heads::PerTask { n_classes: 10, classes: two.experiences.iter().map(|e| e.classes.clone()).collect() };
    let mut l = learner(&two, heads, 6);
    let state = Rc::new(RefCell::new(SnapState::default()));
    let mut plugins: Vec<Box<dyn Plugin>> = vec![Box::new(Snapshot(state.clone()))];
    // Adam keeps momentum; with a gradient of zero instead of none, head A would still drift.
    let cfg = TrainConfig { epochs: 2, batch_size: 8, seed: 2, ..TrainConfig::default() };
    let r = train_stream(&mut l, &two, &mut plugins, &cfg).unwrap();
    let st = state.borrow();
    assert_eq!(st.head0_identical_after_second, Some(true));
    // And the shared body did move (so the test is not vacuous).
    let first = st.after_first.as_ref().unwrap();
    assert!(!first[0].equal(&l.model.params()[0]));
    assert!(r.accuracy.rows[1][1] > 0.5);
}

#[test]
fn a_gem_projection_has_non_negative_dot_with_the_reference() {
    let _g = engram_core::seed::global_rng_lock();
    engram_core::seed::manual_seed(7);
    for trial in 0..20 {
        let mut g: Vec<Tensor> = vec![Tensor::randn([5, 3], (Kind::Float, Device::Cpu)), Tensor::randn([3], (Kind::Float, Device::Cpu))];
        let r: Vec<Option<Tensor>> = vec![Some(Tensor::randn([5, 3], (Kind::Float, Device::Cpu))), Some(Tensor::randn([3], (Kind::Float, Device::Cpu)))];
        let dot = |g: &[Tensor]| -> f64 {
            g.iter().zip(&r).map(|(a, b)| (a * b.as_ref().unwrap()).sum(Kind::Double).double_value(&[])).sum()
        };
        let before = dot(&g);
        let orig: Vec<Tensor> = g.iter().map(|t| t.copy()).collect();
        let projected = AGem::project(&mut g, &r).unwrap();
        let after = dot(&g);
        assert_eq!(projected, before < 0.0, "trial {trial}");
        assert!(after >= -1e-5, "trial {trial}: dot {before} -> {after}");
        if !projected {
            assert!(g.iter().zip(&orig).all(|(a, b)| a.equal(b)));
        }
    }
}

#[test]
fn adam_matches_torch_optim_adam() {
    // torch: p = [0.5, -1.0, 2.0]; Adam(lr=0.01); 3 steps on sum(p**3) → f32 bits below.
    let p = Tensor::from_slice(&[0.5f32, -1.0, 2.0]).set_requires_grad(true);
    let mut opt = Adam::new(&[p.shallow_clone()], 0.01, (0.9, 0.999), 1e-8, 0.0).unwrap();
    for _ in 0..3 {
        opt.zero_grad().unwrap();
        p.pow_tensor_scalar(3).sum(Kind::Float).backward();
        opt.step().unwrap();
    }
    let got: Vec<f32> = Vec::try_from(&p).unwrap();
    let want = [1055959532u32, 3213088665, 1073490250].map(f32::from_bits);
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 2.0 * f32::EPSILON * w.abs(), "{got:?} vs {want:?}");
    }
}

#[test]
fn every_strategy_runs_and_replay_beats_naive_in_class_il() {
    let params = StrategyParams { memory: 60, replay_batch: 16, fisher_samples: Some(50), gdumb_passes: 3, ..StrategyParams::default() };
    let cfg = TrainConfig { epochs: 2, batch_size: 16, seed: 3, ..TrainConfig::default() };
    let mut acc = std::collections::HashMap::new();
    for setting in [Setting::ClassIncremental, Setting::TaskIncremental] {
        let s = small_scenario(setting);
        for kind in StrategyKind::ALL {
            if !kind.supports(setting) {
                assert!(run_strategy(kind, &s, &[32], &params, &cfg).is_err());
                continue;
            }
            let r = run_strategy(kind, &s, &[32], &params, &cfg).unwrap_or_else(|e| panic!("{} {setting:?}: {e}", kind.name()));
            let a = r.accuracy.average_accuracy();
            assert!((0.0..=1.0).contains(&a));
            if kind != StrategyKind::Joint {
                assert_eq!(r.accuracy.rows.len(), 5, "{}", kind.name());
            }
            acc.insert((kind.name(), setting.short()), a);
        }
    }
    let naive = acc[&("naive", "class-il")];
    let replay = acc[&("replay", "class-il")];
    assert!(naive < 0.4, "naive class-IL should forget: {naive}");
    assert!(replay > naive + 0.15, "replay {replay} vs naive {naive}");
    assert!(acc[&("joint", "class-il")] > 0.8);
    // Replay + EWC is both plugins at work, not replay alone.
    assert_ne!(acc[&("replay+ewc", "class-il")], acc[&("replay", "class-il")]);
}

#[test]
fn quadrant_tasks_hit_the_conflict_floor_single_head_but_not_multi_head() {
    use engram_continual::optim::OptimizerConfig;
    use engram_continual::scenario::quadrant_tasks;
    let cfg = TrainConfig { epochs: 30, batch_size: 100, optimizer: OptimizerConfig::adam(1e-2), seed: 4, ..TrainConfig::default() };
    let p = StrategyParams::default();
    let dom = quadrant_tasks(1000, 2000, Setting::DomainIncremental, 9).unwrap();
    let naive = run_strategy(StrategyKind::Naive, &dom, &[64], &p, &cfg).unwrap();
    let r = &naive.accuracy.rows;
    assert!(r[0][0] > 0.9 && r[1][1] > 0.9, "{r:?}");
    // Perfect on B forces about 50% on A: the label conflict, not a capacity limit.
    assert!((r[1][0] - 0.5).abs() < 0.1, "{r:?}");
    let task = quadrant_tasks(1000, 2000, Setting::TaskIncremental, 9).unwrap();
    let mh = run_strategy(StrategyKind::MultiHead, &task, &[64], &p, &cfg).unwrap();
    assert!(mh.accuracy.rows[1][0] > 0.85 && mh.accuracy.rows[1][1] > 0.9, "{:?}", mh.accuracy.rows);
}
