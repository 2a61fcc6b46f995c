//! The retrieval suites: does the model emit the needle at the query position?
//!
//! Every suite draws its trials from a [`HostRng`] seeded by [`SuiteConfig::seed`] plus a
//! per-suite offset, so results are reproducible and independent of libtorch's generator.
//! A trial is correct when the argmax of the logits at the last position equals the target.

use crate::probe::Probeable;
use crate::stats::Accuracy;
use crate::tasks::{build_trial, pos_for_distance, Haystack, Needle, QueryStyle, TaskTokens, Trial};
use anyhow::{bail, Context, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Sizes of the suites.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteConfig {
    /// Name (`quick`, `full`, `test`).
    pub name: String,
    /// Base seed of every trial generator.
    pub seed: u64,
    /// Sequence length of the single-needle, shortcut, ablation and RULER suites.
    pub seq_len: usize,
    /// Trials of those suites.
    pub trials: usize,
    /// Context lengths of the NIAH grid.
    pub grid_lengths: Vec<usize>,
    /// Needle depths of the NIAH grid, as fractions of the context (0 = start, 1 = end).
    pub grid_depths: Vec<f64>,
    /// Trials per grid cell.
    pub grid_trials: usize,
    /// Distances (needle value to query) of the by-distance suite.
    pub distances: Vec<usize>,
    /// Trials per distance (and per side of the window suite).
    pub distance_trials: usize,
    /// Needle counts of the multi-needle suites (at most [`crate::tasks::MAX_MARKERS`]).
    pub needle_counts: Vec<usize>,
    /// Trials per needle count.
    pub multi_trials: usize,
    /// Sequences per forward pass.
    pub batch: usize,
    /// How single-needle suites query (multi-needle suites always ask `CUE MARKER_i`).
    pub single_query: QueryStyle,
}

impl SuiteConfig {
    /// A few minutes on a CPU for a small model.
    pub fn quick() -> Self {
        SuiteConfig {
            name: "quick".into(),
            seed: 1234,
            seq_len: 256,
            trials: 100,
            grid_lengths: vec![64, 128, 256, 512],
            grid_depths: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            grid_trials: 20,
            distances: vec![4, 8, 16, 32, 64, 128, 200],
            distance_trials: 30,
            needle_counts: vec![2, 3, 5],
            multi_trials: 60,
            batch: 16,
            single_query: QueryStyle::Cue,
        }
    }
    /// Tighter intervals and longer contexts.
    pub fn full() -> Self {
        SuiteConfig {
            name: "full".into(),
            seed: 1234,
            seq_len: 512,
            trials: 400,
            grid_lengths: vec![64, 128, 256, 512, 1024, 2048],
            grid_depths: vec![0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0],
            grid_trials: 50,
            distances: vec![4, 8, 16, 32, 64, 128, 256, 400, 500],
            distance_trials: 100,
            needle_counts: vec![2, 3, 4, 5, 8],
            multi_trials: 200,
            batch: 16,
            single_query: QueryStyle::Cue,
        }
    }
    /// Tiny sizes for unit tests.
    pub fn tiny() -> Self {
        SuiteConfig {
            name: "test".into(),
            seed: 7,
            seq_len: 48,
            trials: 40,
            grid_lengths: vec![24, 48],
            grid_depths: vec![0.0, 0.5, 1.0],
            grid_trials: 8,
            distances: vec![4, 10, 20, 40],
            distance_trials: 10,
            needle_counts: vec![2, 3],
            multi_trials: 24,
            batch: 16,
            single_query: QueryStyle::Cue,
        }
    }
    /// `quick` or `full`.
    pub fn by_name(name: &str) -> Result<Self> {
        match name {
            "quick" => Ok(Self::quick()),
            "full" => Ok(Self::full()),
            other => bail!("unknown suite '{other}' (expected quick or full)"),
        }
    }
}

/// One cell of the NIAH grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridCell {
    /// Context length.
    pub seq_len: usize,
    /// Requested depth fraction.
    pub depth: f64,
    /// Accuracy in the cell.
    pub accuracy: Accuracy,
}

/// Accuracy at one needle-to-query distance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistancePoint {
    /// Tokens between the needle value and the query position.
    pub distance: usize,
    /// Whether the value lies inside the attention window (`None`: model has no window).
    pub inside_window: Option<bool>,
    /// Accuracy.
    pub accuracy: Accuracy,
}

/// Inside vs outside the attention window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowResult {
    /// The model's window.
    pub window: i64,
    /// Sequence length used.
    pub seq_len: usize,
    /// Distance of the inside needles.
    pub inside_distance: usize,
    /// Distance of the outside needles.
    pub outside_distance: usize,
    /// Accuracy with the needle inside the window.
    pub inside: Accuracy,
    /// Accuracy with the needle beyond the window: only the recurrent state can carry it.
    pub outside: Accuracy,
}

/// Multi-needle with one distinct marker per needle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiDistinct {
    /// Number of needles.
    pub n_needles: usize,
    /// Sequence length.
    pub seq_len: usize,
    /// Accuracy over all queries.
    pub overall: Accuracy,
    /// Accuracy when needle `i` (in order of position) is queried; denominators are the
    /// trials that queried it, never 0/0.
    pub per_needle: Vec<Accuracy>,
    /// `confusion[q][j]`: trials querying needle `q` that emitted needle `j`'s value;
    /// the last column counts outputs that are no needle at all.
    pub confusion: Vec<Vec<u64>>,
}

/// Multi-needle with the same marker repeated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiRepeated {
    /// Number of needles.
    pub n_needles: usize,
    /// Sequence length.
    pub seq_len: usize,
    /// Share of trials whose output was needle `i`'s value (position order).
    pub share: Vec<Accuracy>,
    /// Share of trials whose output was any needle.
    pub any: Accuracy,
    /// Among outputs that hit a needle, the share that hit the last one (1/n without bias).
    pub recency_bias: Option<f64>,
}

/// A RULER-style variant on a (preferably real-text) haystack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RulerResult {
    /// `niah-single` or `niah-multikey` (three distractor needles with other markers).
    pub variant: String,
    /// `text` or `synthetic`.
    pub haystack: String,
    /// Accuracy.
    pub accuracy: Accuracy,
}

/// A suite that could not run on this model, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    /// Suite name.
    pub suite: String,
    /// Reason.
    pub reason: String,
}

/// All retrieval results of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrievalReport {
    /// Special tokens used.
    pub tokens: TaskTokens,
    /// Suite sizes and seed.
    pub config: SuiteConfig,
    /// Chance level of guessing a content token (`1 / content_vocab`).
    pub chance: f64,
    /// Single needle, needles from the whole content vocabulary, random depth.
    pub single: Accuracy,
    /// The seed's fixed-needle test. A pass here means nothing on its own.
    pub shortcut_check: Accuracy,
    /// Context length × depth.
    pub grid: Vec<GridCell>,
    /// Sequence length of the distance suite.
    pub distance_seq_len: usize,
    /// Accuracy by distance.
    pub distance: Vec<DistancePoint>,
    /// Inside vs outside the window (`None` when the model has no window or it is too long).
    pub window: Option<WindowResult>,
    /// Multi-needle, distinct markers.
    pub multi_distinct: Vec<MultiDistinct>,
    /// Multi-needle, repeated marker.
    pub multi_repeated: Vec<MultiRepeated>,
    /// Ablation: the needle value planted without its marker (should be near chance).
    pub no_marker: Accuracy,
    /// RULER-style variants.
    pub ruler: Vec<RulerResult>,
    /// Suites that were skipped.
    pub skipped: Vec<Skipped>,
}

/// Most logits (elements) one forward pass may return.
const LOGIT_BUDGET: i64 = 1 << 28;

/// Runs the trials and returns the argmax at the last position of each.
pub fn predict_last(model: &dyn Probeable, trials: &[Trial], batch: usize) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(trials.len());
    let vocab = model.vocab_size();
    // the model returns logits for every position: keep one batch's [B,T,V] under ~1 GiB of f32
    let t_max = trials.iter().map(|t| t.tokens.len()).max().unwrap_or(1) as i64;
    let fit = (LOGIT_BUDGET / (t_max * vocab).max(1)).max(1) as usize;
    for chunk in trials.chunks(batch.clamp(1, fit)) {
        let t = chunk[0].tokens.len();
        if chunk.iter().any(|c| c.tokens.len() != t) {
            bail!("internal: trials of one batch differ in length");
        }
        let flat: Vec<i64> = chunk.iter().flat_map(|c| c.tokens.iter().copied()).collect();
        let x = Tensor::from_slice(&flat).view([chunk.len() as i64, t as i64]).to_device(model.device());
        let logits = tch::no_grad(|| model.logits(&x)).with_context(|| format!("forward pass on [{}, {t}] failed", chunk.len()))?;
        let size = logits.size();
        if size.len() != 3 || size[0] != chunk.len() as i64 || size[1] != t as i64 || size[2] != vocab {
            bail!("model returned logits of shape {size:?}, expected [{}, {t}, {vocab}]", chunk.len());
        }
        let last = logits.select(1, t as i64 - 1).to_kind(Kind::Float);
        if !bool::try_from(last.isfinite().all())? {
            bail!("model returned non-finite logits at the query position");
        }
        let pred: Vec<i64> = Vec::try_from(last.argmax(-1, false).to_device(tch::Device::Cpu))?;
        out.extend(pred);
    }
    Ok(out)
}

fn score(model: &dyn Probeable, trials: &[Trial], batch: usize) -> Result<Accuracy> {
    let pred = predict_last(model, trials, batch)?;
    let correct = pred.iter().zip(trials).filter(|(p, t)| **p == t.target).count();
    Ok(Accuracy::new(correct as u64, trials.len() as u64))
}

/// The generator for one suite: the base seed mixed with a suite-specific salt.
fn rng_for(cfg: &SuiteConfig, salt: u64) -> HostRng {
    HostRng::new(cfg.seed.wrapping_mul(0x0100_0000_01B3).wrapping_add(salt))
}

fn content(tt: &TaskTokens, rng: &mut HostRng) -> i64 {
    rng.below(tt.content_vocab as u64) as i64
}

/// Single needle at marker position `pos` (random when `None`) with value `value` (random when `None`).
#[allow(clippy::too_many_arguments)] // a private builder; a struct would only rename the nine knobs
fn single_trials(
    n: usize,
    seq_len: usize,
    tt: &TaskTokens,
    hay: &Haystack,
    rng: &mut HostRng,
    pos: impl Fn(&mut HostRng) -> usize,
    value: Option<i64>,
    with_marker: bool,
    style: QueryStyle,
) -> Result<Vec<Trial>> {
    let query = style.tokens(tt, tt.marker());
    (0..n)
        .map(|_| {
            let h = hay.draw(seq_len, tt, rng);
            let p = pos(rng);
            let v = value.unwrap_or_else(|| content(tt, rng));
            let marker = with_marker.then_some(tt.marker());
            build_trial(seq_len, &h, &[Needle { pos: p, marker, value: v }], &query, v)
        })
        .collect()
}

/// Query length of a style.
fn qlen(style: QueryStyle) -> usize {
    match style {
        QueryStyle::Cue => 1,
        QueryStyle::CueMarker => 2,
    }
}

fn random_pos(seq_len: usize, style: QueryStyle) -> impl Fn(&mut HostRng) -> usize {
    // the marker anywhere such that its value still precedes the query
    let last = seq_len - qlen(style) - 2;
    move |r: &mut HostRng| r.below(last as u64 + 1) as usize
}

fn fits(model: &dyn Probeable, len: usize) -> bool {
    model.max_seq_len().is_none_or(|m| len as i64 <= m)
}

/// Runs every retrieval suite.
pub fn run_retrieval(model: &dyn Probeable, cfg: &SuiteConfig, tt: &TaskTokens, text: Option<&[i64]>) -> Result<RetrievalReport> {
    if tt.vocab != model.vocab_size() {
        bail!("task tokens are for a vocabulary of {}, the model has {}", tt.vocab, model.vocab_size());
    }
    let mut skipped = Vec::new();
    let syn = Haystack::Synthetic;
    let sq = cfg.single_query;
    let seq_len = match model.max_seq_len() {
        Some(m) if (m as usize) < cfg.seq_len => m as usize,
        _ => cfg.seq_len,
    };
    if seq_len < 8 {
        bail!("the model accepts at most {seq_len} tokens; the suites need at least 8");
    }

    let mut rng = rng_for(cfg, 1);
    let single = score(model, &single_trials(cfg.trials, seq_len, tt, &syn, &mut rng, random_pos(seq_len, sq), None, true, sq)?, cfg.batch)?;

    let mut rng = rng_for(cfg, 2);
    let fixed = Some(tt.fixed_needle());
    let shortcut_check =
        score(model, &single_trials(cfg.trials, seq_len, tt, &syn, &mut rng, random_pos(seq_len, sq), fixed, true, sq)?, cfg.batch)?;

    let mut grid = Vec::new();
    let mut rng = rng_for(cfg, 3);
    for &len in &cfg.grid_lengths {
        if len < 8 || !fits(model, len) {
            skipped.push(Skipped { suite: format!("grid T={len}"), reason: "longer than the model accepts (or < 8)".into() });
            continue;
        }
        for &depth in &cfg.grid_depths {
            let last = len - qlen(sq) - 2;
            let p = ((depth.clamp(0.0, 1.0) * last as f64).round() as usize).min(last);
            let trials = single_trials(cfg.grid_trials, len, tt, &syn, &mut rng, move |_| p, None, true, sq)?;
            grid.push(GridCell { seq_len: len, depth, accuracy: score(model, &trials, cfg.batch)? });
        }
    }

    let window = model.window();
    let mut distance = Vec::new();
    let mut rng = rng_for(cfg, 4);
    for &d in &cfg.distances {
        match pos_for_distance(seq_len, d, qlen(sq)) {
            Some(p) => {
                let trials = single_trials(cfg.distance_trials, seq_len, tt, &syn, &mut rng, move |_| p, None, true, sq)?;
                let inside_window = window.map(|w| (d as i64) < w);
                distance.push(DistancePoint { distance: d, inside_window, accuracy: score(model, &trials, cfg.batch)? });
            }
            None => skipped.push(Skipped { suite: format!("distance {d}"), reason: format!("does not fit in T={seq_len}") }),
        }
    }

    let window_result = match window {
        None => {
            skipped.push(Skipped { suite: "window".into(), reason: "the model has no attention window".into() });
            None
        }
        Some(w) => {
            let w_us = w.max(1) as usize;
            let inside_d = (w_us / 2).max(2);
            let outside_d = 2 * w_us + 2;
            let len = (outside_d + 8).max(seq_len);
            if !fits(model, len) {
                skipped.push(Skipped { suite: "window".into(), reason: format!("needs T={len}, longer than the model accepts") });
                None
            } else {
                let mut rng = rng_for(cfg, 5);
                let pi = pos_for_distance(len, inside_d, qlen(sq)).context("inside distance does not fit")?;
                let po = pos_for_distance(len, outside_d, qlen(sq)).context("outside distance does not fit")?;
                let inside = score(model, &single_trials(cfg.distance_trials, len, tt, &syn, &mut rng, move |_| pi, None, true, sq)?, cfg.batch)?;
                let outside = score(model, &single_trials(cfg.distance_trials, len, tt, &syn, &mut rng, move |_| po, None, true, sq)?, cfg.batch)?;
                Some(WindowResult { window: w, seq_len: len, inside_distance: inside_d, outside_distance: outside_d, inside, outside })
            }
        }
    };

    let mut multi_distinct = Vec::new();
    let mut multi_repeated = Vec::new();
    for &n in &cfg.needle_counts {
        if n == 0 || n > tt.markers.len() || seq_len < 4 * (n + 2) {
            skipped.push(Skipped { suite: format!("multi-needle n={n}"), reason: "needle count out of range for this sequence length".into() });
            continue;
        }
        let mut rng = rng_for(cfg, 100 + n as u64);
        multi_distinct.push(multi_distinct_suite(model, cfg, tt, seq_len, n, &mut rng)?);
        let mut rng = rng_for(cfg, 200 + n as u64);
        multi_repeated.push(multi_repeated_suite(model, cfg, tt, seq_len, n, &mut rng)?);
    }

    let mut rng = rng_for(cfg, 6);
    let no_marker =
        score(model, &single_trials(cfg.trials, seq_len, tt, &syn, &mut rng, random_pos(seq_len, sq), None, false, sq)?, cfg.batch)?;

    let text_hay = match text {
        Some(t) if t.len() > seq_len * 2 => Haystack::Text(t.to_vec()),
        _ => {
            skipped.push(Skipped {
                suite: "ruler (text haystack)".into(),
                reason: "no corpus text available; RULER variants ran on a synthetic haystack".into(),
            });
            Haystack::Synthetic
        }
    };
    let mut ruler = Vec::new();
    let mut rng = rng_for(cfg, 7);
    let trials = single_trials(cfg.trials, seq_len, tt, &text_hay, &mut rng, random_pos(seq_len, sq), None, true, sq)?;
    ruler.push(RulerResult { variant: "niah-single".into(), haystack: text_hay.label().into(), accuracy: score(model, &trials, cfg.batch)? });
    if tt.markers.len() >= 4 && seq_len >= 32 {
        let mut rng = rng_for(cfg, 8);
        let trials = multikey_trials(cfg.trials, seq_len, tt, &text_hay, &mut rng)?;
        ruler.push(RulerResult { variant: "niah-multikey".into(), haystack: text_hay.label().into(), accuracy: score(model, &trials, cfg.batch)? });
    }

    Ok(RetrievalReport {
        tokens: tt.clone(),
        config: cfg.clone(),
        chance: 1.0 / tt.content_vocab as f64,
        single,
        shortcut_check,
        grid,
        distance_seq_len: seq_len,
        distance,
        window: window_result,
        multi_distinct,
        multi_repeated,
        no_marker,
        ruler,
        skipped,
    })
}

/// Positions of `n` needles spread evenly, as the seed's `multi_needle_test` does.
fn spread_positions(seq_len: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| ((i + 1) * seq_len / (n + 2)).min(seq_len - 4)).collect()
}

fn distinct_values(n: usize, tt: &TaskTokens, rng: &mut HostRng) -> Vec<i64> {
    let mut vals: Vec<i64> = Vec::with_capacity(n);
    while vals.len() < n {
        let v = content(tt, rng);
        if !vals.contains(&v) {
            vals.push(v);
        }
    }
    vals
}

fn multi_distinct_suite(model: &dyn Probeable, cfg: &SuiteConfig, tt: &TaskTokens, seq_len: usize, n: usize, rng: &mut HostRng) -> Result<MultiDistinct> {
    let pos = spread_positions(seq_len, n);
    let mut trials = Vec::new();
    let mut values = Vec::new();
    let mut queried = Vec::new();
    for trial in 0..cfg.multi_trials {
        let h = Haystack::Synthetic.draw(seq_len, tt, rng);
        let vals = distinct_values(n, tt, rng);
        let needles: Vec<Needle> = (0..n).map(|i| Needle { pos: pos[i], marker: Some(tt.markers[i]), value: vals[i] }).collect();
        let q = trial % n;
        trials.push(build_trial(seq_len, &h, &needles, &[tt.cue, tt.markers[q]], vals[q])?);
        values.push(vals);
        queried.push(q);
    }
    let pred = predict_last(model, &trials, cfg.batch)?;
    let mut confusion = vec![vec![0u64; n + 1]; n];
    for ((p, vals), &q) in pred.iter().zip(&values).zip(&queried) {
        let col = vals.iter().position(|v| v == p).unwrap_or(n);
        confusion[q][col] += 1;
    }
    let per_needle = (0..n).map(|i| Accuracy::new(confusion[i][i], confusion[i].iter().sum())).collect();
    let correct: u64 = (0..n).map(|i| confusion[i][i]).sum();
    Ok(MultiDistinct { n_needles: n, seq_len, overall: Accuracy::new(correct, trials.len() as u64), per_needle, confusion })
}

fn multi_repeated_suite(model: &dyn Probeable, cfg: &SuiteConfig, tt: &TaskTokens, seq_len: usize, n: usize, rng: &mut HostRng) -> Result<MultiRepeated> {
    let pos = spread_positions(seq_len, n);
    let mut trials = Vec::new();
    let mut values = Vec::new();
    for _ in 0..cfg.multi_trials {
        let h = Haystack::Synthetic.draw(seq_len, tt, rng);
        let vals = distinct_values(n, tt, rng);
        let needles: Vec<Needle> = (0..n).map(|i| Needle { pos: pos[i], marker: Some(tt.marker()), value: vals[i] }).collect();
        // The question is ambiguous by design; the target is nominally the last needle and the
        // report shows the whole distribution.
        trials.push(build_trial(seq_len, &h, &needles, &[tt.cue, tt.marker()], vals[n - 1])?);
        values.push(vals);
    }
    let pred = predict_last(model, &trials, cfg.batch)?;
    let mut hits = vec![0u64; n];
    for (p, vals) in pred.iter().zip(&values) {
        if let Some(i) = vals.iter().position(|v| v == p) {
            hits[i] += 1;
        }
    }
    let total = trials.len() as u64;
    let any_hits: u64 = hits.iter().sum();
    Ok(MultiRepeated {
        n_needles: n,
        seq_len,
        share: hits.iter().map(|&h| Accuracy::new(h, total)).collect(),
        any: Accuracy::new(any_hits, total),
        recency_bias: (any_hits > 0).then(|| hits[n - 1] as f64 / any_hits as f64),
    })
}

/// One target needle and three distractors with other markers, RULER's MK-NIAH.
fn multikey_trials(n: usize, seq_len: usize, tt: &TaskTokens, hay: &Haystack, rng: &mut HostRng) -> Result<Vec<Trial>> {
    let k = 4;
    (0..n)
        .map(|_| {
            let h = hay.draw(seq_len, tt, rng);
            // distinct random positions, at least 2 apart so needles do not overwrite each other
            let mut pos: Vec<usize> = Vec::new();
            while pos.len() < k {
                let p = rng.below((seq_len - 3) as u64) as usize;
                if pos.iter().all(|&q| q.abs_diff(p) >= 2) {
                    pos.push(p);
                }
            }
            let vals = distinct_values(k, tt, rng);
            let needles: Vec<Needle> = (0..k).map(|i| Needle { pos: pos[i], marker: Some(tt.markers[i]), value: vals[i] }).collect();
            let q = rng.below(k as u64) as usize;
            build_trial(seq_len, &h, &needles, &[tt.cue, tt.markers[q]], vals[q])
        })
        .collect()
}
