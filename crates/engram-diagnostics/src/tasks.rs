//! The retrieval task's token layout and sequence builders.
//!
//! A needle is written as `MARKER NEEDLE` somewhere in a haystack; the query at the end is
//! `CUE` (or `CUE MARKER`, see [`QueryStyle`]) and the model must emit `NEEDLE` at the last
//! position. The special tokens come
//! from the top of the vocabulary; needles and synthetic haystack tokens come from everything
//! below them, so a model cannot pass by predicting "a high token id" (the seed's §7 bug 3).

use anyhow::{bail, Result};
use engram_core::seed::HostRng;

/// How many distinct markers are reserved (the multi-needle suite uses up to this many).
pub const MAX_MARKERS: usize = 8;

/// The special tokens of the retrieval tasks for a given vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskTokens {
    /// Vocabulary size of the model.
    pub vocab: i64,
    /// The query token.
    pub cue: i64,
    /// Distinct marker tokens; `markers[0]` is the single-needle marker.
    pub markers: Vec<i64>,
    /// Needles and synthetic haystack tokens are drawn uniformly from `[0, content_vocab)`.
    pub content_vocab: i64,
}

impl TaskTokens {
    /// The default layout: `cue = V−1`, markers `V−2, V−3, …`, content `[0, V−1−MAX_MARKERS)`.
    ///
    /// ```
    /// let t = engram_diagnostics::tasks::TaskTokens::for_vocab(256).unwrap();
    /// assert_eq!(t.cue, 255);
    /// assert_eq!(t.markers[0], 254);
    /// assert_eq!(t.content_vocab, 247);
    /// ```
    pub fn for_vocab(vocab: i64) -> Result<Self> {
        let reserved = 1 + MAX_MARKERS as i64;
        if vocab < reserved + 16 {
            bail!("vocabulary of {vocab} tokens is too small for the retrieval tasks (need at least {})", reserved + 16);
        }
        Ok(TaskTokens {
            vocab,
            cue: vocab - 1,
            markers: (0..MAX_MARKERS as i64).map(|i| vocab - 2 - i).collect(),
            content_vocab: vocab - reserved,
        })
    }
    /// The single-needle marker.
    pub fn marker(&self) -> i64 {
        self.markers[0]
    }
    /// The needle the seed's fixed-needle test used (the largest content token), kept only for
    /// the shortcut check.
    pub fn fixed_needle(&self) -> i64 {
        self.content_vocab - 1
    }
    /// True for the cue and every marker.
    pub fn is_special(&self, tok: i64) -> bool {
        tok == self.cue || self.markers.contains(&tok)
    }
}

/// Where haystack tokens come from.
#[derive(Debug, Clone)]
pub enum Haystack {
    /// Uniform random content tokens.
    Synthetic,
    /// Windows of real text (token ids); special tokens in it are replaced so the only markers
    /// are the planted ones.
    Text(Vec<i64>),
}

impl Haystack {
    /// `len` haystack tokens.
    pub fn draw(&self, len: usize, tt: &TaskTokens, rng: &mut HostRng) -> Vec<i64> {
        match self {
            Haystack::Text(text) if text.len() > len => {
                let start = rng.below((text.len() - len) as u64) as usize;
                text[start..start + len]
                    .iter()
                    .map(|&t| if tt.is_special(t) || t >= tt.vocab || t < 0 { t.rem_euclid(tt.content_vocab) } else { t })
                    .collect()
            }
            _ => (0..len).map(|_| rng.below(tt.content_vocab as u64) as i64).collect(),
        }
    }
    /// Short label for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Haystack::Synthetic => "synthetic",
            Haystack::Text(_) => "text",
        }
    }
}

/// One planted needle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needle {
    /// Position of the marker (the value sits at `pos + 1`).
    pub pos: usize,
    /// The marker token (or `None`: the value is planted without a marker, an ablation).
    pub marker: Option<i64>,
    /// The value token.
    pub value: i64,
}

/// How the single-needle suites ask for the needle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueryStyle {
    /// A lone `CUE` at the end (the seed's `proper_niah_test` and `test_varied_needles_wide`,
    /// and engram-gdn's retrieval task).
    #[default]
    Cue,
    /// `CUE MARKER` at the end (the seed's `test_state_vs_swa` and the memory gym).
    CueMarker,
}

impl QueryStyle {
    /// The query tokens for `marker`.
    pub fn tokens(self, tt: &TaskTokens, marker: i64) -> Vec<i64> {
        match self {
            QueryStyle::Cue => vec![tt.cue],
            QueryStyle::CueMarker => vec![tt.cue, marker],
        }
    }
}

/// A built retrieval sequence.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The token ids, length `seq_len`, ending with the query.
    pub tokens: Vec<i64>,
    /// The answer expected at the last position.
    pub target: i64,
    /// Every needle planted.
    pub needles: Vec<Needle>,
}

/// Plants the needles into `haystack` (length `seq_len`) and puts `query` at the end. Every
/// needle value must lie before the query.
pub fn build_trial(seq_len: usize, haystack: &[i64], needles: &[Needle], query: &[i64], target: i64) -> Result<Trial> {
    if seq_len < query.len() + 3 || haystack.len() != seq_len {
        bail!("bad trial: seq_len {seq_len}, haystack {}, query {}", haystack.len(), query.len());
    }
    let mut tokens = haystack.to_vec();
    let q0 = seq_len - query.len();
    for n in needles {
        if n.pos + 1 >= q0 {
            bail!("needle at {} does not fit before the query of a {seq_len}-token sequence", n.pos);
        }
        match n.marker {
            Some(m) => {
                tokens[n.pos] = m;
                tokens[n.pos + 1] = n.value;
            }
            None => tokens[n.pos + 1] = n.value,
        }
    }
    tokens[q0..].copy_from_slice(query);
    Ok(Trial { tokens, target, needles: needles.to_vec() })
}

/// The distance (in tokens) from the needle value to the query position (the last token).
pub fn distance_of(seq_len: usize, needle_pos: usize) -> usize {
    seq_len - 1 - (needle_pos + 1)
}

/// The marker position that puts the needle value `dist` tokens before the last position,
/// given a query of `query_len` tokens (`None` when it does not fit).
pub fn pos_for_distance(seq_len: usize, dist: usize, query_len: usize) -> Option<usize> {
    let value_pos = (seq_len - 1).checked_sub(dist)?;
    if dist < query_len || value_pos < 1 {
        return None;
    }
    Some(value_pos - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn trial_layout_and_distance() {
        let tt = TaskTokens::for_vocab(64).unwrap();
        let mut rng = HostRng::new(3);
        let hay = Haystack::Synthetic.draw(20, &tt, &mut rng);
        assert!(hay.iter().all(|&t| t < tt.content_vocab));
        let p = pos_for_distance(20, 5, 2).unwrap();
        let q = QueryStyle::CueMarker.tokens(&tt, tt.marker());
        let tr = build_trial(20, &hay, &[Needle { pos: p, marker: Some(tt.marker()), value: 7 }], &q, 7).unwrap();
        assert_eq!(tr.tokens[p], tt.marker());
        assert_eq!(tr.tokens[p + 1], 7);
        assert_eq!(distance_of(20, p), 5);
        assert_eq!(&tr.tokens[18..], &[tt.cue, tt.marker()]);
        assert!(build_trial(20, &hay, &[Needle { pos: 17, marker: Some(1), value: 2 }], &q, 2).is_err());
        // a lone cue leaves one more slot: the value may sit right before it
        let tr = build_trial(20, &hay, &[Needle { pos: 17, marker: Some(1), value: 2 }], &[tt.cue], 2).unwrap();
        assert_eq!(tr.tokens[19], tt.cue);
        assert_eq!(pos_for_distance(20, 1, 1), Some(17));
        assert!(pos_for_distance(20, 1, 2).is_none());
        assert!(pos_for_distance(20, 19, 1).is_none());
    }
    #[test]
    fn text_haystack_never_contains_specials() {
        let tt = TaskTokens::for_vocab(64).unwrap();
        let text: Vec<i64> = (0..500).map(|i| i % 64).collect();
        let mut rng = HostRng::new(1);
        let h = Haystack::Text(text).draw(100, &tt, &mut rng);
        assert!(h.iter().all(|&t| !tt.is_special(t) && (0..64).contains(&t)));
    }
    #[test]
    fn tiny_vocab_is_an_error() {
        assert!(TaskTokens::for_vocab(10).is_err());
    }
}
