//! `engram info` runs from the built binary (which must find libtorch through its rpath) and
//! reports a consistent environment.

use std::process::Command;

#[test]
fn info_json_reports_the_runtime() {
    let out = Command::new(env!("CARGO_BIN_EXE_engram")).args(["info", "--json"]).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["libtorch_version"].as_str().unwrap().starts_with("2.11.0"), "{v}");
    let cuda = v["cuda_available"].as_bool().unwrap();
    assert_eq!(cuda, v["cuda_device_count"].as_i64().unwrap() > 0);
    assert!(v["kernels_path"].is_string() || v["kernels_error"].is_string());
}

#[test]
fn unknown_subcommand_fails_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_engram")).arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

#[test]
fn help_reaches_benchmarks_and_experiments() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_engram")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["bench", "gdn", "--help"]).contains("--shapes"), "the benchmark's own options");
    assert!(run(&["bench", "delta-rule", "-h"]).contains("--backends"));
    assert!(run(&["reproduce", "xor", "--help"]).contains("Usage: engram reproduce xor"));
    assert!(run(&["bench", "--help"]).contains("Which benchmark"), "the command's help without a benchmark");
    assert!(run(&["reproduce", "--help"]).contains("Which experiment"));
}
