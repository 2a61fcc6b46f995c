//! Strategies that keep past samples: experience replay, DER++, A-GEM and GDumb.

use super::buffer::{greedy_balanced_assign, reservoir_assign, ClassBalancedBuffer, SlotBuffer};
use super::regularization::grads_of;
use crate::data::Dataset;
use crate::error::Result;
use crate::scenario::Experience;
use crate::template::{Batch, Context, Learner, Plugin};
use engram_core::seed::HostRng;
use tch::{Kind, Tensor};

/// How a replay buffer is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferPolicy {
    /// Reservoir sampling over the whole stream, updated every step.
    Reservoir,
    /// Equal share per class, rebuilt after every experience.
    ClassBalanced,
}

enum Store {
    Reservoir { buf: Option<SlotBuffer>, seen: u64 },
    Balanced(ClassBalancedBuffer),
}

/// Experience replay: every mini-batch is extended with up to `replay_batch` stored samples.
pub struct Replay {
    capacity: usize,
    replay_batch: usize,
    store: Store,
    rng: HostRng,
}

impl Replay {
    /// A replay plugin with a buffer of `capacity` samples.
    pub fn new(capacity: usize, replay_batch: usize, policy: BufferPolicy, seed: u64) -> Result<Self> {
        let store = match policy {
            BufferPolicy::Reservoir => Store::Reservoir { buf: None, seen: 0 },
            BufferPolicy::ClassBalanced => Store::Balanced(ClassBalancedBuffer::new(capacity)?),
        };
        Ok(Replay { capacity, replay_batch, store, rng: HostRng::new(seed ^ 0x5EED) })
    }
    /// Samples currently stored.
    pub fn stored(&self) -> usize {
        match &self.store {
            Store::Reservoir { buf, .. } => buf.as_ref().map_or(0, |b| b.len()),
            Store::Balanced(b) => b.len(),
        }
    }
}

impl Plugin for Replay {
    fn name(&self) -> String {
        match self.store {
            Store::Reservoir { .. } => format!("replay-reservoir-{}", self.capacity),
            Store::Balanced(_) => format!("replay-balanced-{}", self.capacity),
        }
    }
    fn adapt_batch(&mut self, _l: &Learner, batch: &mut Batch, _c: &Context) -> Result<()> {
        let extra = match &self.store {
            Store::Reservoir { buf: Some(b), .. } if !b.is_empty() => Some(b.sample(self.replay_batch, &mut self.rng).0),
            Store::Balanced(b) => b.sample(self.replay_batch, &mut self.rng)?,
            _ => None,
        };
        if let Some(e) = extra {
            batch.append(&e);
        }
        Ok(())
    }
    fn after_step(&mut self, _l: &Learner, batch: &Batch, _z: &Tensor, _c: &Context) -> Result<()> {
        if let Store::Reservoir { buf, seen } = &mut self.store {
            let cur = batch.current();
            let b = match buf {
                Some(b) => b,
                None => buf.insert(SlotBuffer::new(self.capacity, cur.dim(), None, cur.x.device())?),
            };
            let writes = reservoir_assign(seen, self.capacity, cur.len(), &mut self.rng);
            b.write(&writes, &cur, None)?;
        }
        Ok(())
    }
    fn after_experience(&mut self, _l: &mut Learner, e: &Experience, _c: &Context) -> Result<()> {
        if let Store::Balanced(b) = &mut self.store {
            b.update(&e.train, &mut self.rng)?;
        }
        Ok(())
    }
}

/// DER++ (Buzzega et al. 2020): a reservoir of (input, label, logits at insertion); loss
/// `+ α·MSE(f(x'), z') + β·CE(f(x''), y'')` on two independent buffer samples.
pub struct DerPlusPlus {
    capacity: usize,
    alpha: f64,
    beta: f64,
    replay_batch: usize,
    buf: Option<SlotBuffer>,
    seen: u64,
    rng: HostRng,
}

impl DerPlusPlus {
    /// DER++ with a buffer of `capacity` and weights `alpha` (logits) and `beta` (labels).
    pub fn new(capacity: usize, alpha: f64, beta: f64, replay_batch: usize, seed: u64) -> Self {
        DerPlusPlus { capacity, alpha, beta, replay_batch, buf: None, seen: 0, rng: HostRng::new(seed ^ 0xDE2) }
    }
}

impl Plugin for DerPlusPlus {
    fn name(&self) -> String {
        format!("der++-{}", self.capacity)
    }
    fn loss_terms(&mut self, l: &Learner, _b: &Batch, _z: &Tensor, _c: &Context) -> Result<Vec<Tensor>> {
        let Some(buf) = self.buf.as_ref().filter(|b| !b.is_empty()) else { return Ok(Vec::new()) };
        let (d1, z1) = buf.sample(self.replay_batch, &mut self.rng);
        let (d2, _) = buf.sample(self.replay_batch, &mut self.rng);
        let z1 = z1.expect("DER++ buffer stores logits");
        let out1 = l.logits(&d1.x, &d1.t)?;
        let mse = out1.mse_loss(&z1, tch::Reduction::Mean) * self.alpha;
        let ce = Learner::loss(&l.logits(&d2.x, &d2.t)?, &d2.y) * self.beta;
        Ok(vec![mse, ce])
    }
    fn after_step(&mut self, _l: &Learner, batch: &Batch, logits: &Tensor, _c: &Context) -> Result<()> {
        let cur = batch.current();
        let z = logits.narrow(0, 0, batch.n_current);
        let b = match &mut self.buf {
            Some(b) => b,
            None => self.buf.insert(SlotBuffer::new(self.capacity, cur.dim(), Some(z.size()[1]), cur.x.device())?),
        };
        let writes = reservoir_assign(&mut self.seen, self.capacity, cur.len(), &mut self.rng);
        b.write(&writes, &cur, Some(&z))
    }
}

/// A-GEM (Chaudhry et al. 2019): if the batch gradient `g` conflicts with the gradient `g_ref`
/// on a sample of the episodic memory (`g·g_ref < 0`), it is projected to
/// `g − (g·g_ref / g_ref·g_ref) g_ref`, so the step does not increase the memory's loss to first
/// order. The projection acts on the parameters that received a gradient in this step.
pub struct AGem {
    per_experience: usize,
    sample_size: usize,
    memory: Option<Dataset>,
    reference: Option<Vec<Option<Tensor>>>,
    rng: HostRng,
    /// How many steps were projected (for reports and tests).
    pub projections: usize,
}

impl AGem {
    /// A-GEM keeping `per_experience` samples of every experience and drawing `sample_size`.
    pub fn new(per_experience: usize, sample_size: usize, seed: u64) -> Self {
        AGem { per_experience, sample_size, memory: None, reference: None, rng: HostRng::new(seed ^ 0xA6E), projections: 0 }
    }

    /// Projects gradients `g` against `g_ref` in place (the A-GEM rule). Returns whether it projected.
    pub fn project(grads: &mut [Tensor], reference: &[Option<Tensor>]) -> Result<bool> {
        let mut dot = 0.0;
        let mut rr = 0.0;
        for (g, r) in grads.iter().zip(reference) {
            if let (true, Some(r)) = (g.defined(), r) {
                dot += (g * r).sum(Kind::Double).double_value(&[]);
                rr += (r * r).sum(Kind::Double).double_value(&[]);
            }
        }
        if dot >= 0.0 || rr == 0.0 {
            return Ok(false);
        }
        let k = dot / rr;
        tch::no_grad(|| {
            for (g, r) in grads.iter_mut().zip(reference) {
                if let (true, Some(r)) = (g.defined(), r) {
                    let _ = g.f_sub_(&(r * k));
                }
            }
        });
        Ok(true)
    }
}

impl Plugin for AGem {
    fn name(&self) -> String {
        "a-gem".into()
    }
    fn before_backward(&mut self, l: &Learner, _b: &Batch, _c: &Context) -> Result<()> {
        self.reference = None;
        if let Some(mem) = &self.memory {
            let mut idx: Vec<i64> = (0..mem.len() as i64).collect();
            self.rng.shuffle(&mut idx);
            idx.truncate(self.sample_size.min(mem.len()));
            let s = mem.subset(&idx)?;
            let loss = Learner::loss(&l.logits(&s.x, &s.t)?, &s.y);
            self.reference = Some(grads_of(&loss, &l.model.params())?);
        }
        Ok(())
    }
    fn after_backward(&mut self, l: &Learner, _c: &Context) -> Result<()> {
        if let Some(r) = &self.reference {
            let mut grads: Vec<Tensor> = l.model.params().iter().map(|p| p.grad()).collect();
            if AGem::project(&mut grads, r)? {
                self.projections += 1;
            }
        }
        Ok(())
    }
    fn after_experience(&mut self, _l: &mut Learner, e: &Experience, _c: &Context) -> Result<()> {
        let mut idx: Vec<i64> = (0..e.train.len() as i64).collect();
        self.rng.shuffle(&mut idx);
        idx.truncate(self.per_experience.min(e.train.len()));
        idx.sort_unstable();
        let new = e.train.subset(&idx)?;
        self.memory = Some(match self.memory.take() {
            Some(m) => Dataset::concat(&[&m, &new])?,
            None => new,
        });
        Ok(())
    }
}

/// GDumb (Prabhu et al. 2020): a greedy class-balanced buffer of the stream; before each
/// evaluation the network is re-initialised and trained from scratch on the buffer only.
/// `passes` copies of the buffer are trained on per experience (the buffer is small, so it
/// takes more passes than the template's epochs over the stream).
pub struct GDumb {
    capacity: usize,
    passes: usize,
    buf: Option<SlotBuffer>,
    rng: HostRng,
}

impl GDumb {
    /// GDumb with a buffer of `capacity` samples and `passes` passes over it.
    pub fn new(capacity: usize, passes: usize, seed: u64) -> Self {
        GDumb { capacity, passes: passes.max(1), buf: None, rng: HostRng::new(seed ^ 0x6D) }
    }
}

impl Plugin for GDumb {
    fn name(&self) -> String {
        format!("gdumb-{}", self.capacity)
    }
    fn train_set(&mut self, l: &mut Learner, current: Dataset, _c: &Context) -> Result<Dataset> {
        let buf = match &mut self.buf {
            Some(b) => b,
            None => self.buf.insert(SlotBuffer::new(self.capacity, current.dim(), None, current.x.device())?),
        };
        let mut labels = buf.labels.clone();
        let writes = greedy_balanced_assign(&mut labels, self.capacity, &current.labels(), &mut self.rng);
        buf.write(&writes, &current, None)?;
        l.model.reset_parameters();
        let d = buf.as_dataset();
        let copies: Vec<&Dataset> = std::iter::repeat_n(&d, self.passes).collect();
        Dataset::concat(&copies)
    }
}
