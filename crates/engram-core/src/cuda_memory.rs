//! The CUDA caching allocator's byte counters, read through the kernel library (tch has no
//! binding): what `torch.cuda.memory_allocated`, `max_memory_allocated`, `memory_reserved`,
//! `max_memory_reserved` and `reset_peak_memory_stats` give in Python. Unlike nvidia-smi's
//! per-process figure they leave out the CUDA context and count only this process' tensors
//! (allocated) or the allocator's segments (reserved).
//!
//! ```no_run
//! # fn main() -> engram_core::Result<()> {
//! engram_core::cuda_memory::reset_peak(0)?;
//! // ... work on cuda:0 ...
//! let m = engram_core::cuda_memory::stats(0)?;
//! println!("peak allocated {:.0} MiB", m.allocated_peak as f64 / 1048576.0);
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use crate::kernels::{check_status, library};
use std::ffi::c_char;

type StatsFn = unsafe extern "C" fn(i32, i32, *mut i64, *mut c_char, usize) -> i32;

/// Bytes held by the caching allocator on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// Bytes of live tensors now.
    pub allocated: i64,
    /// Highest `allocated` since the last reset (or since the process started).
    pub allocated_peak: i64,
    /// Bytes of device memory the allocator holds now (live tensors and cached free blocks).
    pub reserved: i64,
    /// Highest `reserved` since the last reset.
    pub reserved_peak: i64,
}

fn call(device: usize, reset: bool) -> Result<MemoryStats> {
    let lib = library().ok_or_else(|| Error::Kernel("allocator statistics need the kernel library (cargo xtask kernels)".into()))?;
    // SAFETY: the signature matches kernels/src/memory.cpp.
    let f: StatsFn = unsafe { lib.symbol("engram_cuda_memory_stats")? };
    let dev = i32::try_from(device).map_err(|_| Error::Device(format!("cuda:{device} is out of range")))?;
    let mut out = [0i64; 4];
    let mut err = vec![0u8; 1024];
    // SAFETY: `out` has the four slots the function writes; `err` is a writable buffer of its length.
    let code = unsafe { f(dev, i32::from(reset), out.as_mut_ptr(), err.as_mut_ptr().cast(), err.len()) };
    check_status(code, &err)?;
    Ok(MemoryStats { allocated: out[0], allocated_peak: out[1], reserved: out[2], reserved_peak: out[3] })
}

/// The counters of `cuda:device`. Errors without the kernel library or for a missing device.
pub fn stats(device: usize) -> Result<MemoryStats> {
    call(device, false)
}

/// Resets both peaks to the current values, returning the counters read just before.
pub fn reset_peak(device: usize) -> Result<MemoryStats> {
    call(device, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_or_library_is_an_error_not_a_crash() {
        // No GPU in CI: either the library is absent (Kernel error) or it rejects the device.
        if tch::Cuda::device_count() == 0 {
            assert!(stats(0).is_err());
        }
        assert!(stats(1 << 20).is_err());
    }

    #[test]
    fn peaks_follow_an_allocation_on_the_gpu() {
        if tch::Cuda::device_count() == 0 || library().is_none() {
            eprintln!("skipped: needs a CUDA device and the kernel library");
            return;
        }
        let before = reset_peak(0).unwrap();
        let t = tch::Tensor::zeros([1 << 20], (tch::Kind::Float, tch::Device::Cuda(0)));
        let during = stats(0).unwrap();
        assert!(during.allocated >= before.allocated + (4 << 20));
        assert!(during.allocated_peak >= during.allocated && during.reserved >= during.allocated);
        drop(t);
        let after = stats(0).unwrap();
        assert!(after.allocated_peak >= during.allocated && after.allocated < during.allocated);
    }
}
