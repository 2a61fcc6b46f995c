//! The MoE transformer LM: expert choice is not causal, token choice is; training lowers the loss.

use engram_moe::corpus::ByteCorpus;
use engram_moe::lm::{causal_leak, train_lm, MoeLm, MoeLmConfig, TrainOptions};
use engram_moe::routing::{Capacity, RouterKind};
use tch::{nn, Device, Kind, Tensor};

fn small(router: RouterKind) -> MoeLmConfig {
    let mut c = MoeLmConfig::seed004(router);
    c.d_model = 32;
    c.heads = 4;
    c.d_ff = 64;
    c.max_seq_len = 16;
    c
}

fn leak(router: RouterKind, seed: i64) -> f64 {
    let vs = nn::VarStore::new(Device::Cpu);
    let lm = MoeLm::new(&vs.root(), small(router)).unwrap();
    let _ = seed;
    let tokens = Tensor::randint(256, [4, 16], (Kind::Int64, Device::Cpu));
    causal_leak(&lm, &tokens).unwrap()
}

#[test]
fn expert_choice_is_not_causal() {
    // A later token changes an earlier output: the expert's top-k over the sequence moved.
    let leaks: Vec<f64> =
        (0..4).map(|s| leak(RouterKind::ExpertChoice { capacity: Capacity::Factor(1.0) }, s)).collect();
    assert!(leaks.iter().any(|&l| l > 1e-4), "expected a leak, got {leaks:?}");
}

#[test]
fn token_choice_is_causal() {
    for k in [1, 2] {
        for cap in [Capacity::Factor(0.5), Capacity::Factor(2.0)] {
            let l = leak(RouterKind::TokenChoice { k, capacity: cap }, 0);
            assert_eq!(l, 0.0, "k = {k}, {cap:?}");
        }
    }
}

#[test]
fn bad_tokens_are_errors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let lm = MoeLm::new(&vs.root(), small(RouterKind::Soft)).unwrap();
    assert!(lm.forward(&Tensor::zeros([2, 17], (Kind::Int64, Device::Cpu))).is_err());
    assert!(lm.forward(&Tensor::full([2, 4], 256, (Kind::Int64, Device::Cpu))).is_err());
    assert!(lm.forward(&Tensor::zeros([2, 4], (Kind::Float, Device::Cpu))).is_err());
    let mut bad = small(RouterKind::Soft);
    bad.heads = 5;
    assert!(MoeLm::new(&(vs.root() / "bad"), bad).is_err());
}

#[test]
fn training_lowers_the_loss_and_expert_choice_loads_are_exact() {
    let _g = engram_core::seed::global_rng_lock();
    let text = "to be, or not to be, that is the question: whether 'tis nobler in the mind to suffer ".repeat(60);
    let corpus = ByteCorpus::from_bytes(text.into_bytes(), vec![]).unwrap();
    let o = TrainOptions { steps: 40, batch: 4, seq_len: 16, lr: 3e-3, seed: 0, eval_batches: 2, log_every: 10 };
    let rep = train_lm(small(RouterKind::ExpertChoice { capacity: Capacity::Fixed(4) }), &corpus, o, Device::Cpu, |_, _| {}).unwrap();
    assert!(rep.valid_loss < rep.initial_valid_loss - 1.0, "{} -> {}", rep.initial_valid_loss, rep.valid_loss);
    for s in &rep.valid_stats {
        // 2 eval batches × 4 sequences × 4 tokens per expert.
        assert_eq!(s.tokens_per_expert, vec![32; 4]);
    }
    assert!(rep.causal_leak > 0.0);
}
