//! The seed's curriculum tasks (spec §5.2, §5.3) with their flaws fixed: needles are drawn from
//! the whole (non-special) vocabulary, batches are generated fresh at every step (no fixed pool
//! to memorise), and accuracy is measured on a held-out set drawn from a separate RNG stream.
//!
//! Special tokens sit at the top of the vocabulary: `cue = vocab-1`, markers `vocab-2-i`.

use crate::{GdnError, Result};
use engram_core::seed::HostRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// Which task a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One (marker, needle) pair in a random haystack; at the end a cue asks for the needle.
    Retrieval,
    /// Memory gym: `n` (marker_i, value_i) pairs; the end asks `[cue, marker_q]` for value_q.
    Gym,
}

/// A synthetic batch: inputs `[B,T]` and targets `[B,T]` (-100 except at the last position).
#[derive(Debug)]
pub struct TaskBatch {
    /// Token ids.
    pub inputs: Tensor,
    /// Labels, -100 where no loss is taken.
    pub targets: Tensor,
    /// The label of the last position of each row.
    pub answers: Vec<i64>,
}

/// Generator of curriculum tasks over a vocabulary.
#[derive(Debug, Clone)]
pub struct TaskGen {
    vocab: i64,
    needles: i64,
}

impl TaskGen {
    /// Tasks for `vocab` with up to `needles` gym pairs; the top `needles + 1` ids are reserved.
    pub fn new(vocab: i64, needles: i64) -> Result<Self> {
        if needles < 1 {
            return Err(GdnError::Config(format!("gym needles must be at least 1, got {needles}")));
        }
        if vocab - needles - 1 < 8 {
            return Err(GdnError::Config(format!("vocab {vocab} is too small for {needles} gym markers")));
        }
        Ok(TaskGen { vocab, needles })
    }
    /// The cue token.
    pub fn cue(&self) -> i64 {
        self.vocab - 1
    }
    /// Marker `i` (0-based).
    pub fn marker(&self, i: i64) -> i64 {
        self.vocab - 2 - i
    }
    /// Ids below this are ordinary content (haystack and needles).
    pub fn content(&self) -> i64 {
        self.vocab - 1 - self.needles
    }

    /// A batch of `task` with rows of length `t`.
    pub fn batch(&self, task: Task, b: i64, t: i64, rng: &mut HostRng, device: Device) -> Result<TaskBatch> {
        let min_t = match task {
            Task::Retrieval => 8,
            Task::Gym => 4 * self.needles + 4,
        };
        if t < min_t {
            return Err(GdnError::Config(format!("{task:?} rows need at least {min_t} tokens, got {t}")));
        }
        let content = self.content() as u64;
        let mut inputs = Vec::with_capacity((b * t) as usize);
        let mut answers = Vec::with_capacity(b as usize);
        for _ in 0..b {
            let mut row: Vec<i64> = (0..t).map(|_| rng.below(content) as i64).collect();
            let answer = match task {
                Task::Retrieval => {
                    let pos = 1 + rng.below((t / 2) as u64) as usize;
                    let needle = rng.below(content) as i64;
                    row[pos] = self.marker(0);
                    row[pos + 1] = needle;
                    row[t as usize - 1] = self.cue();
                    needle
                }
                Task::Gym => {
                    let n = self.needles;
                    let values: Vec<i64> = (0..n).map(|_| rng.below(content) as i64).collect();
                    for i in 0..n {
                        let p = ((i + 1) * (t - 4) / (n + 1)) as usize;
                        row[p] = self.marker(i);
                        row[p + 1] = values[i as usize];
                    }
                    let q = rng.below(n as u64) as i64;
                    row[t as usize - 2] = self.cue();
                    row[t as usize - 1] = self.marker(q);
                    values[q as usize]
                }
            };
            inputs.extend(row);
            answers.push(answer);
        }
        let mut targets = vec![-100i64; (b * t) as usize];
        for (i, a) in answers.iter().enumerate() {
            targets[(i as i64 * t + t - 1) as usize] = *a;
        }
        Ok(TaskBatch {
            inputs: Tensor::from_slice(&inputs).view([b, t]).to_device(device),
            targets: Tensor::from_slice(&targets).view([b, t]).to_device(device),
            answers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn gym_rows_hold_markers_and_the_answer() {
        let g = TaskGen::new(256, 3).unwrap();
        let mut rng = HostRng::new(1);
        let b = g.batch(Task::Gym, 4, 64, &mut rng, Device::Cpu).unwrap();
        for r in 0..4 {
            let row: Vec<i64> = Vec::try_from(b.inputs.get(r)).unwrap();
            assert_eq!(row[62], g.cue());
            let q = row[63];
            let p = row.iter().position(|&x| x == q).unwrap();
            assert_eq!(row[p + 1], b.answers[r as usize]);
            assert!(b.answers[r as usize] < g.content());
            let tg: Vec<i64> = Vec::try_from(b.targets.get(r)).unwrap();
            assert_eq!(tg.iter().filter(|&&x| x != -100).count(), 1);
        }
        let ret = g.batch(Task::Retrieval, 64, 32, &mut rng, Device::Cpu).unwrap();
        let distinct: std::collections::HashSet<i64> = ret.answers.iter().copied().collect();
        assert!(distinct.len() > 40, "needles come from the whole vocabulary");
        assert!(g.batch(Task::Gym, 1, 8, &mut rng, Device::Cpu).is_err());
    }
}
