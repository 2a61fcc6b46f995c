//! Paths and the process environment tch needs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

pub fn venv() -> PathBuf {
    root().join(".venv")
}

pub fn venv_python() -> PathBuf {
    venv().join("bin").join("python")
}

/// `site-packages` of the venv (asked of its python, so the minor version does not matter).
pub fn site_packages() -> Result<PathBuf, String> {
    let out = capture(Command::new(venv_python()).args(["-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"]))?;
    Ok(PathBuf::from(out.trim()))
}

/// A command with the environment tch needs: the venv first on PATH, `LIBTORCH_USE_PYTORCH=1`.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("{}:{}", venv().join("bin").display(), path))
        .env("VIRTUAL_ENV", venv())
        .env("LIBTORCH_USE_PYTORCH", "1")
        .env("PYTHON_SYS_EXECUTABLE", venv_python())
        .current_dir(root());
    c
}

pub fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_status(command(cargo).args(args))
}

pub fn run_status(cmd: &mut Command) -> Result<(), String> {
    let desc = describe(cmd);
    let st = cmd.status().map_err(|e| format!("cannot start {desc}: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("{desc} failed ({st})")) }
}

pub fn capture(cmd: &mut Command) -> Result<String, String> {
    let desc = describe(cmd);
    let out = cmd.output().map_err(|e| format!("cannot start {desc}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{desc} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args().take(4) {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
