//! Hybrid checkpoints through engram-core's atomic, verified format: group `model` (parameters
//! with PyTorch-style names), optionally group `optimizer` (AdamW moments), for a BPE tokenizer
//! group `tokenizer` (its `tokenizer.json` bytes as one uint8 tensor named `tokenizer.json`, so
//! the trained tokenizer is written atomically with the weights and digest-checked like them),
//! and in `meta.json` the kind `"hybrid"`, the model config, the tokenizer spec, the training
//! config and the step.

use crate::config::HybridConfig;
use crate::data::{AnyTokenizer, BpeTokenizer, ByteTokenizer, Tokenizer, TokenizerSpec};
use crate::model::HybridModel;
use crate::optim::AdamW;
use crate::{GdnError, Result};
use engram_core::checkpoint::{varstore_tensors, Checkpoint, CheckpointWriter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Device, Tensor};

/// The checkpoint kind written into `meta.json`.
pub const KIND: &str = "hybrid";
/// The group holding a BPE tokenizer.
pub const TOKENIZER_GROUP: &str = "tokenizer";
const TOKENIZER_TENSOR: &str = "tokenizer.json";

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
    /// Its tokenizer (for BPE, the trained one stored in the checkpoint).
    pub tokenizer: AnyTokenizer,
    /// Training step at save time.
    pub step: u64,
}

/// Writes a checkpoint atomically to `dir`.
pub fn save(
    dir: &Path,
    vs: &nn::VarStore,
    config: &HybridConfig,
    tokenizer: &AnyTokenizer,
    step: u64,
    metrics: &BTreeMap<String, f64>,
    optimizer: Option<&AdamW>,
    train: Option<serde_json::Value>,
) -> Result<()> {
    let stored = StoredConfig { model: config.clone(), tokenizer: tokenizer.spec(), train };
    let mut w = CheckpointWriter::new(KIND, serde_json::to_value(&stored)?).step(step).group("model", varstore_tensors(vs));
    if let AnyTokenizer::Bpe(t) = tokenizer {
        let json = Tensor::from_slice(t.to_json()?.as_bytes());
        w = w.group(TOKENIZER_GROUP, vec![(TOKENIZER_TENSOR.to_string(), json)]);
    }
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
/// use engram_gdn::{checkpoint, ByteTokenizer, HybridConfig, HybridModel};
/// let dir = tempfile::tempdir().unwrap();
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let cfg = HybridConfig::tiny();
/// let _m = HybridModel::new(&vs.root(), &cfg).unwrap();
/// checkpoint::save(&dir.path().join("ck"), &vs, &cfg, &ByteTokenizer.into(), 7, &Default::default(), None, None).unwrap();
/// let loaded = checkpoint::load(&dir.path().join("ck"), tch::Device::Cpu).unwrap();
/// assert_eq!((loaded.step, loaded.config), (7, cfg));
/// ```
pub fn load(dir: &Path, device: Device) -> Result<LoadedModel> {
    let ck = Checkpoint::load(dir)?;
    ck.expect_kind(KIND)?;
    let stored: StoredConfig = ck.config()?;
    stored.model.validate().map_err(|e| GdnError::Checkpoint(format!("{}: {e}", dir.display())))?;
    let tokenizer = tokenizer_of(&ck, &stored.tokenizer)?;
    let mut vs = nn::VarStore::new(device);
    let model = HybridModel::new(&vs.root(), &stored.model)?;
    ck.load_into("model", &mut vs)?;
    Ok(LoadedModel { model, vs, config: stored.model, tokenizer, step: ck.meta.step })
}

/// The tokenizer a checkpoint was trained with (for BPE, read from its `tokenizer` group).
pub fn load_tokenizer(dir: &Path) -> Result<AnyTokenizer> {
    let ck = Checkpoint::load(dir)?;
    ck.expect_kind(KIND)?;
    let stored: StoredConfig = ck.config()?;
    tokenizer_of(&ck, &stored.tokenizer)
}

fn tokenizer_of(ck: &Checkpoint, spec: &TokenizerSpec) -> Result<AnyTokenizer> {
    let bad = |m: String| GdnError::Checkpoint(format!("{}: {m}", ck.dir.display()));
    match spec {
        TokenizerSpec::Byte => Ok(ByteTokenizer.into()),
        TokenizerSpec::Bpe { vocab_size } => {
            if !ck.has_group(TOKENIZER_GROUP) {
                return Err(bad("meta.json names a BPE tokenizer but the checkpoint holds no tokenizer group".into()));
            }
            let tensors = ck.tensors(TOKENIZER_GROUP)?;
            let Some((_, t)) = tensors.iter().find(|(n, _)| n == TOKENIZER_TENSOR) else {
                return Err(bad(format!("the tokenizer group has no '{TOKENIZER_TENSOR}' tensor")));
            };
            let bytes = Vec::<u8>::try_from(t.flatten(0, -1))?;
            let json = String::from_utf8(bytes).map_err(|_| bad("the stored tokenizer.json is not UTF-8".into()))?;
            let tok = BpeTokenizer::from_json(&json).map_err(|e| bad(e.to_string()))?;
            if tok.vocab_size() != *vocab_size {
                return Err(bad(format!("the stored BPE has {} ids, meta.json says {vocab_size}", tok.vocab_size())));
            }
            Ok(tok.into())
        }
    }
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
