//! Shared by the export benchmark (`benches/export.rs`, criterion) and `export_stats` (one export's
//! wall time and peak memory): where the checkpoints are, and memory readings from `/proc`.
//!
//! Checkpoints: the upstream fixtures (`MSF_FIXTURES`, default `<repo>/../shared/fixtures`) and the
//! full-size ones written by `tests/python/make_fullsize.py` — `MSF_FULLSIZE_DIR` if set, else made
//! on the fly into a temporary folder when the test Python (`MSF_PYTHON`, else `<repo>/.venv/bin/python`,
//! see `scripts/py-env`) is there. Numbers are printed, never asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("benches/ has a parent").to_path_buf()
}

/// `MSF_FIXTURES`, else `<repo>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("MSF_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("..").join("shared").join("fixtures"),
    }
}

/// The tiny upstream fixture checkpoint `<name>.pth`, if present.
pub fn fixture_checkpoint(name: &str) -> Option<PathBuf> {
    Some(fixtures_dir().join(format!("{name}.pth"))).filter(|p| p.is_file())
}

/// The test-tooling Python: `MSF_PYTHON`, else `<repo>/.venv/bin/python` if it exists.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("MSF_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(repo_root().join(".venv").join("bin").join("python")).filter(|p| p.exists()),
    }
}

/// A folder with `make_fullsize.py`'s checkpoints; a generated one is removed when this is dropped.
pub struct FullSizeDir {
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl FullSizeDir {
    /// `<dir>/<model>.pth`, e.g. `full-slate-msf`.
    pub fn checkpoint(&self, model: &str) -> PathBuf {
        self.dir.join(format!("{model}.pth"))
    }
}

/// `MSF_FULLSIZE_DIR`, else `make_fullsize.py` into a temporary folder (about 0.8 GB, a few seconds).
/// `Err` says why there is none.
pub fn fullsize_dir() -> Result<FullSizeDir, String> {
    if let Some(d) = std::env::var_os("MSF_FULLSIZE_DIR").filter(|d| !d.is_empty()) {
        return Ok(FullSizeDir { dir: PathBuf::from(d), _temp: None });
    }
    let py = python().ok_or("MSF_FULLSIZE_DIR is not set and there is no Python to run make_fullsize.py (scripts/py-env)")?;
    let temp = tempfile::Builder::new().prefix("msf-fullsize-").tempdir().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&py);
    cmd.arg(repo_root().join("tests").join("python").join("make_fullsize.py")).arg(temp.path());
    let keys = fixtures_dir().join("..").join("spec").join("keys");
    if keys.is_dir() {
        cmd.arg("--keys").arg(keys);
    }
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!("make_fullsize.py failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(FullSizeDir { dir: temp.path().to_path_buf(), _temp: Some(temp) })
}

pub use msf_runtime::memory::{peak_rss_kib, proc_status_kib, reset_peak_rss, rss_kib};

/// `12.3 MiB` from KiB.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
