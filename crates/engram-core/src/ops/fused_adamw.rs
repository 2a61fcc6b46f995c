//! libtorch's multi-tensor fused AdamW (`torch.optim.AdamW(fused=True)`), reached through the
//! kernel library because tch has no binding for `_fused_adamw_`. A whole parameter list takes a
//! few launches instead of about ten eager ops per parameter.

use crate::kernels::{check_status, library, ERR_LEN};
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

type FusedFn = unsafe extern "C" fn(
    *mut *mut torch_sys::C_tensor,
    *mut *mut torch_sys::C_tensor,
    *mut *mut torch_sys::C_tensor,
    *mut *mut torch_sys::C_tensor,
    *mut *mut torch_sys::C_tensor,
    i32,
    f64,
    f64,
    f64,
    f64,
    f64,
    *mut std::ffi::c_char,
    usize,
) -> i32;

/// Hyper-parameters of one fused step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// ε.
    pub eps: f64,
    /// The step count after this update (1 for the first).
    pub step: u64,
}

/// True when the fused step can run on `device` (a CUDA device and a kernel library that has it).
pub fn available(device: Device) -> bool {
    device.is_cuda()
        && library().is_some_and(|l| unsafe { l.symbol::<FusedFn>("engram_fused_adamw") }.is_ok())
}

/// One AdamW update of every `(param, grad, exp_avg, exp_avg_sq)` in place, exactly as
/// `torch.optim.AdamW(fused=True)` (fp32 tensors on one CUDA device).
///
/// ```no_run
/// use engram_core::ops::fused_adamw::{fused_adamw, AdamWStep};
/// # let (p, g, m, v) = (tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cuda(0))),
/// #   tch::Tensor::ones([2], (tch::Kind::Float, tch::Device::Cuda(0))),
/// #   tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cuda(0))),
/// #   tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cuda(0))));
/// let h = AdamWStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, weight_decay: 0.01, eps: 1e-8, step: 1 };
/// fused_adamw(&[p], &[g], &[m], &[v], h).unwrap();
/// ```
pub fn fused_adamw(params: &[Tensor], grads: &[Tensor], exp_avgs: &[Tensor], exp_avg_sqs: &[Tensor], h: AdamWStep) -> Result<()> {
    let n = params.len();
    if grads.len() != n || exp_avgs.len() != n || exp_avg_sqs.len() != n {
        return Err(Error::InvalidArgument("fused_adamw: lists of different lengths".into()));
    }
    if n == 0 {
        return Ok(());
    }
    let dev = params[0].device();
    if !available(dev) {
        return Err(Error::Kernel("fused AdamW needs CUDA tensors and the kernel library".into()));
    }
    for (i, ts) in params.iter().zip(grads).zip(exp_avgs).zip(exp_avg_sqs).enumerate() {
        let (((p, g), m), v) = ts;
        for t in [p, g, m, v] {
            if t.device() != dev || t.kind() != Kind::Float {
                return Err(Error::InvalidArgument(format!("fused_adamw: tensor {i} must be f32 on {dev:?}")));
            }
        }
    }
    let lib = library().expect("checked by available()");
    // SAFETY: signature fixed by kernels/src/optim.cpp.
    let f: FusedFn = unsafe { lib.symbol("engram_fused_adamw")? };
    // Filled on the device: a host tensor copied with `to_device` would block the host until the
    // GPU drains the stream (a pageable copy), an idle gap in every training step.
    let step = Tensor::full(&[] as &[i64], h.step as f64, (Kind::Float, dev));
    let ptrs = |ts: &[Tensor]| -> Vec<*mut torch_sys::C_tensor> { ts.iter().map(|t| t.as_ptr() as *mut _).collect() };
    let (mut p, mut g, mut m, mut v) = (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs));
    let mut s: Vec<*mut torch_sys::C_tensor> = vec![step.as_ptr() as *mut _; n];
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: every pointer refers to a live tensor for the duration of the call.
    let code = tch::no_grad(|| unsafe {
        f(
            p.as_mut_ptr(),
            g.as_mut_ptr(),
            m.as_mut_ptr(),
            v.as_mut_ptr(),
            s.as_mut_ptr(),
            n as i32,
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            err.as_mut_ptr().cast(),
            err.len(),
        )
    });
    check_status(code, &err)
}
