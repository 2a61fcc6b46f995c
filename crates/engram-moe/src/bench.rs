//! Forward+backward throughput of MoE layers (top-1, top-2, expert choice) against dense FFNs
//! with the same active parameters per token.

use crate::error::Result;
use crate::ffn::{Activation, DenseFfn, MoeFfn, MoeFfnConfig};
use crate::routing::{Capacity, RouterKind};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Benchmark sizes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchConfig {
    /// Sequences per batch (one routing group each).
    pub batch: i64,
    /// Tokens per sequence.
    pub seq_len: i64,
    /// Model width.
    pub d_model: i64,
    /// Hidden width of one expert.
    pub d_ff: i64,
    /// Expert counts to sweep.
    pub experts: Vec<i64>,
    /// Token-choice capacity factor.
    pub capacity_factor: f64,
    /// Expert-choice capacity factor `c` (each expert takes `n·c/E` tokens; `c` experts/token on average).
    pub expert_choice_factor: f64,
    /// Untimed iterations.
    pub warmup: usize,
    /// Timed iterations.
    pub iters: usize,
}

/// One measured configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    /// "top-1", "top-2", "expert-choice" or "dense".
    pub layer: String,
    /// Experts (0 for dense).
    pub experts: i64,
    /// Hidden width of the dense layer / of one expert.
    pub d_ff: i64,
    /// Active FFN parameters per token (expert weights used per token on average, plus router).
    pub active_params_per_token: f64,
    /// Median milliseconds per forward+backward.
    pub median_ms: f64,
    /// Tokens per second at the median.
    pub tokens_per_s: f64,
    /// Token-choice drop rate / fraction of tokens no expert took (last iteration).
    pub drop_rate: f64,
    /// Fraction of tokens processed by no expert.
    pub unrouted_fraction: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn time_it(device: Device, warmup: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    sync(device);
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = std::time::Instant::now();
        f();
        sync(device);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[ms.len() / 2]
}

/// Runs every configuration once on `device` and returns the rows (dense baselines first).
pub fn run(cfg: &BenchConfig, device: Device) -> Result<Vec<BenchRow>> {
    let (b, t, d, h) = (cfg.batch, cfg.seq_len, cfg.d_model, cfg.d_ff);
    let tokens = (b * t) as f64;
    let x = Tensor::randn([b, t, d], (Kind::Float, device)).set_requires_grad(true);
    let per_expert = (2 * d * h + h + d) as f64;
    let mut rows = Vec::new();
    let dense_widths: Vec<(i64, f64)> = vec![(h, 1.0), ((h as f64 * cfg.expert_choice_factor.max(2.0)) as i64, 2.0)];
    for (width, _) in dense_widths {
        let vs = nn::VarStore::new(device);
        let ffn = DenseFfn::new(vs.root(), d, width, Activation::Gelu);
        let ms = time_it(device, cfg.warmup, cfg.iters, || {
            let y = ffn.forward(&x);
            y.square().mean(Kind::Float).backward();
        });
        rows.push(BenchRow {
            layer: "dense".into(),
            experts: 0,
            d_ff: width,
            active_params_per_token: (2 * d * width + width + d) as f64,
            median_ms: ms,
            tokens_per_s: tokens / (ms / 1e3),
            drop_rate: 0.0,
            unrouted_fraction: 0.0,
        });
    }
    for &e in &cfg.experts {
        let routers = [
            ("top-1", RouterKind::TokenChoice { k: 1, capacity: Capacity::Factor(cfg.capacity_factor) }, 1.0),
            ("top-2", RouterKind::TokenChoice { k: 2, capacity: Capacity::Factor(cfg.capacity_factor) }, 2.0),
            (
                "expert-choice",
                RouterKind::ExpertChoice { capacity: Capacity::Factor(cfg.expert_choice_factor) },
                cfg.expert_choice_factor,
            ),
        ];
        for (name, router, active) in routers {
            let vs = nn::VarStore::new(device);
            let moe = MoeFfn::new(vs.root(), MoeFfnConfig { d_model: d, d_ff: h, experts: e, router, activation: Activation::Gelu })?;
            let mut last = None;
            let mut err = None;
            let ms = time_it(device, cfg.warmup, cfg.iters, || match moe.forward_grouped(&x) {
                Ok((y, r)) => {
                    y.square().mean(Kind::Float).backward();
                    last = Some(r);
                }
                Err(e) => err = Some(e),
            });
            if let Some(e) = err {
                return Err(e);
            }
            let stats = last.map(|r| r.stats());
            rows.push(BenchRow {
                layer: name.into(),
                experts: e,
                d_ff: h,
                active_params_per_token: active * per_expert + (d * e) as f64,
                median_ms: ms,
                tokens_per_s: tokens / (ms / 1e3),
                drop_rate: stats.as_ref().map_or(0.0, |s| s.drop_rate),
                unrouted_fraction: stats.as_ref().map_or(0.0, |s| s.unrouted_fraction),
            });
        }
    }
    Ok(rows)
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| layer | E | d_ff | active params/token | median ms (fwd+bwd) | tokens/s | drop rate | unrouted |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.0} | {:.3} | {:.3} |\n",
            r.layer, r.experts, r.d_ff, r.active_params_per_token, r.median_ms, r.tokens_per_s, r.drop_rate, r.unrouted_fraction
        ));
    }
    s
}
