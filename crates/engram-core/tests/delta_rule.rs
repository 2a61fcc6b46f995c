//! The delta rule on the CPU in f64: the chunked path against the token-by-token reference
//! (outputs, final states and every gradient), finite differences, the seed mapping against the
//! seed's own recurrence, an independent scalar loop, error cases and extreme gates.

use engram_core::ops::delta_rule::{
    chunked, delta_rule, recurrent, seed_to_standard, Backend, DeltaRuleOptions, Semantics,
};
use engram_core::seed::{global_rng_lock, manual_seed};
use proptest::prelude::*;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy)]
struct Shape {
    b: i64,
    t: i64,
    h: i64,
    k: i64,
    v: i64,
}

/// Leaf tensors of one problem; `g_log` is a log decay (standard), `g_sig` a sigmoid (seed).
struct Inputs {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g_log: Tensor,
    g_sig: Tensor,
    beta: Tensor,
    h0: Tensor,
}

fn inputs(s: Shape, kind: Kind, seed: u64, gate_scale: f64) -> Inputs {
    let _g = global_rng_lock();
    manual_seed(seed);
    let o = (kind, Device::Cpu);
    let k = Tensor::randn([s.b, s.t, s.h, s.k], o);
    let k = &k / k.square().sum_dim_intlist(&[-1i64][..], true, kind).sqrt().clamp_min(1e-6);
    let leaf = |x: Tensor| x.detach().set_requires_grad(true);
    Inputs {
        q: leaf(Tensor::randn([s.b, s.t, s.h, s.k], o)),
        k: leaf(k),
        v: leaf(Tensor::randn([s.b, s.t, s.h, s.v], o)),
        g_log: leaf((Tensor::randn([s.b, s.t, s.h], o) * gate_scale + 1.0).log_sigmoid()),
        g_sig: leaf((Tensor::randn([s.b, s.t, s.h], o) + 2.0).sigmoid()),
        beta: leaf(Tensor::rand([s.b, s.t, s.h], o)),
        h0: leaf(Tensor::randn([s.b, s.h, s.k, s.v], o) * 0.5),
    }
}

/// A scalar that touches every output element and every state element with its own weight.
fn probe(o: &Tensor, state: &Tensor, seed: u64) -> Tensor {
    let (wo, ws) = {
        let _g = global_rng_lock();
        manual_seed(seed ^ 0xABCD);
        (Tensor::randn(o.size(), (o.kind(), Device::Cpu)), Tensor::randn(state.size(), (state.kind(), Device::Cpu)))
    };
    (o * wo).sum(o.kind()) + (state * ws).sum(state.kind())
}

fn grads(loss: &Tensor, wrt: &[&Tensor]) -> Vec<Tensor> {
    Tensor::run_backward(&[loss], wrt, false, false)
}

fn max_abs(t: &Tensor) -> f64 {
    if t.numel() == 0 { 0.0 } else { t.abs().max().double_value(&[]) }
}

/// Max abs difference relative to the reference's magnitude (at least 1).
fn rel_err(a: &Tensor, reference: &Tensor) -> f64 {
    max_abs(&(a - reference)) / max_abs(reference).max(1.0)
}

fn assert_close(what: &str, a: &Tensor, reference: &Tensor, tol: f64) {
    assert_eq!(a.size(), reference.size(), "{what}: shapes differ");
    let e = rel_err(a, reference);
    assert!(e <= tol, "{what}: relative max error {e:e} > {tol:e}");
}

const F64_TOL: f64 = 1e-10;

fn check_standard(s: Shape, chunk: i64, with_h0: bool, seed: u64) {
    let x = inputs(s, Kind::Double, seed, 1.5);
    let h0 = with_h0.then_some(&x.h0);
    let scale = 0.7;
    let (o_r, s_r) = recurrent::standard(&x.q, &x.k, &x.v, &x.g_log, &x.beta, scale, h0).unwrap();
    let (o_c, s_c) = chunked::standard(&x.q, &x.k, &x.v, &x.g_log, &x.beta, scale, h0, chunk).unwrap();
    assert_close("o", &o_c, &o_r, F64_TOL);
    assert_close("final state", &s_c, &s_r, F64_TOL);
    let wrt: Vec<&Tensor> = [&x.q, &x.k, &x.v, &x.g_log, &x.beta].into_iter().chain(h0).collect();
    let g_r = grads(&probe(&o_r, &s_r, seed), &wrt);
    let g_c = grads(&probe(&o_c, &s_c, seed), &wrt);
    for (name, (a, r)) in ["dq", "dk", "dv", "dg", "dbeta", "dh0"].iter().zip(g_c.iter().zip(&g_r)) {
        assert_close(name, a, r, F64_TOL);
    }
}

fn check_seed(s: Shape, chunk: i64, with_h0: bool, seed: u64) {
    let x = inputs(s, Kind::Double, seed, 1.0);
    let h0 = with_h0.then_some(&x.h0);
    let (o_r, s_r) = recurrent::seed(&x.k, &x.v, &x.g_sig, &x.beta, h0).unwrap();
    let (o_c, s_c) = chunked::seed(&x.k, &x.v, &x.g_sig, &x.beta, h0, chunk).unwrap();
    assert_close("seed o", &o_c, &o_r, F64_TOL);
    assert_close("seed final state", &s_c, &s_r, F64_TOL);
    let wrt: Vec<&Tensor> = [&x.k, &x.v, &x.g_sig, &x.beta].into_iter().chain(h0).collect();
    let g_r = grads(&probe(&o_r, &s_r, seed), &wrt);
    let g_c = grads(&probe(&o_c, &s_c, seed), &wrt);
    for (name, (a, r)) in ["dk", "dv", "dg", "dbeta", "dh0"].iter().zip(g_c.iter().zip(&g_r)) {
        assert_close(name, a, r, F64_TOL);
    }
}

fn shapes() -> impl Strategy<Value = (Shape, i64, bool, u64)> {
    (1i64..=2, 1i64..=70, 1i64..=2, 1i64..=6, 1i64..=5, prop::sample::select(vec![1i64, 3, 8, 16, 64]), any::<bool>(), any::<u64>())
        .prop_map(|(b, t, h, k, v, c, h0, seed)| (Shape { b, t, h, k, v }, c, h0, seed))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn chunked_equals_recurrent_standard((s, chunk, h0, seed) in shapes()) {
        check_standard(s, chunk, h0, seed);
    }

    #[test]
    fn chunked_equals_recurrent_seed((s, chunk, h0, seed) in shapes()) {
        check_seed(s, chunk, h0, seed);
    }

    /// The map `q = k, log-decay = ln g, β' = β/g, v' = g·v` turns the standard rule into the
    /// seed's, gradients included (through the map), for the reference and the chunked path.
    #[test]
    fn seed_mapping_matches_seed_recurrence((s, chunk, with_h0, seed) in shapes()) {
        let x = inputs(s, Kind::Double, seed, 1.0);
        let h0 = with_h0.then_some(&x.h0);
        let (o_s, s_s) = recurrent::seed(&x.k, &x.v, &x.g_sig, &x.beta, h0).unwrap();
        let (q, k, v, lg, b) = seed_to_standard(&x.k, &x.v, &x.g_sig, &x.beta);
        let (o_m, s_m) = recurrent::standard(&q, &k, &v, &lg, &b, 1.0, h0).unwrap();
        let (o_mc, s_mc) = chunked::standard(&q, &k, &v, &lg, &b, 1.0, h0, chunk).unwrap();
        assert_close("mapped o", &o_m, &o_s, F64_TOL);
        assert_close("mapped state", &s_m, &s_s, F64_TOL);
        assert_close("mapped chunked o", &o_mc, &o_s, F64_TOL);
        assert_close("mapped chunked state", &s_mc, &s_s, F64_TOL);
        let wrt: Vec<&Tensor> = [&x.k, &x.v, &x.g_sig, &x.beta].into_iter().chain(h0).collect();
        let g_s = grads(&probe(&o_s, &s_s, seed), &wrt);
        let g_m = grads(&probe(&o_mc, &s_mc, seed), &wrt);
        for (name, (a, r)) in ["dk", "dv", "dg", "dbeta", "dh0"].iter().zip(g_m.iter().zip(&g_s)) {
            assert_close(name, a, r, 1e-9);
        }
    }
}

/// Longer sequences with the default chunk: several chunks and a ragged tail.
#[test]
fn chunked_equals_recurrent_long() {
    check_standard(Shape { b: 1, t: 200, h: 2, k: 8, v: 12 }, 64, true, 7);
    check_seed(Shape { b: 1, t: 161, h: 1, k: 16, v: 8 }, 64, true, 8);
}

/// An independent scalar implementation (plain f64 loops, no tch) of both recurrences, written
/// from the formulas: checks the references themselves, including the seed's exact order.
#[test]
fn references_match_scalar_loops() {
    let s = Shape { b: 2, t: 9, h: 2, k: 3, v: 4 };
    let x = inputs(s, Kind::Double, 11, 1.0);
    let flat = |t: &Tensor| Vec::<f64>::try_from(t.detach().flatten(0, -1)).unwrap();
    let (q, k, v, gl, gs, be, h0) = (flat(&x.q), flat(&x.k), flat(&x.v), flat(&x.g_log), flat(&x.g_sig), flat(&x.beta), flat(&x.h0));
    let (bn, tn, hn, kn, vn) = (s.b as usize, s.t as usize, s.h as usize, s.k as usize, s.v as usize);
    let mut o_std = vec![0.0; bn * tn * hn * vn];
    let mut o_seed = o_std.clone();
    let scale = 0.3;
    for b in 0..bn {
        for h in 0..hn {
            let mut st: Vec<f64> = (0..kn * vn).map(|i| h0[((b * hn + h) * kn * vn) + i]).collect();
            let mut ss = st.clone();
            for t in 0..tn {
                let bt = (b * tn + t) * hn + h;
                let kt = &k[bt * kn..(bt + 1) * kn];
                let qt = &q[bt * kn..(bt + 1) * kn];
                let vt = &v[bt * vn..(bt + 1) * vn];
                // standard: S = a(I − β k kᵀ)S + β k vᵀ
                let a = gl[bt].exp();
                let ks: Vec<f64> = (0..vn).map(|j| (0..kn).map(|i| kt[i] * st[i * vn + j]).sum()).collect();
                for i in 0..kn {
                    for j in 0..vn {
                        st[i * vn + j] = a * (st[i * vn + j] - be[bt] * kt[i] * ks[j]) + be[bt] * kt[i] * vt[j];
                    }
                }
                for j in 0..vn {
                    o_std[bt * vn + j] = scale * (0..kn).map(|i| st[i * vn + j] * qt[i]).sum::<f64>();
                }
                // seed (spec §3.2): pred = Sᵀk; S = g S + β k (v − pred)ᵀ; o = Sᵀk
                let pred: Vec<f64> = (0..vn).map(|j| (0..kn).map(|i| kt[i] * ss[i * vn + j]).sum()).collect();
                for i in 0..kn {
                    for j in 0..vn {
                        ss[i * vn + j] = gs[bt] * ss[i * vn + j] + be[bt] * kt[i] * (vt[j] - pred[j]);
                    }
                }
                for j in 0..vn {
                    o_seed[bt * vn + j] = (0..kn).map(|i| ss[i * vn + j] * kt[i]).sum::<f64>();
                }
            }
        }
    }
    let shape = [s.b, s.t, s.h, s.v];
    let (o_r, _) = recurrent::standard(&x.q, &x.k, &x.v, &x.g_log, &x.beta, scale, Some(&x.h0)).unwrap();
    assert_close("standard vs scalar", &o_r, &Tensor::from_slice(&o_std).reshape(shape), 1e-12);
    let (o_r, _) = recurrent::seed(&x.k, &x.v, &x.g_sig, &x.beta, Some(&x.h0)).unwrap();
    assert_close("seed vs scalar", &o_r, &Tensor::from_slice(&o_seed).reshape(shape), 1e-12);
}

/// Central finite differences of a scalar probe against autograd, every input element.
fn finite_difference_check(seed_semantics: bool) {
    let s = Shape { b: 1, t: 5, h: 1, k: 3, v: 2 };
    let x = inputs(s, Kind::Double, 21, 1.0);
    let (wo, ws) = {
        let _g = global_rng_lock();
        manual_seed(99);
        (Tensor::randn([1, 5, 1, 2], (Kind::Double, Device::Cpu)), Tensor::randn([1, 1, 3, 2], (Kind::Double, Device::Cpu)))
    };
    let f = |xs: &[Tensor]| -> Tensor {
        let (o, st) = if seed_semantics {
            chunked::seed(&xs[0], &xs[1], &xs[2], &xs[3], Some(&xs[4]), 2).unwrap()
        } else {
            chunked::standard(&xs[5], &xs[0], &xs[1], &xs[2], &xs[3], 0.9, Some(&xs[4]), 2).unwrap()
        };
        (o * &wo).sum(Kind::Double) + (st * &ws).sum(Kind::Double)
    };
    let g = if seed_semantics { &x.g_sig } else { &x.g_log };
    let leaves = vec![x.k.shallow_clone(), x.v.shallow_clone(), g.shallow_clone(), x.beta.shallow_clone(), x.h0.shallow_clone(), x.q.shallow_clone()];
    let n_used = if seed_semantics { 5 } else { 6 };
    let refs: Vec<&Tensor> = leaves[..n_used].iter().collect();
    let auto = grads(&f(&leaves), &refs);
    let eps = 1e-6;
    for (which, ag) in auto.iter().enumerate() {
        let base = leaves[which].detach();
        let n = base.numel() as i64;
        let flat_ag = ag.flatten(0, -1);
        for i in 0..n {
            let eval = |delta: f64| {
                let p = base.flatten(0, -1).copy();
                let _ = p.get(i).g_add_scalar_(delta);
                let mut xs: Vec<Tensor> = leaves.iter().map(|t| t.detach()).collect();
                xs[which] = p.reshape(base.size());
                tch::no_grad(|| f(&xs)).double_value(&[])
            };
            let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
            let a = flat_ag.double_value(&[i]);
            assert!((fd - a).abs() <= 1e-6 * (1.0 + a.abs()), "input {which} element {i}: autograd {a} vs finite difference {fd}");
        }
    }
}

#[test]
fn gradients_match_finite_differences_standard() {
    finite_difference_check(false);
}

#[test]
fn gradients_match_finite_differences_seed() {
    finite_difference_check(true);
}

/// The public entry point: default scale `K^-0.5`, backends agree, Seed through delta_rule.
#[test]
fn entry_point_dispatch_and_defaults() {
    let s = Shape { b: 2, t: 37, h: 3, k: 5, v: 4 };
    let x = inputs(s, Kind::Double, 3, 1.0);
    let (o_ref, s_ref) = recurrent::standard(&x.q, &x.k, &x.v, &x.g_log, &x.beta, 5f64.powf(-0.5), Some(&x.h0)).unwrap();
    for backend in [Backend::Auto, Backend::Chunked, Backend::Recurrent] {
        let opts = DeltaRuleOptions { initial_state: Some(x.h0.shallow_clone()), output_final_state: true, chunk_size: 16, backend, ..Default::default() };
        let (o, st) = delta_rule(&x.q, &x.k, &x.v, &x.g_log, &x.beta, &opts).unwrap();
        assert_close("o", &o, &o_ref, F64_TOL);
        assert_close("state", &st.unwrap(), &s_ref, F64_TOL);
    }
    let opts = DeltaRuleOptions { output_final_state: false, ..Default::default() };
    assert!(delta_rule(&x.q, &x.k, &x.v, &x.g_log, &x.beta, &opts).unwrap().1.is_none());

    let (o_ref, s_ref) = recurrent::seed(&x.k, &x.v, &x.g_sig, &x.beta, None).unwrap();
    for backend in [Backend::Auto, Backend::Recurrent] {
        let opts = DeltaRuleOptions { semantics: Semantics::Seed, output_final_state: true, backend, ..Default::default() };
        let (o, st) = delta_rule(&x.k, &x.k, &x.v, &x.g_sig, &x.beta, &opts).unwrap();
        assert_close("seed o", &o, &o_ref, F64_TOL);
        assert_close("seed state", &st.unwrap(), &s_ref, F64_TOL);
    }
    // Equal values in another tensor are accepted as q.
    let opts = DeltaRuleOptions { semantics: Semantics::Seed, scale: Some(1.0), ..Default::default() };
    assert!(delta_rule(&x.k.copy(), &x.k, &x.v, &x.g_sig, &x.beta, &opts).is_ok());
}

#[test]
fn empty_sequence_returns_the_initial_state() {
    let s = Shape { b: 1, t: 0, h: 2, k: 3, v: 4 };
    let x = inputs(s, Kind::Double, 5, 1.0);
    for backend in [Backend::Chunked, Backend::Recurrent] {
        let opts = DeltaRuleOptions { initial_state: Some(x.h0.shallow_clone()), output_final_state: true, backend, ..Default::default() };
        let (o, st) = delta_rule(&x.q, &x.k, &x.v, &x.g_log, &x.beta, &opts).unwrap();
        assert_eq!(o.size(), vec![1, 0, 2, 4]);
        assert_close("state", &st.unwrap(), &x.h0, 0.0);
    }
}

#[test]
fn bad_inputs_are_errors_not_aborts() {
    let s = Shape { b: 2, t: 6, h: 2, k: 4, v: 3 };
    let x = inputs(s, Kind::Float, 1, 1.0);
    let d = DeltaRuleOptions::default();
    let run = |q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, b: &Tensor, o: &DeltaRuleOptions| delta_rule(q, k, v, g, b, o).map(|_| ()).unwrap_err().to_string();
    let e = run(&x.q.flatten(0, 1), &x.k, &x.v, &x.g_log, &x.beta, &d);
    assert!(e.contains("q must be 4-D"), "{e}");
    let e = run(&x.q, &x.k.narrow(3, 0, 3), &x.v, &x.g_log, &x.beta, &d);
    assert!(e.contains("same shape"), "{e}");
    let e = run(&x.q, &x.k, &x.v.narrow(1, 0, 5), &x.g_log, &x.beta, &d);
    assert!(e.contains("v must be"), "{e}");
    let e = run(&x.q, &x.k, &x.v, &x.g_log.narrow(2, 0, 1), &x.beta, &d);
    assert!(e.contains("g must be"), "{e}");
    let e = run(&x.q, &x.k, &x.v, &x.g_log, &x.beta.unsqueeze(-1), &d);
    assert!(e.contains("beta must be 3-D"), "{e}");
    let e = run(&x.q.to_kind(Kind::Int64), &x.k.to_kind(Kind::Int64), &x.v, &x.g_log, &x.beta, &d);
    assert!(e.contains("float"), "{e}");
    let e = run(&x.q.to_kind(Kind::Double), &x.k.to_kind(Kind::Double), &x.v, &x.g_log, &x.beta, &d);
    assert!(e.contains("share one dtype"), "{e}");
    let bad_h0 = DeltaRuleOptions { initial_state: Some(Tensor::zeros([2, 2, 3, 4], (Kind::Float, Device::Cpu))), ..Default::default() };
    let e = run(&x.q, &x.k, &x.v, &x.g_log, &x.beta, &bad_h0);
    assert!(e.contains("initial_state must be"), "{e}");
    for c in [0, -3] {
        let e = run(&x.q, &x.k, &x.v, &x.g_log, &x.beta, &DeltaRuleOptions { chunk_size: c, ..Default::default() });
        assert!(e.contains("chunk_size"), "{e}");
    }
    let e = run(&x.q, &x.k, &x.v, &x.g_log, &x.beta, &DeltaRuleOptions { scale: Some(f64::NAN), ..Default::default() });
    assert!(e.contains("finite"), "{e}");
    let seed = |scale| DeltaRuleOptions { semantics: Semantics::Seed, scale, ..Default::default() };
    let e = run(&x.k, &x.k, &x.v, &x.g_sig, &x.beta, &seed(Some(2.0)));
    assert!(e.contains("unscaled"), "{e}");
    let e = run(&x.q, &x.k, &x.v, &x.g_sig, &x.beta, &seed(None));
    assert!(e.contains("same values"), "{e}");
    let e = run(&x.q, &x.k, &x.v, &x.g_log, &x.beta, &DeltaRuleOptions { backend: Backend::Cuda, ..Default::default() });
    assert!(e.contains("kernel"), "{e}");
    let zero_heads = Tensor::zeros([2, 6, 0, 4], (Kind::Float, Device::Cpu));
    let e = run(&zero_heads, &zero_heads, &Tensor::zeros([2, 6, 0, 3], (Kind::Float, Device::Cpu)), &Tensor::zeros([2, 6, 0], (Kind::Float, Device::Cpu)), &Tensor::zeros([2, 6, 0], (Kind::Float, Device::Cpu)), &d);
    assert!(e.contains("positive"), "{e}");
    // The low-level paths validate too.
    assert!(chunked::standard(&x.q, &x.k, &x.v.narrow(1, 0, 2), &x.g_log, &x.beta, 1.0, None, 4).is_err());
    assert!(chunked::seed(&x.k, &x.v, &x.g_sig, &x.beta, None, 0).is_err());
    assert!(recurrent::seed(&x.k, &x.v, &x.g_sig.narrow(1, 0, 2), &x.beta, None).is_err());
}

/// fla's users hit NaNs with extreme gates. Very negative log decays (down to −∞), gates of
/// exactly 0 and 1 for the seed, large β: outputs and gradients stay finite and match the
/// reference.
#[test]
fn extreme_gates_stay_finite() {
    let s = Shape { b: 1, t: 50, h: 2, k: 4, v: 3 };
    for kind in [Kind::Double, Kind::Float] {
        let x = inputs(s, kind, 17, 1.0);
        let pattern = Tensor::from_slice(&[-1e4f64, -0.01, f64::NEG_INFINITY, -80.0, 0.0]).to_kind(kind);
        let g = pattern.repeat([20]).narrow(0, 0, 50).reshape([1, 50, 1]).expand([1, 50, 2], false).contiguous().set_requires_grad(true);
        let (o_r, s_r) = recurrent::standard(&x.q, &x.k, &x.v, &g, &x.beta, 0.5, Some(&x.h0)).unwrap();
        let (o_c, s_c) = chunked::standard(&x.q, &x.k, &x.v, &g, &x.beta, 0.5, Some(&x.h0), 16).unwrap();
        let tol = if kind == Kind::Double { F64_TOL } else { 1e-5 };
        assert_close("extreme o", &o_c, &o_r, tol);
        assert_close("extreme state", &s_c, &s_r, tol);
        let gr = grads(&probe(&o_c, &s_c, 1), &[&x.q, &x.k, &x.v, &g, &x.beta, &x.h0]);
        for t in &gr {
            assert!(bool::try_from(t.isfinite().all()).unwrap(), "non-finite gradient in {kind:?}");
        }
        let gs = Tensor::from_slice(&[0.0f64, 1.0, 1e-40, 0.5]).to_kind(kind).repeat([13]).narrow(0, 0, 50).reshape([1, 50, 1]).expand([1, 50, 2], false).contiguous().set_requires_grad(true);
        let (o_r, _) = recurrent::seed(&x.k, &x.v, &gs, &x.beta, Some(&x.h0)).unwrap();
        let (o_c, s_c) = chunked::seed(&x.k, &x.v, &gs, &x.beta, Some(&x.h0), 16).unwrap();
        assert_close("seed extreme o", &o_c, &o_r, tol);
        let gr = grads(&probe(&o_c, &s_c, 2), &[&x.k, &x.v, &gs, &x.beta, &x.h0]);
        for t in &gr {
            assert!(bool::try_from(t.isfinite().all()).unwrap(), "non-finite seed gradient in {kind:?}");
        }
    }
}

/// Low-precision inputs compute in f32 and come back in their own dtype.
#[test]
fn low_precision_inputs_compute_in_f32() {
    let s = Shape { b: 1, t: 70, h: 2, k: 8, v: 8 };
    let x = inputs(s, Kind::Float, 4, 1.0);
    let (o_ref, s_ref) = recurrent::standard(&x.q, &x.k, &x.v, &x.g_log, &x.beta, 0.35, None).unwrap();
    for (kind, tol) in [(Kind::BFloat16, 3e-2), (Kind::Half, 4e-3)] {
        let c = |t: &Tensor| t.to_kind(kind);
        let opts = DeltaRuleOptions { scale: Some(0.35), output_final_state: true, ..Default::default() };
        let (o, st) = delta_rule(&c(&x.q), &c(&x.k), &c(&x.v), &x.g_log, &x.beta, &opts).unwrap();
        assert_eq!(o.kind(), kind);
        let st = st.unwrap();
        assert_eq!(st.kind(), Kind::Float);
        assert_close("low-precision o", &o.to_kind(Kind::Float), &o_ref, tol);
        assert_close("low-precision state", &st, &s_ref, tol);
    }
}

/// The map's floor keeps `β/g` finite at `g → 0`, and the error it introduces is tiny.
#[test]
fn seed_mapping_is_finite_at_tiny_gates() {
    let s = Shape { b: 1, t: 20, h: 1, k: 4, v: 3 };
    let x = inputs(s, Kind::Double, 31, 1.0);
    let g = Tensor::from_slice(&[1e-12f64, 0.0, 0.9, 0.5]).repeat([5]).reshape([1, 20, 1]);
    let (o_s, s_s) = recurrent::seed(&x.k, &x.v, &g, &x.beta, Some(&x.h0)).unwrap();
    let (q, k, v, lg, b) = seed_to_standard(&x.k, &x.v, &g, &x.beta);
    let (o_m, s_m) = chunked::standard(&q, &k, &v, &lg, &b, 1.0, Some(&x.h0), 8).unwrap();
    assert!(bool::try_from(o_m.isfinite().all()).unwrap());
    assert_close("floored map o", &o_m, &o_s, 1e-5);
    assert_close("floored map state", &s_m, &s_s, 1e-5);
}
