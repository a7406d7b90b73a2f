//! Runs the Python package's pytest suite (`python/tests/test_*.py`) on the extension this
//! `cargo test` just built: `target/<profile>/deps/libmsf_py.so` is copied next to `python/msf/*.py` in
//! a temporary folder put first on `PYTHONPATH` (nothing is installed into the venv, nothing is
//! compiled twice). The suite compares with the `msf-run` binary of the same build (`MSF_RUN`) and
//! runs the Ray example on a local 2-CPU Ray.
//!
//! Needs `MSF_PYTHON` (or `<repo>/.venv`) with pytest and ray[data] (tests/python/requirements.txt)
//! and the fixtures; under `CI` a missing one fails, elsewhere the test is skipped with a note.
//! `MSF_PYTEST_ARGS` adds pytest arguments (e.g. `-k threads`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/`: the folder of this test executable's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// The extension this `cargo test` built: `deps/` holds it (a test build does not copy it up to
/// `target/<profile>/`, where a `cargo build` leaves it); the newer of the two when both exist.
fn extension(profile: &Path) -> PathBuf {
    let name = if cfg!(target_os = "macos") { "libmsf_py.dylib" } else { "libmsf_py.so" };
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (deps, top) = (profile.join("deps").join(name), profile.join(name));
    match (modified(&deps), modified(&top)) {
        (Some(d), Some(t)) if t > d => top,
        (None, Some(_)) => top,
        _ => deps,
    }
}

#[test]
fn pytest_suite_passes() {
    let test = "pytest_suite_passes";
    let Some(python) = msf_tests::require_python(test) else { return };
    let Some(fixtures) = msf_tests::require_fixtures(test) else { return };
    let has_pytest = Command::new(python).args(["-c", "import pytest, ray.data"]).output().is_ok_and(|o| o.status.success());
    if !has_pytest {
        msf_tests::skip_or_fail(test, &format!("{} cannot import pytest and ray.data (run scripts/py-env)", python.display()));
        return;
    }
    let profile = profile_dir();
    let ext = extension(&profile);
    assert!(ext.is_file(), "{} is missing: cargo builds it with this test (`cargo test -p msf-python`)", ext.display());
    let msf_run = profile.join(format!("msf-run{}", std::env::consts::EXE_SUFFIX));
    assert!(
        msf_run.is_file(),
        "{} is missing: `cargo test --workspace` builds it; with `cargo test -p msf-python` alone, run \
         `cargo build -p msf-runtime --features video` (same profile) first",
        msf_run.display()
    );

    // The package as `pip install ./python` lays it out: msf/__init__.py, msf/_msf.pyi, msf/_msf.abi3.so.
    let stage = msf_tests::temp_dir("msf-python-pytest");
    let pkg = stage.path().join("msf");
    std::fs::create_dir_all(&pkg).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(src.join("msf")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, pkg.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(&ext, pkg.join("_msf.abi3.so")).unwrap();

    let mut pythonpath = stage.path().as_os_str().to_os_string();
    if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        pythonpath.push(":");
        pythonpath.push(old);
    }
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--durations=8"])
        .arg(src.join("tests"))
        // Not python/: `python -m pytest` puts the working folder first on sys.path, and python/msf
        // (without the extension) would shadow the staged package.
        .current_dir(stage.path())
        .env("PYTHONPATH", pythonpath)
        .env("MSF_RUN", &msf_run)
        .env("MSF_FIXTURES", &fixtures)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if let Ok(extra) = std::env::var("MSF_PYTEST_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    let t0 = std::time::Instant::now();
    let out = cmd.output().expect("run pytest");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The suite's measured numbers and its summary line, past the harness's capture.
    for line in text.lines().filter(|l| l.starts_with("msf-python:") || l.contains(" passed") || l.contains(" failed")) {
        msf_tests::note(line);
    }
    msf_tests::note(format!("msf-python: pytest took {:.1} s", t0.elapsed().as_secs_f64()));
    assert!(out.status.success(), "pytest failed ({}):\n{text}", out.status);
}
