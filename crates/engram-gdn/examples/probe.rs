//! Timing probe of one training step's parts (development aid).
use engram_core::ops::delta_rule::{delta_rule, DeltaRuleOptions, Semantics, Backend};
use tch::{Device, Kind, Tensor};
fn main() {
    tch::set_num_threads(1);
    let (b, t, h, k, v) = (16, 128, 4, 32, 64);
    let o = (Kind::Float, Device::Cpu);
    let kk = Tensor::randn([b, t, h, k], o).set_requires_grad(true);
    let vv = Tensor::randn([b, t, h, v], o).set_requires_grad(true);
    let g = Tensor::rand([b, t, h], o).sigmoid().set_requires_grad(true);
    let beta = Tensor::rand([b, t, h], o).sigmoid().set_requires_grad(true);
    for (name, backend, chunk) in [("chunked64", Backend::Chunked, 64)] {
        let opts = DeltaRuleOptions { semantics: Semantics::Seed, scale: Some(1.0), output_final_state: true, chunk_size: chunk, backend, ..Default::default() };
        let t0 = std::time::Instant::now();
        let (out, _) = delta_rule(&kk, &kk, &vv, &g, &beta, &opts).unwrap();
        let t1 = t0.elapsed().as_secs_f64();
        out.sum(Kind::Float).backward();
        println!("{name}: fwd {:.3}s fwd+bwd {:.3}s", t1, t0.elapsed().as_secs_f64());
        let std = DeltaRuleOptions { semantics: Semantics::Standard, scale: Some(1.0), output_final_state: true, chunk_size: chunk, backend, ..Default::default() };
        let t0 = std::time::Instant::now();
        let (out, _) = delta_rule(&kk, &kk, &vv, &g.log(), &beta, &std).unwrap();
        out.sum(Kind::Float).backward();
        println!("{name} standard: fwd+bwd {:.3}s", t0.elapsed().as_secs_f64());
    }
    for (pattern, d, chunk) in [("GSGS", 128, 32), ("GSGS", 128, 64), ("GS", 192, 64)] {
        let cfg = engram_gdn::HybridConfig { d_model: d, heads: 4, key_dim: 32, value_dim: 64, vocab: 256, pattern: pattern.into(), window: 64, chunk_size: chunk, swa_rope: true, ..engram_gdn::HybridConfig::tiny() };
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let m = engram_gdn::HybridModel::new(&vs.root(), &cfg).unwrap();
        let x = Tensor::randint(256, [b, t], (Kind::Int64, Device::Cpu));
        for _ in 0..2 {
            let c0 = cpu();
            let l = m.forward(&x).unwrap();
            let c1 = cpu();
            engram_gdn::train::lm_loss(&l, &x).backward();
            println!("{pattern} d={d} C={chunk}: model fwd cpu {:.3}s fwd+bwd cpu {:.3}s", c1 - c0, cpu() - c0);
        }
    }
}
fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
