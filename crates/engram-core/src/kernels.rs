//! Run-time loader of the optional CUDA kernel library (`libengram_kernels.so`, built from
//! `kernels/` by `cargo xtask kernels`).
//!
//! The library is looked up, in order, at `$ENGRAM_KERNELS` (a file path), beside the running
//! executable, in `<exe dir>/../kernels/`, and at the workspace's `target/kernels/`. It is
//! loaded once; when it is absent (a CPU-only build) every op falls back to its tch path.
//!
//! ## The C ABI (shared with `kernels/src/*.cu`)
//! Every entry point returns `0` on success. On failure it returns non-zero and writes a
//! NUL-terminated message into `err` (capacity `err_len`); C++ exceptions never cross it.
//! Tensors travel as `at::Tensor*` (tch's `C_tensor`); outputs are new heap tensors the caller
//! owns.
//!
//! ```text
//! const char* engram_kernels_version(void);
//! int engram_gdr_forward(at::Tensor* q, at::Tensor* k, at::Tensor* v, at::Tensor* g,
//!                        at::Tensor* beta, at::Tensor* h0_or_null, double scale,
//!                        int64_t chunk, int32_t want_final_state,
//!                        at::Tensor** out_o, at::Tensor** out_state_or_null,
//!                        char* err, size_t err_len);
//! int engram_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
//!                        at::Tensor** exp_avg_sqs, at::Tensor** steps, int n, double lr,
//!                        double beta1, double beta2, double weight_decay, double eps,
//!                        char* err, size_t err_len);
//! int engram_clip_grad_norm(at::Tensor** grads, size_t n, double max_norm,
//!                           at::Tensor** out_total, char* err, size_t err_len);
//! ```
//! `engram_gdr_forward` computes the standard gated delta rule (log-space `g`), returns an
//! `o` that carries a hand-written CUDA backward (a `torch::autograd::Function`), and is
//! differentiable with respect to q, k, v, g, beta and h0. `engram_fused_adamw`
//! ([`crate::ops::fused_adamw`]) is libtorch's `_fused_adamw_`; `engram_clip_grad_norm`
//! ([`crate::ops::clip_grad_norm`]) is PyTorch's foreach `clip_grad_norm_` (`_foreach_norm`,
//! `_foreach_mul_`), returning the pre-clip norm as a new 0-dim f32 device tensor. Symbols added
//! after the first release are looked up lazily, so an older library without them still loads
//! and those ops take their tch paths. The distributed entry points (`engram_dist_*`, in
//! `kernels/src/dist.cpp`) are called from [`crate::distributed`].

use crate::{Error, Result};
use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::OnceLock;

/// File name of the kernel library.
pub const LIBRARY_NAME: &str = "libengram_kernels.so";

/// Error-buffer capacity used for calls across the ABI.
pub const ERR_LEN: usize = 4096;

/// A loaded kernel library.
pub struct KernelLibrary {
    lib: libloading::Library,
    /// Where it was loaded from.
    pub path: PathBuf,
}

static LIBRARY: OnceLock<std::result::Result<KernelLibrary, String>> = OnceLock::new();

/// The candidate paths, in lookup order.
pub fn candidate_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("ENGRAM_KERNELS") {
        v.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            v.push(dir.join(LIBRARY_NAME));
            v.push(dir.join("..").join("kernels").join(LIBRARY_NAME));
            // test binaries live in target/<profile>/deps
            v.push(dir.join("..").join("..").join("kernels").join(LIBRARY_NAME));
        }
    }
    v.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/kernels").join(LIBRARY_NAME));
    v
}

/// The kernel library, loading it on first use; `None` when it is not available.
pub fn library() -> Option<&'static KernelLibrary> {
    LIBRARY.get_or_init(load).as_ref().ok()
}

/// Why the library is not loaded (`None` when it is).
pub fn load_error() -> Option<String> {
    LIBRARY.get_or_init(load).as_ref().err().cloned()
}

fn load() -> std::result::Result<KernelLibrary, String> {
    if std::env::var_os("ENGRAM_NO_KERNELS").is_some() {
        return Err("disabled by ENGRAM_NO_KERNELS".into());
    }
    let mut tried = Vec::new();
    for path in candidate_paths() {
        if !path.exists() {
            tried.push(path.display().to_string());
            continue;
        }
        // SAFETY: loading a shared library runs its initialisers; ours only register CUDA code.
        return match unsafe { libloading::Library::new(&path) } {
            Ok(lib) => Ok(KernelLibrary { lib, path: path.canonicalize().unwrap_or(path) }),
            Err(e) => Err(format!("{} exists but failed to load: {e}", path.display())),
        };
    }
    Err(format!("{LIBRARY_NAME} not found (looked at {})", tried.join(", ")))
}

impl KernelLibrary {
    /// Looks up a symbol.
    ///
    /// # Safety
    /// `T` must be the exact function-pointer type of the symbol.
    pub unsafe fn symbol<T: Copy>(&self, name: &str) -> Result<T> {
        let sym: libloading::Symbol<T> = self
            .lib
            .get(name.as_bytes())
            .map_err(|e| Error::Kernel(format!("symbol {name} missing from {}: {e}", self.path.display())))?;
        Ok(*sym)
    }

    /// The version string the library reports.
    pub fn version(&self) -> String {
        type F = unsafe extern "C" fn() -> *const c_char;
        // SAFETY: the ABI above fixes this signature; the string is static in the library.
        unsafe {
            match self.symbol::<F>("engram_kernels_version") {
                Ok(f) => {
                    let p = f();
                    if p.is_null() { "unknown".into() } else { CStr::from_ptr(p).to_string_lossy().into_owned() }
                }
                Err(_) => "unknown".into(),
            }
        }
    }
}

/// Turns a status code and error buffer from the ABI into a `Result`.
pub fn check_status(code: i32, err: &[u8]) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
    let msg = String::from_utf8_lossy(&err[..end]).into_owned();
    Err(Error::Kernel(if msg.is_empty() { format!("kernel call failed with status {code}") } else { msg }))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn status_messages_become_errors() {
        let mut buf = [0u8; 16];
        buf[..5].copy_from_slice(b"boom!");
        let e = check_status(3, &buf).unwrap_err().to_string();
        assert!(e.contains("boom!"), "{e}");
        assert!(check_status(0, &buf).is_ok());
        assert!(check_status(1, &[0u8; 4]).unwrap_err().to_string().contains("status 1"));
    }
}
