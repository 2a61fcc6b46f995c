//! `engram-gdn`'s [`HybridModel`] as a [`Probeable`], and loading of hybrid checkpoints.

use crate::probe::{LayerTrace, Probeable, Trace};
use crate::Subject;
use anyhow::Result;
use engram_gdn::checkpoint::LoadedModel;
use engram_gdn::{HybridModel, Tokenizer};
use std::path::Path;
use tch::{Device, Tensor};

/// Most corpus tokens kept for the RULER haystack.
const MAX_TEXT_TOKENS: usize = 400_000;

/// A loaded hybrid model.
pub struct HybridProbe {
    loaded: LoadedModel,
}

impl HybridProbe {
    /// Wraps a loaded checkpoint.
    pub fn new(loaded: LoadedModel) -> Self {
        HybridProbe { loaded }
    }
    /// The model.
    pub fn model(&self) -> &HybridModel {
        &self.loaded.model
    }
}

impl Probeable for HybridProbe {
    fn name(&self) -> String {
        let c = &self.loaded.config;
        format!("hybrid {} d{} h{} k{} v{} w{}", c.pattern, c.d_model, c.heads, c.key_dim, c.value_dim, c.window)
    }
    fn vocab_size(&self) -> i64 {
        self.loaded.config.vocab
    }
    fn window(&self) -> Option<i64> {
        // a query sees itself and `window` previous tokens; a pattern without S layers has none
        self.loaded.config.pattern.contains('S').then_some(self.loaded.config.window + 1)
    }
    fn device(&self) -> Device {
        self.loaded.model.device()
    }
    fn logits(&self, tokens: &Tensor) -> Result<Tensor> {
        Ok(self.loaded.model.forward(tokens)?)
    }
    fn trace(&self, tokens: &Tensor) -> Result<Option<(Tensor, Trace)>> {
        let (logits, trace) = self.loaded.model.forward_with_trace(tokens)?;
        let layers = trace
            .layers
            .into_iter()
            .map(|l| match l {
                engram_gdn::LayerTrace::Gdn { keys, queries, beta, decay, final_state } => LayerTrace::Gdn { keys, queries, beta, decay, final_state },
                engram_gdn::LayerTrace::Swa { attn_entropy } => LayerTrace::Swa { attn_entropy },
            })
            .collect();
        Ok(Some((logits, Trace { layers })))
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        engram_core::checkpoint::varstore_tensors(&self.loaded.vs)
    }
    fn shifted_values(&self) -> bool {
        self.loaded.config.shifted_value
    }
}

/// Loads a hybrid checkpoint as a [`Subject`], with corpus text for the RULER haystack when the
/// default corpus is present. Loading errors (missing path, no checkpoint, corrupt or truncated
/// files, another model kind or version) come back unchanged as one-line messages.
pub fn load_subject(dir: &Path, device: Device) -> Result<Subject> {
    let loaded = engram_gdn::checkpoint::load(dir, device)?;
    let step = loaded.step;
    let config = serde_json::to_value(&loaded.config).ok();
    let mut notices = Vec::new();
    let text = match engram_gdn::data::default_corpus() {
        Ok(s) => {
            let tok = &loaded.tokenizer;
            let mut ids = tok.encode(&s);
            ids.truncate(MAX_TEXT_TOKENS);
            Some(ids)
        }
        Err(e) => {
            notices.push(format!("RULER haystack is synthetic: {e}"));
            None
        }
    };
    Ok(Subject { model: Box::new(HybridProbe::new(loaded)), source: Some(dir.to_path_buf()), step: Some(step), config, text, notices })
}

/// Diagnoses one checkpoint, or two side by side: loads them (errors unchanged), runs every
/// suite and probe, writes the report into `out_dir` (default `<first checkpoint>/diagnostics`).
pub fn diagnose_checkpoints(
    checkpoints: &[&Path],
    device: Device,
    suite: crate::retrieval::SuiteConfig,
    out_dir: Option<&Path>,
) -> Result<crate::report::Report> {
    let Some(first) = checkpoints.first() else { anyhow::bail!("no checkpoint given") };
    if checkpoints.len() > 2 {
        anyhow::bail!("at most two checkpoints can be compared, got {}", checkpoints.len());
    }
    let subjects = checkpoints.iter().map(|p| load_subject(p, device)).collect::<Result<Vec<_>>>()?;
    let out = out_dir.map(Path::to_path_buf).unwrap_or_else(|| first.join("diagnostics"));
    crate::diagnose(subjects, &crate::DiagnoseOptions::new(suite, out))
}
