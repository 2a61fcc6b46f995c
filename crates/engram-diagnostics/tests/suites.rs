//! The suites must separate models whose behaviour is known by construction.

use engram_diagnostics::mechanism::run_mechanism;
use engram_diagnostics::retrieval::{run_retrieval, SuiteConfig};
use engram_diagnostics::tasks::{QueryStyle, TaskTokens};
use engram_diagnostics::toy::{ConstantModel, DeltaToy, LookupModel};
use engram_diagnostics::{diagnose, report, DiagnoseOptions, Subject};

const V: i64 = 64;

fn tt() -> TaskTokens {
    // tests run in parallel on few cores: libtorch's own thread pool would oversubscribe them
    tch::set_num_threads(1);
    TaskTokens::for_vocab(V).unwrap()
}

#[test]
fn perfect_lookup_passes_every_retrieval_suite() {
    let tt = tt();
    let m = LookupModel::perfect(V).for_tasks(&tt);
    let r = run_retrieval(&m, &SuiteConfig::tiny(), &tt, None).unwrap();
    assert_eq!(r.single.accuracy, 1.0, "{:?}", r.single);
    assert_eq!(r.single.total, 40);
    assert!(r.single.ci_low > 0.9);
    assert_eq!(r.shortcut_check.accuracy, 1.0);
    assert!(r.grid.iter().all(|c| c.accuracy.accuracy == 1.0));
    assert_eq!(r.grid.len(), 2 * 3);
    assert!(r.distance.iter().all(|d| d.accuracy.accuracy == 1.0));
    assert!(r.window.is_none(), "no window, no window suite");
    for md in &r.multi_distinct {
        assert_eq!(md.overall.accuracy, 1.0);
        for (i, row) in md.confusion.iter().enumerate() {
            assert_eq!(row[i], row.iter().sum::<u64>(), "all mass on the diagonal");
        }
    }
    // repeated markers: a lookup of the most recent occurrence always returns the last needle
    for mr in &r.multi_repeated {
        assert_eq!(mr.recency_bias, Some(1.0));
        assert_eq!(mr.share.last().unwrap().accuracy, 1.0);
    }
    // without the marker there is nothing to look up: only chance hits of the fallback token
    assert!(r.no_marker.accuracy < 0.15, "{:?}", r.no_marker);
    assert!(r.ruler.iter().all(|x| x.accuracy.accuracy == 1.0 && x.haystack == "synthetic"));
    assert!(r.skipped.iter().any(|s| s.suite.starts_with("ruler")));
}

#[test]
fn perfect_lookup_with_text_haystack_and_cue_marker_queries() {
    let tt = tt();
    let m = LookupModel::perfect(V).for_tasks(&tt);
    let mut cfg = SuiteConfig::tiny();
    cfg.single_query = QueryStyle::CueMarker;
    let text: Vec<i64> = "the quick brown fox jumps over the lazy dog ".repeat(20).bytes().map(|b| b as i64 % V).collect();
    let r = run_retrieval(&m, &cfg, &tt, Some(&text)).unwrap();
    // the text repeats: the lookup may hit an earlier copy of a haystack token, but markers
    // are never in the text, so single-needle retrieval stays perfect
    assert_eq!(r.single.accuracy, 1.0);
    assert!(r.ruler.iter().all(|x| x.haystack == "text"));
    assert_eq!(r.ruler[0].accuracy.accuracy, 1.0);
}

#[test]
fn constant_model_passes_only_the_shortcut_check() {
    let tt = tt();
    let m = ConstantModel::shortcut(&tt);
    let r = run_retrieval(&m, &SuiteConfig::tiny(), &tt, None).unwrap();
    assert_eq!(r.shortcut_check.accuracy, 1.0);
    // it is right only when a random needle happens to equal its token (chance 1/55)
    assert!(r.single.accuracy < 0.15, "{:?}", r.single);
    assert!(r.single.ci_high < 0.5);
    assert!(r.multi_distinct.iter().all(|x| x.overall.accuracy < 0.2));
    let mech = run_mechanism(&m, &tt, 32, 1, 16).unwrap();
    let v = report::verdicts(&r, &mech);
    assert!(v.iter().any(|s| s.contains("ONLY the fixed-needle")), "{v:?}");
}

#[test]
fn stateless_windowed_model_scores_zero_outside_its_window() {
    let tt = tt();
    let w = 8;
    let m = LookupModel::windowed(V, w).for_tasks(&tt);
    let r = run_retrieval(&m, &SuiteConfig::tiny(), &tt, None).unwrap();
    let win = r.window.as_ref().expect("window suite runs");
    assert_eq!(win.inside.accuracy, 1.0);
    assert_eq!(win.outside.correct, 0);
    assert!(win.outside.total > 0);
    for d in &r.distance {
        let expect = if (d.distance as i64) < w { 1.0 } else { 0.0 };
        assert_eq!(d.accuracy.accuracy, expect, "distance {}", d.distance);
        assert_eq!(d.inside_window, Some((d.distance as i64) < w));
    }
    let mech = run_mechanism(&m, &tt, 32, 1, 16).unwrap();
    let v = report::verdicts(&r, &mech);
    assert!(v.iter().any(|s| s.contains("retrieves nothing beyond")), "{v:?}");
}

#[test]
fn delta_toy_retrieves_and_its_mechanism_is_visible() {
    let _g = engram_core::seed::global_rng_lock();
    engram_core::seed::manual_seed(3);
    let tt = tt();
    let m = DeltaToy::new(tt.clone(), 64, 1.0);
    let r = run_retrieval(&m, &SuiteConfig::tiny(), &tt, None).unwrap();
    assert!(r.single.accuracy > 0.9, "{:?}", r.single);
    let mech = run_mechanism(&m, &tt, 48, 1, 16).unwrap();
    assert!(mech.algebra.iter().all(|c| c.passed));
    assert_eq!(mech.heads.len(), 1);
    let h = &mech.heads[0];
    // three needles written with unit keys and beta = 1: rank close to 3, norm close to sqrt(3)
    assert!(h.finite);
    let eff = h.effective_rank.unwrap();
    assert!(eff > 2.0 && eff < 3.5, "{h:?}");
    assert!((h.numerical_rank.unwrap() - 3.0).abs() < 1e-9, "{h:?}");
    assert!(h.needle_readout_ratio.unwrap() > 3.0, "{h:?}");
    let base = mech.key_cos_baseline.unwrap();
    assert!((base - (2.0 / std::f64::consts::PI).sqrt() / 8.0).abs() < 1e-12);
    assert!(h.key_mean_abs_cos.unwrap() < 2.0 * base, "random keys are not collapsed");
    let g = &mech.gates[0];
    assert_eq!(g.layer, 1, "the GDN layer is layer 1 of the toy");
    // shift-aware: the toy writes at the value position, never at the marker itself
    assert_eq!(g.beta_needle.unwrap().mean, 1.0);
    assert_eq!(g.beta_marker.unwrap().mean, 0.0);
    assert_eq!(g.beta_ordinary.unwrap().mean, 0.0);
    assert_eq!(g.beta_hist[0], g.beta_ordinary.unwrap().n);
    assert!(!mech.capacity_learned.is_empty());
    let grads = mech.gradients.as_ref().unwrap();
    assert!(!grads.has_nan && !grads.has_inf);
    assert!(grads.params[0].grad_norm.unwrap() > 0.0);
}

#[test]
fn gradient_probe_flags_nan() {
    let _g = engram_core::seed::global_rng_lock();
    let tt = tt();
    let e = tch::Tensor::randn([V, 16], (tch::Kind::Float, tch::Device::Cpu));
    let _ = e.get(tt.marker()).get(0).fill_(f64::NAN);
    let m = DeltaToy::new(tt.clone(), 16, 1.0).with_embedding(e);
    let mech = run_mechanism(&m, &tt, 32, 1, 16).unwrap();
    assert!(mech.gradients.as_ref().unwrap().has_nan);
    // the marker key is NaN, so the state written with it is too; reported, not a crash
    assert!(mech.heads.iter().all(|h| !h.finite && h.effective_rank.is_none()));
}

#[test]
fn report_files_are_valid_json_with_the_documented_schema() {
    let tt = tt();
    let out = tempfile::tempdir().unwrap();
    let subjects = vec![
        Subject::new(Box::new(LookupModel::windowed(V, 8).for_tasks(&tt))),
        Subject::new(Box::new(ConstantModel::shortcut(&tt))),
    ];
    let rep = diagnose(subjects, &DiagnoseOptions::new(SuiteConfig::tiny(), out.path())).unwrap();
    let text = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema_version"], 1);
    for key in ["generator", "suite", "device", "created_unix", "elapsed_s", "models", "plots", "notices"] {
        assert!(v.get(key).is_some(), "missing top-level key {key}");
    }
    let m0 = &v["models"][0];
    for key in ["label", "name", "source", "step", "vocab", "window", "config", "retrieval", "mechanism", "verdicts"] {
        assert!(m0.get(key).is_some(), "missing model key {key}");
    }
    for key in ["single", "shortcut_check", "grid", "distance", "window", "multi_distinct", "multi_repeated", "no_marker", "ruler", "skipped", "tokens", "config", "chance"] {
        assert!(m0["retrieval"].get(key).is_some(), "missing retrieval key {key}");
    }
    for key in ["correct", "total", "accuracy", "ci_low", "ci_high"] {
        assert!(m0["retrieval"]["single"].get(key).is_some());
    }
    for key in ["algebra", "heads", "gates", "capacity_random", "capacity_learned", "gradients", "notes", "key_cos_baseline", "probe_seq_len"] {
        assert!(m0["mechanism"].get(key).is_some(), "missing mechanism key {key}");
    }
    // the typed schema reads it back (deny_unknown_fields on both levels)
    let back: report::Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back.models.len(), 2);
    assert_eq!((back.models[0].label.as_str(), back.models[1].label.as_str()), ("A", "B"));
    assert_eq!(back.models[0].retrieval.single, rep.models[0].retrieval.single);
    // comparison mode: per-model heatmaps and shared charts, all real PNG files
    for p in ["niah_heatmap_A.png", "niah_heatmap_B.png", "accuracy_by_distance.png", "capacity_curve.png"] {
        assert!(back.plots.iter().any(|x| x == p), "{p} not in {:?}", back.plots);
    }
    for p in &back.plots {
        let bytes = std::fs::read(out.path().join(p)).unwrap();
        assert_eq!(&bytes[..4], &[0x89, b'P', b'N', b'G'], "{p}");
    }
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("| metric | A | B |"));
    assert!(md.contains("shortcut-check"));
    let table = report::summary_table(&back.models);
    assert!(table.contains("outside window"));
}

#[test]
fn vocab_mismatch_and_tiny_vocab_are_errors() {
    let tt = tt();
    let m = LookupModel::perfect(V + 1);
    assert!(run_retrieval(&m, &SuiteConfig::tiny(), &tt, None).is_err());
    assert!(TaskTokens::for_vocab(12).is_err());
}
