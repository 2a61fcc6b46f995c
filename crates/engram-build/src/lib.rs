//! Build-script helper shared by every engram package that produces binaries or tests.
//!
//! Two problems are solved here, once:
//! * torch-sys links `libtorch_cuda.so` "as needed"; the linker then drops it because no
//!   symbol is referenced directly, and the binary reports no CUDA on a GPU host. We force it
//!   back with `--no-as-needed` when the library exists.
//! * Binaries carry no rpath to libtorch; we add one so `cargo run`/`cargo test` binaries find
//!   libtorch without `LD_LIBRARY_PATH`. Bundles for other hosts set `LD_LIBRARY_PATH` instead.
//!
//! Call [`link_libtorch`] from `build.rs` of a package that depends on `torch-sys` directly
//! (cargo only exposes `DEP_TORCH_SYS_LIBTORCH_LIB` to direct dependents).
//!
//! ```no_run
//! // build.rs
//! fn main() { engram_build::link_libtorch(); }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// Finds libtorch's `lib` directory: torch-sys' exported path first, then the python on PATH.
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DEP_TORCH_SYS_LIBTORCH_LIB") {
        let p = PathBuf::from(p);
        if p.is_dir() {
            return Some(p);
        }
    }
    if let Ok(p) = std::env::var("LIBTORCH") {
        let p = PathBuf::from(p).join("lib");
        if p.is_dir() {
            return Some(p);
        }
    }
    let py = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(py)
        .args(["-c", "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_dir().then_some(p)
}

/// Emits the link arguments described in the crate docs. Never fails the build: when
/// libtorch cannot be located, torch-sys' own build will already have reported why.
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TORCH_SYS_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(lib) = libtorch_lib_dir() else { return };
    if has_cuda(&lib) {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The CUDA runtime libraries of the PyPI wheels live beside torch, under nvidia/cu13/lib.
    if let Some(site) = lib.parent().and_then(Path::parent) {
        let nv = site.join("nvidia").join("cu13").join("lib");
        if nv.is_dir() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", nv.display());
        }
    }
}

fn has_cuda(lib: &Path) -> bool {
    lib.join("libtorch_cuda.so").exists()
}
