//! Helpers shared by the integration tests: fixtures, exported models, the build's target folder.
#![allow(dead_code, unused_imports)] // each test crate uses a different part

use msf_tests::FixtureModel;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use msf_tests::{in_ci, repo_root, require_fixtures};

/// `target/<profile>`: where cargo put this test's build (and the crate's libmsf_runtime.so).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps folder");
    deps.parent().expect("profile folder").to_path_buf()
}

/// The tiny fixture checkpoint exported once per test process (with and without `slots_init`).
pub fn tiny_model(slots_in: bool) -> PathBuf {
    static PLAIN: OnceLock<FixtureModel> = OnceLock::new();
    static SLOTS: OnceLock<FixtureModel> = OnceLock::new();
    let cell = if slots_in { &SLOTS } else { &PLAIN };
    cell.get_or_init(|| FixtureModel::slate(slots_in)).path().to_path_buf()
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
