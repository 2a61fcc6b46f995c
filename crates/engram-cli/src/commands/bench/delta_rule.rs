//! `engram bench delta-rule`: times the delta-rule backends, forward and forward+backward.
//!
//! On CUDA (bf16 inputs by default) it compares the kernel with the chunked tch path at the
//! shapes of issue 11; on the CPU (f32) the chunked path with the token-by-token reference at
//! T = 2048. Inputs follow anchors.md: `k` L2-normalised, `g = logsigmoid(U(0,1))` (the seed:
//! `g = sigmoid(U(0,1) + 1)`), `β = sigmoid(U(0,1))`, scale `K^-0.5`. Each figure is the median
//! of `--iters` runs after `--warmup` runs; every run is bracketed by device synchronisations
//! (`tch::Cuda::synchronize`), so it is wall time of the whole call on an idle stream.
//!
//! * forward: one `delta_rule` call on inputs that require gradients (the training forward:
//!   the autograd graph is built, nothing is run backward);
//! * forward+backward: the forward, then the gradients of `sum(o · dO)` for a fixed random `dO`.
//!
//! Derived figures (also in the JSON):
//! * FLOPs: the anchors.md model `6·D² + 10·C·D + (2/3)·C²` per token and head for K = V = D,
//!   generalised to `6·K·V + 5·C·(K+V) + (2/3)·C²` (C = min(chunk, T)); forward+backward counts
//!   3× the forward (the usual convention: the backward does about twice the forward's matmuls).
//! * bytes: compulsory traffic only: forward reads q, k, v, g, β and writes o (`2K + 2V + 2`
//!   elements per token and head); the backward re-reads q, k, v, g, β, reads dO and writes dq,
//!   dk, dv, dg, dβ (`4K + 3V + 4`). States and intermediates are not counted, so GB/s is a
//!   lower bound on the traffic the implementation really moves.

use anyhow::{bail, Context, Result};
use clap::Parser;
use engram_core::ops::delta_rule::{delta_rule, Backend, DeltaRuleOptions, Semantics};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Parser, Debug)]
#[command(name = "engram bench delta-rule", about = "Time the delta-rule backends (forward, forward+backward).")]
struct Opts {
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Shapes `B,T,H,K[,V][,seed]` separated by `;` (default: issue 11's on CUDA, T=2048 on CPU).
    #[arg(long, value_delimiter = ';')]
    shapes: Vec<String>,
    /// Backends among kernel, chunked, recurrent, comma-separated (default: kernel,chunked on
    /// CUDA; chunked,recurrent on CPU).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// Input dtype (default bf16 on CUDA, f32 on CPU).
    #[arg(long)]
    dtype: Option<String>,
    /// Chunk length.
    #[arg(long, default_value_t = 64)]
    chunk: i64,
    /// Timed runs per figure (default 20 on CUDA, 3 on CPU).
    #[arg(long)]
    iters: Option<usize>,
    /// Untimed runs before timing (default 2 on CUDA, 1 on CPU).
    #[arg(long)]
    warmup: Option<usize>,
    /// libtorch CPU threads (default: libtorch's choice). On a shared machine use 1: an
    /// oversubscribed thread pool spins and makes multi-threaded ops orders of magnitude slower.
    #[arg(long)]
    threads: Option<i32>,
    /// Skip forward+backward.
    #[arg(long)]
    forward_only: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One benchmark shape.
#[derive(Debug, Clone, Copy, Serialize)]
struct Shape {
    b: i64,
    t: i64,
    h: i64,
    k: i64,
    v: i64,
    seed: bool,
}

impl std::str::FromStr for Shape {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        let seed = parts.last().is_some_and(|p| p.eq_ignore_ascii_case("seed"));
        let nums: Vec<i64> = parts[..parts.len() - seed as usize]
            .iter()
            .map(|p| p.parse::<i64>().with_context(|| format!("shape '{s}': '{p}' is not an integer")))
            .collect::<Result<_>>()?;
        let (b, t, h, k, v) = match nums[..] {
            [b, t, h, k] => (b, t, h, k, k),
            [b, t, h, k, v] => (b, t, h, k, v),
            _ => bail!("shape '{s}': expected B,T,H,K[,V][,seed]"),
        };
        if [b, t, h, k, v].iter().any(|&x| x <= 0) {
            bail!("shape '{s}': every size must be positive");
        }
        Ok(Shape { b, t, h, k, v, seed })
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{},{},{}{}", self.b, self.t, self.h, self.k, self.v, if self.seed { ",seed" } else { "" })
    }
}

fn cuda_default_shapes() -> Vec<Shape> {
    ["8,2048,16,128", "4,4096,16,128", "2,8192,16,128", "1,16384,16,128", "8,2048,32,64", "4,2048,8,64,128,seed"]
        .iter()
        .map(|s| s.parse().expect("built-in shape"))
        .collect()
}

fn cpu_default_shapes() -> Vec<Shape> {
    ["1,2048,4,64", "1,2048,2,128", "1,2048,4,64,128,seed"].iter().map(|s| s.parse().expect("built-in shape")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Kernel,
    Chunked,
    Recurrent,
}

impl Which {
    fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kernel" | "cuda" => Ok(Which::Kernel),
            "chunked" => Ok(Which::Chunked),
            "recurrent" | "reference" => Ok(Which::Recurrent),
            other => bail!("unknown backend '{other}': expected kernel, chunked or recurrent"),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Which::Kernel => "kernel",
            Which::Chunked => "chunked",
            Which::Recurrent => "recurrent",
        }
    }
    fn backend(self) -> Backend {
        match self {
            Which::Kernel => Backend::Cuda,
            Which::Chunked => Backend::Chunked,
            Which::Recurrent => Backend::Recurrent,
        }
    }
}

/// One measured row (JSON record).
#[derive(Debug, Serialize)]
struct Record {
    shape: Shape,
    semantics: &'static str,
    backend: &'static str,
    dtype: &'static str,
    device: String,
    chunk: i64,
    iters: usize,
    fwd_ms: f64,
    fwd_tokens_per_s: f64,
    fwd_tflops: f64,
    fwd_gbps: f64,
    fwdbwd_ms: Option<f64>,
    fwdbwd_tokens_per_s: Option<f64>,
    fwdbwd_tflops: Option<f64>,
    fwdbwd_gbps: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    date_utc: String,
    machine: String,
    runtime: engram_core::info::RuntimeInfo,
    flop_model: &'static str,
    byte_model: &'static str,
    timing: &'static str,
    results: Vec<Record>,
    skipped: Vec<String>,
}

struct Problem {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    d_o: Tensor,
}

fn make_problem(s: Shape, kind: Kind, dev: Device) -> Problem {
    let o = (Kind::Float, dev);
    let k = Tensor::randn([s.b, s.t, s.h, s.k], o);
    let k = &k / k.square().sum_dim_intlist(&[-1i64][..], true, Kind::Float).sqrt().clamp_min(1e-6);
    let u = Tensor::rand([s.b, s.t, s.h], o);
    let g = if s.seed { (u + 1.0).sigmoid() } else { u.log_sigmoid() };
    let leaf = |x: Tensor| x.to_kind(kind).detach().set_requires_grad(true);
    let k = leaf(k);
    Problem {
        q: if s.seed { k.shallow_clone() } else { leaf(Tensor::randn([s.b, s.t, s.h, s.k], o)) },
        k,
        v: leaf(Tensor::randn([s.b, s.t, s.h, s.v], o)),
        g: leaf(g),
        beta: leaf(Tensor::rand([s.b, s.t, s.h], o).sigmoid()),
        d_o: Tensor::randn([s.b, s.t, s.h, s.v], o).to_kind(kind),
    }
}

fn sync(dev: Device) {
    if let Device::Cuda(i) = dev {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Median wall time in ms of `f`, each run bracketed by synchronisations.
fn median_ms(dev: Device, warmup: usize, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    sync(dev);
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        sync(dev);
        let t0 = Instant::now();
        f()?;
        sync(dev);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let n = times.len();
    Ok(if n % 2 == 1 { times[n / 2] } else { 0.5 * (times[n / 2 - 1] + times[n / 2]) })
}

fn fwd_flops(s: Shape, chunk: i64) -> f64 {
    let c = chunk.min(s.t) as f64;
    let (k, v) = (s.k as f64, s.v as f64);
    (s.b * s.t * s.h) as f64 * (6.0 * k * v + 5.0 * c * (k + v) + 2.0 / 3.0 * c * c)
}

fn bytes(s: Shape, elt: usize, backward: bool) -> f64 {
    let per = if backward { 6 * s.k + 5 * s.v + 6 } else { 2 * s.k + 2 * s.v + 2 };
    (s.b * s.t * s.h * per) as f64 * elt as f64
}

fn measure(s: Shape, which: Which, kind: Kind, dev: Device, o: &Opts, iters: usize, warmup: usize) -> Result<Record> {
    let p = make_problem(s, kind, dev);
    let opts = DeltaRuleOptions {
        semantics: if s.seed { Semantics::Seed } else { Semantics::Standard },
        chunk_size: o.chunk,
        backend: which.backend(),
        ..Default::default()
    };
    let fwd = || delta_rule(&p.q, &p.k, &p.v, &p.g, &p.beta, &opts).map(|r| r.0);
    let fwd_ms = median_ms(dev, warmup, iters, || fwd().map(drop).map_err(Into::into))?;
    let fwdbwd_ms = if o.forward_only {
        None
    } else {
        let inputs: Vec<&Tensor> = if s.seed { vec![&p.k, &p.v, &p.g, &p.beta] } else { vec![&p.q, &p.k, &p.v, &p.g, &p.beta] };
        Some(median_ms(dev, warmup, iters, || {
            let out = fwd()?;
            let loss = (out * &p.d_o).sum(Kind::Float);
            drop(Tensor::run_backward(&[loss], &inputs, false, false));
            Ok(())
        })?)
    };
    let tokens = (s.b * s.t) as f64;
    let flops = fwd_flops(s, o.chunk);
    let elt = kind.elt_size_in_bytes();
    Ok(Record {
        shape: s,
        semantics: if s.seed { "seed" } else { "standard" },
        backend: which.name(),
        dtype: engram_core::dtype::kind_name(kind),
        device: format!("{dev:?}"),
        chunk: o.chunk,
        iters,
        fwd_ms,
        fwd_tokens_per_s: tokens / (fwd_ms * 1e-3),
        fwd_tflops: flops / (fwd_ms * 1e-3) / 1e12,
        fwd_gbps: bytes(s, elt, false) / (fwd_ms * 1e-3) / 1e9,
        fwdbwd_ms,
        fwdbwd_tokens_per_s: fwdbwd_ms.map(|ms| tokens / (ms * 1e-3)),
        fwdbwd_tflops: fwdbwd_ms.map(|ms| 3.0 * flops / (ms * 1e-3) / 1e12),
        fwdbwd_gbps: fwdbwd_ms.map(|ms| bytes(s, elt, true) / (ms * 1e-3) / 1e9),
    })
}

/// Three significant digits, whatever the magnitude.
fn sig3(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}

fn opt3(x: Option<f64>) -> String {
    x.map(sig3).unwrap_or_else(|| "-".into())
}

fn print_table(rows: &[Record]) {
    println!(
        "| shape (B,T,H,K,V) | backend | dtype | fwd ms | fwd Mtok/s | fwd TFLOP/s | fwd GB/s | fwd+bwd ms | fwd+bwd Mtok/s | fwd+bwd TFLOP/s | fwd+bwd GB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.shape,
            r.backend,
            r.dtype,
            sig3(r.fwd_ms),
            sig3(r.fwd_tokens_per_s / 1e6),
            sig3(r.fwd_tflops),
            sig3(r.fwd_gbps),
            opt3(r.fwdbwd_ms),
            opt3(r.fwdbwd_tokens_per_s.map(|x| x / 1e6)),
            opt3(r.fwdbwd_tflops),
            opt3(r.fwdbwd_gbps),
        );
    }
}

/// For each shape, how many times faster each backend is than the last one listed.
fn print_speedups(rows: &[Record], order: &[Which]) {
    let Some(base) = order.last() else { return };
    let shapes: Vec<String> = rows.iter().map(|r| r.shape.to_string()).fold(Vec::new(), |mut v, s| {
        if !v.contains(&s) {
            v.push(s);
        }
        v
    });
    for s in shapes {
        let of = |w: Which| rows.iter().find(|r| r.shape.to_string() == s && r.backend == w.name());
        let Some(b) = of(*base) else { continue };
        for w in order.iter().filter(|w| *w != base) {
            if let Some(r) = of(*w) {
                let bwd = match (b.fwdbwd_ms, r.fwdbwd_ms) {
                    (Some(x), Some(y)) => format!(", fwd+bwd {}×", sig3(x / y)),
                    _ => String::new(),
                };
                println!("speedup {} vs {} at {s}: fwd {}×{bwd}", w.name(), base.name(), sig3(b.fwd_ms / r.fwd_ms));
            }
        }
    }
}

/// UTC date and time from the system clock (no date crate needed for one line).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

fn machine(dev: Device, info: &engram_core::info::RuntimeInfo) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    match dev {
        Device::Cuda(_) => format!("{} ({cores} CPU cores: {cpu})", info.cuda_device_name.as_deref().unwrap_or("CUDA device")),
        _ => format!("{cores}-core CPU ({cpu}), libtorch {} threads", info.cpu_threads),
    }
}

/// Runs the benchmark; `argv[0]` is the command name, the rest its options.
pub fn run(argv: &[String]) -> Result<()> {
    let Some(o) = crate::commands::parse_opts::<Opts>(argv)? else { return Ok(()) };
    if o.chunk <= 0 {
        bail!("--chunk must be positive");
    }
    if let Some(n) = o.threads {
        if n < 1 {
            bail!("--threads must be at least 1");
        }
        tch::set_num_threads(n);
    }
    let dev = o.device.parse::<engram_core::device::DeviceChoice>()?.resolve()?;
    let on_cuda = matches!(dev, Device::Cuda(_));
    let kind = match &o.dtype {
        Some(d) => engram_core::dtype::parse_kind(d)?,
        None if on_cuda => Kind::BFloat16,
        None => Kind::Float,
    };
    let shapes: Vec<Shape> = if o.shapes.is_empty() {
        if on_cuda { cuda_default_shapes() } else { cpu_default_shapes() }
    } else {
        o.shapes.iter().map(|s| s.parse()).collect::<Result<_>>()?
    };
    let order: Vec<Which> = if o.backends.is_empty() {
        if on_cuda { vec![Which::Kernel, Which::Chunked] } else { vec![Which::Chunked, Which::Recurrent] }
    } else {
        o.backends.iter().map(|s| Which::parse(s)).collect::<Result<_>>()?
    };
    let iters = o.iters.unwrap_or(if on_cuda { 20 } else { 3 }).max(1);
    let warmup = o.warmup.unwrap_or(if on_cuda { 2 } else { 1 });
    let info = engram_core::info::runtime_info();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for &s in &shapes {
        for &w in &order {
            if w == Which::Kernel {
                let probe_q = Tensor::zeros([1, 1, 1, s.k], (kind, dev));
                let probe_v = Tensor::zeros([1, 1, 1, s.v], (kind, dev));
                if let Some(why) = engram_core::ops::delta_rule::cuda::unsupported_reason(&probe_q, &probe_v, o.chunk) {
                    let msg = format!("kernel at {s}: {why}");
                    eprintln!("skipped: {msg}");
                    skipped.push(msg);
                    continue;
                }
            }
            eprintln!("timing {} at {s} ({}) ...", w.name(), engram_core::dtype::kind_name(kind));
            match measure(s, w, kind, dev, &o, iters, warmup) {
                Ok(r) => results.push(r),
                Err(e) => {
                    let msg = format!("{} at {s}: {e:#}", w.name());
                    eprintln!("failed: {msg}");
                    skipped.push(msg);
                }
            }
        }
    }
    let report = Report {
        date_utc: utc_now(),
        machine: machine(dev, &info),
        runtime: info,
        flop_model: "forward B·T·H·(6·K·V + 5·C·(K+V) + (2/3)·C²), C = min(chunk, T) (anchors.md for K=V); forward+backward = 3× forward",
        byte_model: "compulsory: forward (2K+2V+2)·B·T·H elements, forward+backward (6K+5V+6)·B·T·H elements, times the input element size",
        timing: "median wall time, each run bracketed by device synchronisation; forward on inputs requiring grad",
        results,
        skipped,
    };
    println!("delta-rule benchmark, {} — {}", report.date_utc, report.machine);
    print_table(&report.results);
    print_speedups(&report.results, &order);
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if report.results.is_empty() {
        bail!("nothing was measured ({} skipped)", report.skipped.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        let s: Shape = "4,2048,8,64,128,seed".parse().unwrap();
        assert_eq!((s.b, s.t, s.h, s.k, s.v, s.seed), (4, 2048, 8, 64, 128, true));
        let s: Shape = "8,2048,16,128".parse().unwrap();
        assert_eq!((s.k, s.v, s.seed), (128, 128, false));
        assert!("8,2048,16".parse::<Shape>().is_err());
        assert!("8,x,16,64".parse::<Shape>().is_err());
        assert!("8,0,16,64".parse::<Shape>().is_err());
    }

    #[test]
    fn flop_model_matches_anchors() {
        // anchors.md: ≈ 1.8e5 FLOPs per token and head at C=64, D=128; ≈ 48 GFLOP at (8,2048,16,128).
        let s: Shape = "8,2048,16,128".parse().unwrap();
        let per = fwd_flops(s, 64) / (8.0 * 2048.0 * 16.0);
        assert!((per - (6.0 * 128.0 * 128.0 + 10.0 * 64.0 * 128.0 + 2.0 / 3.0 * 64.0 * 64.0)).abs() < 1e-6);
        assert!((fwd_flops(s, 64) / 1e9 - 48.0).abs() < 1.0);
        // ≈ 268 MB of q, k, v, o in bf16 (anchors.md), plus g and β.
        assert!((bytes(s, 2, false) / 1e6 - 268.0).abs() < 2.0);
    }

    #[test]
    fn cpu_run_writes_json() {
        let dir = std::env::temp_dir().join(format!("engram-bench-dr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("r.json");
        let argv: Vec<String> = ["engram bench delta-rule", "--device", "cpu", "--shapes", "1,40,2,8,4;1,30,1,4,8,seed", "--iters", "1", "--warmup", "0", "--json"]
            .iter()
            .map(|s| s.to_string())
            .chain([json.display().to_string()])
            .collect();
        run(&argv).unwrap();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let rows = v["results"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r["fwd_ms"].as_f64().unwrap() > 0.0 && r["fwdbwd_ms"].as_f64().unwrap() > 0.0));
        std::fs::remove_dir_all(&dir).ok();
    }
}
