//! Helpers shared by the integration tests: fixtures, exported models, the build's target folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// `MSF_FIXTURES`, else `<repo>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("MSF_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

/// The fixtures, or `None` after saying why the test is skipped (a failure under CI).
pub fn require_fixtures(test: &str) -> Option<PathBuf> {
    let dir = fixtures_dir();
    if dir.join("tiny-slate-msf.pth").is_file() && dir.join("images").is_dir() {
        return Some(dir);
    }
    let why = format!("no fixtures at {} (set MSF_FIXTURES)", dir.display());
    if in_ci() {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// `target/<profile>`: where cargo put this test's build (and the crate's libmsf_runtime.so).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps folder");
    deps.parent().expect("profile folder").to_path_buf()
}

/// The tiny fixture checkpoint exported once per test process (with and without `slots_init`).
pub fn tiny_model(fixtures: &Path, slots_in: bool) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static PLAIN: OnceLock<PathBuf> = OnceLock::new();
    static SLOTS: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir")).path();
    let cell = if slots_in { &SLOTS } else { &PLAIN };
    cell.get_or_init(|| {
        let out = dir.join(if slots_in { "tiny-slate.slots.onnx" } else { "tiny-slate.onnx" });
        let mut opts = msf_exporter::export::ExportOptions::default();
        opts.graph.slots_in = slots_in;
        msf_exporter::export::export(&fixtures.join("tiny-slate-msf.pth"), &out, &opts)
            .unwrap_or_else(|e| panic!("export the tiny fixture checkpoint: {e}"));
        out
    })
    .clone()
}

/// A fixture image decoded to packed RGB8.
pub fn fixture_rgb(fixtures: &Path, name: &str) -> image::RgbImage {
    image::open(fixtures.join("images").join(name)).unwrap_or_else(|e| panic!("decode {name}: {e}")).to_rgb8()
}

pub fn run(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}
