//! Text generation with the recurrent decoding state: the prompt is prefilled in one call,
//! then each new token costs one [`HybridModel::forward_step`] (O(window), not O(length)).

use crate::model::HybridModel;
use crate::{GdnError, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    /// 0 = greedy (argmax); otherwise logits are divided by it.
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    pub top_p: f64,
    /// Seed of the host RNG used for sampling.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig { temperature: 0.8, top_k: 0, top_p: 0.95, seed: 0 }
    }
}

impl SamplingConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplingConfig { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
    fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(GdnError::Config(format!("temperature must be ≥ 0, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(GdnError::Config(format!("top_p must lie in (0, 1], got {}", self.top_p)));
        }
        Ok(())
    }
}

/// Picks one token from a logits row under `cfg`.
pub fn sample_token(logits: &[f32], cfg: &SamplingConfig, rng: &mut HostRng) -> i64 {
    let argmax = || logits.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as i64;
    if cfg.temperature == 0.0 {
        return argmax();
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap_or(std::cmp::Ordering::Equal));
    if cfg.top_k > 0 {
        idx.truncate(cfg.top_k.max(1));
    }
    let max = logits[idx[0]] as f64;
    let mut probs: Vec<f64> = idx.iter().map(|&i| ((logits[i] as f64 - max) / cfg.temperature).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if cfg.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (n, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= cfg.top_p {
                keep = n + 1;
                break;
            }
        }
        probs.truncate(keep);
        idx.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.uniform() * total;
    for (p, &i) in probs.iter().zip(&idx) {
        if u < *p {
            return i as i64;
        }
        u -= p;
    }
    idx[idx.len() - 1] as i64
}

/// Continues `prompt` by `n_tokens` tokens; returns only the new ids.
///
/// ```
/// use engram_gdn::{generate::{generate, SamplingConfig}, HybridConfig, HybridModel};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let model = HybridModel::new(&vs.root(), &HybridConfig::tiny()).unwrap();
/// let out = generate(&model, &[1, 2, 3], 5, &SamplingConfig::greedy()).unwrap();
/// assert_eq!(out.len(), 5);
/// ```
pub fn generate(model: &HybridModel, prompt: &[i64], n_tokens: usize, cfg: &SamplingConfig) -> Result<Vec<i64>> {
    cfg.validate()?;
    if prompt.is_empty() {
        return Err(GdnError::Input("the prompt must hold at least one token".into()));
    }
    let dev = model_device(model);
    let mut rng = HostRng::new(cfg.seed);
    let mut state = model.decode_state();
    let mut out = Vec::with_capacity(n_tokens);
    tch::no_grad(|| -> Result<()> {
        let mut input = Tensor::from_slice(prompt).view([1, -1]).to_device(dev);
        for _ in 0..n_tokens {
            let logits = model.forward_step(&input, &mut state)?;
            let t = logits.size()[1];
            let last: Vec<f32> = Vec::try_from(logits.select(1, t - 1).squeeze_dim(0).to_kind(Kind::Float).to_device(tch::Device::Cpu))?;
            let next = sample_token(&last, cfg, &mut rng);
            out.push(next);
            input = Tensor::from_slice(&[next]).view([1, 1]).to_device(dev);
        }
        Ok(())
    })?;
    Ok(out)
}

fn model_device(model: &HybridModel) -> tch::Device {
    model.device()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sampling_rules() {
        let logits = [0.0f32, 5.0, 1.0, 4.9];
        let mut rng = HostRng::new(0);
        assert_eq!(sample_token(&logits, &SamplingConfig::greedy(), &mut rng), 1);
        let top1 = SamplingConfig { temperature: 1.0, top_k: 1, top_p: 1.0, seed: 0 };
        for _ in 0..20 {
            assert_eq!(sample_token(&logits, &top1, &mut rng), 1);
        }
        let top2 = SamplingConfig { temperature: 1.0, top_k: 2, top_p: 1.0, seed: 0 };
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[sample_token(&logits, &top2, &mut rng) as usize] += 1;
        }
        assert_eq!(seen[0] + seen[2], 0);
        assert!(seen[1] > 100 && seen[3] > 100, "{seen:?}");
        let nucleus = SamplingConfig { temperature: 1.0, top_k: 0, top_p: 0.5, seed: 0 };
        for _ in 0..20 {
            assert_eq!(sample_token(&logits, &nucleus, &mut rng), 1);
        }
    }
}
