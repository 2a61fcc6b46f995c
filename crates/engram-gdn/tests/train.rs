//! Training tests on a tiny model and a small synthetic corpus: the loss falls well below the
//! unigram entropy, outputs are written, resuming continues from the saved step with the saved
//! optimizer state, and a loaded checkpoint generates what the trained model generates.

use engram_gdn::generate::{generate, SamplingConfig};
use engram_gdn::train::{train, CurriculumConfig, RunConfig, TrainOptions};
use engram_gdn::{checkpoint, HybridConfig};
use tch::Device;

fn corpus(dir: &std::path::Path) -> std::path::PathBuf {
    let words = ["to be or not to be", "that is the question", "whether tis nobler", "in the mind to suffer"];
    let mut s = String::new();
    for i in 0..400 {
        s.push_str(words[(i * 7 + i / 3) % 4]);
        s.push_str(if i % 5 == 4 { ".\n" } else { ", " });
    }
    let p = dir.join("corpus.txt");
    std::fs::write(&p, s).unwrap();
    p
}

fn run_config(corpus: std::path::PathBuf, steps: u64) -> RunConfig {
    let model = HybridConfig { vocab: 256, d_model: 48, heads: 2, key_dim: 16, value_dim: 16, window: 16, chunk_size: 16, ..HybridConfig::tiny() };
    let text = format!(
        r#"{{"model": {}, "train": {{"steps": {steps}, "batch_size": 8, "seq_len": 32, "lr": 0.01, "warmup_steps": 5,
            "eval_batches": 2, "log_every": 5}}, "data": {{"corpus": {:?}, "val_fraction": 0.1}}}}"#,
        serde_json::to_string(&model).unwrap(),
        corpus
    );
    let cfg: RunConfig = serde_json::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cfg
}

#[test]
fn tiny_run_learns_saves_resumes_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = run_config(corpus(dir.path()), 60);
    let out = dir.path().join("run");
    let s = {
        let _g = engram_core::seed::global_rng_lock();
        train(&cfg, &TrainOptions { out_dir: out.clone(), device: Device::Cpu, resume: None, progress: false, group: None }).unwrap()
    };
    assert!(s.val_loss < 0.6 * s.unigram_entropy, "held-out {} vs unigram {}", s.val_loss, s.unigram_entropy);
    for f in ["metrics.jsonl", "loss.png", "summary.json", "checkpoint/meta.json", "checkpoint/optimizer.safetensors"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(lines.lines().count() >= 12);

    let loaded = checkpoint::load(&out.join("checkpoint"), Device::Cpu).unwrap();
    assert_eq!(loaded.step, 60);
    let tok = loaded.tokenizer.build();
    let prompt = tok.encode("to be ");
    let a = generate(&loaded.model, &prompt, 12, &SamplingConfig::greedy()).unwrap();
    let again = checkpoint::load(&out.join("checkpoint"), Device::Cpu).unwrap();
    assert_eq!(a, generate(&again.model, &prompt, 12, &SamplingConfig::greedy()).unwrap());

    // Resume to step 70: continues from the stored step, appends metrics.
    let mut longer = cfg.clone();
    longer.train.steps = 70;
    let out2 = dir.path().join("run2");
    std::fs::create_dir_all(&out2).unwrap();
    let s2 = train(&longer, &TrainOptions { out_dir: out2.clone(), device: Device::Cpu, resume: Some(out.join("checkpoint")), progress: false, group: None }).unwrap();
    assert_eq!(checkpoint::load(&out2.join("checkpoint"), Device::Cpu).unwrap().step, 70);
    assert!(s2.val_loss < 0.6 * s2.unigram_entropy);
    let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(out2.join("metrics.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["step"], 65);
    // Resuming with another architecture is refused.
    let mut other = longer.clone();
    other.model.window = 8;
    assert!(train(&other, &TrainOptions { out_dir: out2, device: Device::Cpu, resume: Some(out.join("checkpoint")), progress: false, group: None }).is_err());
}

#[test]
fn curriculum_phases_run_and_report_heldout_gym_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(corpus(dir.path()), 12);
    cfg.train.log_every = 1;
    cfg.train.curriculum = Some(CurriculumConfig { retrieval_steps: 4, gym_steps: 4, task_seq_len: 24, gym_needles: 2, eval_rows: 16 });
    let out = dir.path().join("cur");
    let s = train(&cfg, &TrainOptions { out_dir: out.clone(), device: Device::Cpu, resume: None, progress: false, group: None }).unwrap();
    let acc = s.gym_accuracy.expect("gym accuracy after the gym phase");
    assert!((0.0..=1.0).contains(&acc));
    let m = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(m.contains("\"phase\":\"retrieval\"") && m.contains("\"phase\":\"gym\"") && m.contains("\"phase\":\"lm\""));
    assert!(m.contains("gym_heldout_accuracy"));
}

#[test]
fn config_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(corpus(dir.path()), 5);
    cfg.model.vocab = 300;
    assert!(cfg.validate().unwrap_err().to_string().contains("tokenizer"));
    let bad = r#"{"model": {"d_model": 8, "heads": 2, "key_dim": 4, "value_dim": 4, "vocab": 256, "pattern": "GS", "window": 4},
                  "train": {"steps": 1, "batch_size": 1, "seq_len": 8, "lr": 0.1, "stepz": 3}}"#;
    let p = dir.path().join("bad.json");
    std::fs::write(&p, bad).unwrap();
    let e = RunConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("stepz"), "{e}");
}
