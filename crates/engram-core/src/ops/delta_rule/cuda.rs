//! The call into the CUDA kernel library (`engram_gdr_forward`, ABI in [`crate::kernels`]).
//!
//! Only the standard semantics crosses the ABI; [`super::delta_rule`] maps the seed onto it with
//! [`super::seed_to_standard`]. The kernel returns an `o` (and a final state) that carry its
//! hand-written backward, so tch autograd differentiates through it as through any op.

use crate::kernels::{check_status, library, load_error, ERR_LEN};
use crate::{Error, Result};
use std::ffi::c_char;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

/// Head dimensions the kernel is built for.
pub const SUPPORTED_HEAD_DIMS: [i64; 2] = [64, 128];

type GdrForward = unsafe extern "C" fn(
    q: *mut C_tensor,
    k: *mut C_tensor,
    v: *mut C_tensor,
    g: *mut C_tensor,
    beta: *mut C_tensor,
    h0_or_null: *mut C_tensor,
    scale: f64,
    chunk: i64,
    want_final_state: i32,
    out_o: *mut *mut C_tensor,
    out_state_or_null: *mut *mut C_tensor,
    err: *mut c_char,
    err_len: usize,
) -> i32;

/// The only chunk length the kernel is built for.
pub const KERNEL_CHUNK: i64 = 64;

/// Why the kernel cannot run these inputs (`q` `[B,T,H,K]`, `v` `[B,T,H,V]`) with this chunk
/// length, or `None`.
pub fn unsupported_reason(q: &Tensor, v: &Tensor, chunk: i64) -> Option<String> {
    if !matches!(q.device(), Device::Cuda(_)) {
        return Some(format!("tensors are on {:?}, the kernel needs CUDA", q.device()));
    }
    if !matches!(q.kind(), Kind::Float | Kind::BFloat16 | Kind::Half) {
        return Some(format!("dtype {:?} is not supported by the kernel (f32, bf16, f16)", q.kind()));
    }
    let (kd, vd) = (q.size()[3], v.size()[3]);
    if !SUPPORTED_HEAD_DIMS.contains(&kd) || !SUPPORTED_HEAD_DIMS.contains(&vd) {
        return Some(format!("head dims K={kd}, V={vd}: the kernel supports K, V in {SUPPORTED_HEAD_DIMS:?}"));
    }
    if chunk != KERNEL_CHUNK {
        return Some(format!("chunk_size {chunk}: the kernel is built for chunk {KERNEL_CHUNK} only"));
    }
    if q.size()[1] == 0 {
        return Some("empty sequence (T = 0)".into());
    }
    if library().is_none() {
        return Some(format!("kernel library not loaded: {}", load_error().unwrap_or_default()));
    }
    None
}

/// True when the kernel is loaded and supports these (already validated) inputs.
pub fn supports(q: &Tensor, v: &Tensor, chunk: i64) -> bool {
    unsupported_reason(q, v, chunk).is_none()
}

pub(crate) fn ensure_runnable(q: &Tensor, v: &Tensor, chunk: i64) -> Result<()> {
    match unsupported_reason(q, v, chunk) {
        None => Ok(()),
        Some(why) => Err(Error::Kernel(format!("Backend::Cuda cannot run: {why}"))),
    }
}

/// Calls `engram_gdr_forward` on validated, standard-semantics inputs (contiguous copies are
/// passed). Errors when the library is not loaded or the kernel reports a failure.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: &Tensor,
    beta: &Tensor,
    h0: Option<&Tensor>,
    scale: f64,
    chunk: i64,
    want_final_state: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let lib = library().ok_or_else(|| Error::Kernel(format!("kernel library not loaded: {}", load_error().unwrap_or_default())))?;
    // SAFETY: the signature is the one fixed by the ABI in kernels.rs / engram_abi.h.
    let f: GdrForward = unsafe { lib.symbol("engram_gdr_forward")? };
    let (q, k, v, g, beta) = (q.contiguous(), k.contiguous(), v.contiguous(), g.contiguous(), beta.contiguous());
    let h0 = h0.map(|s| s.contiguous());
    let h0_ptr = h0.as_ref().map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut C_tensor);
    let mut out_o: *mut C_tensor = std::ptr::null_mut();
    let mut out_state: *mut C_tensor = std::ptr::null_mut();
    let mut err = vec![0u8; ERR_LEN];
    // SAFETY: every tensor pointer stays alive (owned above) for the duration of the call; the
    // kernel only reads them and writes new heap tensors into the out pointers, which we own.
    let code = unsafe {
        f(
            q.as_ptr() as *mut C_tensor,
            k.as_ptr() as *mut C_tensor,
            v.as_ptr() as *mut C_tensor,
            g.as_ptr() as *mut C_tensor,
            beta.as_ptr() as *mut C_tensor,
            h0_ptr,
            scale,
            chunk,
            want_final_state as i32,
            &mut out_o,
            if want_final_state { &mut out_state } else { std::ptr::null_mut() },
            err.as_mut_ptr() as *mut c_char,
            err.len(),
        )
    };
    // Take ownership of whatever came back before looking at the status, so nothing leaks.
    // SAFETY: non-null outputs are fresh `at::Tensor*` the caller owns (ABI).
    let o = (!out_o.is_null()).then(|| unsafe { Tensor::from_ptr(out_o) });
    let state = (!out_state.is_null()).then(|| unsafe { Tensor::from_ptr(out_state) });
    check_status(code, &err)?;
    let o = o.ok_or_else(|| Error::Kernel("engram_gdr_forward reported success but returned no output".into()))?;
    if want_final_state && state.is_none() {
        return Err(Error::Kernel("engram_gdr_forward returned no final state although one was requested".into()));
    }
    Ok((o, state))
}
