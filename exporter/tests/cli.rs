//! The `msf-export` binary's own front door: help, version and argument errors. The export itself is
//! tested end to end (against upstream goldens) in the `msf-tests` crate, which runs this binary too.
//! Being an integration test of this package also makes `cargo test --workspace` build the binary.

use std::process::{Command, Output};

fn msf_export(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msf-export")).args(args).output().expect("run msf-export")
}

#[test]
fn help_explains_inputs_outputs_and_options() {
    let o = msf_export(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for word in ["--ckpt", "--output", "--opset", "--verify"] {
        assert!(help.contains(word), "--help does not mention {word}:\n{help}");
    }
}

#[test]
fn version_is_the_crate_version() {
    let o = msf_export(&["--version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn missing_checkpoint_is_a_one_line_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let o = msf_export(&["--ckpt", "does-not-exist.pth", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does-not-exist.pth"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists());
}
