//! Checkpoint round trip, atomic replacement and every way a checkpoint can be damaged.

use engram_core::checkpoint::{varstore_tensors, Checkpoint, CheckpointWriter, FORMAT_VERSION, META_FILE};
use std::fs;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

fn sample_tensors() -> Vec<(String, Tensor)> {
    vec![
        ("encoder.weight".into(), Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4])),
        ("encoder.bias".into(), Tensor::from_slice(&[0.5f64, -1.25])),
        ("emb".into(), Tensor::arange(6, (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16)),
        ("steps".into(), Tensor::from_slice(&[7i64])),
    ]
}

fn write(path: &Path) {
    CheckpointWriter::new("test-model", serde_json::json!({"d_model": 4, "layers": [1, 2]}))
        .step(123)
        .metric("loss", 0.25)
        .group("model", sample_tensors())
        .group("optimizer", vec![("exp_avg.encoder.weight".into(), Tensor::ones([3, 4], (Kind::Float, Device::Cpu)))])
        .write(path)
        .unwrap();
}

fn err_of(path: &Path) -> String {
    Checkpoint::load(path).unwrap_err().to_string()
}

#[test]
fn round_trip_preserves_tensors_dtypes_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck");
    write(&p);
    let ck = Checkpoint::load(&p).unwrap();
    assert_eq!(ck.meta.step, 123);
    assert_eq!(ck.meta.kind, "test-model");
    assert_eq!(ck.meta.format_version, FORMAT_VERSION);
    assert_eq!(ck.meta.metrics["loss"], 0.25);
    assert_eq!(ck.meta.config["layers"][1], 2);
    let got = ck.tensors("model").unwrap();
    let want = sample_tensors();
    assert_eq!(got.len(), want.len());
    for (name, t) in want {
        let (_, g) = got.iter().find(|(n, _)| *n == name).expect("tensor present");
        assert_eq!(g.kind(), t.kind(), "{name}");
        assert!(g.equal(&t), "{name}");
    }
    assert!(ck.has_group("optimizer"));
    assert!(ck.tensors("nope").is_err());
    assert!(ck.expect_kind("test-model").is_ok());
    assert!(ck.expect_kind("hybrid").unwrap_err().to_string().contains("expected 'hybrid'"));
}

#[test]
fn varstore_round_trip_and_shape_checks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vs");
    let vs = nn::VarStore::new(Device::Cpu);
    let _a = vs.root().randn("a", &[2, 3], 0.0, 1.0);
    let _b = vs.root().sub("blk").randn("w", &[4], 0.0, 1.0);
    CheckpointWriter::new("m", serde_json::json!({})).group("model", varstore_tensors(&vs)).write(&p).unwrap();
    let mut vs2 = nn::VarStore::new(Device::Cpu);
    let _a2 = vs2.root().zeros("a", &[2, 3]);
    let _b2 = vs2.root().sub("blk").zeros("w", &[4]);
    Checkpoint::load(&p).unwrap().load_into("model", &mut vs2).unwrap();
    for (n, t) in vs.variables() {
        assert!(t.equal(&vs2.variables()[&n]), "{n}");
    }
    // Wrong shape and missing/extra tensors are refused, nothing half-loaded.
    let mut vs3 = nn::VarStore::new(Device::Cpu);
    let _a3 = vs3.root().zeros("a", &[3, 2]);
    let _b3 = vs3.root().sub("blk").zeros("w", &[4]);
    let e = Checkpoint::load(&p).unwrap().load_into("model", &mut vs3).unwrap_err().to_string();
    assert!(e.contains("shape"), "{e}");
    let mut vs4 = nn::VarStore::new(Device::Cpu);
    let _a4 = vs4.root().zeros("a", &[2, 3]);
    let e = Checkpoint::load(&p).unwrap().load_into("model", &mut vs4).unwrap_err().to_string();
    assert!(e.contains("not a model parameter"), "{e}");
}

#[test]
fn overwrite_is_atomic_and_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck");
    write(&p);
    CheckpointWriter::new("test-model", serde_json::json!({}))
        .step(124)
        .group("model", vec![("x".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu)))])
        .write(&p)
        .unwrap();
    let ck = Checkpoint::load(&p).unwrap();
    assert_eq!(ck.meta.step, 124);
    assert!(!ck.has_group("optimizer"), "old files must not survive a replacement");
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn failed_write_keeps_the_old_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck");
    write(&p);
    // An invalid group name fails mid-write; the previous checkpoint must be untouched.
    let r = CheckpointWriter::new("x", serde_json::json!({}))
        .group("bad/name", vec![("x".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))])
        .write(&p);
    assert!(r.is_err());
    assert_eq!(Checkpoint::load(&p).unwrap().meta.step, 123);
    let n = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(n, 1, "temporary directory left behind");
}

#[test]
fn truncated_tensor_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck");
    write(&p);
    let f = p.join("model.safetensors");
    let bytes = fs::read(&f).unwrap();
    fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&p);
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn tampered_tensor_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck");
    write(&p);
    let f = p.join("model.safetensors");
    let mut bytes = fs::read(&f).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&f, &bytes).unwrap();
    let e = err_of(&p);
    assert!(e.contains("SHA-256 mismatch"), "{e}");
}

#[test]
fn damaged_or_foreign_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck");
    write(&p);
    let meta = p.join(META_FILE);
    let text = fs::read_to_string(&meta).unwrap();

    fs::write(&meta, &text[..text.len() / 3]).unwrap();
    assert!(err_of(&p).contains("not valid JSON"));

    fs::write(&meta, text.replace("\"format_version\": 1", "\"format_version\": 99")).unwrap();
    assert!(err_of(&p).contains("version 99 is not supported"));

    fs::write(&meta, text.replace("engram-checkpoint", "something-else")).unwrap();
    assert!(err_of(&p).contains("not an engram checkpoint"));

    fs::remove_file(&meta).unwrap();
    assert!(err_of(&p).contains("meta.json is missing"));
}

#[test]
fn missing_paths_and_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(err_of(&dir.path().join("nope")).contains("no such file"));
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert!(err_of(&file).contains("found a file"));
    let p = dir.path().join("ck");
    write(&p);
    fs::remove_file(p.join("optimizer.safetensors")).unwrap();
    assert!(err_of(&p).contains("missing"));
}

#[test]
fn config_deserialisation_errors_are_clear() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        d_model: i64,
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ck");
    write(&p);
    let e = Checkpoint::load(&p).unwrap().config::<Cfg>().unwrap_err().to_string();
    assert!(e.contains("config does not match"), "{e}");
}
