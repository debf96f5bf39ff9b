//! The command line as an operator meets it: what `--help` lists and how a command ends when its
//! reader goes away. No Kafka: these commands need none for what is asserted here.
#![allow(clippy::unwrap_used, reason = "a test fails loudly where it unwraps")]

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hd-kafka-exec");

/// `serve`'s flags that mean nothing to one request (`exec`).
const SERVE_ONLY: &[&str] = &[
    "--workers",
    "--timeout",
    "--graceful-timeout",
    "--metrics-addr",
    "--exactly-once",
    "--pid-file",
    "--partitioning",
    "--max-in-flight",
    "--runtime-url",
    "--runtime-timeout",
];

fn help(command: &str) -> String {
    let out = Command::new(BIN)
        .args([command, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn exec_help_lists_only_what_one_request_needs() {
    // The premise: serve lists them all, so their absence below is exec's doing.
    let serve = help("serve");
    for flag in SERVE_ONLY {
        assert!(serve.contains(flag), "serve --help lacks {flag}:\n{serve}");
    }
    let exec = help("exec");
    for flag in SERVE_ONLY {
        assert!(!exec.contains(flag), "exec --help lists {flag}:\n{exec}");
    }
    for flag in ["--bootstrap-servers", "--request-topic", "--key", "--wait"] {
        assert!(exec.contains(flag), "exec --help lacks {flag}:\n{exec}");
    }
}

#[test]
fn exec_still_accepts_serves_flags() {
    // One command line serves both: a serve-only flag is no parse error (exec then fails on its
    // empty stdin, which is not JSON, and says so).
    let out = Command::new(BIN)
        .args([
            "exec",
            "--workers",
            "2",
            "--bootstrap-servers",
            "127.0.0.1:1",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not JSON"), "{stderr}");
}

#[test]
fn prepare_into_a_closed_pipe_ends_quietly() {
    let request = br#"{"id": "6b1c2a4e-0f3d-4a55-9d1e-1a2b3c4d5e01", "workflow_wiring": {"input_wirings": [{"workflow_input_name": "a", "adapter_id": "direct_provisioning", "filters": {"value": "2"}}, {"workflow_input_name": "b", "adapter_id": "direct_provisioning", "filters": {"value": "3"}}]}}"#;
    let store = format!("dir:{}/transformations", env!("CARGO_MANIFEST_DIR"));
    // The premise: with a reader, prepare prints a runtime request.
    let mut child = Command::new(BIN)
        .args(["prepare", "--store", &store])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.len() > 100, "{out:?}");
    // Its reader gone before it writes (as `| head -c 0` would leave it): no error, no output.
    let mut child = Command::new(BIN)
        .args(["prepare", "--store", &store])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.stdin.take().unwrap().write_all(request).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn check_into_a_closed_pipe_ends_quietly() {
    let store = format!("dir:{}/transformations", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(BIN)
        .args(["check", "--store", &store])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !stderr.contains("Broken pipe") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
