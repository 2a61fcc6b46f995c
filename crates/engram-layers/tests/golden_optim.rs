//! Optimizer trajectories, gradient clipping and LR schedules against torch.optim (golden files).

mod common;
use common::{assert_close, close64, to_vec, Golden};
use engram_layers::optim::*;
use engram_layers::schedule::*;
use tch::{Kind, Tensor};

struct Problem {
    w: Tensor,
    b: Tensor,
    x: Tensor,
    y: Tensor,
}

impl Problem {
    fn new(g: &Golden) -> Problem {
        Problem {
            w: g.get("w0").copy().set_requires_grad(true),
            b: g.get("b0").copy().set_requires_grad(true),
            x: g.get("X"),
            y: g.get("Y"),
        }
    }
    fn loss(&self) -> Tensor {
        (self.x.matmul(&self.w.tr()) + &self.b).tanh().f_sub(&self.y).unwrap().square().mean(Kind::Double)
    }
    fn params(&self) -> Vec<Tensor> {
        vec![self.w.shallow_clone(), self.b.shallow_clone()]
    }
    fn flat(&self) -> Tensor {
        Tensor::cat(&[self.w.detach().reshape([-1]), self.b.detach().reshape([-1])], 0)
    }
    fn zero_grad(&self) {
        self.w.shallow_clone().zero_grad();
        self.b.shallow_clone().zero_grad();
    }
    fn eval(&self) -> f64 {
        self.zero_grad();
        let l = self.loss();
        l.backward();
        l.double_value(&[])
    }
}

fn one_group(p: &Problem, lr: f64, wd: f64) -> Vec<ParamGroup> {
    vec![ParamGroup::new("all", p.params(), lr).weight_decay(wd)]
}

/// Runs `steps` updates and returns the `[steps, 15]` trajectory of (w, b).
fn run(g: &Golden, steps: usize, closure_style: bool, make: impl FnOnce(&Problem) -> Box<dyn Optimizer>) -> Tensor {
    let p = Problem::new(g);
    let mut opt = make(&p);
    let mut traj = Vec::new();
    for _ in 0..steps {
        if closure_style {
            opt.step_with_closure(&mut || Ok(p.eval())).unwrap();
        } else {
            opt.zero_grad();
            p.loss().backward();
            opt.step().unwrap();
        }
        traj.push(p.flat());
    }
    Tensor::stack(&traj, 0)
}

fn check(g: &Golden, name: &str, steps: usize, closure_style: bool, make: impl FnOnce(&Problem) -> Box<dyn Optimizer>) {
    let traj = run(g, steps, closure_style, make);
    close64(name, &traj, &g.get(&format!("{name}.traj")));
}

#[test]
fn sgd_family_matches_torch() {
    let g = Golden::load("optim.safetensors");
    check(&g, "sgd", 5, false, |p| Box::new(Sgd::new(one_group(p, 0.1, 0.0), SgdConfig::default()).unwrap()));
    check(&g, "sgd_momentum", 5, false, |p| {
        let c = SgdConfig { momentum: 0.9, dampening: 0.1, ..Default::default() };
        Box::new(Sgd::new(one_group(p, 0.1, 0.01), c).unwrap())
    });
    check(&g, "sgd_nesterov", 5, false, |p| {
        let c = SgdConfig { momentum: 0.9, nesterov: true, ..Default::default() };
        Box::new(Sgd::new(one_group(p, 0.1, 0.01), c).unwrap())
    });
}

#[test]
fn adam_family_matches_torch() {
    let g = Golden::load("optim.safetensors");
    check(&g, "adam", 5, false, |p| Box::new(Adam::new(one_group(p, 0.05, 0.01), AdamConfig::default()).unwrap()));
    check(&g, "adam_amsgrad", 5, false, |p| {
        Box::new(Adam::new(one_group(p, 0.05, 0.0), AdamConfig { amsgrad: true, ..Default::default() }).unwrap())
    });
    check(&g, "adamw", 5, false, |p| Box::new(AdamW::new(one_group(p, 0.05, 0.1), AdamConfig::default()).unwrap()));
    check(&g, "adamw_groups", 5, false, |p| {
        let groups = vec![
            ParamGroup::new("w", vec![p.w.shallow_clone()], 0.05).weight_decay(0.1),
            ParamGroup::new("b", vec![p.b.shallow_clone()], 0.02),
        ];
        Box::new(AdamW::new(groups, AdamConfig::default()).unwrap())
    });
}

#[test]
fn adagrad_rmsprop_adafactor_match_torch() {
    let g = Golden::load("optim.safetensors");
    check(&g, "adagrad", 5, false, |p| {
        let c = AdagradConfig { lr_decay: 0.01, initial_accumulator_value: 0.1, eps: 1e-10 };
        Box::new(Adagrad::new(one_group(p, 0.1, 0.01), c).unwrap())
    });
    check(&g, "rmsprop", 5, false, |p| Box::new(RmsProp::new(one_group(p, 0.01, 0.0), RmsPropConfig::default()).unwrap()));
    check(&g, "rmsprop_cm", 5, false, |p| {
        let c = RmsPropConfig { centered: true, momentum: 0.9, ..Default::default() };
        Box::new(RmsProp::new(one_group(p, 0.01, 0.01), c).unwrap())
    });
    check(&g, "adafactor", 5, false, |p| Box::new(Adafactor::new(one_group(p, 0.05, 0.01), AdafactorConfig::default()).unwrap()));
}

#[test]
fn lbfgs_matches_torch_with_and_without_line_search() {
    let g = Golden::load("optim.safetensors");
    check(&g, "lbfgs", 3, true, |p| {
        let c = LbfgsConfig { max_iter: 5, history_size: 3, ..Default::default() };
        Box::new(Lbfgs::new(one_group(p, 1.0, 0.0), c).unwrap())
    });
    check(&g, "lbfgs_wolfe", 3, true, |p| {
        let c = LbfgsConfig { max_iter: 6, history_size: 4, strong_wolfe: true, ..Default::default() };
        Box::new(Lbfgs::new(one_group(p, 1.0, 0.0), c).unwrap())
    });
}

#[test]
fn lion_lamb_lookahead_sam_polyak_match_reference_algorithms() {
    let g = Golden::load("optim.safetensors");
    check(&g, "lion", 5, false, |p| Box::new(Lion::new(one_group(p, 0.01, 0.1), LionConfig::default()).unwrap()));
    check(&g, "lamb", 5, false, |p| Box::new(Lamb::new(one_group(p, 0.05, 0.01), LambConfig::default()).unwrap()));
    check(&g, "lookahead", 6, false, |p| {
        let sgd = Sgd::new(one_group(p, 0.1, 0.0), SgdConfig { momentum: 0.9, ..Default::default() }).unwrap();
        Box::new(Lookahead::new(Box::new(sgd), LookaheadConfig { k: 2, alpha: 0.5 }).unwrap())
    });
    check(&g, "sam", 5, true, |p| {
        let sgd = Sgd::new(one_group(p, 0.1, 0.0), SgdConfig::default()).unwrap();
        Box::new(Sam::new(Box::new(sgd), SamConfig { rho: 0.05, adaptive: false }).unwrap())
    });
    check(&g, "polyak", 5, true, |p| Box::new(PolyakStep::new(one_group(p, 0.5, 0.0), PolyakConfig::default()).unwrap()));
}

#[test]
fn closure_only_optimizers_refuse_plain_step() {
    let g = Golden::load("optim.safetensors");
    let p = Problem::new(&g);
    p.eval();
    let mut l = Lbfgs::new(one_group(&p, 1.0, 0.0), LbfgsConfig::default()).unwrap();
    assert!(l.step().is_err());
    let mut s = PolyakStep::new(one_group(&p, 1.0, 0.0), PolyakConfig::default()).unwrap();
    assert!(s.step().is_err());
    assert!(Lbfgs::new(vec![ParamGroup::new("a", vec![p.w.shallow_clone()], 1.0), ParamGroup::new("b", vec![p.b.shallow_clone()], 1.0)], LbfgsConfig::default()).is_err());
    assert!(Sgd::new(one_group(&p, -1.0, 0.0), SgdConfig::default()).is_err());
    assert!(Adam::new(one_group(&p, 0.1, 0.0), AdamConfig { betas: (1.0, 0.999), ..Default::default() }).is_err());
}

#[test]
fn clip_grad_norm_matches_torch() {
    let g = Golden::load("optim.safetensors");
    let p = Problem::new(&g);
    p.eval();
    let total = clip_grad_norm(&p.params(), 0.1, 2.0, false).unwrap();
    assert!((total - g.f64("clip.total")[0]).abs() < 1e-12);
    close64("clip.gw", &p.w.grad(), &g.get("clip.gw"));
    close64("clip.gb", &p.b.grad(), &g.get("clip.gb"));
    p.eval();
    let total = clip_grad_norm(&p.params(), 0.05, f64::INFINITY, false).unwrap();
    assert!((total - g.f64("clip_inf.total")[0]).abs() < 1e-12);
    close64("clip_inf.gw", &p.w.grad(), &g.get("clip_inf.gw"));
    p.eval();
    clip_grad_value(&p.params(), 1e-3).unwrap();
    assert!(p.w.grad().abs().max().double_value(&[]) <= 1e-3);
}

#[test]
fn adamw_state_export_and_resume_reproduces_the_uninterrupted_run() {
    let g = Golden::load("optim.safetensors");
    let want = g.get("adamw.traj");
    let p = Problem::new(&g);
    let mut opt = AdamW::new(one_group(&p, 0.05, 0.1), AdamConfig::default()).unwrap();
    for _ in 0..3 {
        p.eval();
        opt.step().unwrap();
    }
    let saved = opt.state_tensors();
    assert!(saved.iter().any(|(n, _)| n == "0.0.exp_avg") && saved.iter().any(|(n, _)| n == "0.1.step"));
    let mut resumed = AdamW::new(one_group(&p, 0.05, 0.1), AdamConfig::default()).unwrap();
    resumed.load_state_tensors(&saved).unwrap();
    for _ in 0..2 {
        p.eval();
        resumed.step().unwrap();
    }
    close64("resumed", &p.flat(), &want.get(4));
    assert!(resumed.load_state_tensors(&[("7.0.exp_avg".into(), Tensor::zeros([1], tch::kind::DOUBLE_CPU))]).is_err());
}

#[test]
fn fp32_master_weights_let_tiny_bf16_updates_accumulate() {
    // Seed-003 spec §5.6: pure-bf16 AdamW froze gate biases at ±2.0, because an lr-sized step is
    // far below bf16's spacing (2^-6) at 2.0 and rounds away. With master weights it must move.
    let run = |master: bool| {
        let b = Tensor::full([4], 2.0, (Kind::BFloat16, tch::Device::Cpu)).set_requires_grad(true);
        let cfg = AdamConfig { master_weights: master, ..Default::default() };
        let mut opt = AdamW::new(vec![ParamGroup::new("b", vec![b.shallow_clone()], 1e-3)], cfg).unwrap();
        for _ in 0..20 {
            opt.zero_grad();
            b.to_kind(Kind::Float).sum(Kind::Float).backward();
            opt.step().unwrap();
        }
        (b.to_kind(Kind::Float).double_value(&[0]), opt.state_tensors())
    };
    let (pure, _) = run(false);
    assert_eq!(pure, 2.0, "pure bf16 AdamW is expected to freeze");
    let (mastered, state) = run(true);
    assert!(mastered < 1.99, "master weights should accumulate 20 steps of 1e-3, got {mastered}");
    let master = state.iter().find(|(n, _)| n == "0.0.master").expect("master copy in state");
    assert_eq!(master.1.kind(), Kind::Float);
    assert!((master.1.double_value(&[0]) - (2.0 - 0.02)).abs() < 1e-3);
}

#[test]
fn decay_groups_exclude_norms_and_biases() {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let _l = engram_layers::Linear::new(&root / "fc", engram_layers::LinearConfig::new(4, 4));
    let _n = engram_layers::norm::RmsNorm::new(&root / "norm", engram_layers::norm::RmsNormConfig::new(4, 1e-6));
    let _e = engram_layers::embedding::Embedding::new(&root / "wte", engram_layers::embedding::EmbeddingConfig::new(8, 4)).unwrap();
    let groups = decay_groups(&vs, 1e-3, 0.1);
    assert_eq!(groups[0].name, "decay");
    assert_eq!(groups[0].params.len(), 2, "fc.weight and wte.weight");
    assert_eq!(groups[1].params.len(), 2, "fc.bias and norm.weight");
    assert!(is_no_decay("blocks.0.ln_1.weight", &[4, 4]));
    assert!(!is_no_decay("blocks.0.attn.q_proj.weight", &[4, 4]));
}

fn lrs(s: &LrSchedule, n: u64) -> Tensor {
    Tensor::from_slice(&(0..n).map(|i| s.lr(i)).collect::<Vec<f64>>())
}

#[test]
fn schedules_match_torch_lr_scheduler() {
    let g = Golden::load("schedule.safetensors");
    let cases = [
        ("step", LrSchedule::Step { base_lr: 0.1, step_size: 7, gamma: 0.5 }),
        ("cosine", LrSchedule::CosineWarmup { base_lr: 0.1, warmup: 0, total: 30, min_lr_ratio: 0.01 }),
        ("cosine_warmup", LrSchedule::CosineWarmup { base_lr: 0.1, warmup: 5, total: 30, min_lr_ratio: 0.0 }),
        ("linear_warmup", LrSchedule::LinearWarmupDecay { base_lr: 0.1, warmup: 5, total: 30 }),
        ("one_cycle", LrSchedule::one_cycle(0.1, 30)),
    ];
    for (name, s) in cases {
        s.validate().unwrap();
        // torch's CosineAnnealingLR is a recursion; its rounding drifts from the closed form by ~1e-16.
        assert_close(name, &lrs(&s, 30), &g.get(name), 1e-10, 1e-14);
    }
    assert_eq!(LrSchedule::Constant { base_lr: 0.3 }.lr(1000), 0.3);
    assert!(LrSchedule::Step { base_lr: 0.1, step_size: 0, gamma: 0.5 }.validate().is_err());
    let cfg = ReduceLrOnPlateauConfig { factor: 0.5, patience: 2, threshold: 0.01, cooldown: 1, ..Default::default() };
    let mut s = ReduceLrOnPlateau::new(0.1, cfg).unwrap();
    let got: Vec<f64> = g.f64("plateau.metrics").iter().map(|&m| s.step(m)).collect();
    close64("plateau", &Tensor::from_slice(&got), &g.get("plateau.lrs"));
    let _ = to_vec;
}
