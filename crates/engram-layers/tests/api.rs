//! Behaviour of the smaller pieces: dropout statistics, positions, optimizer plumbing, configs.

use engram_layers::attention::MultiHeadAttentionConfig;
use engram_layers::dropout::{DropPath, Dropout};
use engram_layers::embedding::LearnedPositions;
use engram_layers::optim::*;
use engram_layers::schedule::LrSchedule;
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

#[test]
fn dropout_keeps_the_expectation_and_drop_path_drops_whole_samples() {
    let _g = engram_core::seed::global_rng_lock();
    tch::manual_seed(3);
    let x = Tensor::ones([400, 50], tch::kind::FLOAT_CPU);
    let y = Dropout::new(0.3).unwrap().forward_t(&x, true);
    let zero_frac = y.eq(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((zero_frac - 0.3).abs() < 0.02, "zero fraction {zero_frac}");
    assert!((y.mean(Kind::Float).double_value(&[]) - 1.0).abs() < 0.03);
    let d = DropPath::new(0.5).unwrap().forward_t(&x, true);
    let row_min = d.min_dim(1, false).0;
    let row_max = d.max_dim(1, false).0;
    assert_eq!(row_min, row_max, "each sample is kept or dropped as a whole");
    let kept = row_max.gt(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((kept - 0.5).abs() < 0.1, "kept fraction {kept}");
    assert!(Dropout::new(1.0).is_err() && DropPath::new(-0.1).is_err());
}

#[test]
fn learned_positions_index_by_position_and_reject_overflow() {
    let vs = nn::VarStore::new(Device::Cpu);
    let p = LearnedPositions::new(vs.root() / "wpe", 8, 4).unwrap();
    assert_eq!(p.positions(3, 2).unwrap(), p.weight().narrow(0, 2, 3));
    assert!(p.positions(3, 6).is_err());
}

#[test]
fn optimizer_plumbing_lr_zero_grad_and_wrapped_state() {
    let w = Tensor::from_slice(&[1.0f64, 2.0]).set_requires_grad(true);
    let sgd = Sgd::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.1)], SgdConfig { momentum: 0.9, ..Default::default() }).unwrap();
    let mut opt = Lookahead::new(Box::new(sgd), LookaheadConfig::default()).unwrap();
    let sched = LrSchedule::LinearWarmupDecay { base_lr: 0.2, warmup: 2, total: 10 };
    assert_eq!(sched.apply(&mut opt, 1), 0.1);
    assert_eq!(opt.lr(), 0.1);
    (&w * &w).sum(Kind::Double).backward();
    opt.step().unwrap();
    opt.zero_grad();
    assert_eq!(w.grad().abs().sum(Kind::Double).double_value(&[]), 0.0);
    let st = opt.state_tensors();
    assert!(st.iter().any(|(n, _)| n == "inner.0.0.momentum_buffer"));
    assert!(st.iter().any(|(n, _)| n == "slow.0.0"));
    let sgd2 = Sgd::new(vec![ParamGroup::new("w", vec![w.shallow_clone()], 0.1)], SgdConfig { momentum: 0.9, ..Default::default() }).unwrap();
    let mut opt2 = Lookahead::new(Box::new(sgd2), LookaheadConfig::default()).unwrap();
    opt2.load_state_tensors(&st).unwrap();
    assert_eq!(opt2.state_tensors().len(), st.len());
}

#[test]
fn configs_round_trip_through_json_and_reject_unknown_fields() {
    let cfg = MultiHeadAttentionConfig::new(16, 4).kv_heads(2);
    let s = serde_json::to_string(&cfg).unwrap();
    let back: MultiHeadAttentionConfig = serde_json::from_str(&s).unwrap();
    assert_eq!(back, cfg);
    let bad = s.replacen('{', "{\"heads\":3,", 1);
    assert!(serde_json::from_str::<MultiHeadAttentionConfig>(&bad).is_err());
    let sched: LrSchedule = serde_json::from_str(r#"{"cosine_warmup":{"base_lr":0.1,"warmup":5,"total":50,"min_lr_ratio":0.1}}"#).unwrap();
    sched.validate().unwrap();
    assert!((sched.lr(50) - 0.01).abs() < 1e-12);
}

#[test]
fn mha_rejects_a_dtype_mismatch_instead_of_aborting() {
    use engram_layers::attention::{AttentionMask, MultiHeadAttention};
    let vs = nn::VarStore::new(Device::Cpu);
    let a = MultiHeadAttention::new(vs.root(), MultiHeadAttentionConfig::new(8, 2)).unwrap();
    assert!(a.forward(&Tensor::zeros([1, 3, 8], tch::kind::DOUBLE_CPU), &AttentionMask::default(), false).is_err());
}
