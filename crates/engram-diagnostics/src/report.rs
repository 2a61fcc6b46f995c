//! The report: `report.json` (schema in `docs/diagnostics.md`, versioned by
//! [`SCHEMA_VERSION`]), `report.md`, the terminal summary and the PNG plots.

use crate::mechanism::MechanismReport;
use crate::plot::{self, Series};
use crate::retrieval::RetrievalReport;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// Version of the `report.json` layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// One diagnosed model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelReport {
    /// `A`, `B`, ... in the order given.
    pub label: String,
    /// The model's name (architecture summary or toy name).
    pub name: String,
    /// Checkpoint directory, when loaded from one.
    pub source: Option<String>,
    /// Training step of the checkpoint.
    pub step: Option<u64>,
    /// Vocabulary size.
    pub vocab: i64,
    /// Attention window (tokens visible to a query, itself included).
    pub window: Option<i64>,
    /// Model config as stored, when there is one.
    pub config: Option<serde_json::Value>,
    /// Retrieval suites.
    pub retrieval: RetrievalReport,
    /// Mechanism probes.
    pub mechanism: MechanismReport,
    /// One-line conclusions drawn from the numbers (see [`verdicts`]).
    pub verdicts: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `engram-diagnostics <version>`.
    pub generator: String,
    /// Suite name (`quick`, `full`, ...).
    pub suite: String,
    /// Device the models ran on.
    pub device: String,
    /// Seconds since the Unix epoch at write time.
    pub created_unix: u64,
    /// Wall time of the diagnosis in seconds.
    pub elapsed_s: f64,
    /// One entry per model (two in comparison mode).
    pub models: Vec<ModelReport>,
    /// Plot files written next to the report.
    pub plots: Vec<String>,
    /// Anything the reader should know (fallbacks, skipped parts).
    pub notices: Vec<String>,
}

/// Conclusions that follow from the numbers, phrased so that each can be checked.
pub fn verdicts(r: &RetrievalReport, m: &MechanismReport) -> Vec<String> {
    let mut v = Vec::new();
    let s = &r.single;
    if s.ci_low > 0.9 {
        v.push(format!("retrieves single needles from the whole vocabulary ({})", s.display()));
    } else if s.ci_high < 0.1 + r.chance {
        v.push(format!("fails single-needle retrieval ({})", s.display()));
    } else {
        v.push(format!("retrieves single needles partially ({})", s.display()));
    }
    if r.shortcut_check.ci_low > 0.5 && s.ci_high < 0.5 {
        v.push("passes ONLY the fixed-needle shortcut check: it emits the fixed token, not the needle".into());
    }
    if let Some(w) = &r.window {
        if w.outside.ci_low > 0.5 {
            v.push(format!("carries needles beyond its {}-token window in the recurrent state ({})", w.window, w.outside.display()));
        } else if w.outside.correct == 0 {
            v.push(format!("retrieves nothing beyond its {}-token window (outside 0/{}): the state carries no needle", w.window, w.outside.total));
        } else {
            v.push(format!("weak retrieval beyond its {}-token window ({})", w.window, w.outside.display()));
        }
    }
    for mr in &r.multi_repeated {
        if let Some(b) = mr.recency_bias {
            if b > 0.8 && mr.any.correct >= 5 {
                v.push(format!("recency bias with {} repeated markers: {:.0}% of needle hits are the last needle", mr.n_needles, 100.0 * b));
            }
        }
    }
    if r.no_marker.ci_low > 0.2 {
        v.push(format!("retrieves even WITHOUT the marker ({}): check for leakage", r.no_marker.display()));
    }
    if let Some(base) = m.key_cos_baseline {
        let cos: Vec<f64> = m.heads.iter().filter_map(|h| h.key_mean_abs_cos).collect();
        if !cos.is_empty() {
            let mean = cos.iter().sum::<f64>() / cos.len() as f64;
            if mean > 2.0 * base {
                v.push(format!("key space collapsed: mean |cos| {mean:.3} vs random baseline {base:.3}"));
            }
        }
    }
    if m.heads.iter().any(|h| !h.finite) {
        v.push("NON-FINITE recurrent state (see mechanism.heads)".into());
    } else if let Some(max) = m.heads.iter().filter_map(|h| h.max_abs).reduce(f64::max) {
        if max >= 10.0 {
            v.push(format!("state not bounded: max |S| = {max:.2} (seed's limit 10)"));
        }
    }
    if let Some(g) = &m.gradients {
        if g.has_nan || g.has_inf {
            v.push("NON-FINITE gradients (see mechanism.gradients)".into());
        }
    }
    if m.algebra.iter().any(|c| !c.passed) {
        v.push("delta-rule algebra checks FAILED".into());
    }
    v
}

fn pct(a: &crate::stats::Accuracy) -> String {
    if a.total == 0 {
        "n/a".into()
    } else {
        format!("{:.1}% [{:.0}-{:.0}]", 100.0 * a.accuracy, 100.0 * a.ci_low, 100.0 * a.ci_high)
    }
}

/// Rows `(metric, value per model)` of the summary table.
pub fn summary_rows(models: &[ModelReport]) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |name: &str, f: &dyn Fn(&ModelReport) -> String| rows.push((name.to_string(), models.iter().map(f).collect()));
    add("step", &|m| m.step.map_or("-".into(), |s| s.to_string()));
    add("single needle (whole vocab)", &|m| pct(&m.retrieval.single));
    add("shortcut-check (fixed needle)", &|m| pct(&m.retrieval.shortcut_check));
    add("no-marker ablation", &|m| pct(&m.retrieval.no_marker));
    add("inside window", &|m| m.retrieval.window.as_ref().map_or("n/a".into(), |w| format!("{} (d={})", pct(&w.inside), w.inside_distance)));
    add("outside window", &|m| m.retrieval.window.as_ref().map_or("n/a".into(), |w| format!("{} (d={})", pct(&w.outside), w.outside_distance)));
    let counts: Vec<usize> = models.first().map(|m| m.retrieval.multi_distinct.iter().map(|x| x.n_needles).collect()).unwrap_or_default();
    for n in counts {
        add(&format!("multi-needle distinct n={n}"), &|m| {
            m.retrieval.multi_distinct.iter().find(|x| x.n_needles == n).map_or("-".into(), |x| pct(&x.overall))
        });
        add(&format!("repeated n={n}: any / last share"), &|m| {
            m.retrieval.multi_repeated.iter().find(|x| x.n_needles == n).map_or("-".into(), |x| {
                format!("{} / {}", pct(&x.any), x.recency_bias.map_or("-".into(), |b| format!("{:.0}%", 100.0 * b)))
            })
        });
    }
    add("RULER niah-single", &|m| m.retrieval.ruler.iter().find(|r| r.variant == "niah-single").map_or("-".into(), |r| format!("{} ({})", pct(&r.accuracy), r.haystack)));
    add("RULER niah-multikey", &|m| m.retrieval.ruler.iter().find(|r| r.variant == "niah-multikey").map_or("-".into(), |r| pct(&r.accuracy)));
    add("key mean abs cos (random baseline)", &|m| {
        let cos: Vec<f64> = m.mechanism.heads.iter().filter_map(|h| h.key_mean_abs_cos).collect();
        match (cos.is_empty(), m.mechanism.key_cos_baseline) {
            (false, Some(b)) => format!("{:.3} ({:.3})", cos.iter().sum::<f64>() / cos.len() as f64, b),
            _ => "n/a".into(),
        }
    });
    add("state norm / max abs (mean, max over heads)", &|m| {
        if m.mechanism.heads.is_empty() {
            return "n/a".into();
        }
        if m.mechanism.heads.iter().any(|h| !h.finite) {
            return "NON-FINITE".into();
        }
        let n = m.mechanism.heads.iter().filter_map(|h| h.norm).sum::<f64>() / m.mechanism.heads.len() as f64;
        let mx = m.mechanism.heads.iter().filter_map(|h| h.max_abs).fold(0.0, f64::max);
        format!("{n:.3} / {mx:.3}")
    });
    add("effective state rank (mean)", &|m| {
        if m.mechanism.heads.is_empty() {
            return "n/a".into();
        }
        let r: Vec<f64> = m.mechanism.heads.iter().filter_map(|h| h.effective_rank).collect();
        if r.is_empty() {
            return "n/a".into();
        }
        format!("{:.2}", r.iter().sum::<f64>() / r.len() as f64)
    });
    add("beta at marker or needle / ordinary (first G layer)", &|m| {
        m.mechanism.gates.first().map_or("n/a".into(), |g| {
            let hi = [g.beta_marker, g.beta_needle].iter().flatten().map(|s| s.mean).fold(f64::NAN, f64::max);
            format!("{:.3} / {:.3}", hi, g.beta_ordinary.map_or(f64::NAN, |s| s.mean))
        })
    });
    add("decay g ordinary (first G layer)", &|m| m.mechanism.gates.first().and_then(|g| g.decay_ordinary).map_or("n/a".into(), |s| format!("{:.3}", s.mean)));
    add("gradients", &|m| {
        m.mechanism.gradients.as_ref().map_or("n/a".into(), |g| {
            if g.has_nan || g.has_inf {
                format!("NON-FINITE (nan={}, inf={})", g.has_nan, g.has_inf)
            } else {
                format!("finite, loss lm {:.3} ret {:.3}", g.lm_loss, g.retrieval_loss)
            }
        })
    });
    add("delta-rule algebra", &|m| {
        let failed = m.mechanism.algebra.iter().filter(|c| !c.passed).count();
        if failed == 0 {
            format!("{} checks pass", m.mechanism.algebra.len())
        } else {
            format!("{failed} of {} FAIL", m.mechanism.algebra.len())
        }
    });
    rows
}

/// A plain-text table (for the terminal).
pub fn summary_table(models: &[ModelReport]) -> String {
    let rows = summary_rows(models);
    let headers: Vec<String> = models.iter().map(|m| format!("{}: {}", m.label, m.name)).collect();
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(6).max(6);
    let widths: Vec<usize> = (0..models.len())
        .map(|i| rows.iter().map(|r| r.1[i].chars().count()).chain([headers[i].chars().count()]).max().unwrap_or(1))
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:w0$}", "metric");
    for (h, w) in headers.iter().zip(&widths) {
        let _ = write!(out, " | {h:w$}");
    }
    out.push('\n');
    out.push_str(&"-".repeat(w0 + widths.iter().map(|w| w + 3).sum::<usize>()));
    out.push('\n');
    for (name, vals) in &rows {
        let _ = write!(out, "{name:w0$}");
        for (v, w) in vals.iter().zip(&widths) {
            let _ = write!(out, " | {v:w$}");
        }
        out.push('\n');
    }
    for m in models {
        for v in &m.verdicts {
            let _ = writeln!(out, "{}: {v}", m.label);
        }
    }
    out
}

/// The Markdown report.
pub fn markdown(report: &Report) -> String {
    let ms = &report.models;
    let mut md = String::new();
    let _ = writeln!(md, "# Diagnostics report\n");
    let _ = writeln!(md, "Suite `{}` on {}, {} (schema {}), {:.1} s.\n", report.suite, report.device, report.generator, report.schema_version, report.elapsed_s);
    for m in ms {
        let _ = writeln!(
            md,
            "* **{}**: {} — {}, step {}, vocab {}, window {}",
            m.label,
            m.name,
            m.source.as_deref().unwrap_or("constructed model"),
            m.step.map_or("-".into(), |s| s.to_string()),
            m.vocab,
            m.window.map_or("none".into(), |w| w.to_string())
        );
    }
    let _ = writeln!(md, "\n## Summary\n");
    let rows = summary_rows(ms);
    let _ = writeln!(md, "| metric | {} |", ms.iter().map(|m| m.label.clone()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(ms.len()));
    for (name, vals) in rows {
        let _ = writeln!(md, "| {name} | {} |", vals.join(" | "));
    }
    let _ = writeln!(md, "\nAccuracies are argmax hits at the query position with Wilson 95% intervals in brackets.\n");
    let _ = writeln!(md, "## Verdicts\n");
    for m in ms {
        for v in &m.verdicts {
            let _ = writeln!(md, "* {}: {v}", m.label);
        }
    }
    for m in ms {
        let r = &m.retrieval;
        let _ = writeln!(md, "\n## Model {} in detail\n", m.label);
        let _ = writeln!(md, "Chance level (one content token): {:.4}. Special tokens: cue {}, markers {:?}.\n", r.chance, r.tokens.cue, r.tokens.markers);
        let _ = writeln!(md, "### NIAH grid (context length × needle depth)\n");
        let depths: Vec<f64> = dedup(r.grid.iter().map(|c| c.depth).collect());
        let lens: Vec<usize> = dedup_us(r.grid.iter().map(|c| c.seq_len).collect());
        let _ = writeln!(md, "| T \\ depth | {} |", depths.iter().map(|d| format!("{d:.2}")).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(depths.len()));
        for l in &lens {
            let cells: Vec<String> = depths
                .iter()
                .map(|d| r.grid.iter().find(|c| c.seq_len == *l && c.depth == *d).map_or("-".into(), |c| pct(&c.accuracy)))
                .collect();
            let _ = writeln!(md, "| {l} | {} |", cells.join(" | "));
        }
        let _ = writeln!(md, "\n### Accuracy by distance (T = {})\n", r.distance_seq_len);
        let _ = writeln!(md, "| distance | in window | accuracy |\n|---|---|---|");
        for d in &r.distance {
            let _ = writeln!(md, "| {} | {} | {} |", d.distance, d.inside_window.map_or("-".into(), |b| b.to_string()), pct(&d.accuracy));
        }
        let _ = writeln!(md, "\n### Multi-needle, distinct markers\n");
        for x in &r.multi_distinct {
            let _ = writeln!(md, "n = {} (T = {}): overall {}; per needle {}.\n", x.n_needles, x.seq_len, pct(&x.overall), x.per_needle.iter().map(pct).collect::<Vec<_>>().join(", "));
            let _ = writeln!(md, "| queried \\ emitted | {} | other |", (1..=x.n_needles).map(|i| format!("needle {i}")).collect::<Vec<_>>().join(" | "));
            let _ = writeln!(md, "|---|{}", "---|".repeat(x.n_needles + 1));
            for (i, row) in x.confusion.iter().enumerate() {
                let _ = writeln!(md, "| needle {} | {} |", i + 1, row.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" | "));
            }
            md.push('\n');
        }
        let _ = writeln!(md, "### Multi-needle, repeated marker (which needle is emitted)\n");
        for x in &r.multi_repeated {
            let _ = writeln!(
                md,
                "* n = {}: {}; any {}; share of hits on the last needle {}",
                x.n_needles,
                x.share.iter().enumerate().map(|(i, a)| format!("needle {} {}", i + 1, pct(a))).collect::<Vec<_>>().join(", "),
                pct(&x.any),
                x.recency_bias.map_or("-".into(), |b| format!("{:.0}%", 100.0 * b))
            );
        }
        let mech = &m.mechanism;
        let _ = writeln!(md, "\n### Mechanism\n");
        let _ = writeln!(md, "Delta-rule algebra:\n");
        for c in &mech.algebra {
            let _ = writeln!(md, "* {} {}: {}", if c.passed { "PASS" } else { "FAIL" }, c.name, c.detail);
        }
        if !mech.heads.is_empty() {
            let _ = writeln!(md, "\n| layer | head | norm | max abs | eff. rank | stable rank | num. rank | key mean abs cos | needle readout ratio |\n|---|---|---|---|---|---|---|---|---|");
            for h in &mech.heads {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    h.layer,
                    h.head,
                    opt(h.norm, 3),
                    opt(h.max_abs, 3),
                    opt(h.effective_rank, 2),
                    opt(h.stable_rank, 2),
                    opt(h.numerical_rank, 1),
                    h.key_mean_abs_cos.map_or("-".into(), |c| format!("{c:.3}")),
                    h.needle_readout_ratio.map_or("-".into(), |c| format!("{c:.2}"))
                );
            }
            let _ = writeln!(md, "\nRandom-key baseline of mean |cos|: {:.3}.", mech.key_cos_baseline.unwrap_or(f64::NAN));
        }
        if !mech.gates.is_empty() {
            let _ = writeln!(md, "\n| layer | β marker | β needle | β ordinary | g marker | g needle | g ordinary | ∏g over T |\n|---|---|---|---|---|---|---|---|");
            let f = |s: &Option<crate::stats::Summary>| s.map_or("-".into(), |s| format!("{:.3}±{:.3}", s.mean, s.std));
            for g in &mech.gates {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    g.layer,
                    f(&g.beta_marker),
                    f(&g.beta_needle),
                    f(&g.beta_ordinary),
                    f(&g.decay_marker),
                    f(&g.decay_needle),
                    f(&g.decay_ordinary),
                    g.retention_over_sequence.map_or("-".into(), |v| format!("{v:.2e}"))
                );
            }
        }
        let _ = writeln!(md, "\nCapacity (mean relative retrieval error after n delta writes, β = 1, g = 1):\n");
        let _ = writeln!(md, "| writes | random keys | learned keys |\n|---|---|---|");
        for p in &mech.capacity_random {
            let learned = mech.capacity_learned.iter().find(|q| q.writes == p.writes).map_or("-".into(), |q| format!("{:.4}", q.mean_error));
            let _ = writeln!(md, "| {} | {:.4} | {} |", p.writes, p.mean_error, learned);
        }
        if let Some(g) = &mech.gradients {
            let _ = writeln!(md, "\nGradients (next-token LM loss {:.4} + needle loss {:.4}): NaN {}, Inf {}.\n", g.lm_loss, g.retrieval_loss, g.has_nan, g.has_inf);
            let _ = writeln!(md, "| parameter | grad norm | NaN | Inf |\n|---|---|---|---|");
            for p in &g.params {
                let _ = writeln!(md, "| {} | {} | {} | {} |", p.name, p.grad_norm.map_or("no gradient".into(), |n| format!("{n:.3e}")), p.nan, p.inf);
            }
        }
        let skipped: Vec<String> = r.skipped.iter().map(|s| format!("{}: {}", s.suite, s.reason)).chain(mech.notes.iter().cloned()).collect();
        if !skipped.is_empty() {
            let _ = writeln!(md, "\nNot run / not applicable:\n");
            for s in skipped {
                let _ = writeln!(md, "* {s}");
            }
        }
    }
    if !report.plots.is_empty() {
        let _ = writeln!(md, "\n## Plots\n");
        for p in &report.plots {
            let _ = writeln!(md, "![{p}]({p})");
        }
    }
    if !report.notices.is_empty() {
        let _ = writeln!(md, "\n## Notices\n");
        for n in &report.notices {
            let _ = writeln!(md, "* {n}");
        }
    }
    md
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("non-finite".into(), |x| format!("{x:.digits$}"))
}

fn dedup(mut v: Vec<f64>) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    v.retain(|x| x.is_finite());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

fn dedup_us(v: Vec<usize>) -> Vec<usize> {
    let mut out = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

fn save(dir: &Path, name: &str, c: &plot::canvas::Canvas, written: &mut Vec<String>) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, c.to_png()?).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(name.to_string());
    Ok(())
}

/// Draws every plot that has data; returns the file names written into `dir`.
pub fn write_plots(dir: &Path, models: &[ModelReport]) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let multi = models.len() > 1;
    for m in models {
        let r = &m.retrieval;
        let depths = dedup(r.grid.iter().map(|c| c.depth).collect());
        let lens = dedup_us(r.grid.iter().map(|c| c.seq_len).collect());
        if !depths.is_empty() && !lens.is_empty() {
            let vals: Vec<Vec<f64>> = lens
                .iter()
                .map(|l| depths.iter().map(|d| r.grid.iter().find(|c| c.seq_len == *l && c.depth == *d).map_or(f64::NAN, |c| c.accuracy.accuracy)).collect())
                .collect();
            let c = plot::heatmap(
                &format!("NIAH accuracy, model {} ({})", m.label, m.name),
                "context length",
                "needle depth (0 = start of context, 1 = next to the query)",
                &lens.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
                &depths.iter().map(|d| format!("{d:.2}")).collect::<Vec<_>>(),
                &vals,
            );
            save(dir, &if multi { format!("niah_heatmap_{}.png", m.label) } else { "niah_heatmap.png".into() }, &c, &mut written)?;
        }
    }
    let series: Vec<Series> = models
        .iter()
        .enumerate()
        .map(|(i, m)| Series {
            name: format!("{}: {}{}", m.label, m.name, m.window.map_or(String::new(), |w| format!(" (window {w})"))),
            points: m.retrieval.distance.iter().map(|d| (d.distance as f64, d.accuracy.accuracy)).collect(),
            dashed: false,
            color: i,
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if !series.is_empty() {
        let c = plot::line_chart("Accuracy by needle-to-query distance", "distance (tokens, log scale)", "accuracy", &series, true, Some((0.0, 1.0)));
        save(dir, "accuracy_by_distance.png", &c, &mut written)?;
    }
    for (which, title) in [("beta", "write strength beta"), ("decay", "retention g")] {
        let mut ser = Vec::new();
        for m in models {
            for g in &m.mechanism.gates {
                let h = if which == "beta" { &g.beta_hist } else { &g.decay_hist };
                let total: u64 = h.iter().sum();
                if total > 0 {
                    ser.push((format!("{} layer {}", m.label, g.layer), h.iter().map(|&x| x as f64 / total as f64).collect::<Vec<f64>>()));
                }
            }
        }
        if !ser.is_empty() {
            let bins = ser[0].1.len();
            let labels: Vec<String> = (0..bins).map(|i| format!("{:.1}", i as f64 / bins as f64)).collect();
            let c = plot::bar_chart(&format!("Histogram of {title} at ordinary tokens"), "fraction", &labels, &ser, 2);
            save(dir, &format!("gate_histogram_{which}.png"), &c, &mut written)?;
        }
    }
    let heads: Vec<(usize, usize)> = dedup_pairs(models.iter().flat_map(|m| m.mechanism.heads.iter().map(|h| (h.layer, h.head))).collect());
    if !heads.is_empty() {
        let labels: Vec<String> = heads.iter().map(|(l, h)| format!("L{l}H{h}")).collect();
        let ser: Vec<(String, Vec<f64>)> = models
            .iter()
            .map(|m| {
                (
                    format!("{}: effective rank", m.label),
                    heads.iter().map(|(l, h)| m.mechanism.heads.iter().find(|x| x.layer == *l && x.head == *h).and_then(|x| x.effective_rank).unwrap_or(f64::NAN)).collect(),
                )
            })
            .collect();
        let every = (labels.len() / 16).max(1);
        let c = plot::bar_chart("Effective rank of the final state per layer and head", "effective rank", &labels, &ser, every);
        save(dir, "state_rank.png", &c, &mut written)?;
    }
    let mut cap = Vec::new();
    for (i, m) in models.iter().enumerate() {
        if !m.mechanism.capacity_random.is_empty() {
            cap.push(Series {
                name: format!("{}: random keys", m.label),
                points: m.mechanism.capacity_random.iter().map(|p| (p.writes as f64, p.mean_error)).collect(),
                dashed: false,
                color: 2 * i,
            });
        }
        if !m.mechanism.capacity_learned.is_empty() {
            cap.push(Series {
                name: format!("{}: learned keys", m.label),
                points: m.mechanism.capacity_learned.iter().map(|p| (p.writes as f64, p.mean_error)).collect(),
                dashed: true,
                color: 2 * i + 1,
            });
        }
    }
    if !cap.is_empty() {
        let c = plot::line_chart("Capacity: retrieval error vs number of delta writes", "writes (log scale)", "mean relative error", &cap, true, None);
        save(dir, "capacity_curve.png", &c, &mut written)?;
    }
    Ok(written)
}

fn dedup_pairs(v: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}
