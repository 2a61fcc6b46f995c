//! libtorch's fused AdamW through the kernel library equals the textbook AdamW update
//! (torch.optim.AdamW's arithmetic) over several steps. GPU only; skipped with a notice elsewhere.

use engram_core::ops::fused_adamw::{available, fused_adamw, AdamWStep};
use tch::{Device, Kind, Tensor};

#[test]
fn fused_adamw_matches_the_eager_update() {
    let dev = Device::Cuda(0);
    if !tch::Cuda::is_available() || !available(dev) {
        eprintln!("notice: skipped: no GPU or no kernel library with engram_fused_adamw");
        return;
    }
    let opts = (Kind::Float, dev);
    let shapes: [&[i64]; 3] = [&[7, 5], &[13], &[3, 4, 2]];
    let p: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, opts)).collect();
    let m: Vec<Tensor> = p.iter().map(Tensor::zeros_like).collect();
    let v: Vec<Tensor> = p.iter().map(Tensor::zeros_like).collect();
    let (mut pr, mut mr, mut vr): (Vec<Tensor>, Vec<Tensor>, Vec<Tensor>) =
        (p.iter().map(|t| t.copy()).collect(), m.iter().map(|t| t.copy()).collect(), v.iter().map(|t| t.copy()).collect());
    let (lr, b1, b2, wd, eps) = (1e-2, 0.9, 0.95, 0.1, 1e-8);
    for step in 1..=4u64 {
        let g: Vec<Tensor> = p.iter().map(|t| Tensor::randn(t.size(), opts)).collect();
        fused_adamw(&p, &g, &m, &v, AdamWStep { lr, beta1: b1, beta2: b2, weight_decay: wd, eps, step }).unwrap();
        let (bc1, bc2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
        for i in 0..p.len() {
            pr[i] = &pr[i] * (1.0 - lr * wd);
            mr[i] = &mr[i] * b1 + &g[i] * (1.0 - b1);
            vr[i] = &vr[i] * b2 + &g[i] * &g[i] * (1.0 - b2);
            let denom = (&vr[i] / bc2).sqrt() + eps;
            pr[i] = &pr[i] - (&mr[i] / denom) * (lr / bc1);
        }
    }
    for i in 0..p.len() {
        let err = (&p[i] - &pr[i]).abs().max().double_value(&[]);
        assert!(err < 1e-5, "param {i}: max abs diff {err}");
        let err = (&v[i] - &vr[i]).abs().max().double_value(&[]);
        assert!(err < 1e-6, "exp_avg_sq {i}: max abs diff {err}");
    }
    // Bad input is an error, not an abort.
    let cpu = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    let h = AdamWStep { lr, beta1: b1, beta2: b2, weight_decay: wd, eps, step: 1 };
    assert!(fused_adamw(&[cpu.shallow_clone()], &[cpu.shallow_clone()], &[cpu.shallow_clone()], &[cpu], h).is_err());
    assert!(fused_adamw(&p, &p[..1], &m, &v, h).is_err());
}
