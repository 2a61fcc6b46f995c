fn main() {
    engram_build::link_libtorch();
    // Recorded for `engram info`; tch exposes no run-time version query.
    let py = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let v = std::process::Command::new(py)
        .args(["-c", "import torch;print(torch.__version__)"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ENGRAM_LIBTORCH_VERSION={v}");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
}
