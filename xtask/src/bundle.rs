//! `cargo xtask bundle --out DIR`: release binaries, chosen test binaries and the kernel
//! library in one folder with a `run.sh`, for a CUDA host that has PyTorch 2.11 but no Rust.

use crate::env::{self, root};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Packages whose test binaries travel in the bundle (they hold the GPU tests).
const TEST_PACKAGES: [&str; 2] = ["engram-core", "engram-gdn"];

const RUN_SH: &str = r#"#!/usr/bin/env bash
# Runs an engram binary from this bundle on a host with PyTorch 2.11 (CUDA 13) and no Rust.
# usage: ./run.sh engram info      |  ./run.sh tests/engram_core-<hash> --nocapture
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
TL="$("$PY" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')"
NV="$("$PY" -c 'import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],"cu13","lib"))' 2>/dev/null || true)"
export LD_LIBRARY_PATH="$TL:${NV}:${LD_LIBRARY_PATH:-}"
export ENGRAM_KERNELS="${ENGRAM_KERNELS:-$here/libengram_kernels.so}"
bin="$1"; shift
if [ -x "$here/$bin" ]; then exec "$here/$bin" "$@"; else exec "$bin" "$@"; fi
"#;

pub fn run(args: &[String]) -> Result<(), String> {
    let out = match args {
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => return Err("usage: cargo xtask bundle --out DIR".into()),
    };
    crate::setup::ensure_venv()?;
    crate::kernels::build_if_possible();
    env::cargo(&["build", "--release", "-p", "engram-cli"])?;
    let tests = test_binaries()?;
    fs::create_dir_all(out.join("tests")).map_err(|e| e.to_string())?;
    copy(&root().join("target/release/engram"), &out.join("engram"))?;
    for t in &tests {
        let name = t.file_name().unwrap_or_default();
        copy(t, &out.join("tests").join(name))?;
    }
    let lib = crate::kernels::output_path();
    if lib.exists() {
        copy(&lib, &out.join("libengram_kernels.so"))?;
    }
    for dir in ["configs", "scripts"] {
        let src = root().join(dir);
        if src.is_dir() {
            copy_dir(&src, &out.join(dir))?;
        }
    }
    let run_sh = out.join("run.sh");
    fs::write(&run_sh, RUN_SH).map_err(|e| e.to_string())?;
    set_exec(&run_sh)?;
    let size = dir_size(&out);
    eprintln!("xtask: bundle at {} ({:.1} MB, {} test binaries)", out.display(), size as f64 / 1e6, tests.len());
    if size > 60_000_000 {
        return Err(format!("bundle is {:.1} MB, over the 60 MB budget", size as f64 / 1e6));
    }
    Ok(())
}

fn test_binaries() -> Result<Vec<PathBuf>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = env::command(cargo);
    cmd.args(["test", "--release", "--no-run", "--message-format=json"]);
    for p in TEST_PACKAGES {
        cmd.args(["-p", p]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err("building test binaries failed".into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = Vec::new();
    for line in text.lines() {
        // Minimal JSON scraping keeps xtask free of dependencies.
        if let Some(i) = line.find("\"executable\":\"") {
            let rest = &line[i + 14..];
            if let Some(j) = rest.find('"') {
                v.push(PathBuf::from(&rest[..j]));
            }
        }
    }
    v.sort();
    v.dedup();
    Ok(v)
}

fn copy(src: &Path, dst: &Path) -> Result<(), String> {
    fs::copy(src, dst).map(|_| ()).map_err(|e| format!("copy {} -> {}: {e}", src.display(), dst.display()))?;
    let _ = std::process::Command::new("strip").arg("--strip-unneeded").arg(dst).status();
    set_exec(dst)
}

fn copy_dir(src: &Path, dst: &Path) -> Result<(), String> {
    fs::create_dir_all(dst).map_err(|e| e.to_string())?;
    for e in fs::read_dir(src).map_err(|e| e.to_string())?.flatten() {
        let p = e.path();
        let d = dst.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &d)?;
        } else {
            fs::copy(&p, &d).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn set_exec(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = fs::metadata(p).map_err(|e| e.to_string())?.permissions();
    perm.set_mode(perm.mode() | 0o755);
    fs::set_permissions(p, perm).map_err(|e| e.to_string())
}

fn dir_size(p: &Path) -> u64 {
    fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let q = e.path();
            if q.is_dir() { dir_size(&q) } else { e.metadata().map(|m| m.len()).unwrap_or(0) }
        })
        .sum()
}
