//! libtorch's Kineto profiler (what `torch.profiler` drives) through the kernel library: record
//! CPU ops and CUDA kernels between [`start`] and [`stop`] and save a Chrome trace
//! (chrome://tracing, Perfetto, or `scripts/gpu/trace_summary.py` for a per-kernel table).
//!
//! ```no_run
//! # fn main() -> engram_core::Result<()> {
//! engram_core::profiler::start(true)?;
//! // ... the steps to look at ...
//! engram_core::profiler::stop(std::path::Path::new("trace.json"))?;
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use crate::kernels::{check_status, library};
use std::ffi::{c_char, CString};
use std::path::Path;

type StartFn = unsafe extern "C" fn(i32, *mut c_char, usize) -> i32;
type StopFn = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> i32;

/// Starts recording CPU ops, and CUDA kernels when `cuda` is true. Errors when the kernel
/// library (or its profiler entry points) is missing or a profiler already runs.
pub fn start(cuda: bool) -> Result<()> {
    let lib = library().ok_or_else(|| Error::Kernel("the profiler needs the kernel library (cargo xtask kernels)".into()))?;
    // SAFETY: the signature matches kernels/src/profiler.cpp.
    let f: StartFn = unsafe { lib.symbol("engram_profiler_start")? };
    let mut err = vec![0u8; 1024];
    let code = unsafe { f(i32::from(cuda), err.as_mut_ptr().cast(), err.len()) };
    check_status(code, &err)
}

/// Stops recording and writes the Chrome trace JSON to `path`.
pub fn stop(path: &Path) -> Result<()> {
    let lib = library().ok_or_else(|| Error::Kernel("the profiler needs the kernel library (cargo xtask kernels)".into()))?;
    // SAFETY: as in `start`.
    let f: StopFn = unsafe { lib.symbol("engram_profiler_stop")? };
    let p = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| Error::Kernel("trace path contains a NUL byte".into()))?;
    let mut err = vec![0u8; 1024];
    let code = unsafe { f(p.as_ptr(), err.as_mut_ptr().cast(), err.len()) };
    check_status(code, &err)
}
