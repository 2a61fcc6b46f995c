//! Global gradient-norm clipping without a device→host sync, as PyTorch's
//! `torch.nn.utils.clip_grad_norm_` (foreach path, `norm_type=2`, `error_if_nonfinite=False`):
//!
//! ```text
//! norms = torch._foreach_norm(grads)
//! total = torch.linalg.vector_norm(torch.stack(norms))
//! coef  = (max_norm / (total + 1e-6)).clamp(max=1.0)
//! torch._foreach_mul_(grads, coef)
//! ```
//!
//! The total norm comes back as a 0-dim tensor on the gradients' device, so a training loop reads
//! it to the host only when it logs. On CUDA the kernel library's `engram_clip_grad_norm` runs
//! those exact ATen calls (a few multi-tensor launches for a whole parameter list); elsewhere, or
//! with an older library that lacks the symbol, the same arithmetic runs as tch ops (one norm per
//! tensor, a stack, `clamp_max` and an in-place multiply by the 0-dim coefficient), also without
//! a sync.

use crate::kernels::{check_status, library, ERR_LEN};
use crate::{Error, Result};
use std::ffi::c_char;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

/// Name of the entry point in the kernel library (`kernels/src/clip.cpp`).
pub const SYMBOL: &str = "engram_clip_grad_norm";

type ClipFn = unsafe extern "C" fn(
    grads: *mut *mut C_tensor,
    n: usize,
    max_norm: f64,
    out_total: *mut *mut C_tensor,
    err: *mut c_char,
    err_len: usize,
) -> i32;

/// True when the kernel-library path can run on `device` (a CUDA device and a library that
/// exports [`SYMBOL`]; an older library without it still loads, and the tch path is used).
pub fn available(device: Device) -> bool {
    device.is_cuda() && library().is_some_and(|l| unsafe { l.symbol::<ClipFn>(SYMBOL) }.is_ok())
}

/// Global L2 norm of `grads` (as if concatenated into one vector) before clipping, as a 0-dim
/// f32 tensor on their device; when `max_norm > 0` every gradient is then multiplied in place by
/// `min(max_norm / (norm + 1e-6), 1)`. `max_norm <= 0` (or `+inf`, whose coefficient is 1) only
/// computes the norm. Nothing is read back to the host.
///
/// The gradients must be defined, floating-point and on one device (dtypes may differ: per-tensor
/// norms are taken in each tensor's dtype and the total in their promoted dtype, as PyTorch
/// does). An empty list gives a CPU zero. A non-finite norm is not an error: as in PyTorch, the
/// gradients are then scaled by a NaN coefficient, which the caller sees in the returned norm.
///
/// ```
/// use engram_core::ops::clip_grad_norm;
/// use tch::{Kind, Tensor};
/// let g = [Tensor::from_slice(&[3.0f32, 0.0]), Tensor::from_slice(&[4.0f32])];
/// let total = clip_grad_norm(&g, 1.0).unwrap(); // no sync: a 0-dim tensor
/// assert!((total.double_value(&[]) - 5.0).abs() < 1e-6);
/// let after = clip_grad_norm(&g, 0.0).unwrap(); // max_norm <= 0: norm only
/// assert!((after.double_value(&[]) - 1.0).abs() < 1e-5);
/// assert_eq!(total.kind(), Kind::Float);
/// ```
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Result<Tensor> {
    let Some(dev) = validate(grads, max_norm)? else { return Ok(empty_total()) };
    if available(dev) {
        clip_with_library(grads, max_norm)
    } else {
        clip_with_tch(grads, max_norm)
    }
}

/// [`clip_grad_norm`] through the kernel library only (an error when [`available`] is false).
pub fn clip_with_library(grads: &[Tensor], max_norm: f64) -> Result<Tensor> {
    let Some(dev) = validate(grads, max_norm)? else { return Ok(empty_total()) };
    if !available(dev) {
        return Err(Error::Kernel(format!("{SYMBOL} needs CUDA tensors and a kernel library that exports it")));
    }
    let lib = library().expect("checked by available()");
    // SAFETY: signature fixed by kernels/src/clip.cpp (ABI in crate::kernels).
    let f: ClipFn = unsafe { lib.symbol(SYMBOL)? };
    let mut ptrs: Vec<*mut C_tensor> = grads.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: every pointer refers to a live tensor for the duration of the call; the library
    // writes a fresh heap tensor into `out`, which we own.
    let code = unsafe { f(ptrs.as_mut_ptr(), ptrs.len(), max_norm, &mut out, err.as_mut_ptr().cast(), err.len()) };
    // SAFETY: a non-null output is a fresh `at::Tensor*` the caller owns.
    let total = (!out.is_null()).then(|| unsafe { Tensor::from_ptr(out) });
    check_status(code, &err)?;
    total.ok_or_else(|| Error::Kernel(format!("{SYMBOL} reported success but returned no norm")))
}

/// [`clip_grad_norm`] in tch ops only (the path used on the CPU and without the library).
pub fn clip_with_tch(grads: &[Tensor], max_norm: f64) -> Result<Tensor> {
    let Some(_) = validate(grads, max_norm)? else { return Ok(empty_total()) };
    tch::no_grad(|| -> Result<Tensor> {
        // `Tensor::norm` is `at::norm(self, 2)`, i.e. linalg.vector_norm over every element.
        let norms: Vec<Tensor> = grads.iter().map(|g| g.f_norm()).collect::<std::result::Result<_, _>>()?;
        let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
        if max_norm > 0.0 {
            // Python's `max_norm / t` is `t.reciprocal() * max_norm`.
            let coef = (&total + 1e-6).f_reciprocal()?.f_mul_scalar(max_norm)?.f_clamp_max(1.0)?;
            for g in grads {
                let _ = g.shallow_clone().f_mul_(&coef)?;
            }
        }
        Ok(total.f_to_kind(Kind::Float)?)
    })
}

fn empty_total() -> Tensor {
    Tensor::zeros([], (Kind::Float, Device::Cpu))
}

/// Checks the arguments; the gradients' device, or `None` for an empty list.
fn validate(grads: &[Tensor], max_norm: f64) -> Result<Option<Device>> {
    if max_norm.is_nan() {
        return Err(Error::InvalidArgument("clip_grad_norm: max_norm is NaN".into()));
    }
    let Some(first) = grads.first() else { return Ok(None) };
    for (i, g) in grads.iter().enumerate() {
        if !g.defined() {
            return Err(Error::InvalidArgument(format!("clip_grad_norm: gradient {i} is undefined")));
        }
        if !g.is_floating_point() {
            return Err(Error::Dtype(format!("clip_grad_norm: gradient {i} has dtype {:?}, expected a floating-point one", g.kind())));
        }
    }
    let dev = first.device();
    if let Some((i, g)) = grads.iter().enumerate().find(|(_, g)| g.device() != dev) {
        return Err(Error::Device(format!(
            "clip_grad_norm: all gradients must be on one device (gradient 0 is on {dev:?}, gradient {i} on {:?})",
            g.device()
        )));
    }
    Ok(Some(dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_not_the_library_path() {
        assert!(!available(Device::Cpu));
    }

    #[test]
    fn nan_max_norm_is_rejected() {
        let g = [Tensor::ones([2], (Kind::Float, Device::Cpu))];
        assert!(matches!(clip_grad_norm(&g, f64::NAN), Err(Error::InvalidArgument(_))));
    }
}
