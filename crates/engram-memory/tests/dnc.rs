//! DNC addressing invariants and a short copy-task training run.

use engram_core::seed::HostRng;
use engram_memory::dnc::addressing::{allocation_weights, update_link};
use engram_memory::dnc::{Dnc, DncConfig};
use engram_memory::tasks::{evaluate_ber, train_dnc, DncOptimizer, DncTrainConfig, Task};
use proptest::prelude::*;
use tch::{nn, Device, Kind, Tensor};

fn v(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn addressing_invariants_hold_along_a_random_run(seed in 0u64..1000, slots in 3i64..10, reads in 1i64..4) {
        let _g = engram_core::seed::global_rng_lock();
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = DncConfig { input: 5, output: 3, hidden: 12, slots, word: 4, reads };
        let dnc = Dnc::new(&vs.root(), cfg).unwrap();
        // Large random inputs drive the gates towards their extremes.
        let xs = Tensor::randn([2, 12, 5], (Kind::Float, Device::Cpu)) * 4.0;
        let mut s = dnc.initial_state(2, Device::Cpu);
        for t in 0..12 {
            let (_, next) = dnc.step(&xs.select(1, t), &s).unwrap();
            s = next;
            let ww = v(&s.write_weights.sum_dim_intlist([-1].as_slice(), false, Kind::Float));
            prop_assert!(ww.iter().all(|&x| (0.0..=1.0 + 1e-5).contains(&x)), "write weights sum {ww:?}");
            prop_assert!(v(&s.write_weights).iter().all(|&x| x >= 0.0));
            let rw = v(&s.read_weights.sum_dim_intlist([-1].as_slice(), false, Kind::Float));
            prop_assert!(rw.iter().all(|&x| (0.0..=1.0 + 1e-5).contains(&x)), "read weights sum {rw:?}");
            prop_assert!(v(&s.usage).iter().all(|&x| (0.0..=1.0 + 1e-6).contains(&x)), "usage {:?}", v(&s.usage));
            prop_assert!(v(&s.link.diagonal(0, 1, 2)).iter().all(|&x| x == 0.0));
            prop_assert!(v(&s.link).iter().all(|&x| x >= -1e-6));
            for dim in [1i64, 2] {
                let sums = v(&s.link.sum_dim_intlist([dim].as_slice(), false, Kind::Float));
                prop_assert!(sums.iter().all(|&x| x <= 1.0 + 1e-5), "link sums over dim {dim}: {sums:?}");
            }
            let p = v(&s.precedence.sum_dim_intlist([-1].as_slice(), false, Kind::Float));
            prop_assert!(p.iter().all(|&x| x <= 1.0 + 1e-5));
        }
    }

    #[test]
    fn allocation_prefers_the_least_used_slot_and_sums_to_at_most_one(u in proptest::collection::vec(0.0f32..1.0, 2..12)) {
        let usage = Tensor::from_slice(&u).unsqueeze(0);
        let a = v(&allocation_weights(&usage));
        let total: f32 = a.iter().sum();
        prop_assert!(total <= 1.0 + 1e-5 && a.iter().all(|&x| x >= 0.0));
        let (imin, _) = u.iter().enumerate().fold((0, f32::INFINITY), |b, (i, &x)| if x < b.1 { (i, x) } else { b });
        let (amax, _) = a.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b });
        prop_assert!((u[amax] - u[imin]).abs() < 1e-6, "allocation favours slot {amax} (u={}) over the least used {imin} (u={})", u[amax], u[imin]);
    }
}

#[test]
fn allocation_of_empty_memory_is_one_hot_and_full_memory_gets_nothing() {
    let a = v(&allocation_weights(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu))));
    assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert_eq!(a.iter().filter(|&&x| x > 0.5).count(), 1);
    let full = v(&allocation_weights(&Tensor::ones([1, 4], (Kind::Float, Device::Cpu))));
    assert!(full.iter().all(|&x| x < 1e-4));
}

#[test]
fn link_matrix_records_write_order() {
    // Write slot 0, then slot 2: L[2, 0] (2 was written after 0) must become 1.
    let n = 4;
    let z = |s: &[i64]| Tensor::zeros(s, (Kind::Float, Device::Cpu));
    let w0 = Tensor::from_slice(&[1f32, 0., 0., 0.]).unsqueeze(0);
    let w2 = Tensor::from_slice(&[0f32, 0., 1., 0.]).unsqueeze(0);
    let l1 = update_link(&z(&[1, n, n]), &w0, &z(&[1, n]));
    let p1 = engram_memory::dnc::addressing::update_precedence(&z(&[1, n]), &w0);
    let l2 = update_link(&l1, &w2, &p1);
    assert_eq!(l2.double_value(&[0, 2, 0]), 1.0);
    assert_eq!(l2.sum(Kind::Float).double_value(&[]), 1.0);
}

#[test]
fn shape_errors_are_reported_not_aborted() {
    let vs = nn::VarStore::new(Device::Cpu);
    let dnc = Dnc::new(&vs.root(), DncConfig { input: 5, output: 3, hidden: 8, slots: 4, word: 4, reads: 1 }).unwrap();
    assert!(dnc.forward(&Tensor::zeros([2, 3, 6], (Kind::Float, Device::Cpu))).is_err());
    assert!(Dnc::new(&vs.root(), DncConfig { input: 0, output: 3, hidden: 8, slots: 4, word: 4, reads: 1 }).is_err());
    assert!(Task::Copy.batch(0, 4, 3, &mut HostRng::new(0)).is_err());
}

#[test]
fn copy_task_batches_are_well_formed() {
    let b = Task::Copy.batch_range(3, 4, 3, 3, &mut HostRng::new(1)).unwrap();
    assert_eq!(b.input.size(), vec![3, 7, 5]);
    // Targets in the output phase equal the inputs of the read phase.
    assert!(b.target.narrow(1, 4, 3).equal(&b.input.narrow(1, 0, 3).narrow(2, 0, 4)));
    assert_eq!(b.mask.sum(Kind::Float).double_value(&[]), 9.0);
    let r = Task::RepeatCopy { max_repeats: 2 }.batch_range(4, 3, 2, 2, &mut HostRng::new(2)).unwrap();
    assert_eq!(r.input.size()[2], 5);
    assert_eq!(r.target.size()[2], 4);
}

#[test]
fn dnc_learns_short_copies() {
    // Tiny ops: threads only add overhead (and the CI machine has two cores).
    tch::set_num_threads(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = DncTrainConfig {
        bits: 4,
        hidden: 32,
        slots: 8,
        word: 8,
        reads: 1,
        batch: 16,
        steps: 300,
        optimizer: DncOptimizer::Adam { lr: 5e-3 },
        clip: 10.0,
        max_len: 3,
        curriculum_ber: 0.05,
        window: 20,
        seed: 7,
        ..DncTrainConfig::paper_defaults()
    };
    let (dnc, log) = train_dnc(&vs, &cfg, 50, &mut |p| eprintln!("{p:?}")).unwrap();
    let first = log.first().unwrap();
    let last = log.last().unwrap();
    assert!(last.loss < 0.5 * first.loss, "loss {} -> {}", first.loss, last.loss);
    // Chance is a BER of 0.5.
    let ber = evaluate_ber(&dnc, Task::Copy, 4, 2, 4, 16, 99, Device::Cpu).unwrap();
    assert!(ber < 0.25, "BER on length 2: {ber}");
}
