//! The libtorch_cuda "as needed" trap (toolchain.md): without `--no-as-needed` the linker drops
//! libtorch_cuda and binaries report no CUDA on a GPU host. This checks the fix is in effect on
//! this very test binary, without needing a GPU.

use std::process::Command;

#[test]
fn libtorch_cuda_is_linked_when_available() {
    let Some(lib) = engram_build_lib_dir() else {
        eprintln!("notice: libtorch lib dir not found; skipping linkage check");
        return;
    };
    if !lib.join("libtorch_cuda.so").exists() {
        eprintln!("notice: this libtorch has no CUDA; nothing to check");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = match Command::new("readelf").arg("-d").arg(&exe).output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => {
            eprintln!("notice: readelf unavailable ({e}); skipping");
            return;
        }
    };
    assert!(out.contains("libtorch_cuda.so"), "libtorch_cuda.so missing from NEEDED:\n{out}");
    assert!(out.contains(&lib.display().to_string()), "no rpath to {}:\n{out}", lib.display());
}

fn engram_build_lib_dir() -> Option<std::path::PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))"])
        .output()
        .ok()?;
    let p = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_dir().then_some(p)
}
