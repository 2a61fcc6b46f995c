//! Training tests on a tiny model and a small synthetic corpus: the loss falls well below the
//! unigram entropy, outputs are written, resuming continues from the saved step with the saved
//! optimizer state, and a loaded checkpoint generates what the trained model generates; a run
//! with the BPE tokenizer stores it with the checkpoint, and its samples decode with it.

use engram_gdn::generate::{generate, SamplingConfig};
use engram_gdn::train::{train, CurriculumConfig, RunConfig, TrainOptions};
use engram_gdn::data::BpeTokenizer;
use engram_gdn::{checkpoint, AnyTokenizer, HybridConfig, Tokenizer, TokenizerSpec};
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
    let tok = &loaded.tokenizer;
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
fn divergence_stops_the_run_at_the_next_read_before_any_checkpoint() {
    // Losses are read to the host only on log/eval/checkpoint steps: with log_every 100, a run
    // that diverges early is stopped at its last step, naming the first non-finite step, and
    // writes neither a checkpoint nor a metrics line.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(corpus(dir.path()), 6);
    cfg.train.lr = 1e30;
    cfg.train.warmup_steps = 0;
    cfg.train.log_every = 100;
    let out = dir.path().join("nan");
    let e = train(&cfg, &TrainOptions { out_dir: out.clone(), device: Device::Cpu, resume: None, progress: false, group: None })
        .unwrap_err()
        .to_string();
    let step: u64 = e
        .strip_prefix("invalid input: training diverged at step ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected error: {e}"));
    eprintln!("{e}");
    assert!((1..5).contains(&step), "the first non-finite step is reported, got {step}: {e}");
    assert!(!out.join("checkpoint").exists(), "no checkpoint of diverged weights");
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(), "");
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

fn bpe_config(corpus: std::path::PathBuf, steps: u64, vocab: i64) -> RunConfig {
    let mut cfg = run_config(corpus, steps);
    cfg.model.vocab = vocab;
    cfg.data.tokenizer = "bpe".into();
    cfg.data.bpe_vocab = Some(vocab);
    cfg.validate().unwrap();
    cfg
}

#[test]
fn tiny_bpe_run_stores_its_tokenizer_and_decodes_samples() {
    let dir = tempfile::tempdir().unwrap();
    let corpus_path = corpus(dir.path());
    let cfg = bpe_config(corpus_path.clone(), 40, 300);
    let out = dir.path().join("bpe");
    let s = {
        let _g = engram_core::seed::global_rng_lock();
        train(&cfg, &TrainOptions { out_dir: out.clone(), device: Device::Cpu, resume: None, progress: false, group: None }).unwrap()
    };
    assert!(s.val_loss < 0.6 * s.unigram_entropy, "held-out {} vs unigram {}", s.val_loss, s.unigram_entropy);
    for f in ["tokenizer.json", "checkpoint/tokenizer.safetensors", "checkpoint/meta.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["tokenizer"], serde_json::json!({"kind": "bpe", "vocab_size": 300}));

    let loaded = checkpoint::load(&out.join("checkpoint"), Device::Cpu).unwrap();
    let tok = &loaded.tokenizer;
    assert!(matches!(tok, AnyTokenizer::Bpe(_)));
    assert_eq!(tok.vocab_size(), 300);
    let text = std::fs::read_to_string(&corpus_path).unwrap();
    let file_tok = BpeTokenizer::load(&out.join("tokenizer.json")).unwrap();
    assert_eq!(file_tok.encode(&text), tok.encode(&text), "the out-dir copy is the checkpoint's tokenizer");
    let n = tok.encode(&text).len();
    assert!(n * 3 < text.len(), "BPE compresses the corpus: {n} tokens for {} bytes", text.len());

    // Greedy continuation of a corpus prefix, decoded with the stored tokenizer, is corpus text
    // (decoding BPE ids as bytes, or with another BPE, would not be).
    let prompt = "that is the question";
    let ids = generate(&loaded.model, &tok.encode(prompt), 24, &SamplingConfig::greedy()).unwrap();
    assert!(ids.iter().any(|&i| i >= 256), "samples use merged tokens: {ids:?}");
    let sample = tok.decode(&ids);
    let words: std::collections::BTreeSet<&str> = text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).collect();
    let sampled: Vec<&str> = sample.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).collect();
    assert!(sampled.len() >= 3, "{sample:?}");
    // The last word may be cut off by the token budget.
    assert!(sampled[..sampled.len() - 1].iter().all(|w| words.contains(w)), "sample {sample:?} is not corpus text");

    // Resuming keeps the stored tokenizer; another tokenizer config is refused clearly.
    let mut longer = cfg.clone();
    longer.train.steps = 45;
    let out2 = dir.path().join("bpe2");
    train(&longer, &TrainOptions { out_dir: out2.clone(), device: Device::Cpu, resume: Some(out.join("checkpoint")), progress: false, group: None }).unwrap();
    let again = checkpoint::load(&out2.join("checkpoint"), Device::Cpu).unwrap();
    assert_eq!((again.step, again.tokenizer.encode(&text)), (45, tok.encode(&text)));
    let mut other = longer.clone();
    other.model.vocab = 270;
    other.data.bpe_vocab = Some(270);
    let e = train(&other, &TrainOptions { out_dir: out2, device: Device::Cpu, resume: Some(out.join("checkpoint")), progress: false, group: None })
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenizer") && e.contains("cannot resume"), "{e}");

    // A checkpoint whose tokenizer group is missing is refused, not decoded with bytes.
    let broken = dir.path().join("broken");
    let src = out.join("checkpoint");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["model.safetensors", "meta.json"] {
        std::fs::copy(src.join(f), broken.join(f)).unwrap();
    }
    let mut meta = meta.clone();
    meta["files"].as_object_mut().unwrap().retain(|k, _| k == "model");
    std::fs::write(broken.join("meta.json"), meta.to_string()).unwrap();
    let e = checkpoint::load(&broken, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("no tokenizer group"), "{e}");
}

#[test]
fn bpe_config_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bpe_config(corpus(dir.path()), 5, 300);
    assert_eq!(cfg.data.tokenizer_spec().unwrap(), TokenizerSpec::Bpe { vocab_size: 300 });
    cfg.model.vocab = 256;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("model.vocab is 256") && e.contains("300"), "{e}");
    cfg.model.vocab = 300;
    cfg.data.bpe_vocab = None;
    assert!(cfg.validate().unwrap_err().to_string().contains("data.bpe_vocab"));
    cfg.data.bpe_vocab = Some(200);
    assert!(cfg.validate().unwrap_err().to_string().contains("> 256"));
    // Asking for more tokens than the corpus can give fails before any step, naming the setting.
    let mut big = bpe_config(corpus(dir.path()), 5, 4000);
    big.train.log_every = 1;
    let e = train(&big, &TrainOptions { out_dir: dir.path().join("big"), device: Device::Cpu, resume: None, progress: false, group: None })
        .unwrap_err()
        .to_string();
    assert!(e.contains("fewer than the 4000") && e.contains("bpe_vocab"), "{e}");
    // Unknown data fields are still refused by name.
    let bad = r#"{"model": {"d_model": 8, "heads": 2, "key_dim": 4, "value_dim": 4, "vocab": 300, "pattern": "GS", "window": 4},
                  "train": {"steps": 1, "batch_size": 1, "seq_len": 8, "lr": 0.1},
                  "data": {"tokenizer": "bpe", "bpe_vocabulary": 300}}"#;
    let p = dir.path().join("bad.json");
    std::fs::write(&p, bad).unwrap();
    let e = RunConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("bpe_vocabulary"), "{e}");
}

#[test]
fn shipped_configs_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let cfg = RunConfig::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(cfg.model.vocab, cfg.data.tokenizer_spec().unwrap().vocab_size());
            n += 1;
        }
    }
    assert!(n >= 3, "{n} configs in {}", dir.display());
}
