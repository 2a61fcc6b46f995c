//! The minibatch training loop shared by SET, RigL, static-sparse, dense and lottery runs, so that
//! every variant of an experiment is trained identically.

use crate::datasets::Dataset;
use crate::error::{invalid, Result};
use crate::model::MaskedModel;
use crate::optim::MaskedOptimizer;
use engram_core::seed::HostRng;
use tch::{Kind, Tensor};

/// One pass over `data` in shuffled minibatches of `batch`; returns the mean training loss.
/// `after_step` runs after each optimizer step with the global step count (lottery rewinding
/// snapshots the weights there).
pub fn train_epoch(
    model: &dyn MaskedModel,
    opt: &mut MaskedOptimizer,
    data: &Dataset,
    batch: i64,
    rng: &mut HostRng,
    mut after_step: impl FnMut(),
) -> Result<f64> {
    let n = data.len();
    if batch <= 0 || n == 0 {
        return Err(invalid(format!("batch {batch} and data size {n} must be positive")));
    }
    let mut order: Vec<i64> = (0..n).collect();
    rng.shuffle(&mut order);
    let order = Tensor::from_slice(&order).to_device(data.x.device());
    let (mut total, mut seen) = (0.0, 0i64);
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let idx = order.narrow(0, start, len);
        let (x, y) = (data.x.index_select(0, &idx), data.y.index_select(0, &idx));
        let loss = model.logits(&x).cross_entropy_for_logits(&y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        after_step();
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            return Err(invalid("training loss became non-finite"));
        }
        total += l * len as f64;
        seen += len;
        start += len;
    }
    Ok(total / seen as f64)
}

/// A random batch of up to `n` examples (used for RigL's gradient scoring).
pub fn sample_batch(data: &Dataset, n: i64, rng: &mut HostRng) -> (Tensor, Tensor) {
    let mut idx: Vec<i64> = (0..data.len()).collect();
    rng.shuffle(&mut idx);
    idx.truncate(n.min(data.len()) as usize);
    let idx = Tensor::from_slice(&idx).to_device(data.x.device());
    (data.x.index_select(0, &idx), data.y.index_select(0, &idx).to_kind(Kind::Int64))
}
