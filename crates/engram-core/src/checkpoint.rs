//! Checkpoints: a directory holding safetensors files (PyTorch-style tensor names) and a
//! `meta.json` with the model kind, its config, step, metrics, the format version and a
//! SHA-256 digest and size of every tensor file.
//!
//! Writes are atomic: everything goes into a hidden sibling directory which is renamed over the
//! target only when complete, so a crash leaves either the old checkpoint or the new one, never
//! half of one. Loads verify the format, the version and every digest before any tensor is
//! parsed, so a truncated or tampered file gives a one-line error instead of garbage weights.
//!
//! ```
//! use engram_core::checkpoint::{Checkpoint, CheckpointWriter};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("ckpt");
//! let w = tch::Tensor::arange(6, (tch::Kind::Float, tch::Device::Cpu)).view([2, 3]);
//! CheckpointWriter::new("example", serde_json::json!({"d": 3}))
//!     .step(10)
//!     .metric("loss", 1.5)
//!     .group("model", vec![("layer.weight".to_string(), w.shallow_clone())])
//!     .write(&path)
//!     .unwrap();
//! let ck = Checkpoint::load(&path).unwrap();
//! assert_eq!(ck.meta.step, 10);
//! let t = ck.tensors("model").unwrap();
//! assert!(t[0].1.equal(&w));
//! ```

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The format tag written into every `meta.json`.
pub const FORMAT: &str = "engram-checkpoint";
/// The current format version; loads of a newer version are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the metadata file inside a checkpoint directory.
pub const META_FILE: &str = "meta.json";

/// Size and digest of one file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Length in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// The JSON metadata of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] at write time.
    pub format_version: u32,
    /// What wrote it, e.g. `"hybrid"`; loaders check it before reading the config.
    pub kind: String,
    /// The model/training config, as the writer serialised it.
    pub config: serde_json::Value,
    /// Training step.
    pub step: u64,
    /// Free-form scalar metrics (loss, accuracy, ...).
    pub metrics: BTreeMap<String, f64>,
    /// Tensor groups (`"model"`, `"optimizer"`, ...) mapped to their file's digest.
    pub files: BTreeMap<String, FileDigest>,
    /// engram version that wrote it.
    pub engram_version: String,
}

/// Builder for a checkpoint; see the module docs.
pub struct CheckpointWriter {
    kind: String,
    config: serde_json::Value,
    step: u64,
    metrics: BTreeMap<String, f64>,
    groups: Vec<(String, Vec<(String, Tensor)>)>,
}

impl CheckpointWriter {
    /// A writer for a checkpoint of `kind` with its `config`.
    pub fn new(kind: impl Into<String>, config: serde_json::Value) -> Self {
        CheckpointWriter { kind: kind.into(), config, step: 0, metrics: BTreeMap::new(), groups: Vec::new() }
    }
    /// Sets the training step.
    pub fn step(mut self, step: u64) -> Self {
        self.step = step;
        self
    }
    /// Adds one scalar metric.
    pub fn metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(name.into(), value);
        self
    }
    /// Adds a named group of tensors, stored as `<group>.safetensors`.
    pub fn group(mut self, name: impl Into<String>, tensors: Vec<(String, Tensor)>) -> Self {
        self.groups.push((name.into(), tensors));
        self
    }

    /// Writes the checkpoint atomically to the directory `path` (replacing an existing one).
    pub fn write(self, path: impl AsRef<Path>) -> Result<Metadata> {
        let path = path.as_ref();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)?;
        let name = path
            .file_name()
            .ok_or_else(|| Error::ckpt(path, "checkpoint path has no final component"))?
            .to_string_lossy()
            .to_string();
        let unique = format!("{}-{}", std::process::id(), nanos());
        let tmp = parent.join(format!(".{name}.tmp-{unique}"));
        let result = self.write_into(&tmp).and_then(|meta| {
            replace_dir(&tmp, path, &parent.join(format!(".{name}.old-{unique}")))?;
            Ok(meta)
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn write_into(self, dir: &Path) -> Result<Metadata> {
        fs::create_dir_all(dir)?;
        let mut files = BTreeMap::new();
        for (group, tensors) in &self.groups {
            validate_group_name(group).map_err(|r| Error::ckpt(dir, r))?;
            let file = dir.join(format!("{group}.safetensors"));
            let cpu: Vec<(String, Tensor)> =
                tensors.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
            Tensor::write_safetensors(&cpu, &file)?;
            fsync(&file)?;
            files.insert(group.clone(), digest_file(&file)?);
        }
        let meta = Metadata {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            kind: self.kind,
            config: self.config,
            step: self.step,
            metrics: self.metrics,
            files,
            engram_version: env!("CARGO_PKG_VERSION").into(),
        };
        let meta_path = dir.join(META_FILE);
        let mut f = fs::File::create(&meta_path)?;
        f.write_all(serde_json::to_string_pretty(&meta)?.as_bytes())?;
        f.sync_all()?;
        Ok(meta)
    }
}

/// A verified checkpoint on disk. Tensors are read lazily per group.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Where it lives.
    pub dir: PathBuf,
    /// Its verified metadata.
    pub meta: Metadata,
}

impl Checkpoint {
    /// Opens and verifies a checkpoint directory: metadata, format version, and the size and
    /// SHA-256 of every tensor file.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.exists() {
            return Err(Error::ckpt(dir, "no such file or directory"));
        }
        if !dir.is_dir() {
            return Err(Error::ckpt(dir, "expected a checkpoint directory (with meta.json), found a file"));
        }
        let meta_path = dir.join(META_FILE);
        if !meta_path.exists() {
            return Err(Error::ckpt(dir, "not a checkpoint: meta.json is missing"));
        }
        let text = fs::read_to_string(&meta_path)
            .map_err(|e| Error::ckpt(&meta_path, format!("cannot read: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::ckpt(&meta_path, format!("not valid JSON (truncated or corrupt?): {e}")))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            other => return Err(Error::ckpt(&meta_path, format!("not an engram checkpoint (format = {other:?})"))),
        }
        let version = value.get("format_version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version == 0 || version > FORMAT_VERSION as u64 {
            return Err(Error::ckpt(
                &meta_path,
                format!("format version {version} is not supported (this engram reads 1..={FORMAT_VERSION})"),
            ));
        }
        let meta: Metadata = serde_json::from_value(value)
            .map_err(|e| Error::ckpt(&meta_path, format!("invalid metadata: {e}")))?;
        for (group, want) in &meta.files {
            validate_group_name(group).map_err(|r| Error::ckpt(&meta_path, r))?;
            let file = dir.join(format!("{group}.safetensors"));
            if !file.exists() {
                return Err(Error::ckpt(&file, "listed in meta.json but missing"));
            }
            let got = digest_file(&file)?;
            if got.bytes != want.bytes {
                return Err(Error::ckpt(
                    &file,
                    format!("size {} bytes, expected {} (truncated or replaced)", got.bytes, want.bytes),
                ));
            }
            if got.sha256 != want.sha256 {
                return Err(Error::ckpt(&file, "SHA-256 mismatch: the file was modified or corrupted"));
            }
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), meta })
    }

    /// Errors unless the checkpoint was written by `kind`.
    pub fn expect_kind(&self, kind: &str) -> Result<()> {
        if self.meta.kind == kind {
            Ok(())
        } else {
            Err(Error::ckpt(&self.dir, format!("holds a '{}' model, expected '{kind}'", self.meta.kind)))
        }
    }

    /// Deserialises the stored config.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.meta.config.clone())
            .map_err(|e| Error::ckpt(self.dir.join(META_FILE), format!("config does not match this model: {e}")))
    }

    /// True when the tensor group exists.
    pub fn has_group(&self, group: &str) -> bool {
        self.meta.files.contains_key(group)
    }

    /// Reads one tensor group (on the CPU).
    pub fn tensors(&self, group: &str) -> Result<Vec<(String, Tensor)>> {
        if !self.has_group(group) {
            return Err(Error::ckpt(&self.dir, format!("has no tensor group '{group}'")));
        }
        let file = self.dir.join(format!("{group}.safetensors"));
        Tensor::read_safetensors(&file).map_err(|e| Error::ckpt(&file, format!("unreadable safetensors: {e}")))
    }

    /// Copies the group's tensors into the variables of `vs` by name. Every variable must be
    /// present with the same shape; extra tensors in the file are an error too, so a checkpoint
    /// of another architecture is never half-loaded.
    pub fn load_into(&self, group: &str, vs: &mut tch::nn::VarStore) -> Result<()> {
        let stored: BTreeMap<String, Tensor> = self.tensors(group)?.into_iter().collect();
        let vars = vs.variables();
        for (name, var) in &vars {
            let src = stored
                .get(name)
                .ok_or_else(|| Error::ckpt(&self.dir, format!("tensor '{name}' missing from group '{group}'")))?;
            if src.size() != var.size() {
                return Err(Error::ckpt(
                    &self.dir,
                    format!("tensor '{name}' has shape {:?}, model expects {:?}", src.size(), var.size()),
                ));
            }
        }
        if let Some(extra) = stored.keys().find(|k| !vars.contains_key(*k)) {
            return Err(Error::ckpt(&self.dir, format!("tensor '{extra}' in group '{group}' is not a model parameter")));
        }
        tch::no_grad(|| {
            for (name, mut var) in vars {
                var.copy_(&stored[&name]);
            }
        });
        Ok(())
    }
}

/// Returns the named tensors of a VarStore, sorted by name, for [`CheckpointWriter::group`].
pub fn varstore_tensors(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn validate_group_name(g: &str) -> std::result::Result<(), String> {
    if !g.is_empty() && g.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err(format!("invalid tensor group name '{g}'"))
    }
}

fn digest_file(path: &Path) -> Result<FileDigest> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let bytes = std::io::copy(&mut f, &mut h)?;
    let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(FileDigest { bytes, sha256 })
}

fn fsync(path: &Path) -> Result<()> {
    fs::File::open(path)?.sync_all()?;
    Ok(())
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Moves `tmp` to `target`; an existing target is moved aside first and removed after.
fn replace_dir(tmp: &Path, target: &Path, aside: &Path) -> Result<()> {
    if target.exists() {
        if !target.is_dir() {
            return Err(Error::ckpt(target, "exists and is not a directory; refusing to overwrite"));
        }
        fs::rename(target, aside)?;
        if let Err(e) = fs::rename(tmp, target) {
            let _ = fs::rename(aside, target);
            return Err(e.into());
        }
        fs::remove_dir_all(aside)?;
    } else {
        fs::rename(tmp, target)?;
    }
    if let Some(p) = target.parent() {
        if let Ok(d) = fs::File::open(if p.as_os_str().is_empty() { Path::new(".") } else { p }) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
