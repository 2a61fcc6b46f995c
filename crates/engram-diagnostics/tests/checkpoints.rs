//! Hybrid checkpoints: a real one is diagnosed end to end; broken ones give one-line errors.
#![cfg(feature = "hybrid")]

use engram_diagnostics::hybrid::diagnose_checkpoints;
use engram_diagnostics::retrieval::SuiteConfig;
use engram_gdn::{checkpoint, ByteTokenizer, HybridConfig, HybridModel};
use std::path::{Path, PathBuf};
use tch::Device;

fn tiny_checkpoint(dir: &Path, name: &str) -> PathBuf {
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let cfg = HybridConfig::tiny();
    let _m = HybridModel::new(&vs.root(), &cfg).unwrap();
    let p = dir.join(name);
    checkpoint::save(&p, &vs, &cfg, &ByteTokenizer.into(), 5, &Default::default(), None, None).unwrap();
    p
}

fn tiny_suite() -> SuiteConfig {
    let mut s = SuiteConfig::tiny();
    s.trials = 16;
    s.multi_trials = 8;
    s
}

fn err_line(r: anyhow::Result<engram_diagnostics::report::Report>) -> String {
    let e = format!("{:#}", r.expect_err("must fail"));
    assert!(!e.contains('\n'), "error spans several lines: {e}");
    e
}

#[test]
fn untrained_hybrid_is_diagnosed_and_compared() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let a = tiny_checkpoint(tmp.path(), "a");
    let b = tiny_checkpoint(tmp.path(), "b");
    let out = tmp.path().join("out");
    let rep = diagnose_checkpoints(&[&a, &b], Device::Cpu, tiny_suite(), Some(&out)).unwrap();
    assert_eq!(rep.models.len(), 2);
    let m = &rep.models[0];
    assert_eq!(m.step, Some(5));
    assert_eq!(m.window, Some(9));
    // an untrained model does not retrieve
    assert!(m.retrieval.single.accuracy < 0.5);
    // the G layer of "GS" is layer 0 with 2 heads
    assert_eq!(m.mechanism.heads.len(), 2);
    assert!(m.mechanism.heads.iter().all(|h| h.finite && h.key_mean_abs_cos.is_some()));
    let g = m.mechanism.gradients.as_ref().unwrap();
    assert!(!g.has_nan && !g.has_inf && g.params.iter().all(|p| p.grad_norm.is_some()));
    assert!(out.join("report.json").exists() && out.join("report.md").exists());
    assert!(rep.plots.iter().any(|p| p == "state_rank.png"));
    assert!(rep.plots.iter().any(|p| p == "gate_histogram_beta.png"));
    // default output folder is inside the first checkpoint
    let rep = diagnose_checkpoints(&[&a], Device::Cpu, tiny_suite(), None).unwrap();
    assert_eq!(rep.models.len(), 1);
    assert!(a.join("diagnostics/report.json").exists());
    // writing diagnostics into the folder does not break the checkpoint
    checkpoint::load(&a, Device::Cpu).unwrap();
}

#[test]
fn broken_inputs_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tiny_suite;
    let e = err_line(diagnose_checkpoints(&[&tmp.path().join("nope")], Device::Cpu, suite(), None));
    assert!(e.contains("no such file or directory"), "{e}");
    let e = err_line(diagnose_checkpoints(&[tmp.path()], Device::Cpu, suite(), None));
    assert!(e.contains("meta.json is missing"), "{e}");

    let ck = tiny_checkpoint(tmp.path(), "trunc");
    let f = ck.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_line(diagnose_checkpoints(&[&ck], Device::Cpu, suite(), None));
    assert!(e.contains("truncated"), "{e}");

    let ck = tiny_checkpoint(tmp.path(), "badmeta");
    std::fs::write(ck.join("meta.json"), "{\"format\": \"engram-check").unwrap();
    let e = err_line(diagnose_checkpoints(&[&ck], Device::Cpu, suite(), None));
    assert!(e.contains("not valid JSON"), "{e}");

    let ck = tiny_checkpoint(tmp.path(), "version");
    let meta = std::fs::read_to_string(ck.join("meta.json")).unwrap();
    std::fs::write(ck.join("meta.json"), meta.replace("\"format_version\": 1", "\"format_version\": 99")).unwrap();
    let e = err_line(diagnose_checkpoints(&[&ck], Device::Cpu, suite(), None));
    assert!(e.contains("version 99"), "{e}");

    let ck = tmp.path().join("other");
    engram_core::checkpoint::CheckpointWriter::new("moe", serde_json::json!({"experts": 4})).write(&ck).unwrap();
    let e = err_line(diagnose_checkpoints(&[&ck], Device::Cpu, suite(), None));
    assert!(e.contains("'moe'") && e.contains("'hybrid'"), "{e}");

    let ck = tiny_checkpoint(tmp.path(), "alien");
    let meta = std::fs::read_to_string(ck.join("meta.json")).unwrap();
    std::fs::write(ck.join("meta.json"), meta.replace("\"d_model\"", "\"d_modle\"")).unwrap();
    let e = err_line(diagnose_checkpoints(&[&ck], Device::Cpu, suite(), None));
    assert!(e.contains("config"), "{e}");

    let good = tiny_checkpoint(tmp.path(), "good");
    let e = err_line(diagnose_checkpoints(&[&good, &good, &good], Device::Cpu, suite(), None));
    assert!(e.contains("at most two"), "{e}");
}
