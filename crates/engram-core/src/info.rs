//! What this build of engram sees: libtorch version, CUDA, devices, the kernel library.

use serde::Serialize;

/// A snapshot of the runtime environment, printed by `engram info`.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    /// engram version.
    pub engram_version: String,
    /// The PyTorch/libtorch version engram was built against.
    pub libtorch_version: String,
    /// True when libtorch sees a CUDA device.
    pub cuda_available: bool,
    /// Number of CUDA devices.
    pub cuda_device_count: i64,
    /// Name of CUDA device 0 (from the kernel library when loaded, else `nvidia-smi`-free probe).
    pub cuda_device_name: Option<String>,
    /// cuDNN available.
    pub cudnn_available: bool,
    /// Kernel library path when loaded.
    pub kernels_path: Option<String>,
    /// Kernel library version when loaded.
    pub kernels_version: Option<String>,
    /// Why the kernel library is not loaded.
    pub kernels_error: Option<String>,
    /// Number of CPU threads libtorch uses.
    pub cpu_threads: i32,
}

/// Collects [`RuntimeInfo`].
///
/// ```
/// let info = engram_core::info::runtime_info();
/// assert!(!info.libtorch_version.is_empty());
/// ```
pub fn runtime_info() -> RuntimeInfo {
    let lib = crate::kernels::library();
    let cuda = tch::Cuda::is_available();
    RuntimeInfo {
        engram_version: env!("CARGO_PKG_VERSION").into(),
        libtorch_version: env!("ENGRAM_LIBTORCH_VERSION").into(),
        cuda_available: cuda,
        cuda_device_count: tch::Cuda::device_count(),
        cuda_device_name: if cuda { device_name(0) } else { None },
        cudnn_available: tch::Cuda::cudnn_is_available(),
        kernels_path: lib.map(|l| l.path.display().to_string()),
        kernels_version: lib.map(|l| l.version()),
        kernels_error: crate::kernels::load_error(),
        cpu_threads: tch::get_num_threads(),
    }
}

/// Name of a CUDA device, asked of the kernel library (tch has no such query).
pub fn device_name(ordinal: i32) -> Option<String> {
    type F = unsafe extern "C" fn(i32, *mut std::ffi::c_char, usize) -> i32;
    let lib = crate::kernels::library()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: signature fixed by kernels/src/api.cu; the buffer outlives the call.
    let code = unsafe { lib.symbol::<F>("engram_device_name").ok()?(ordinal, buf.as_mut_ptr().cast(), buf.len()) };
    if code != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}
