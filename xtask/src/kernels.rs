//! `cargo xtask kernels`: builds `kernels/src/*.cu` into `target/kernels/libengram_kernels.so`
//! with nvcc 13.0 from PyPI (no system CUDA needed, so this also runs in CI as a compile check).

use crate::env::{root, run_status, site_packages};
use crate::setup::pip;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// nvcc's packages, pinned to one minor: unpinned, pip mixes 13.0 and newer and ptxas fails.
const NVCC_PACKAGES: [&str; 4] =
    ["nvidia-cuda-nvcc==13.0.*", "nvidia-cuda-crt==13.0.*", "nvidia-nvvm==13.0.*", "nvidia-cuda-cccl==13.0.*"];

pub fn output_path() -> PathBuf {
    root().join("target/kernels/libengram_kernels.so")
}

/// The nvcc command lines the library was last built with, one argument a line ("nvcc PATH",
/// "compile ARG", "link ARG"), so that scripts/gen/kbuild.py builds variants of one source with
/// the same flags instead of a copy of them.
fn args_path() -> PathBuf {
    root().join("target/kernels/nvcc.args")
}

pub fn run(args: &[String]) -> Result<(), String> {
    let force = args.iter().any(|a| a == "--force");
    if let Some(a) = args.iter().find(|a| *a != "--force") {
        return Err(format!("kernels: unknown option '{a}'"));
    }
    crate::setup::ensure_venv()?;
    build(force)
}

/// Builds the library when possible; on failure warns and leaves the CPU paths in charge.
pub fn build_if_possible() {
    if let Err(e) = build(false) {
        eprintln!("xtask: warning: kernel library not built ({e}); CUDA ops fall back to tch paths");
    }
}

fn nvcc_path() -> Result<PathBuf, String> {
    let nv = site_packages()?.join("nvidia/cu13");
    let nvcc = nv.join("bin/nvcc");
    if !nvcc.exists() {
        eprintln!("xtask: installing nvcc 13.0 from PyPI into .venv");
        let pkgs: Vec<&str> = std::iter::once("install").chain(NVCC_PACKAGES).collect();
        pip(&pkgs)?;
    }
    if nvcc.exists() { Ok(nvcc) } else { Err(format!("nvcc not found at {}", nvcc.display())) }
}

fn sources() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("kernels/src"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "cu" || x == "cpp"));
    v.sort();
    v
}

fn newest_input() -> SystemTime {
    newest_in(&root().join("kernels"))
}

/// The newest modification time of any file below `dir`.
fn newest_in(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    newest
}

/// The wgmma wrappers are generated (scripts/gen/wgmma_asm.py): a hand edit of the output or a
/// generator change without regenerating would compile silently into different kernels.
fn check_generated() -> Result<(), String> {
    const GEN: &str = "scripts/gen/wgmma_asm.py";
    const OUT: &str = "kernels/include/gdr_wgmma_asm.inc";
    let want = crate::env::capture(Command::new(crate::env::venv_python()).arg(root().join(GEN)))?;
    let have = fs::read_to_string(root().join(OUT)).map_err(|e| format!("cannot read {OUT}: {e}"))?;
    if want == have {
        Ok(())
    } else {
        Err(format!("{OUT} is not what {GEN} generates; run: python3 {GEN} > {OUT}"))
    }
}

fn build(force: bool) -> Result<(), String> {
    let srcs = sources();
    if srcs.is_empty() {
        return Err("no sources in kernels/src".into());
    }
    check_generated()?;
    let out = output_path();
    let up_to_date =
        args_path().exists() && fs::metadata(&out).and_then(|m| m.modified()).is_ok_and(|t| t >= newest_input());
    if up_to_date && !force {
        eprintln!("xtask: kernel library up to date: {}", out.display());
        return Ok(());
    }
    let nvcc = nvcc_path()?;
    let gloo = crate::data::fetch_gloo_headers()?;
    let site = site_packages()?;
    let torch = site.join("torch");
    let nv = site.join("nvidia/cu13");
    let obj_dir = root().join("target/kernels/obj");
    fs::create_dir_all(&obj_dir).map_err(|e| e.to_string())?;
    let arch: Vec<String> = std::env::var("ENGRAM_CUDA_ARCH")
        .unwrap_or_else(|_| "90a".into())
        .split(',')
        .map(|a| format!("-gencode=arch=compute_{a},code=sm_{a}"))
        .collect();
    let common = |c: &mut Command| {
        c.args(["-std=c++17", "-O3", "-Xcompiler", "-fPIC,-Wno-interference-size", "-D_GLIBCXX_USE_CXX11_ABI=1", "--expt-relaxed-constexpr"])
            .arg(format!("-I{}", torch.join("include").display()))
            .arg(format!("-I{}", torch.join("include/torch/csrc/api/include").display()))
            .arg(format!("-I{}", nv.join("include").display()))
            .arg(format!("-I{}", site.join("nvidia/nccl/include").display()))
            .arg(format!("-I{}", gloo.display()))
            .arg(format!("-I{}", root().join("kernels/include").display()))
            // c10d headers hide their gloo/NCCL process groups behind these (kernels/src/dist.cpp).
            .args(["-DUSE_DISTRIBUTED", "-DUSE_C10D_GLOO", "-DUSE_C10D_NCCL", "-DENGRAM_WITH_NCCL"]);
        // extra flags, e.g. -lineinfo for Nsight Compute's source view (with --force: objects
        // are reused by date, not by flags)
        if let Ok(extra) = std::env::var("ENGRAM_NVCC_FLAGS") {
            c.args(extra.split_whitespace());
        }
    };
    eprintln!("xtask: {} kernel source(s), compiling the stale ones with {}", srcs.len(), nvcc.display());
    let started = std::time::Instant::now();
    let objs: Vec<PathBuf> = srcs.iter().map(|s| obj_dir.join(format!("{}.o", stem(s)))).collect();
    // Recompile only objects older than their source or any shared header.
    let headers = newest_in(&root().join("kernels/include"));
    let stale = |src: &Path, obj: &Path| {
        force
            || fs::metadata(obj)
                .and_then(|m| m.modified())
                .map_or(true, |t| t < headers || fs::metadata(src).and_then(|m| m.modified()).map_or(true, |s| t < s))
    };
    let jobs: Vec<Result<(), String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = srcs
            .iter()
            .zip(&objs)
            .filter(|(src, obj)| stale(src, obj))
            .map(|(src, obj)| {
                let mut c = Command::new(&nvcc);
                common(&mut c);
                c.args(&arch).arg("-c").arg(src).arg("-o").arg(obj);
                sc.spawn(move || run_status(&mut c))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("compile thread panicked".into()))).collect()
    });
    for j in jobs {
        j?;
    }
    let tmp = out.with_extension("so.tmp");
    let libs = [
        format!("-L{}", torch.join("lib").display()),
        format!("-L{}", nv.join("lib").display()),
        "-ltorch".into(), "-ltorch_cpu".into(), "-ltorch_cuda".into(), "-lc10".into(), "-lc10_cuda".into(),
        "-l:libcudart.so.13".into(),
        format!("-Xlinker=-rpath={}:{}", torch.join("lib").display(), nv.join("lib").display()),
    ];
    let mut link = Command::new(&nvcc);
    link.arg("-shared").args(&arch).args(&objs).args(&libs).arg("-o").arg(&tmp);
    run_status(&mut link)?;
    fs::rename(&tmp, &out).map_err(|e| e.to_string())?;
    let mut compile = Command::new(&nvcc);
    common(&mut compile);
    compile.args(&arch);
    let mut lines = vec![format!("nvcc {}", nvcc.display())];
    lines.extend(compile.get_args().map(|a| format!("compile {}", a.to_string_lossy())));
    lines.extend(libs.iter().map(|a| format!("link {a}")));
    fs::write(args_path(), lines.join("\n") + "\n").map_err(|e| format!("{}: {e}", args_path().display()))?;
    let size = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    eprintln!("xtask: built {} ({} KiB) in {:.0}s", out.display(), size / 1024, started.elapsed().as_secs_f64());
    Ok(())
}

fn stem(p: &Path) -> String {
    p.file_name().unwrap_or_default().to_string_lossy().replace('.', "_")
}
