//! Short training runs with real assertions, plus data loading and the PNG writer.
//! Tests that need `.data/` skip with a notice when it is absent (`cargo xtask setup` fetches it).

use engram_sparse::datasets::{self, data_root, Split};
use engram_sparse::lottery::{run_lottery, LotteryConfig, PruneScope, Rewind};
use engram_sparse::mask::DensityRule;
use engram_sparse::model::{MaskedModel, SparseMlp};
use engram_sparse::optim::OptimizerConfig;
use engram_sparse::plot::{Chart, Series};
use engram_sparse::set_experiment::{run_variant, SetConfig, Variant};
use engram_sparse::vit::{Vit, VitConfig};
use engram_core::seed::HostRng;
use tch::{nn, Device, Kind};

fn mnist() -> Option<Split> {
    match datasets::mnist5k_split(&data_root(), 1000, 0) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

#[test]
fn mnist5k_loads_with_500_digits_per_class() {
    let Some(s) = mnist() else { return };
    assert_eq!(s.train.x.size(), vec![4000, 784]);
    assert_eq!(s.test.len(), 1000);
    let all = tch::Tensor::cat(&[&s.train.y, &s.test.y], 0);
    let counts = Vec::<i64>::try_from(all.bincount::<tch::Tensor>(None, 10)).unwrap();
    assert_eq!(counts, vec![500; 10]);
    let (lo, hi) = (s.train.x.min().double_value(&[]), s.train.x.max().double_value(&[]));
    assert!(lo >= 0.0 && hi <= 1.0 && hi > 0.9);
}

#[test]
fn missing_data_names_the_setup_command() {
    let e = datasets::load_mnist5k(std::path::Path::new("/nonexistent")).unwrap_err();
    assert!(e.to_string().contains("cargo xtask setup"), "{e}");
    let e = datasets::load_fashion_mnist(std::path::Path::new("/nonexistent")).unwrap_err();
    assert!(e.to_string().contains("cargo xtask setup"), "{e}");
}

#[test]
fn fashion_mnist_has_the_official_split() {
    match datasets::load_fashion_mnist(&data_root()) {
        Ok(s) => {
            assert_eq!(s.train.x.size(), vec![60000, 784]);
            assert_eq!(s.test.x.size(), vec![10000, 784]);
            assert_eq!(s.test.y.max().int64_value(&[]), 9);
        }
        Err(e) => eprintln!("SKIPPED: {e}"),
    }
}

#[test]
fn set_and_rigl_train_a_sparse_mlp_and_keep_nnz() {
    let Some(s) = mnist() else { return };
    let cfg = SetConfig {
        sizes: vec![784, 200, 10],
        density: 0.1,
        epochs: 3,
        batch: 32,
        optimizer: OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, weight_decay: 2e-4 },
        ..SetConfig::default()
    };
    for v in [Variant::SetUniform, Variant::RiglUniform] {
        let r = run_variant(v, &cfg, &s, Device::Cpu, &mut |l| eprintln!("{l}")).unwrap();
        let nnz0 = 15_680 + 200;
        assert_eq!(r.nnz, nnz0);
        assert!(r.epochs.iter().all(|e| e.nnz == nnz0));
        assert!(r.epochs[0].replaced > 0, "{v:?} replaced no connections");
        // 10%-dense 784-200-10 on 4,000 digits: a real classifier, far above chance (10%).
        assert!(r.final_test_acc > 0.85, "{v:?} reached only {}", r.final_test_acc);
        assert!(r.epochs[2].train_loss < r.epochs[0].train_loss);
    }
}

#[test]
fn lottery_rounds_follow_the_schedule_and_train() {
    let Some(s) = mnist() else { return };
    let s = Split { train: s.train.take(2000), test: s.test };
    let cfg = LotteryConfig {
        rounds: 2,
        rate: 0.2,
        scope: PruneScope::Global,
        rewind: Rewind::Step(5),
        epochs: 2,
        batch: 64,
        optimizer: OptimizerConfig::Adam { lr: 1.2e-3, weight_decay: 0.0 },
        seed: 1,
        random_reinit: true,
    };
    let build = |p: &nn::Path| SparseMlp::new(p, &[784, 100, 10], DensityRule::Dense, false, &mut HostRng::new(0));
    let res = run_lottery(&build, &cfg, &s, Device::Cpu, &mut |r| eprintln!("{r:?}")).unwrap();
    assert_eq!(res.len(), 3);
    for (r, want) in res.iter().zip([0.0, 0.2, 0.36]) {
        assert!((r.sparsity - want).abs() < 1e-3);
        assert!(r.ticket_acc > 0.8, "round {} accuracy {}", r.round, r.ticket_acc);
    }
    assert!(res[0].reinit_acc.is_none() && res[1].reinit_acc.is_some());
    // Rewinding past the first round's steps is refused.
    let bad = LotteryConfig { rewind: Rewind::Step(1_000_000), ..cfg };
    assert!(run_lottery(&build, &bad, &s, Device::Cpu, &mut |_| {}).is_err());
}

#[test]
fn vit_has_seed004_parameter_count_and_trains_a_step() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = VitConfig::seed004_fashion();
    let vit = Vit::new(&vs.root(), cfg).unwrap();
    // 6 blocks × 444,864 + patch embedding (16·192 + 192) + cls 192 + pos 50·192 + final norm 384 + head 1,930.
    assert_eq!(vit.num_parameters(), 6 * 444_864 + 3_264 + 192 + 9_600 + 384 + 1_930);
    assert_eq!(vit.masked_layers().len(), 26);
    let x = tch::Tensor::rand([3, 784], (Kind::Float, Device::Cpu));
    let y = vit.logits(&x);
    assert_eq!(y.size(), vec![3, 10]);
    assert!(Vit::new(&vs.root(), VitConfig { heads: 5, ..cfg }).is_err());
}

#[test]
fn png_chart_is_a_valid_png() {
    let chart = Chart {
        x_range: (0.0, 80.0),
        y_range: (0.0, 100.0),
        x_ticks: vec![0.0, 20.0, 40.0, 60.0, 80.0],
        y_ticks: vec![0.0, 50.0, 100.0],
        series: vec![Series { color: [200, 0, 0], points: vec![(0.0, 90.0), (20.0, 91.0), (36.0, 89.5)] }],
    };
    let png = chart.to_png().unwrap();
    assert_eq!(&png[..8], &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
    // Walk the chunks, checking each CRC, and inflate IDAT back to height·(1 + 3·width) bytes.
    let mut at = 8;
    let mut idat = Vec::new();
    let mut kinds = Vec::new();
    while at < png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
        let mut h = crc32fast::Hasher::new();
        h.update(kind);
        h.update(data);
        assert_eq!(h.finalize(), crc);
        if kind == b"IDAT" {
            idat.extend_from_slice(data);
        }
        kinds.push(String::from_utf8_lossy(kind).to_string());
        at += 12 + len;
    }
    assert_eq!(kinds, vec!["IHDR", "IDAT", "IEND"]);
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut raw).unwrap();
    assert_eq!(raw.len(), 420 * (1 + 3 * 640));
    // Some pixels carry the series colour.
    assert!(raw.chunks(3).any(|p| p == [200, 0, 0]));
}
