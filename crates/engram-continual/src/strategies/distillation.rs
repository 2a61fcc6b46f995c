//! Learning without Forgetting (Li & Hoiem 2017): the network before the current experience
//! is kept frozen, and the current data's outputs on the old classes are distilled from it:
//! `α · KL(softmax(z_old/T) ‖ softmax(z_new/T))` (batch mean, as Avalanche computes it).

use crate::error::Result;
use crate::scenario::{Experience, Setting};
use crate::template::{Batch, Context, Learner, Plugin};
use tch::{Kind, Tensor};

/// LwF with weight `alpha` and temperature `temperature`.
pub struct Lwf {
    alpha: f64,
    temperature: f64,
    old: Option<Vec<Tensor>>,
    old_tasks: Vec<(i64, Vec<i64>)>,
}

impl Lwf {
    /// LwF plugin.
    pub fn new(alpha: f64, temperature: f64) -> Self {
        Lwf { alpha, temperature, old: None, old_tasks: Vec::new() }
    }

    fn kd(&self, new: &Tensor, old: &Tensor) -> Tensor {
        let log_p = (new / self.temperature).log_softmax(-1, Kind::Float);
        let q = (old / self.temperature).softmax(-1, Kind::Float);
        let b = new.size()[0].max(1) as f64;
        (&q * (q.clamp_min(1e-12).log() - log_p)).sum(Kind::Float) / b
    }
}

impl Plugin for Lwf {
    fn name(&self) -> String {
        "lwf".into()
    }
    fn loss_terms(&mut self, l: &Learner, batch: &Batch, logits: &Tensor, ctx: &Context) -> Result<Vec<Tensor>> {
        let Some(old) = &self.old else { return Ok(Vec::new()) };
        let cur = batch.current();
        let dev = cur.x.device();
        let mut terms = Vec::new();
        match l.setting {
            Setting::TaskIncremental => {
                // Each old task's outputs on the new data, through that task's head / mask.
                for (task, classes) in &self.old_tasks {
                    let t = Tensor::full([cur.len() as i64], *task, (Kind::Int64, dev));
                    let cols = Tensor::from_slice(classes).to_device(dev);
                    let new = l.logits(&cur.x, &t)?.index_select(1, &cols);
                    let prev = tch::no_grad(|| l.logits_with(old, &cur.x, &t))?.index_select(1, &cols);
                    terms.push(self.kd(&new, &prev) * (self.alpha / self.old_tasks.len() as f64));
                }
            }
            _ => {
                let old_classes: Vec<i64> = if l.setting == Setting::ClassIncremental {
                    ctx.seen_classes.iter().copied().filter(|c| !ctx.current_classes.contains(c)).collect()
                } else {
                    (0..l.model.n_classes()).collect()
                };
                if !old_classes.is_empty() {
                    let cols = Tensor::from_slice(&old_classes).to_device(dev);
                    let new = logits.narrow(0, 0, batch.n_current).index_select(1, &cols);
                    let prev = tch::no_grad(|| l.logits_with(old, &cur.x, &cur.t))?.index_select(1, &cols);
                    terms.push(self.kd(&new, &prev) * self.alpha);
                }
            }
        }
        Ok(terms)
    }
    fn after_experience(&mut self, l: &mut Learner, e: &Experience, _c: &Context) -> Result<()> {
        self.old = Some(l.model.snapshot());
        self.old_tasks.push((e.task as i64, e.classes.clone()));
        Ok(())
    }
}
