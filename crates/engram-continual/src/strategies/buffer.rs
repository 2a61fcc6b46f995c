//! Rehearsal buffers: fixed-capacity sample stores with three filling policies.
//!
//! * **reservoir** (Vitter's algorithm R): after `n` samples have streamed past, each of them is
//!   in the buffer with probability `capacity / n`, whatever the order;
//! * **class-balanced**: after each experience, `capacity / #classes seen` random samples per class;
//! * **greedy class-balanced** (GDumb): a sample enters while the buffer has room, or when its
//!   class holds fewer than `capacity / #classes seen`, evicting a random sample of the largest class.

use crate::data::Dataset;
use crate::error::{invalid, Result};
use engram_core::seed::HostRng;
use tch::{Device, Kind, Tensor};

/// Which rows of an incoming batch go into which buffer slots, as decided by reservoir sampling.
/// `seen` counts the samples offered so far and is advanced by `n_rows`. When two rows of one
/// batch pick the same slot, only the later one is kept (it would have overwritten the earlier).
pub fn reservoir_assign(seen: &mut u64, capacity: usize, n_rows: usize, rng: &mut HostRng) -> Vec<(i64, i64)> {
    let mut slot_of = Vec::with_capacity(n_rows);
    for row in 0..n_rows {
        let slot = if (*seen as usize) < capacity {
            Some(*seen as usize)
        } else {
            let j = rng.below(*seen + 1) as usize;
            (j < capacity).then_some(j)
        };
        *seen += 1;
        if let Some(s) = slot {
            slot_of.retain(|&(_, old): &(i64, i64)| old != s as i64);
            slot_of.push((row as i64, s as i64));
        }
    }
    slot_of
}

/// GDumb's greedy class-balanced rule. `buffer_labels` is the label of every occupied slot and is
/// updated in place; returns (row, slot) pairs to write.
pub fn greedy_balanced_assign(buffer_labels: &mut Vec<i64>, capacity: usize, new_labels: &[i64], rng: &mut HostRng) -> Vec<(i64, i64)> {
    let mut writes: Vec<(i64, i64)> = Vec::new();
    let mut classes: Vec<i64> = buffer_labels.clone();
    classes.sort_unstable();
    classes.dedup();
    for (row, &y) in new_labels.iter().enumerate() {
        if !classes.contains(&y) {
            classes.push(y);
        }
        let slot = if buffer_labels.len() < capacity {
            buffer_labels.push(y);
            Some(buffer_labels.len() - 1)
        } else {
            let quota = capacity / classes.len();
            let count = buffer_labels.iter().filter(|&&c| c == y).count();
            if count < quota {
                let largest = *classes
                    .iter()
                    .max_by_key(|&&c| (buffer_labels.iter().filter(|&&b| b == c).count(), -c))
                    .expect("non-empty");
                let victims: Vec<usize> = (0..buffer_labels.len()).filter(|&i| buffer_labels[i] == largest).collect();
                let v = victims[rng.below(victims.len() as u64) as usize];
                buffer_labels[v] = y;
                Some(v)
            } else {
                None
            }
        };
        if let Some(s) = slot {
            writes.retain(|&(_, old)| old != s as i64);
            writes.push((row as i64, s as i64));
        }
    }
    writes
}

/// A fixed-capacity store of samples (and optionally the logits the model gave them).
#[derive(Debug)]
pub struct SlotBuffer {
    capacity: usize,
    x: Tensor,
    y: Tensor,
    t: Tensor,
    logits: Option<Tensor>,
    len: usize,
    /// Labels of the occupied slots, on the host.
    pub labels: Vec<i64>,
}

impl SlotBuffer {
    /// An empty buffer for inputs of width `dim` (and logits of width `logit_dim` when given).
    pub fn new(capacity: usize, dim: i64, logit_dim: Option<i64>, device: Device) -> Result<Self> {
        if capacity == 0 {
            return Err(invalid("buffer capacity must be positive"));
        }
        let m = capacity as i64;
        Ok(SlotBuffer {
            capacity,
            x: Tensor::zeros([m, dim], (Kind::Float, device)),
            y: Tensor::zeros([m], (Kind::Int64, device)),
            t: Tensor::zeros([m], (Kind::Int64, device)),
            logits: logit_dim.map(|c| Tensor::zeros([m, c], (Kind::Float, device))),
            len: 0,
            labels: Vec::new(),
        })
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Occupied slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes rows of `src` (and their `logits`) into slots.
    pub fn write(&mut self, writes: &[(i64, i64)], src: &Dataset, logits: Option<&Tensor>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let dev = self.x.device();
        let rows = Tensor::from_slice(&writes.iter().map(|w| w.0).collect::<Vec<_>>()).to_device(dev);
        let slots_v: Vec<i64> = writes.iter().map(|w| w.1).collect();
        if slots_v.iter().any(|&s| s < 0 || s as usize >= self.capacity) {
            return Err(invalid("buffer slot out of range"));
        }
        let slots = Tensor::from_slice(&slots_v).to_device(dev);
        tch::no_grad(|| {
            let _ = self.x.index_copy_(0, &slots, &src.x.index_select(0, &rows).detach());
            let _ = self.y.index_copy_(0, &slots, &src.y.index_select(0, &rows));
            let _ = self.t.index_copy_(0, &slots, &src.t.index_select(0, &rows));
        });
        if let (Some(store), Some(z)) = (self.logits.as_mut(), logits) {
            tch::no_grad(|| {
                let _ = store.index_copy_(0, &slots, &z.index_select(0, &rows).detach());
            });
        }
        let ys: Vec<i64> = Vec::try_from(&src.y.index_select(0, &rows).to_device(Device::Cpu))?;
        for (&s, y) in slots_v.iter().zip(ys) {
            let s = s as usize;
            if s >= self.len {
                self.len = s + 1;
                self.labels.resize(self.len, -1);
            }
            self.labels[s] = y;
        }
        Ok(())
    }

    /// Up to `k` distinct occupied slots drawn uniformly, with their stored logits.
    pub fn sample(&self, k: usize, rng: &mut HostRng) -> (Dataset, Option<Tensor>) {
        let mut idx: Vec<i64> = (0..self.len as i64).collect();
        let k = k.min(self.len);
        for i in 0..k {
            let j = i + rng.below((self.len - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx.truncate(k);
        let i = Tensor::from_slice(&idx).to_device(self.x.device());
        let d = Dataset { x: self.x.index_select(0, &i), y: self.y.index_select(0, &i), t: self.t.index_select(0, &i) };
        (d, self.logits.as_ref().map(|z| z.index_select(0, &i)))
    }

    /// Every occupied slot as a data set.
    pub fn as_dataset(&self) -> Dataset {
        let n = self.len as i64;
        Dataset { x: self.x.narrow(0, 0, n), y: self.y.narrow(0, 0, n), t: self.t.narrow(0, 0, n) }
    }
}

/// A class-balanced buffer rebuilt after each experience: `capacity / #classes` per class.
#[derive(Debug)]
pub struct ClassBalancedBuffer {
    capacity: usize,
    data: Option<Dataset>,
}

impl ClassBalancedBuffer {
    /// An empty buffer.
    pub fn new(capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(invalid("buffer capacity must be positive"));
        }
        Ok(ClassBalancedBuffer { capacity, data: None })
    }

    /// Adds an experience's data and rebalances.
    pub fn update(&mut self, new: &Dataset, rng: &mut HostRng) -> Result<()> {
        let all = match &self.data {
            Some(d) => Dataset::concat(&[d, new])?,
            None => new.clone(),
        };
        let labels = all.labels();
        let mut classes = labels.clone();
        classes.sort_unstable();
        classes.dedup();
        let quota = (self.capacity / classes.len()).max(1);
        let mut keep = Vec::new();
        for c in classes {
            let mut idx: Vec<i64> = (0..labels.len()).filter(|&i| labels[i] == c).map(|i| i as i64).collect();
            rng.shuffle(&mut idx);
            keep.extend_from_slice(&idx[..quota.min(idx.len())]);
        }
        keep.sort_unstable();
        self.data = Some(all.subset(&keep)?);
        Ok(())
    }

    /// Number of stored samples.
    pub fn len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `k` distinct stored samples.
    pub fn sample(&self, k: usize, rng: &mut HostRng) -> Result<Option<Dataset>> {
        let Some(d) = &self.data else { return Ok(None) };
        let mut idx: Vec<i64> = (0..d.len() as i64).collect();
        rng.shuffle(&mut idx);
        idx.truncate(k.min(d.len()));
        Ok(Some(d.subset(&idx)?))
    }

    /// Labels stored (for tests and reports).
    pub fn labels(&self) -> Vec<i64> {
        self.data.as_ref().map(|d| d.labels()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_inclusion_is_uniform_chi_square() {
        // Stream N items into a reservoir of M, many times; each item should be kept with
        // probability M/N. Pearson's statistic over the N items has N-1 = 199 degrees of
        // freedom: mean 199, sd ~20; 300 is ~5 sd out, a bound a correct sampler never hits
        // and a biased one (e.g. keeping the first M) exceeds by orders of magnitude.
        let (n, m, trials) = (200usize, 20usize, 2000usize);
        let mut counts = vec![0f64; n];
        let mut rng = HostRng::new(11);
        for _ in 0..trials {
            let mut seen = 0u64;
            let mut slots = vec![usize::MAX; m];
            // Offer the stream in batches of 7 to exercise in-batch slot collisions.
            let mut start = 0;
            while start < n {
                let len = 7.min(n - start);
                for (row, slot) in reservoir_assign(&mut seen, m, len, &mut rng) {
                    slots[slot as usize] = start + row as usize;
                }
                start += len;
            }
            for s in slots {
                counts[s] += 1.0;
            }
        }
        let expected = (trials * m) as f64 / n as f64;
        let chi2: f64 = counts.iter().map(|c| (c - expected).powi(2) / expected).sum();
        assert!(chi2 < 300.0, "chi2 = {chi2}");
        assert_eq!(counts.iter().sum::<f64>() as usize, trials * m);
    }

    #[test]
    fn greedy_balanced_keeps_classes_equal() {
        let mut labels = Vec::new();
        let mut rng = HostRng::new(3);
        let first: Vec<i64> = (0..100).map(|i| i % 2).collect();
        greedy_balanced_assign(&mut labels, 40, &first, &mut rng);
        assert_eq!(labels.len(), 40);
        let second: Vec<i64> = (0..100).map(|i| 2 + i % 2).collect();
        greedy_balanced_assign(&mut labels, 40, &second, &mut rng);
        for c in 0..4 {
            assert_eq!(labels.iter().filter(|&&l| l == c).count(), 10, "{labels:?}");
        }
    }

    #[test]
    fn slot_buffer_writes_and_samples() {
        let x = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([6, 2]);
        let d = Dataset::new(x, Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]), 1).unwrap();
        let mut b = SlotBuffer::new(3, 2, None, Device::Cpu).unwrap();
        b.write(&[(0, 0), (4, 2)], &d, None).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b.labels, vec![0, -1, 4]);
        let (s, _) = b.sample(10, &mut HostRng::new(1));
        assert_eq!(s.len(), 3);
        assert!(SlotBuffer::new(0, 2, None, Device::Cpu).is_err());
        let mut cb = ClassBalancedBuffer::new(4).unwrap();
        cb.update(&d, &mut HostRng::new(2)).unwrap();
        assert_eq!(cb.len(), 6); // quota max(4/6,1) = 1 per class
    }
}
