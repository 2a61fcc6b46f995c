//! Training-throughput benchmark of the hybrid (issue 7): full training steps (forward, fp32
//! loss, backward, clipping, AdamW) on random tokens, timed after warm-up.

use crate::config::HybridConfig;
use crate::model::{parameter_count, HybridModel};
use crate::optim::{AdamW, AdamWConfig};
use crate::train::lm_loss;
use crate::Result;
use serde::Serialize;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// One measured shape.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Batch size.
    pub batch: i64,
    /// Sequence length.
    pub seq_len: i64,
    /// Parameters of the model.
    pub parameters: i64,
    /// Mean training steps per second over the timed steps.
    pub steps_per_s: f64,
    /// Tokens per second (B·T per step).
    pub tokens_per_s: f64,
    /// Mean loss of the timed steps (sanity: finite, near ln(vocab) on random tokens).
    pub loss: f64,
    /// Peak GPU memory of this process in MiB as nvidia-smi reports it (CUDA context and the
    /// caching allocator's reserve included); None on the CPU or without nvidia-smi.
    pub process_gpu_mib: Option<f64>,
    /// Peak bytes of live tensors over the timed and warm-up steps, in MiB, from the caching
    /// allocator (`torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` once the model
    /// and optimizer exist, as `scripts/gpu/hybrid_torch.py` measures); None on the CPU or without
    /// the kernel library.
    pub max_allocated_mib: Option<f64>,
    /// Peak bytes the allocator held (live tensors and cached blocks), in MiB, measured likewise.
    pub max_reserved_mib: Option<f64>,
}

/// Times `steps` training steps after `warmup` ones at each `(B, T)`.
pub fn train_throughput(cfg: &HybridConfig, shapes: &[(i64, i64)], device: Device, bf16: bool, warmup: usize, steps: usize) -> Result<Vec<BenchRow>> {
    train_throughput_traced(cfg, shapes, device, bf16, warmup, steps, None)
}

/// As [`train_throughput`]; with `trace`, the timed steps of the first shape run under
/// libtorch's profiler ([`engram_core::profiler`]) and its Chrome trace is written there.
pub fn train_throughput_traced(
    cfg: &HybridConfig,
    shapes: &[(i64, i64)],
    device: Device,
    bf16: bool,
    warmup: usize,
    steps: usize,
    trace: Option<&std::path::Path>,
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for (si, &(b, t)) in shapes.iter().enumerate() {
        let traced = trace.filter(|_| si == 0);
        tch::manual_seed(0);
        let vs = nn::VarStore::new(device);
        let mut model = HybridModel::new(&vs.root(), cfg)?;
        model.set_compute_kind(if bf16 { Kind::BFloat16 } else { Kind::Float });
        let mut opt = AdamW::new(&vs, AdamWConfig::default());
        let params = parameter_count(&vs);
        let cuda_index = match device {
            Device::Cuda(i) => Some(i),
            _ => None,
        };
        // Some(..) only where the allocator counters can be read (CUDA and the kernel library)
        let mem_ok = cuda_index.is_some_and(|i| engram_core::cuda_memory::reset_peak(i).is_ok());
        let mut losses = Vec::new();
        let mut t0 = Instant::now();
        for i in 0..warmup + steps {
            if i == warmup {
                sync(device);
                if traced.is_some() {
                    engram_core::profiler::start(device.is_cuda())?;
                }
                t0 = Instant::now();
            }
            let tokens = Tensor::randint(cfg.vocab, [b, t + 1], (Kind::Int64, device));
            let (x, y) = (tokens.narrow(1, 0, t), tokens.narrow(1, 1, t));
            opt.zero_grad();
            let loss = lm_loss(&model.forward_in_range(&x)?, &y);
            loss.backward();
            // The norm stays a device tensor: no host sync inside the timed loop.
            let _norm = opt.clip_grad_norm(1.0)?;
            opt.step(3e-4)?;
            if i >= warmup {
                losses.push(loss.detach());
            }
        }
        sync(device);
        let secs = t0.elapsed().as_secs_f64();
        if let Some(p) = traced {
            engram_core::profiler::stop(p)?;
        }
        let loss = Tensor::stack(&losses, 0).mean(Kind::Float).double_value(&[]);
        let mem = cuda_index.filter(|_| mem_ok).and_then(|i| engram_core::cuda_memory::stats(i).ok());
        let mib = |x: i64| x as f64 / (1u64 << 20) as f64;
        rows.push(BenchRow {
            batch: b,
            seq_len: t,
            parameters: params,
            steps_per_s: steps as f64 / secs,
            tokens_per_s: (steps as i64 * b * t) as f64 / secs,
            loss,
            process_gpu_mib: if device.is_cuda() { process_gpu_mib() } else { None },
            max_allocated_mib: mem.map(|m| mib(m.allocated_peak)),
            max_reserved_mib: mem.map(|m| mib(m.reserved_peak)),
        });
    }
    Ok(rows)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// This process' GPU memory from `nvidia-smi --query-compute-apps` (MiB).
pub fn process_gpu_mib() -> Option<f64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let me = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut it = l.split(',').map(str::trim);
        (it.next()? == me).then(|| it.next()?.parse().ok()).flatten()
    })
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| B | T | params | steps/s | tokens/s | loss | max allocated MiB | max reserved MiB | process GPU MiB |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mib = |m: Option<f64>| m.map_or("-".into(), |m| format!("{m:.0}"));
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.3} | {} | {} | {} |\n",
            r.batch,
            r.seq_len,
            r.parameters,
            r.steps_per_s,
            r.tokens_per_s,
            r.loss,
            mib(r.max_allocated_mib),
            mib(r.max_reserved_mib),
            mib(r.process_gpu_mib)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn tiny_bench_runs_on_cpu() {
        let rows = train_throughput(&HybridConfig::tiny(), &[(2, 16)], Device::Cpu, false, 1, 2).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].tokens_per_s > 0.0 && rows[0].loss.is_finite());
        assert!((rows[0].loss - (64f64).ln()).abs() < 1.0, "random tokens: loss near ln(vocab), got {}", rows[0].loss);
        assert!(markdown(&rows).contains("| 2 | 16 |"));
    }
}
