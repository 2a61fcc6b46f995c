//! Seed 001's closed form and exact solutions, and seed 000's 2-D symmetry identity.

use engram_core::seed::global_rng_lock;
use engram_moe::experiments::{raw_attention as ra, self_attention as sa};
use tch::{nn, Device, Kind, Tensor};

fn set(t: &Tensor, vals: &[f64]) {
    tch::no_grad(|| {
        let src = Tensor::from_slice(vals).to_kind(Kind::Float).view(t.size().as_slice());
        t.shallow_clone().copy_(&src);
    });
}

#[test]
fn model_equals_the_closed_form_for_random_parameters() {
    let _g = global_rng_lock();
    engram_core::seed::manual_seed(7);
    for _ in 0..20 {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ra::RawAttentionNet::new(&vs.root());
        let x = Tensor::randn([16, 2], (Kind::Float, Device::Cpu));
        let y = tch::no_grad(|| net.forward(&x));
        let inv = net.invariants();
        for i in 0..16 {
            let (x1, x2) = (x.double_value(&[i, 0]), x.double_value(&[i, 1]));
            let want = inv.eval(x1, x2);
            assert!((y.double_value(&[i, 0]) - want).abs() < 1e-4 * (1.0 + want.abs()), "{want}");
        }
    }
}

fn net_with(wq: f64, wk: f64, wv: f64, w1: f64, w2: f64, b: f64) -> (nn::VarStore, ra::RawAttentionNet) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ra::RawAttentionNet::new(&vs.root());
    set(&net.wq.weight, &[wq]);
    set(&net.wk.weight, &[wk]);
    set(&net.wv.weight, &[wv]);
    set(&net.attn_out.weight, &[w1, w2]);
    set(net.attn_out.bias.as_ref().unwrap(), &[b]);
    (vs, net)
}

fn outputs(net: &ra::RawAttentionNet) -> Vec<f64> {
    let y = tch::no_grad(|| net.forward(&ra::inputs())).reshape([-1]);
    (0..4).map(|i| y.double_value(&[i])).collect()
}

#[test]
fn exact_solutions_give_exact_gates() {
    // XOR: C = -1/2 (e.g. 1·1·(-1/2)), w = 2, b = 0.
    let (_vs, xor) = net_with(1.0, 1.0, -0.5, 2.0, 2.0, 0.0);
    for (g, w) in outputs(&xor).iter().zip([0., 1., 1., 0.]) {
        assert!((g - w).abs() < 1e-6);
    }
    // NAND: C = -1, any w1 + w2 = 1, b = 1.
    for w1 in [0.0, 0.3, 0.5, 1.7] {
        let (_vs, nand) = net_with(1.0, -1.0, 1.0, w1, 1.0 - w1, 1.0);
        for (g, w) in outputs(&nand).iter().zip([1., 1., 1., 0.]) {
            assert!((g - w).abs() < 1e-6, "w1 = {w1}");
        }
    }
}

#[test]
fn the_seeds_reported_parameters_give_the_reported_outputs() {
    let (_vs, xor) = net_with(-1.0343, -0.7918, -0.6119, 1.9998, 1.9997, -0.0005);
    for (g, w) in outputs(&xor).iter().zip([-0.0005, 0.9971, 0.9972, -0.0095]) {
        assert!((g - w).abs() < 1e-4, "{g} vs {w}");
    }
    let (_vs, nand) = net_with(0.6367, 1.1251, -1.3959, 0.4634, 0.5366, 1.0);
    for (g, w) in outputs(&nand).iter().zip([1.0, 1.0, 1.0, 0.0001]) {
        assert!((g - w).abs() < 1e-4, "{g} vs {w}");
    }
}

#[test]
fn trained_xor_and_nand_reach_the_closed_form_solutions() {
    let _g = global_rng_lock();
    let xor = ra::train(ra::Gate::Xor, ra::Optimizer::AdamW { lr: 5e-2, weight_decay: 0.01 }, 2000, 0);
    let i = xor.invariants;
    assert!((i.c + 0.5).abs() < 0.01 && (i.w1 - 2.0).abs() < 0.02 && (i.w2 - 2.0).abs() < 0.02 && i.b.abs() < 0.01, "{i:?}");
    let nand = ra::train(ra::Gate::Nand, ra::Optimizer::AdamW { lr: 5e-2, weight_decay: 0.01 }, 2000, 0);
    let i = nand.invariants;
    assert!((i.c + 1.0).abs() < 0.01 && (i.w1 + i.w2 - 1.0).abs() < 0.01 && (i.b - 1.0).abs() < 0.01, "{i:?}");
}

#[test]
fn two_d_bank_attentions_always_sum_to_one() {
    let _g = global_rng_lock();
    engram_core::seed::manual_seed(3);
    let mut far_from_half = 0;
    for _ in 0..1000 {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let att = sa::SelfAttention::new(&vs.root(), 2, 2);
        // In float64 the identity holds to rounding (1e-12); float32 would only give ~1e-6.
        vs.double();
        // Scale the parameters up so that the attentions are far from 1/2.
        tch::no_grad(|| {
            for p in att.parameters() {
                let r = Tensor::randn(p.size().as_slice(), (Kind::Double, Device::Cpu)) * 3.0;
                p.shallow_clone().copy_(&r);
            }
        });
        let (a, b) = sa::bank_attention_2d(&att);
        assert!((a + b - 1.0).abs() < 1e-12, "{a} + {b}");
        far_from_half += usize::from((a - 0.5).abs() > 0.1);
    }
    assert!(far_from_half > 300, "the draws must probe attentions far from 1/2: {far_from_half}");
    // And after training, which the seed reported as 49.9 % / 50.1 %.
    let r = sa::train_bank(2, false, 500, 0);
    assert!(r.losses[499] < 1e-3, "loss {}", r.losses[499]);
    assert!((r.att_river + r.att_money - 1.0).abs() < 1e-6);
    assert!(!(r.att_river > 0.5 && r.att_money > 0.5));
}

#[test]
fn polyak_step_halves_a_quadratic() {
    // U17: on f = ½‖θ‖² the step is θ − (½‖θ‖²/‖θ‖²)·θ = θ/2.
    let theta = Tensor::from_slice(&[3.0f32, -4.0, 0.5]).set_requires_grad(true);
    let mut params = vec![theta.shallow_clone()];
    let mut prev = f64::INFINITY;
    for _ in 0..5 {
        engram_moe::optim::zero_grad(&params);
        let before: Vec<f32> = Vec::try_from(theta.detach()).unwrap();
        let f = theta.square().sum(Kind::Float) * 0.5;
        let fv = f.double_value(&[]);
        assert!(fv < prev);
        prev = fv;
        f.backward();
        assert!(engram_moe::optim::polyak_step(&mut params, &f));
        let after: Vec<f32> = Vec::try_from(theta.detach()).unwrap();
        for (a, b) in after.iter().zip(&before) {
            assert!((a - b / 2.0).abs() < 1e-6);
        }
    }
}
