//! # engram-diagnostics
//!
//! What a trained hybrid model remembers: retrieval suites, mechanism probes, reports and plots
//! (`engram diagnose`). The honest version of seed 003's diagnostics (spec §4, §7 bugs 3–4):
//!
//! * needles come from the whole content vocabulary; the seed's fixed-needle test survives only
//!   as the `shortcut_check`, which a constant-output model passes and every real suite fails;
//! * every accuracy carries its trial count and a Wilson 95% interval, trials use a fixed seed;
//! * multi-needle per-needle accuracies are conditioned on the queried needle (no 0/0);
//! * probes are shift-aware (shifted-value models write a needle at its value position), the
//!   gradient probe uses the next-token shift, and model state is never left in train mode.
//!
//! Any model implementing [`probe::Probeable`] can be diagnosed; [`hybrid`] adapts
//! `engram-gdn` checkpoints and [`toy`] holds constructed models with known behaviour.
//!
//! ```
//! use engram_diagnostics::{diagnose, DiagnoseOptions, Subject, retrieval::SuiteConfig, tasks::TaskTokens, toy::LookupModel};
//! let tt = TaskTokens::for_vocab(64).unwrap();
//! let model = LookupModel::perfect(64).for_tasks(&tt);
//! let out = tempfile::tempdir().unwrap();
//! let mut suite = SuiteConfig::tiny();
//! suite.trials = 10;
//! let report = diagnose(vec![Subject::new(Box::new(model))], &DiagnoseOptions::new(suite, out.path())).unwrap();
//! assert_eq!(report.models[0].retrieval.single.accuracy, 1.0);
//! assert!(out.path().join("report.json").exists());
//! ```

pub mod algebra;
#[cfg(feature = "hybrid")]
pub mod hybrid;
pub mod mechanism;
pub mod plot;
pub mod probe;
pub mod report;
pub mod retrieval;
pub mod stats;
pub mod tasks;
pub mod toy;

use anyhow::{Context, Result};
use probe::Probeable;
use report::{ModelReport, Report, SCHEMA_VERSION};
use retrieval::SuiteConfig;
use std::path::{Path, PathBuf};
use tasks::TaskTokens;

/// A model to diagnose, with what is known about where it came from.
pub struct Subject {
    /// The model.
    pub model: Box<dyn Probeable>,
    /// Checkpoint directory.
    pub source: Option<PathBuf>,
    /// Training step.
    pub step: Option<u64>,
    /// Stored config.
    pub config: Option<serde_json::Value>,
    /// Token ids of real text for the RULER haystack (in the model's tokenizer).
    pub text: Option<Vec<i64>>,
    /// Notices to carry into the report (e.g. "corpus not found").
    pub notices: Vec<String>,
}

impl Subject {
    /// A constructed model with no checkpoint behind it.
    pub fn new(model: Box<dyn Probeable>) -> Self {
        Subject { model, source: None, step: None, config: None, text: None, notices: Vec::new() }
    }
}

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct DiagnoseOptions {
    /// Suite sizes.
    pub suite: SuiteConfig,
    /// Output folder (created if missing).
    pub out_dir: PathBuf,
    /// Sequence length of the mechanism probe batch.
    pub probe_seq_len: usize,
    /// Write PNG plots.
    pub plots: bool,
}

impl DiagnoseOptions {
    /// Defaults: probe length = the suite's sequence length, plots on.
    pub fn new(suite: SuiteConfig, out_dir: impl AsRef<Path>) -> Self {
        let probe_seq_len = suite.seq_len;
        DiagnoseOptions { suite, out_dir: out_dir.as_ref().to_path_buf(), probe_seq_len, plots: true }
    }
}

/// Runs every suite and probe on each subject (two subjects: comparison mode) and writes
/// `report.json`, `report.md` and the plots into `opts.out_dir`.
pub fn diagnose(subjects: Vec<Subject>, opts: &DiagnoseOptions) -> Result<Report> {
    if subjects.is_empty() {
        anyhow::bail!("nothing to diagnose");
    }
    let start = std::time::Instant::now();
    let mut models = Vec::new();
    let mut notices = Vec::new();
    let mut device = String::new();
    for (i, s) in subjects.iter().enumerate() {
        let label = ((b'A' + i as u8) as char).to_string();
        let m = s.model.as_ref();
        device = format!("{:?}", m.device());
        let tt = TaskTokens::for_vocab(m.vocab_size())?;
        let retrieval = retrieval::run_retrieval(m, &opts.suite, &tt, s.text.as_deref()).with_context(|| format!("retrieval suites on model {label}"))?;
        let mechanism = mechanism::run_mechanism(m, &tt, opts.probe_seq_len, opts.suite.seed, 64).with_context(|| format!("mechanism probes on model {label}"))?;
        let verdicts = report::verdicts(&retrieval, &mechanism);
        notices.extend(s.notices.iter().map(|n| format!("{label}: {n}")));
        models.push(ModelReport {
            label,
            name: m.name(),
            source: s.source.as_ref().map(|p| p.display().to_string()),
            step: s.step,
            vocab: m.vocab_size(),
            window: m.window(),
            config: s.config.clone(),
            retrieval,
            mechanism,
            verdicts,
        });
    }
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("cannot create output folder {}", opts.out_dir.display()))?;
    let plots = if opts.plots { report::write_plots(&opts.out_dir, &models)? } else { Vec::new() };
    let report = Report {
        schema_version: SCHEMA_VERSION,
        generator: format!("engram-diagnostics {}", env!("CARGO_PKG_VERSION")),
        suite: opts.suite.name.clone(),
        device,
        created_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        elapsed_s: start.elapsed().as_secs_f64(),
        models,
        plots,
        notices,
    };
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(opts.out_dir.join("report.json"), json).context("cannot write report.json")?;
    std::fs::write(opts.out_dir.join("report.md"), report::markdown(&report)).context("cannot write report.md")?;
    Ok(report)
}
