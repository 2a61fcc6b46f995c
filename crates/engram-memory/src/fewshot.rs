//! A memory-augmented transformer for few-shot classification. Each episode's support set
//! (`ways × shots` labelled images) is encoded by a transformer that sees the whole set, written
//! into an external key-value memory (key: projected encoding, value: one-hot label), and each
//! query is classified by an attention read of that memory. Episodes are drawn from classes
//! that are disjoint between training and evaluation, so evaluation measures adaptation to new
//! classes from the support examples alone.

use crate::error::{invalid, Result};
use engram_core::seed::HostRng;
use engram_layers::{Linear, LinearConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, nn::OptimizerConfig as _, Device, Kind, Tensor};

/// Model and episode settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FewShotConfig {
    /// Classes per episode (seed 004: 3).
    pub ways: i64,
    /// Support examples per class (seed 004: 2, "6 support examples").
    pub shots: i64,
    /// Query examples per class.
    pub queries: i64,
    /// Model width.
    pub dim: i64,
    /// Attention heads.
    pub heads: i64,
    /// Transformer layers.
    pub layers: i64,
    /// External memory slots (seed 004: 500); must hold at least one episode's supports.
    pub slots: i64,
    /// Episodes per optimizer step.
    pub batch: i64,
    /// Optimizer steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for FewShotConfig {
    fn default() -> Self {
        FewShotConfig { ways: 3, shots: 2, queries: 5, dim: 64, heads: 4, layers: 2, slots: 500, batch: 16, steps: 1000, lr: 1e-3, seed: 0 }
    }
}

impl FewShotConfig {
    fn validate(&self) -> Result<()> {
        if [self.ways, self.shots, self.queries, self.dim, self.heads, self.layers, self.batch].iter().any(|&v| v <= 0) || self.dim % self.heads != 0 {
            return Err(invalid(format!("bad few-shot config {self:?}: sizes must be positive and heads must divide dim")));
        }
        if self.slots < self.ways * self.shots {
            return Err(invalid(format!("{} memory slots cannot hold {} support examples", self.slots, self.ways * self.shots)));
        }
        Ok(())
    }
}

/// An external key-value memory for a batch of episodes: `keys [B, M, d]`, `values [B, M, C]`,
/// plus the write time of every slot (never-written slots are masked out of reads). Writes go
/// to the least recently written slots; reads are softmax attention over written slots only.
#[derive(Debug)]
pub struct KeyValueMemory {
    /// Keys.
    pub keys: Tensor,
    /// Values.
    pub values: Tensor,
    written: Vec<Vec<u64>>,
    clock: u64,
}

impl KeyValueMemory {
    /// An empty memory of `slots` slots.
    pub fn new(batch: i64, slots: i64, key_dim: i64, value_dim: i64, device: Device) -> Self {
        KeyValueMemory {
            keys: Tensor::zeros([batch, slots, key_dim], (Kind::Float, device)),
            values: Tensor::zeros([batch, slots, value_dim], (Kind::Float, device)),
            written: vec![vec![0; slots as usize]; batch as usize],
            clock: 0,
        }
    }

    /// Writes `keys [B, S, d]` and `values [B, S, C]` into the `S` least recently written slots.
    pub fn write(&mut self, keys: &Tensor, values: &Tensor) -> Result<()> {
        let (b, s) = (keys.size()[0], keys.size()[1]);
        let m = self.keys.size()[1];
        if s > m || b != self.keys.size()[0] || values.size()[..2] != keys.size()[..2] {
            return Err(crate::error::MemoryError::Shape(format!("cannot write keys {:?} / values {:?} into {m} slots", keys.size(), values.size())));
        }
        let mut idx = Vec::with_capacity((b * s) as usize);
        for row in self.written.iter_mut() {
            let mut order: Vec<usize> = (0..m as usize).collect();
            order.sort_by_key(|&i| (row[i], i));
            for &i in &order[..s as usize] {
                self.clock += 1;
                row[i] = self.clock;
                idx.push(i as i64);
            }
        }
        let idx = Tensor::from_slice(&idx).view([b, s]).to_device(keys.device());
        let kd = keys.size()[2];
        let vd = values.size()[2];
        // Differentiable scatter: gradients reach the written keys.
        self.keys = self.keys.scatter(1, &idx.unsqueeze(-1).expand([b, s, kd], false), keys);
        self.values = self.values.scatter(1, &idx.unsqueeze(-1).expand([b, s, vd], false), values);
        Ok(())
    }

    /// `softmax(q Kᵀ/√d) V` over written slots: `queries [B, Q, d]` → (`[B, Q, C]`, weights `[B, Q, M]`).
    pub fn read(&self, queries: &Tensor) -> (Tensor, Tensor) {
        let d = queries.size()[2] as f64;
        let mask: Vec<f32> = self.written.iter().flat_map(|r| r.iter().map(|&t| if t == 0 { f32::NEG_INFINITY } else { 0.0 })).collect();
        let mask = Tensor::from_slice(&mask).view([self.keys.size()[0], 1, self.keys.size()[1]]).to_device(queries.device());
        let w = (queries.matmul(&self.keys.transpose(1, 2)) / d.sqrt() + mask).softmax(-1, Kind::Float);
        (w.matmul(&self.values), w)
    }
}

#[derive(Debug)]
struct EncoderLayer {
    qkv: Linear,
    proj: Linear,
    ff1: Linear,
    ff2: Linear,
    ln1: (Tensor, Tensor),
    ln2: (Tensor, Tensor),
}

/// The few-shot learner.
///
/// ```
/// use engram_memory::fewshot::{FewShotConfig, MemoryTransformer};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let cfg = FewShotConfig { dim: 16, heads: 2, layers: 1, ..FewShotConfig::default() };
/// let m = MemoryTransformer::new(&vs.root(), 10, &cfg).unwrap();
/// let support = tch::Tensor::randn([2, 6, 10], (tch::Kind::Float, tch::Device::Cpu));
/// let labels = tch::Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2]).repeat([2, 1]);
/// let query = tch::Tensor::randn([2, 4, 10], (tch::Kind::Float, tch::Device::Cpu));
/// let logp = m.log_probs(&support, &labels, &query).unwrap();
/// assert_eq!(logp.size(), vec![2, 4, 3]);
/// ```
#[derive(Debug)]
pub struct MemoryTransformer {
    cfg: FewShotConfig,
    embed1: Linear,
    embed2: Linear,
    label: Tensor,
    unknown: Tensor,
    layers: Vec<EncoderLayer>,
    key: Linear,
    query: Linear,
}

fn ln(p: &nn::Path, name: &str, d: i64) -> (Tensor, Tensor) {
    (p.ones(&format!("{name}_weight"), &[d]), p.zeros(&format!("{name}_bias"), &[d]))
}

impl MemoryTransformer {
    /// A model for `features`-dimensional inputs.
    pub fn new(path: &nn::Path, features: i64, cfg: &FewShotConfig) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.dim;
        let lin = |name: String, i, o| Linear::new(path / name, LinearConfig::new(i, o));
        let layers = (0..cfg.layers)
            .map(|l| EncoderLayer {
                qkv: lin(format!("layer{l}_qkv"), d, 3 * d),
                proj: lin(format!("layer{l}_proj"), d, d),
                ff1: lin(format!("layer{l}_ff1"), d, 2 * d),
                ff2: lin(format!("layer{l}_ff2"), 2 * d, d),
                ln1: ln(path, &format!("layer{l}_ln1"), d),
                ln2: ln(path, &format!("layer{l}_ln2"), d),
            })
            .collect();
        Ok(MemoryTransformer {
            cfg: cfg.clone(),
            embed1: lin("embed1".into(), features, d),
            embed2: lin("embed2".into(), d, d),
            label: path.var("label_embedding", &[cfg.ways, d], nn::Init::Randn { mean: 0.0, stdev: 0.1 }),
            unknown: path.var("query_embedding", &[1, 1, d], nn::Init::Randn { mean: 0.0, stdev: 0.1 }),
            layers,
            key: lin("mem_key".into(), d, d),
            query: lin("mem_query".into(), d, d),
        })
    }

    fn attend(&self, l: &EncoderLayer, x: &Tensor, mask: &Tensor) -> Tensor {
        let (b, t, d) = (x.size()[0], x.size()[1], self.cfg.dim);
        let h = self.cfg.heads;
        let qkv = l.qkv.forward(x).view([b, t, 3, h, d / h]).permute([2, 0, 3, 1, 4]);
        let att = (qkv.get(0).matmul(&qkv.get(1).transpose(-2, -1)) / ((d / h) as f64).sqrt() + mask).softmax(-1, Kind::Float);
        l.proj.forward(&att.matmul(&qkv.get(2)).transpose(1, 2).reshape([b, t, d]))
    }

    /// Log-probabilities over the `ways` classes for each query: `support [B, S, F]`, labels
    /// `[B, S]` in `0..ways`, `query [B, Q, F]` → `[B, Q, ways]`. Supports see each other;
    /// each query sees the supports and itself (so queries cannot share information).
    pub fn log_probs(&self, support: &Tensor, labels: &Tensor, query: &Tensor) -> Result<Tensor> {
        let (b, s, q) = (support.size()[0], support.size()[1], query.size()[1]);
        if support.dim() != 3 || query.dim() != 3 || labels.size() != [b, s] || query.size()[0] != b || query.size()[2] != support.size()[2] {
            return Err(crate::error::MemoryError::Shape(format!("support {:?}, labels {:?}, query {:?} do not fit", support.size(), labels.size(), query.size())));
        }
        let ways = self.cfg.ways;
        let (lmin, lmax) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
        if lmin < 0 || lmax >= ways {
            return Err(invalid(format!("labels must be in 0..{ways}, got {lmin}..={lmax}")));
        }
        let d = self.cfg.dim;
        let emb = |x: &Tensor| self.embed2.forward(&self.embed1.forward(x).relu());
        let base = Tensor::cat(&[emb(support), emb(query)], 1);
        let tags = Tensor::cat(&[self.label.index_select(0, &labels.flatten(0, -1)).view([b, s, d]), self.unknown.expand([b, q, d], false)], 1);
        let mut x = &base + tags;
        let t = s + q;
        let mut m = vec![f32::NEG_INFINITY; (t * t) as usize];
        for i in 0..t {
            for j in 0..t {
                if j < s || i == j {
                    m[(i * t + j) as usize] = 0.0;
                }
            }
        }
        let mask = Tensor::from_slice(&m).view([t, t]).to_device(x.device());
        for l in &self.layers {
            let h = x.layer_norm([d], Some(&l.ln1.0), Some(&l.ln1.1), 1e-5, false);
            x = &x + self.attend(l, &h, &mask);
            let h = x.layer_norm([d], Some(&l.ln2.0), Some(&l.ln2.1), 1e-5, false);
            x = &x + l.ff2.forward(&l.ff1.forward(&h).gelu("none"));
        }
        let mut mem = KeyValueMemory::new(b, self.cfg.slots, d, ways, x.device());
        // Keys and queries see the label-free embedding next to the contextual encoding, so a
        // support's key cannot simply encode its episode label.
        let addr = &base + self.key.forward(&(&x - &base));
        mem.write(&addr.narrow(1, 0, s), &labels.one_hot(ways).to_kind(Kind::Float))?;
        let (read, _) = mem.read(&self.query.forward(&addr.narrow(1, s, q)));
        Ok((read + 1e-6).log())
    }
}

/// A batch of episodes: `support [B, S, F]`, `support_labels [B, S]`, `query [B, Q, F]`, `query_labels [B, Q]`.
#[derive(Debug)]
pub struct Episodes {
    /// Support inputs.
    pub support: Tensor,
    /// Support labels in `0..ways`.
    pub support_labels: Tensor,
    /// Query inputs.
    pub query: Tensor,
    /// Query labels.
    pub query_labels: Tensor,
}

/// Samples episodes from a labelled pool restricted to `classes`: each episode picks `ways`
/// classes, relabels them `0..ways` in random order, and draws disjoint support and query examples.
#[derive(Debug)]
pub struct EpisodeSampler {
    x: Tensor,
    by_class: Vec<(i64, Vec<i64>)>,
}

impl EpisodeSampler {
    /// `x [N, F]`, `y [N]`; only examples whose label is in `classes` are used.
    pub fn new(x: &Tensor, y: &Tensor, classes: &[i64]) -> Result<Self> {
        let labels = Vec::<i64>::try_from(y.to_kind(Kind::Int64).to_device(Device::Cpu))?;
        if x.dim() != 2 || x.size()[0] != labels.len() as i64 {
            return Err(crate::error::MemoryError::Shape(format!("x {:?} and y [{}] do not match", x.size(), labels.len())));
        }
        let by_class = classes.iter().map(|&c| (c, (0..labels.len() as i64).filter(|&i| labels[i as usize] == c).collect())).collect();
        Ok(EpisodeSampler { x: x.shallow_clone(), by_class })
    }

    /// A batch of `batch` episodes.
    pub fn sample(&self, cfg: &FewShotConfig, batch: i64, rng: &mut HostRng) -> Result<Episodes> {
        let need = (cfg.shots + cfg.queries) as usize;
        if self.by_class.len() < cfg.ways as usize || self.by_class.iter().any(|(_, v)| v.len() < need) {
            return Err(invalid(format!("the pool needs {} classes with {need} examples each", cfg.ways)));
        }
        let (mut si, mut sl, mut qi, mut ql) = (vec![], vec![], vec![], vec![]);
        for _ in 0..batch {
            let mut cls: Vec<usize> = (0..self.by_class.len()).collect();
            rng.shuffle(&mut cls);
            for (label, &c) in cls[..cfg.ways as usize].iter().enumerate() {
                let mut ex = self.by_class[c].1.clone();
                for k in 0..need {
                    let j = k + rng.below((ex.len() - k) as u64) as usize;
                    ex.swap(k, j);
                }
                si.extend_from_slice(&ex[..cfg.shots as usize]);
                sl.resize(sl.len() + cfg.shots as usize, label as i64);
                qi.extend_from_slice(&ex[cfg.shots as usize..need]);
                ql.resize(ql.len() + cfg.queries as usize, label as i64);
            }
        }
        let f = self.x.size()[1];
        let pick = |idx: &[i64], n: i64| self.x.index_select(0, &Tensor::from_slice(idx).to_device(self.x.device())).view([batch, n, f]);
        let (s, q) = (cfg.ways * cfg.shots, cfg.ways * cfg.queries);
        Ok(Episodes {
            support: pick(&si, s),
            support_labels: Tensor::from_slice(&sl).view([batch, s]).to_device(self.x.device()),
            query: pick(&qi, q),
            query_labels: Tensor::from_slice(&ql).view([batch, q]).to_device(self.x.device()),
        })
    }
}

/// Mean accuracy over episodes with a normal-approximation 95% confidence interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccuracyCi {
    /// Mean per-episode accuracy.
    pub mean: f64,
    /// Half-width of the 95% interval (1.96 standard errors).
    pub ci95: f64,
    /// Episodes evaluated.
    pub episodes: usize,
}

impl AccuracyCi {
    /// From per-episode accuracies.
    pub fn from_samples(acc: &[f64]) -> Self {
        let n = acc.len().max(1) as f64;
        let mean = acc.iter().sum::<f64>() / n;
        let var = acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        AccuracyCi { mean, ci95: 1.96 * (var / n).sqrt(), episodes: acc.len() }
    }
    /// Whether the interval lies entirely above `chance`.
    pub fn above(&self, chance: f64) -> bool {
        self.mean - self.ci95 > chance
    }
}

fn per_episode_accuracy(pred: &Tensor, labels: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(pred.eq_tensor(labels).to_kind(Kind::Double).mean_dim([1].as_slice(), false, Kind::Double)).unwrap_or_default()
}

/// Evaluates `model` on `episodes` fresh episodes (in batches of `cfg.batch`).
pub fn evaluate(model: &MemoryTransformer, sampler: &EpisodeSampler, cfg: &FewShotConfig, episodes: usize, seed: u64) -> Result<AccuracyCi> {
    let mut rng = HostRng::new(seed);
    let mut acc = Vec::new();
    tch::no_grad(|| -> Result<()> {
        while acc.len() < episodes {
            let n = (cfg.batch as usize).min(episodes - acc.len()) as i64;
            let e = sampler.sample(cfg, n, &mut rng)?;
            let pred = model.log_probs(&e.support, &e.support_labels, &e.query)?.argmax(-1, false);
            acc.extend(per_episode_accuracy(&pred, &e.query_labels));
        }
        Ok(())
    })?;
    Ok(AccuracyCi::from_samples(&acc))
}

/// The no-learning baseline: each query takes the label of the nearest support-class mean
/// (Euclidean, on the raw features), on the same kind of episodes.
pub fn nearest_prototype_baseline(sampler: &EpisodeSampler, cfg: &FewShotConfig, episodes: usize, seed: u64) -> Result<AccuracyCi> {
    let mut rng = HostRng::new(seed);
    let mut acc = Vec::new();
    while acc.len() < episodes {
        let n = (cfg.batch as usize).min(episodes - acc.len()) as i64;
        let e = sampler.sample(cfg, n, &mut rng)?;
        let f = e.support.size()[2];
        let protos = e.support.view([n, cfg.ways, cfg.shots, f]).mean_dim([2].as_slice(), false, Kind::Float);
        let dist = (e.query.unsqueeze(2) - protos.unsqueeze(1)).square().sum_dim_intlist([-1].as_slice(), false, Kind::Float);
        acc.extend(per_episode_accuracy(&dist.argmin(-1, false), &e.query_labels));
    }
    Ok(AccuracyCi::from_samples(&acc))
}

/// Episodic training with Adam; returns the model and the mean loss of each `log_every` steps.
pub fn train_fewshot(vs: &nn::VarStore, features: i64, sampler: &EpisodeSampler, cfg: &FewShotConfig, log_every: usize, log: &mut dyn FnMut(usize, f64)) -> Result<(MemoryTransformer, Vec<(usize, f64)>)> {
    let model = {
        let _g = engram_core::seed::global_rng_lock();
        engram_core::seed::manual_seed(cfg.seed);
        MemoryTransformer::new(&vs.root(), features, cfg)?
    };
    let mut opt = nn::Adam::default().build(vs, cfg.lr)?;
    let mut rng = HostRng::new(cfg.seed);
    let (mut acc, mut n, mut out) = (0.0, 0, Vec::new());
    for step in 1..=cfg.steps {
        let e = sampler.sample(cfg, cfg.batch, &mut rng)?;
        let logp = model.log_probs(&e.support, &e.support_labels, &e.query)?;
        let loss = logp.view([-1, cfg.ways]).nll_loss(&e.query_labels.view([-1]));
        opt.backward_step_clip_norm(&loss, 1.0);
        acc += loss.double_value(&[]);
        n += 1;
        if step % log_every.max(1) == 0 || step == cfg.steps {
            log(step, acc / n as f64);
            out.push((step, acc / n as f64));
            (acc, n) = (0.0, 0);
        }
    }
    Ok((model, out))
}
