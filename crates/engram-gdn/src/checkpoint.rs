//! Hybrid checkpoints through engram-core's atomic, verified format: group `model` (parameters
//! with PyTorch-style names), optionally group `optimizer` (AdamW moments), and in `meta.json`
//! the kind `"hybrid"`, the model config, the tokenizer, the training config and the step.

use crate::config::HybridConfig;
use crate::data::TokenizerSpec;
use crate::model::HybridModel;
use crate::optim::AdamW;
use crate::{GdnError, Result};
use engram_core::checkpoint::{varstore_tensors, Checkpoint, CheckpointWriter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Device};

/// The checkpoint kind written into `meta.json`.
pub const KIND: &str = "hybrid";

/// The `config` object of a hybrid checkpoint's `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredConfig {
    /// Architecture.
    pub model: HybridConfig,
    /// Tokenizer.
    pub tokenizer: TokenizerSpec,
    /// The training run's config, when written by a trainer.
    #[serde(default)]
    pub train: Option<serde_json::Value>,
}

/// A model read back from a checkpoint.
#[derive(Debug)]
pub struct LoadedModel {
    /// The model, its parameters in `vs`.
    pub model: HybridModel,
    /// The parameters.
    pub vs: nn::VarStore,
    /// Its architecture.
    pub config: HybridConfig,
    /// Its tokenizer.
    pub tokenizer: TokenizerSpec,
    /// Training step at save time.
    pub step: u64,
}

/// Writes a checkpoint atomically to `dir`.
pub fn save(
    dir: &Path,
    vs: &nn::VarStore,
    config: &HybridConfig,
    tokenizer: &TokenizerSpec,
    step: u64,
    metrics: &BTreeMap<String, f64>,
    optimizer: Option<&AdamW>,
    train: Option<serde_json::Value>,
) -> Result<()> {
    let stored = StoredConfig { model: config.clone(), tokenizer: tokenizer.clone(), train };
    let mut w = CheckpointWriter::new(KIND, serde_json::to_value(&stored)?).step(step).group("model", varstore_tensors(vs));
    for (k, v) in metrics {
        w = w.metric(k.clone(), *v);
    }
    if let Some(opt) = optimizer {
        w = w.group("optimizer", opt.state_tensors());
    }
    w.write(dir)?;
    Ok(())
}

/// Opens a checkpoint (verifying digests), rebuilds the model on `device` and loads its weights.
///
/// ```
/// use engram_gdn::{checkpoint, HybridConfig, HybridModel, TokenizerSpec};
/// let dir = tempfile::tempdir().unwrap();
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let cfg = HybridConfig::tiny();
/// let _m = HybridModel::new(&vs.root(), &cfg).unwrap();
/// checkpoint::save(&dir.path().join("ck"), &vs, &cfg, &TokenizerSpec::Byte, 7, &Default::default(), None, None).unwrap();
/// let loaded = checkpoint::load(&dir.path().join("ck"), tch::Device::Cpu).unwrap();
/// assert_eq!((loaded.step, loaded.config), (7, cfg));
/// ```
pub fn load(dir: &Path, device: Device) -> Result<LoadedModel> {
    let ck = Checkpoint::load(dir)?;
    ck.expect_kind(KIND)?;
    let stored: StoredConfig = ck.config()?;
    stored.model.validate().map_err(|e| GdnError::Checkpoint(format!("{}: {e}", dir.display())))?;
    let mut vs = nn::VarStore::new(device);
    let model = HybridModel::new(&vs.root(), &stored.model)?;
    ck.load_into("model", &mut vs)?;
    Ok(LoadedModel { model, vs, config: stored.model, tokenizer: stored.tokenizer, step: ck.meta.step })
}

/// Reads the optimizer state of a checkpoint into `opt` (for resuming).
pub fn load_optimizer(dir: &Path, opt: &mut AdamW) -> Result<u64> {
    let ck = Checkpoint::load(dir)?;
    ck.expect_kind(KIND)?;
    if !ck.has_group("optimizer") {
        return Err(GdnError::Checkpoint(format!("{} holds no optimizer state; cannot resume training from it", dir.display())));
    }
    opt.load_state(&ck.tensors("optimizer")?, ck.meta.step)?;
    Ok(ck.meta.step)
}

/// The stored configs of a checkpoint.
pub fn stored_config(dir: &Path) -> Result<StoredConfig> {
    let ck = Checkpoint::load(dir)?;
    ck.expect_kind(KIND)?;
    Ok(ck.config()?)
}
