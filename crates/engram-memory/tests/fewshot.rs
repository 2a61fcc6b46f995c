//! The memory-augmented few-shot learner: memory mechanics, episode sampling and a short
//! training run on synthetic classes (held-out classes at evaluation).

use engram_core::seed::HostRng;
use engram_memory::fewshot::{evaluate, nearest_prototype_baseline, train_fewshot, AccuracyCi, EpisodeSampler, FewShotConfig, KeyValueMemory};
use tch::{nn, Device, Kind, Tensor};

#[test]
fn memory_reads_only_written_slots_and_recalls_exact_keys() {
    let mut mem = KeyValueMemory::new(1, 5, 4, 2, Device::Cpu);
    let keys = Tensor::from_slice(&[10f32, 0., 0., 0., 0., 10., 0., 0.]).view([1, 2, 4]);
    let values = Tensor::from_slice(&[1f32, 0., 0., 1.]).view([1, 2, 2]);
    mem.write(&keys, &values).unwrap();
    let (read, w) = mem.read(&keys);
    let w: Vec<f32> = Vec::try_from(w.flatten(0, -1)).unwrap();
    // Three slots were never written and get exactly zero weight.
    assert_eq!(w.iter().filter(|&&x| x == 0.0).count(), 2 * 3);
    assert!(read.double_value(&[0, 0, 0]) > 0.99 && read.double_value(&[0, 1, 1]) > 0.99);
    // Writing more than the capacity is refused; otherwise the oldest slots are reused.
    assert!(mem.write(&Tensor::zeros([1, 6, 4], (Kind::Float, Device::Cpu)), &Tensor::zeros([1, 6, 2], (Kind::Float, Device::Cpu))).is_err());
    mem.write(&Tensor::zeros([1, 3, 4], (Kind::Float, Device::Cpu)), &Tensor::zeros([1, 3, 2], (Kind::Float, Device::Cpu))).unwrap();
    mem.write(&keys.narrow(1, 0, 1), &values.narrow(1, 0, 1)).unwrap();
    assert_eq!(mem.keys.double_value(&[0, 0, 0]), 10.0, "slot 0 was the oldest and must be overwritten");
}

#[test]
fn confidence_interval_math() {
    let ci = AccuracyCi::from_samples(&[0.0, 1.0, 0.0, 1.0]);
    assert!((ci.mean - 0.5).abs() < 1e-12);
    assert!((ci.ci95 - 1.96 * (1.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
    // Four coin flips cannot exclude 0 or 0.5; ten certain successes exclude 0.9.
    assert!(!ci.above(0.5) && !ci.above(0.0));
    assert!(AccuracyCi::from_samples(&[1.0; 10]).above(0.9));
}

/// 40 synthetic classes: Gaussian clusters around random centres in 32 dimensions, with noise
/// strong enough that two shots are often ambiguous.
fn synthetic(seed: i64) -> (Tensor, Tensor) {
    let _g = engram_core::seed::global_rng_lock();
    tch::manual_seed(seed);
    let centres = Tensor::randn([40, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::arange(40, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(30, 0, None);
    let x = centres.index_select(0, &y) + Tensor::randn([1200, 32], (Kind::Float, Device::Cpu)) * 1.5;
    (x, y)
}

#[test]
fn learner_beats_chance_on_held_out_classes() {
    tch::set_num_threads(1);
    let (x, y) = synthetic(3);
    let train_classes: Vec<i64> = (0..30).collect();
    let test_classes: Vec<i64> = (30..40).collect();
    let train = EpisodeSampler::new(&x, &y, &train_classes).unwrap();
    let test = EpisodeSampler::new(&x, &y, &test_classes).unwrap();
    let cfg = FewShotConfig { dim: 32, heads: 2, layers: 1, slots: 16, batch: 16, steps: 150, lr: 3e-3, seed: 1, ..FewShotConfig::default() };
    let vs = nn::VarStore::new(Device::Cpu);
    let (model, log) = train_fewshot(&vs, 32, &train, &cfg, 50, &mut |s, l| eprintln!("step {s}: loss {l:.4}")).unwrap();
    assert!(log.last().unwrap().1 < log.first().unwrap().1);
    let ci = evaluate(&model, &test, &cfg, 200, 11).unwrap();
    let proto = nearest_prototype_baseline(&test, &cfg, 200, 11).unwrap();
    eprintln!("held-out 3-way 2-shot: model {ci:?}, prototype baseline {proto:?}");
    assert!(ci.above(1.0 / 3.0), "{ci:?} does not beat chance");
    assert!(ci.mean > 0.5, "{ci:?}");
}

#[test]
fn sampler_rejects_too_small_pools_and_relabels_per_episode() {
    let (x, y) = synthetic(4);
    let cfg = FewShotConfig::default();
    let small = EpisodeSampler::new(&x, &y, &[0, 1]).unwrap();
    assert!(small.sample(&cfg, 2, &mut HostRng::new(0)).is_err());
    let pool = EpisodeSampler::new(&x, &y, &[7, 8, 9]).unwrap();
    let e = pool.sample(&cfg, 4, &mut HostRng::new(0)).unwrap();
    assert_eq!(e.support.size(), vec![4, 6, 32]);
    assert_eq!(e.query.size(), vec![4, 15, 32]);
    assert_eq!(Vec::<i64>::try_from(e.support_labels.get(0)).unwrap(), vec![0, 0, 1, 1, 2, 2]);
    assert!(FewShotConfig { slots: 4, ..FewShotConfig::default() }.slots < 6);
    let vs = nn::VarStore::new(Device::Cpu);
    assert!(engram_memory::fewshot::MemoryTransformer::new(&vs.root(), 32, &FewShotConfig { slots: 4, ..FewShotConfig::default() }).is_err());
}
