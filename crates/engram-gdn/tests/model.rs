//! Model tests: parameter count, causality, decoding equals the full forward, traces, errors.

use engram_gdn::{parameter_count, GdnFlavour, HybridConfig, HybridModel, LayerTrace};
use tch::{nn, Device, Kind, Tensor};

fn build(cfg: &HybridConfig, seed: i64) -> (nn::VarStore, HybridModel) {
    let _g = engram_core::seed::global_rng_lock();
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = HybridModel::new(&vs.root(), cfg).unwrap();
    (vs, m)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn seed_gs_has_exactly_the_seed_parameter_count() {
    let (vs, _m) = build(&HybridConfig::seed_gs(), 0);
    assert_eq!(parameter_count(&vs), 33_217_560);
    // Untied adds the LM head; key_conv_width=4 at vocab 256 gives the seed's last-cell 8,403,480.
    let mut c = HybridConfig::seed_gs();
    c.vocab = 256;
    c.key_conv_width = 4;
    let (vs, _m) = build(&c, 0);
    assert_eq!(parameter_count(&vs), 8_403_480);
}

fn variants() -> Vec<HybridConfig> {
    let mut out = Vec::new();
    for pattern in ["GS", "GSGS", "SG", "GG", "S", "G", "GGS"] {
        for flavour in [GdnFlavour::Seed, GdnFlavour::Standard] {
            for shifted in [true, false] {
                let mut c = HybridConfig::tiny();
                c.pattern = pattern.into();
                c.flavour = flavour;
                c.shifted_value = shifted;
                c.swa_rope = true;
                if flavour == GdnFlavour::Seed && pattern == "GSGS" {
                    c.key_conv_width = 3;
                    c.rope_on_keys = true;
                }
                out.push(c);
            }
        }
    }
    out
}

#[test]
fn changing_a_later_token_never_changes_earlier_logits() {
    let t = 20;
    for cfg in variants() {
        let (_vs, m) = build(&cfg, 1);
        let x = Tensor::randint(cfg.vocab, [2, t], (Kind::Int64, Device::Cpu));
        let base = m.forward(&x).unwrap();
        for pos in [3i64, 11, 19] {
            let y = x.copy();
            let _ = y.narrow(1, pos, 1).fill_((pos * 7 + 5) % cfg.vocab);
            let _ = y.narrow(1, pos, 1).copy_(&((x.narrow(1, pos, 1) + 1).remainder(cfg.vocab)));
            let out = m.forward(&y).unwrap();
            let d_before = max_diff(&base.narrow(1, 0, pos), &out.narrow(1, 0, pos));
            assert!(d_before == 0.0, "{} {:?} shifted={}: token {pos} changed earlier logits by {d_before}", cfg.pattern, cfg.flavour, cfg.shifted_value);
            let d_at = max_diff(&base.narrow(1, pos, 1), &out.narrow(1, pos, 1));
            assert!(d_at > 0.0, "the changed token must affect its own position");
        }
    }
}

#[test]
fn seed_compat_reproduces_the_future_leak() {
    // The seed's final-state read lets position t see later tokens (spec §2.9); the default does not.
    let mut cfg = HybridConfig::tiny();
    cfg.seed_compat = true;
    let (_vs, m) = build(&cfg, 2);
    let x = Tensor::randint(cfg.vocab, [1, 16], (Kind::Int64, Device::Cpu));
    let y = x.copy();
    let _ = y.narrow(1, 15, 1).copy_(&((x.narrow(1, 15, 1) + 1).remainder(cfg.vocab)));
    let d = max_diff(&m.forward(&x).unwrap().narrow(1, 0, 15), &m.forward(&y).unwrap().narrow(1, 0, 15));
    assert!(d > 0.0, "seed_compat should leak the last token into earlier positions");
}

#[test]
fn decoding_step_by_step_equals_the_full_forward() {
    for cfg in variants().into_iter().filter(|c| ["GSGS", "SG", "GGS"].contains(&c.pattern.as_str())) {
        let (_vs, m) = build(&cfg, 3);
        let t = 14; // > window (8) so the KV window rolls
        let x = Tensor::randint(cfg.vocab, [2, t], (Kind::Int64, Device::Cpu));
        let full = m.forward(&x).unwrap();
        let mut st = m.decode_state();
        let prefill = m.forward_step(&x.narrow(1, 0, 5), &mut st).unwrap();
        let mut parts = vec![prefill];
        for i in 5..t {
            parts.push(m.forward_step(&x.narrow(1, i, 1), &mut st).unwrap());
        }
        assert_eq!(st.position(), t);
        let stepped = Tensor::cat(&parts, 1);
        let d = max_diff(&full, &stepped);
        assert!(d < 1e-4, "{} {:?} shifted={}: decode differs by {d}", cfg.pattern, cfg.flavour, cfg.shifted_value);
    }
}

#[test]
fn trace_reports_every_layer() {
    let mut cfg = HybridConfig::tiny();
    cfg.pattern = "GSGS".into();
    let (_vs, m) = build(&cfg, 4);
    let x = Tensor::randint(cfg.vocab, [2, 10], (Kind::Int64, Device::Cpu));
    let (logits, trace) = m.forward_with_trace(&x).unwrap();
    assert!(max_diff(&logits, &m.forward(&x).unwrap()) < 1e-5);
    assert_eq!(trace.layers.len(), 4);
    match &trace.layers[0] {
        LayerTrace::Gdn { keys, queries, beta, decay, final_state } => {
            assert_eq!(keys.size(), vec![2, 10, 2, 8]);
            assert!(queries.is_none());
            assert_eq!(beta.size(), vec![2, 10, 2]);
            // Shifted values: step 0 is an identity write.
            assert_eq!(beta.narrow(1, 0, 1).abs().max().double_value(&[]), 0.0);
            assert_eq!(decay.narrow(1, 0, 1).min().double_value(&[]), 1.0);
            let d = decay.narrow(1, 1, 9);
            assert!(d.min().double_value(&[]) > 0.0 && d.max().double_value(&[]) <= 1.0);
            assert_eq!(final_state.size(), vec![2, 2, 8, 16]);
        }
        other => panic!("expected a G trace, got {other:?}"),
    }
    match &trace.layers[1] {
        LayerTrace::Swa { attn_entropy: Some(e) } => {
            assert_eq!(e.size(), vec![2, 2, 10]);
            // Position 0 attends to one key only.
            assert!(e.select(2, 0).abs().max().double_value(&[]) < 1e-5);
            assert!(e.max().double_value(&[]) <= (9f64).ln() + 1e-4);
        }
        other => panic!("expected an S trace with entropy, got {other:?}"),
    }
}

#[test]
fn bad_inputs_are_errors_not_aborts() {
    let (_vs, m) = build(&HybridConfig::tiny(), 5);
    let e = m.forward(&Tensor::from_slice(&[1i64, 2, 3])).unwrap_err().to_string();
    assert!(e.contains("[batch, time]"), "{e}");
    let e = m.forward(&Tensor::from_slice(&[1i64, 64]).view([1, 2])).unwrap_err().to_string();
    assert!(e.contains("[0, 64)"), "{e}");
    let e = m.forward(&Tensor::ones([1, 2], (Kind::Float, Device::Cpu))).unwrap_err().to_string();
    assert!(e.contains("int64"), "{e}");
    let mut bad = HybridConfig::tiny();
    bad.pattern = "GQ".into();
    let vs = nn::VarStore::new(Device::Cpu);
    assert!(HybridModel::new(&vs.root(), &bad).is_err());
}

#[test]
fn bf16_activations_track_fp32() {
    let (_vs, mut m) = build(&HybridConfig::tiny(), 6);
    let x = Tensor::randint(64, [2, 12], (Kind::Int64, Device::Cpu));
    let a = m.forward(&x).unwrap();
    m.set_compute_kind(Kind::BFloat16);
    let b = m.forward(&x).unwrap();
    assert_eq!(b.kind(), Kind::BFloat16);
    let d = max_diff(&a, &b.to_kind(Kind::Float));
    assert!(d < 0.05, "bf16 drift {d}");
}

/// The seed's G layer written out from spec §2.3/§2.4 (run T-1 steps on (k_t, v_{t+1}), read
/// after write with k_t, zero output at position 0), token by token, from the stored weights.
#[test]
fn seed_g_layer_matches_the_spec_formulation() {
    let mut cfg = HybridConfig::tiny();
    cfg.pattern = "G".into();
    let (vs, m) = build(&cfg, 7);
    let w: std::collections::HashMap<String, Tensor> = vs.variables().into_iter().collect();
    let p = |n: &str| w[n].shallow_clone();
    let rms = |x: &Tensor, wt: &Tensor| x / (x.square().mean_dim(-1, true, Kind::Float) + 1e-6).sqrt() * wt;
    let (b, t, h, kd, vd) = (2i64, 9i64, cfg.heads, cfg.key_dim, cfg.value_dim);
    let tokens = Tensor::randint(cfg.vocab, [b, t], (Kind::Int64, Device::Cpu));
    let x = Tensor::embedding(&p("embed.weight"), &tokens, -1, false, false);
    let xn = rms(&x, &p("layers.0.mixer.norm.weight"));
    let k = xn.matmul(&p("layers.0.mixer.k_proj.weight").tr()).view([b, t, h, kd]);
    let k = &k / k.square().sum_dim_intlist(-1, true, Kind::Float).sqrt();
    let v = xn.matmul(&p("layers.0.mixer.v_proj.weight").tr()).view([b, t, h, vd]);
    let beta = (xn.matmul(&p("layers.0.mixer.beta_proj.weight").tr()) + p("layers.0.mixer.beta_proj.bias")).sigmoid();
    let g = (xn.matmul(&p("layers.0.mixer.g_proj.weight").tr()) + p("layers.0.mixer.g_proj.bias")).sigmoid();
    let mut s = Tensor::zeros([b, h, kd, vd], (Kind::Float, Device::Cpu));
    let mut outs = vec![Tensor::zeros([b, h, vd], (Kind::Float, Device::Cpu))];
    for i in 0..t - 1 {
        let kt = k.select(1, i);
        let vt = v.select(1, i + 1);
        let pred = (&s * kt.unsqueeze(-1)).sum_dim_intlist(-2, false, Kind::Float);
        let err = (vt - pred) * beta.select(1, i).unsqueeze(-1);
        s = &s * g.select(1, i).unsqueeze(-1).unsqueeze(-1) + kt.unsqueeze(-1) * err.unsqueeze(-2);
        outs.push((&s * kt.unsqueeze(-1)).sum_dim_intlist(-2, false, Kind::Float));
    }
    let o = Tensor::stack(&outs, 1).reshape([b, t, h * vd]);
    let x1 = &x + o.matmul(&p("layers.0.mixer.o_proj.weight").tr());
    let hdn = rms(&x1, &p("layers.0.ffn.norm.weight"));
    let ff = (hdn.matmul(&p("layers.0.ffn.w1.weight").tr()).silu() * hdn.matmul(&p("layers.0.ffn.w3.weight").tr()))
        .matmul(&p("layers.0.ffn.w2.weight").tr());
    let x2 = rms(&(x1 + ff), &p("norm_f.weight"));
    let want = x2.matmul(&p("embed.weight").tr());
    let got = m.forward(&tokens).unwrap();
    let d = max_diff(&want, &got);
    assert!(d < 1e-4, "seed G layer differs from the spec formulation by {d}");
}
