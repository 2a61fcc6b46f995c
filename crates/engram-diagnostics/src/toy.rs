//! Constructed models with known behaviour. They calibrate the suites: a diagnostic that does
//! not separate these models is broken.
//!
//! * [`LookupModel`] with no window: a hard-wired perfect associative lookup (an "induction
//!   head" with unlimited reach): at every position it emits the token that followed the most
//!   recent earlier occurrence of the current token.
//! * [`LookupModel`] with a window: the same lookup restricted to the last `W` tokens, i.e. a
//!   state-less sliding-window model. It must score zero outside its window.
//! * [`ConstantModel`]: always emits one token. It must pass the seed's fixed-needle test (the
//!   shortcut check) and fail every real suite.
//! * [`DeltaToy`]: one real delta-rule memory with fixed random keys, shifted value writes and
//!   β = 1 only after markers. It has a genuine [`Trace`] and parameters, so the mechanism probes
//!   have something to measure.

use crate::probe::{LayerTrace, Probeable, Trace};
use crate::tasks::TaskTokens;
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// Logit given to the predicted token; every other token gets 0.
const HIT_LOGIT: f32 = 10.0;

fn tokens_as_rows(tokens: &Tensor, vocab: i64) -> Result<(i64, i64, Vec<i64>)> {
    let size = tokens.size();
    if size.len() != 2 || tokens.kind() != Kind::Int64 {
        bail!("expected i64 tokens [B,T], got {:?} {:?}", tokens.kind(), size);
    }
    let flat: Vec<i64> = Vec::try_from(tokens.to_device(Device::Cpu).contiguous().view([-1]))?;
    if let Some(bad) = flat.iter().find(|&&t| t < 0 || t >= vocab) {
        bail!("token id {bad} is outside the vocabulary [0, {vocab})");
    }
    Ok((size[0], size[1], flat))
}

fn one_hot_logits(b: i64, t: i64, vocab: i64, preds: &[i64]) -> Tensor {
    let mut data = vec![0f32; (b * t * vocab) as usize];
    for (i, &p) in preds.iter().enumerate() {
        data[i * vocab as usize + p as usize] = HIT_LOGIT;
    }
    Tensor::from_slice(&data).view([b, t, vocab])
}

/// The lookup model; see the module docs.
///
/// ```
/// use engram_diagnostics::{probe::Probeable, toy::LookupModel};
/// let m = LookupModel::perfect(16);
/// let x = tch::Tensor::from_slice(&[3i64, 9, 1, 2, 3]).view([1, 5]);
/// let pred = m.logits(&x).unwrap().argmax(-1, false);
/// assert_eq!(pred.int64_value(&[0, 4]), 9); // 3 was followed by 9
/// ```
#[derive(Debug, Clone)]
pub struct LookupModel {
    vocab: i64,
    window: Option<i64>,
    fallback: i64,
    alias: Option<(i64, i64)>,
}

impl LookupModel {
    /// Unlimited reach.
    pub fn perfect(vocab: i64) -> Self {
        LookupModel { vocab, window: None, fallback: 0, alias: None }
    }
    /// Sees only the last `window` tokens (including the current one).
    pub fn windowed(vocab: i64, window: i64) -> Self {
        LookupModel { vocab, window: Some(window.max(1)), fallback: 0, alias: None }
    }
    /// Hard-wired for the retrieval tasks: a lone `CUE` looks up the single-needle marker.
    pub fn for_tasks(mut self, tt: &TaskTokens) -> Self {
        self.alias = Some((tt.cue, tt.marker()));
        self
    }
    fn predict_row(&self, row: &[i64]) -> Vec<i64> {
        let mut last = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(row.len());
        for t in 0..row.len() {
            if t >= 2 {
                last.insert(row[t - 2], t - 2);
            }
            let key = match self.alias {
                Some((from, to)) if row[t] == from => to,
                _ => row[t],
            };
            let pred = match last.get(&key) {
                // the value at j+1 must be visible: inside the last `window` positions
                Some(&j) if self.window.is_none_or(|w| (j + 1) as i64 > t as i64 - w) => row[j + 1],
                _ => self.fallback,
            };
            out.push(pred);
        }
        out
    }
}

impl Probeable for LookupModel {
    fn name(&self) -> String {
        match self.window {
            None => "perfect-lookup".into(),
            Some(w) => format!("windowed-lookup(W={w})"),
        }
    }
    fn vocab_size(&self) -> i64 {
        self.vocab
    }
    fn window(&self) -> Option<i64> {
        self.window
    }
    fn logits(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t, flat) = tokens_as_rows(tokens, self.vocab)?;
        let preds: Vec<i64> = flat.chunks(t as usize).flat_map(|r| self.predict_row(r)).collect();
        Ok(one_hot_logits(b, t, self.vocab, &preds))
    }
}

/// Always emits `token`.
#[derive(Debug, Clone)]
pub struct ConstantModel {
    vocab: i64,
    token: i64,
}

impl ConstantModel {
    /// A model that always predicts `token`.
    pub fn new(vocab: i64, token: i64) -> Self {
        ConstantModel { vocab, token }
    }
    /// The constant model that games the seed's fixed-needle test.
    pub fn shortcut(tt: &TaskTokens) -> Self {
        ConstantModel { vocab: tt.vocab, token: tt.fixed_needle() }
    }
}

impl Probeable for ConstantModel {
    fn name(&self) -> String {
        format!("constant({})", self.token)
    }
    fn vocab_size(&self) -> i64 {
        self.vocab
    }
    fn window(&self) -> Option<i64> {
        None
    }
    fn logits(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t, _) = tokens_as_rows(tokens, self.vocab)?;
        Ok(one_hot_logits(b, t, self.vocab, &vec![self.token; (b * t) as usize]))
    }
}

/// A single-head delta-rule memory; see the module docs.
///
/// Key of position `t` = `normalize(E[x_{t−1}])` (shifted), value = one-hot of `x_t`,
/// β_t = 1 when `x_{t−1}` is a marker and 0 otherwise, decay = `retention`, read with
/// `normalize(E[x_t])`: `S_t = g S_{t−1} + β_t k_t (v_t − S_{t−1}ᵀ k_t)ᵀ`, `o_t = S_tᵀ q_t`.
#[derive(Debug)]
pub struct DeltaToy {
    tt: TaskTokens,
    embed: Tensor,
    retention: f64,
}

impl DeltaToy {
    /// Random keys of dimension `key_dim` (drawn from libtorch's generator).
    pub fn new(tt: TaskTokens, key_dim: i64, retention: f64) -> Self {
        let embed = Tensor::randn([tt.vocab, key_dim], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        DeltaToy { tt, embed, retention }
    }
    /// Replaces the key table (e.g. to plant a NaN in a test).
    pub fn with_embedding(mut self, embed: Tensor) -> Self {
        self.embed = embed.set_requires_grad(true);
        self
    }

    fn run(&self, tokens: &Tensor) -> Result<(Tensor, Trace)> {
        let (b, t, flat) = tokens_as_rows(tokens, self.tt.vocab)?;
        let v = self.tt.vocab;
        let kd = self.embed.size()[1];
        let unit = &self.embed / self.embed.square().sum_dim_intlist([-1i64].as_slice(), true, Kind::Float).sqrt().clamp_min(1e-6);
        let x = Tensor::from_slice(&flat).view([b, t]);
        // a lone CUE reads with the single-needle marker's key (hard-wired task knowledge)
        let read_ids = x.where_scalarother(&x.ne(self.tt.cue), self.tt.marker());
        let q = unit.index_select(0, &read_ids.view([-1])).view([b, t, kd]);
        // shifted keys: position 0 has no predecessor and writes nothing
        let prev = Tensor::cat(&[x.narrow(1, 0, 1), x.narrow(1, 0, t - 1)], 1);
        let k = unit.index_select(0, &prev.view([-1])).view([b, t, kd]);
        let (bu, tu) = (b as usize, t as usize);
        let mut is_marker = vec![0f32; flat.len()];
        for r in 0..bu {
            for i in 1..tu {
                if self.tt.markers.contains(&flat[r * tu + i - 1]) {
                    is_marker[r * tu + i] = 1.0;
                }
            }
        }
        let beta = Tensor::from_slice(&is_marker).view([b, t]);
        let vals = x.one_hot(v).to_kind(Kind::Float);
        let mut s = Tensor::zeros([b, kd, v], (Kind::Float, Device::Cpu));
        let mut outs = Vec::with_capacity(t as usize);
        for i in 0..t {
            let k_i = k.select(1, i);
            let pred = s.transpose(1, 2).bmm(&k_i.unsqueeze(-1)).squeeze_dim(-1);
            let err = vals.select(1, i) - pred;
            let b_i = beta.select(1, i).view([b, 1, 1]);
            s = &s * self.retention + b_i * k_i.unsqueeze(-1).bmm(&err.unsqueeze(1));
            outs.push(s.transpose(1, 2).bmm(&q.select(1, i).unsqueeze(-1)).squeeze_dim(-1));
        }
        let logits = Tensor::stack(&outs, 1) * HIT_LOGIT as f64;
        let trace = Trace {
            layers: vec![
                LayerTrace::Swa { attn_entropy: None },
                LayerTrace::Gdn {
                    keys: k.unsqueeze(2),
                    queries: Some(q.unsqueeze(2)),
                    beta: beta.unsqueeze(-1),
                    decay: Tensor::full([b, t, 1], self.retention, (Kind::Float, Device::Cpu)),
                    final_state: s.unsqueeze(1),
                },
            ],
        };
        Ok((logits, trace))
    }
}

impl Probeable for DeltaToy {
    fn name(&self) -> String {
        format!("delta-toy(K={})", self.embed.size()[1])
    }
    fn vocab_size(&self) -> i64 {
        self.tt.vocab
    }
    fn window(&self) -> Option<i64> {
        None
    }
    fn logits(&self, tokens: &Tensor) -> Result<Tensor> {
        Ok(self.run(tokens)?.0)
    }
    fn trace(&self, tokens: &Tensor) -> Result<Option<(Tensor, Trace)>> {
        Ok(Some(self.run(tokens)?))
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("embed.weight".into(), self.embed.shallow_clone())]
    }
    fn shifted_values(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn windowed_lookup_forgets_beyond_window() {
        let m = LookupModel::windowed(16, 3);
        // 5 followed by 7 at positions 0,1; query 5 at position 6: value at 1 is 5 back, out of W=3
        let x = Tensor::from_slice(&[5i64, 7, 1, 2, 3, 4, 5]).view([1, 7]);
        assert_eq!(m.logits(&x).unwrap().argmax(-1, false).int64_value(&[0, 6]), 0);
        let p = LookupModel::perfect(16);
        assert_eq!(p.logits(&x).unwrap().argmax(-1, false).int64_value(&[0, 6]), 7);
    }
    #[test]
    fn bad_tokens_are_errors() {
        let m = LookupModel::perfect(16);
        assert!(m.logits(&Tensor::from_slice(&[1i64, 99]).view([1, 2])).is_err());
        assert!(m.logits(&Tensor::from_slice(&[1i64, 2])).is_err());
    }
}
