//! `cargo xtask setup`: the project venv with the pinned torch, and the offline data.

use crate::env::{self, capture, run_status, venv, venv_python};
use std::process::Command;

/// The PyTorch release tch 0.24 is built against.
pub const TORCH_VERSION: &str = "2.11.0";

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("setup takes no arguments (got '{a}')"));
    }
    ensure_venv()?;
    crate::data::fetch_all()?;
    Ok(())
}

fn installed_torch() -> Option<String> {
    if !venv_python().exists() {
        return None;
    }
    capture(Command::new(venv_python()).args(["-c", "import torch;print(torch.__version__)"]))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Creates `.venv` with `torch==2.11.0` unless it is already there; replaces another version.
pub fn ensure_venv() -> Result<(), String> {
    match installed_torch() {
        Some(v) if v.split('+').next() == Some(TORCH_VERSION) => {
            eprintln!("xtask: .venv has torch {v}; nothing to do");
            ensure_numpy()?;
            return Ok(());
        }
        Some(v) => eprintln!("xtask: .venv has torch {v}, need {TORCH_VERSION}: replacing it"),
        None => eprintln!("xtask: creating .venv with torch=={TORCH_VERSION} (about 4.6 GB, a few minutes)"),
    }
    if !venv_python().exists() {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run_status(Command::new(py).arg("-m").arg("venv").arg(venv()))?;
    }
    pip(&["install", "--upgrade", "pip"])?;
    pip(&["install", &format!("torch=={TORCH_VERSION}"), "numpy"])?;
    match installed_torch() {
        Some(v) if v.split('+').next() == Some(TORCH_VERSION) => {
            eprintln!("xtask: torch {v} ready in .venv");
            Ok(())
        }
        other => Err(format!("torch install finished but .venv reports {other:?}")),
    }
}

fn ensure_numpy() -> Result<(), String> {
    if capture(Command::new(venv_python()).args(["-c", "import numpy"])).is_err() {
        pip(&["install", "numpy"])?;
    }
    Ok(())
}

pub fn pip(args: &[&str]) -> Result<(), String> {
    run_status(env::command(venv_python()).args(["-m", "pip", "--disable-pip-version-check", "-q"]).args(args))
}
