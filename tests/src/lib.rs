//! Helpers for the end-to-end tests in `tests/` (`tests/export.rs`): they use the product as a user
//! does — run the built `msf-export` binary, then check what it wrote with the Python tooling in
//! `tests/python/` (ONNX checker, onnxruntime) and with the binary's own tract verification.
//!
//! # The binary
//! [`exporter_bin`] finds `target/<profile>/msf-export` next to the running test executable
//! (`target/<profile>/deps/export-<hash>`). It builds nothing itself: `cargo test --workspace` (and
//! `cargo test -p msf-exporter`) build every binary of the tested packages before running any test,
//! but `cargo test -p msf-tests` alone does not — run `cargo build -p msf-exporter` first then. A
//! missing binary fails the test with that hint; a binary older than its sources (read from cargo's
//! `msf-export.d` dep-info file) is used with a warning on stderr.
//!
//! # Environment
//! - `MSF_FIXTURES`: the upstream fixtures folder (default `<repo>/../shared/fixtures`).
//! - `MSF_PYTHON`: a python with numpy, onnx and onnxruntime (`scripts/py-env` makes one, and
//!   `scripts/test` exports it); default `<repo>/.venv/bin/python` when it exists.
//! - `MSF_FULLSIZE_DIR`: a folder already filled by `tests/python/make_fullsize.py` (otherwise it is
//!   run once per test process into a temporary folder, removed at exit).
//! - `CI`: when set, a missing Python or fixture folder fails the tests that need it; otherwise those
//!   tests pass after printing a "skipped" note.

pub mod corpus;

use ndarray::{ArrayD, Axis, IxDyn};
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The two upstream fixture models (`<name>.pth` in the fixtures folder).
pub const FIXTURE_MODELS: [&str; 2] = ["tiny-slate-msf", "tiny-slotdiffusion-msf"];
/// The two full-size models written by `make_fullsize.py` (`<name>.pth`, `<name>.ref.npz`).
pub const FULLSIZE_MODELS: [&str; 2] = ["full-slate-msf", "full-slotdiffusion-msf"];
/// The stage-1 VAE checkpoint written by `make_fullsize.py`.
pub const FULLSIZE_VAE: &str = "vae-c256-msf.pth";

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `tests/python/<name>`.
pub fn py_tool(name: &str) -> PathBuf {
    repo_root().join("tests").join("python").join(name)
}

/// True when the `CI` environment variable is set (to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))).unwrap_or(false)
}

/// Print a line to the real stderr, past the test harness's output capture, so that it shows in a
/// normal `cargo test` run (skips, measured numbers). Keep these few.
pub fn note(line: impl AsRef<str>) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{}", line.as_ref());
}

/// A missing prerequisite: fails the test under CI, otherwise prints a note and lets the caller skip.
pub fn skip_or_fail(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why} (CI is set, so this fails instead of being skipped)");
    }
    note(format!("msf-tests: SKIPPED {test}: {why}"));
}

// ----------------------------------------------------------------------------------------------------
// Fixtures and Python
// ----------------------------------------------------------------------------------------------------

/// The fixtures folder: `MSF_FIXTURES`, else `<repo>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("MSF_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("..").join("shared").join("fixtures"),
    }
}

/// The fixtures folder if it holds the fixture checkpoints; else skip (or fail under CI).
pub fn require_fixtures(test: &str) -> Option<PathBuf> {
    let dir = fixtures_dir();
    if FIXTURE_MODELS.iter().all(|m| dir.join(format!("{m}.pth")).is_file()) && dir.join("ref").is_dir() {
        Some(dir)
    } else {
        skip_or_fail(test, &format!("no upstream fixtures at {} (set MSF_FIXTURES)", dir.display()));
        None
    }
}

/// A model exported in-process from an upstream fixture checkpoint into its own temporary folder
/// (removed on drop). The runtime's runnable documentation examples start with a hidden
/// `let model = msf_tests::FixtureModel::slate(false);`, so that they load a real export.
pub struct FixtureModel {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl FixtureModel {
    /// `tiny-slate-msf.pth` exported with the default options; `slots_in: false` leaves the
    /// `slots_init` input out (`--no-slots-in`). Panics with a hint when the fixtures are missing.
    pub fn slate(slots_in: bool) -> Self {
        let ckpt = fixtures_dir().join("tiny-slate-msf.pth");
        assert!(ckpt.is_file(), "{} is missing: set MSF_FIXTURES to the upstream fixtures folder", ckpt.display());
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join(if slots_in { "tiny-slate-msf.slots.onnx" } else { "tiny-slate-msf.onnx" });
        let mut opts = msf_exporter::export::ExportOptions::default();
        opts.graph.slots_in = slots_in;
        msf_exporter::export::export(&ckpt, &path, &opts).unwrap_or_else(|e| panic!("export {}: {e}", ckpt.display()));
        FixtureModel { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for FixtureModel {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// `key → shape` of one of upstream's key dumps (`<fixtures>/../spec/keys/<name>`, one
/// `key<TAB>[d, …]<TAB>dtype` line per tensor of the real module), or `None` if it is absent.
pub fn upstream_key_dump(name: &str) -> Option<std::collections::BTreeMap<String, Vec<usize>>> {
    let text = std::fs::read_to_string(fixtures_dir().join("../spec/keys").join(name)).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut f = l.split('\t');
                let key = f.next().unwrap_or_default().to_string();
                let dims = f.next().unwrap_or_default().trim_matches(['[', ']']);
                let shape = dims.split(',').filter(|d| !d.trim().is_empty()).map(|d| d.trim().parse().expect("a dimension")).collect();
                (key, shape)
            })
            .collect(),
    )
}

/// `<fixtures>/images/<name>` (real photos: `motorcycle_left.png`, `hubble_deep_field.jpg`, …).
pub fn fixture_image(name: &str) -> PathBuf {
    let p = fixtures_dir().join("images").join(name);
    assert!(p.is_file(), "{} is missing: set MSF_FIXTURES to the upstream fixtures folder", p.display());
    p
}

/// Image names with goldens (`ref/<img>.input.npy`), sorted.
pub fn fixture_images(fixtures: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures.join("ref"))
        .expect("fixtures ref/ folder")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".input.npy").map(str::to_string))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no ref/<img>.input.npy in {}", fixtures.display());
    v
}

/// The Python interpreter for the test tooling, checked once: `MSF_PYTHON`, else `<repo>/.venv/bin/python`.
/// `Err` says why there is none usable.
pub fn python() -> Result<&'static Path, &'static str> {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = PY.get_or_init(|| {
        let (py, from) = match std::env::var_os("MSF_PYTHON") {
            Some(p) if !p.is_empty() => (PathBuf::from(p), "MSF_PYTHON"),
            _ => {
                let venv = repo_root().join(".venv").join("bin").join("python");
                if !venv.exists() {
                    return Err(format!(
                        "no Python for the test tooling: MSF_PYTHON is not set and {} does not exist (run scripts/py-env)",
                        venv.display()
                    ));
                }
                (venv, "the repo's .venv")
            }
        };
        match Command::new(&py).args(["-c", "import numpy, onnx, onnxruntime"]).output() {
            Ok(o) if o.status.success() => Ok(py),
            Ok(o) => Err(format!(
                "{} (from {from}) cannot import numpy, onnx and onnxruntime: {} (run scripts/py-env)",
                py.display(),
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").trim()
            )),
            Err(e) => Err(format!("cannot run {} (from {from}): {e}", py.display())),
        }
    });
    r.as_deref().map_err(|e| e.as_str())
}

/// The Python interpreter, or skip (fail under CI) with the reason.
pub fn require_python(test: &str) -> Option<&'static Path> {
    match python() {
        Ok(p) => Some(p),
        Err(why) => {
            skip_or_fail(test, why);
            None
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// Running things
// ----------------------------------------------------------------------------------------------------

/// What a finished process did.
#[derive(Debug)]
pub struct Run {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Everything it printed, for assertion messages.
    pub fn transcript(&self) -> String {
        format!("$ {}\n[exit {:?}, {:.2} s]\n--- stdout\n{}--- stderr\n{}", self.what, self.code(), self.elapsed.as_secs_f64(), self.stdout, self.stderr)
    }

    /// Panics (with the transcript) unless it exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(self.status.success(), "expected success\n{}", self.transcript());
        self
    }

    /// Panics unless it exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "expected exit {code}\n{}", self.transcript());
        self
    }
}

fn quote(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    if s.is_empty() || s.contains([' ', '"', '\'']) {
        format!("{s:?}")
    } else {
        s.into_owned()
    }
}

/// Run `program args…` to completion, capturing its output.
pub fn run<I, S>(program: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(cmd)
}

/// Run a prepared command (extra environment, resource limits…) to completion, capturing its
/// output; `RUST_LOG` is removed so that the output is what a user sees.
pub fn run_command(mut cmd: Command) -> Run {
    let what = std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(quote).collect::<Vec<_>>().join(" ");
    let t = Instant::now();
    let out = cmd.env_remove("RUST_LOG").output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Run {
        what,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: t.elapsed(),
    }
}

/// The built `msf-export` binary: `target/<profile>/msf-export`, found from the test executable's
/// location (`target/<profile>/deps/<test>-<hash>`). Builds nothing; see the crate docs.
pub fn exporter_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the test executable");
        let name = format!("msf-export{}", std::env::consts::EXE_SUFFIX);
        // target/<profile>/deps/<test> → target/<profile>; walk up a little in case of other layouts.
        let mut tried = Vec::new();
        for dir in exe.ancestors().skip(1).take(3) {
            let dir = if dir.file_name() == Some(OsStr::new("deps")) { dir.parent().unwrap_or(dir) } else { dir };
            let cand = dir.join(&name);
            if cand.is_file() {
                warn_if_stale(&cand);
                return cand;
            }
            tried.push(cand.display().to_string());
        }
        panic!(
            "the msf-export binary is not built (looked for {}). `cargo test --workspace` builds it; with \
             `cargo test -p msf-tests` alone, run `cargo build -p msf-exporter` (same profile) first",
            tried.join(", ")
        );
    })
}

/// Warn when a source file listed in cargo's dep-info for the binary is newer than the binary.
fn warn_if_stale(bin: &Path) {
    let Ok(bin_time) = std::fs::metadata(bin).and_then(|m| m.modified()) else { return };
    let Ok(depinfo) = std::fs::read_to_string(bin.with_extension("d")) else { return };
    // `target: dep dep …`, spaces in paths escaped as `\ `.
    let Some((_, deps)) = depinfo.lines().next().and_then(|l| l.split_once(": ")) else { return };
    let deps = deps.replace("\\ ", "\u{0}");
    let newer: Vec<String> = deps
        .split_whitespace()
        .map(|d| PathBuf::from(d.replace('\u{0}', " ")))
        .filter(|p| std::fs::metadata(p).and_then(|m| m.modified()).map(|t| t > bin_time).unwrap_or(false))
        .map(|p| p.display().to_string())
        .collect();
    if !newer.is_empty() {
        note(format!(
            "msf-tests: WARNING: {} is older than {} of its sources ({}…): testing a stale binary; run `cargo build -p msf-exporter` or `cargo test --workspace`",
            bin.display(),
            newer.len(),
            newer[0]
        ));
    }
}

/// Run `msf-export args…`.
pub fn msf_export<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(exporter_bin(), args)
}

/// Run `python tests/python/<tool> args…`.
pub fn run_py_tool<I, S>(python: &Path, tool: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut all: Vec<std::ffi::OsString> = vec![py_tool(tool).into_os_string()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
    run(python, all)
}

/// Run a Python snippet with `tests/python` importable (`torchfmt`, `reference`); `sys.argv[1:]` = `args`.
pub fn run_py_snippet<I, S>(python: &Path, code: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let code = format!("import sys; sys.path.insert(0, {:?})\n{code}", py_tool("").display().to_string());
    let mut all: Vec<std::ffi::OsString> = vec!["-c".into(), code.into()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
    run(python, all)
}

/// Read a checkpoint with `torchfmt.py`, apply `edit` (Python acting on the dict `d` of numpy arrays,
/// with `np` imported) and write it to `dst` in PyTorch's zip format.
pub fn rewrite_checkpoint(python: &Path, src: &Path, dst: &Path, edit: &str) {
    let code = format!("import numpy as np, torchfmt\nd = torchfmt.load(sys.argv[1])\n{edit}\ntorchfmt.save(sys.argv[2], d)\n");
    run_py_snippet(python, &code, [src.as_os_str(), dst.as_os_str()]).assert_ok();
}

// ----------------------------------------------------------------------------------------------------
// Files
// ----------------------------------------------------------------------------------------------------

/// A fresh temporary folder for one test (removed when dropped).
pub fn temp_dir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("msf-tests-{test}-")).tempdir().expect("temporary folder")
}

/// Names of everything in `dir` (dotfiles included), sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The fixture goldens of `model` for `images` stacked on the batch axis, as the `.npz` that
/// `msf-export --reference` reads: `input` (B,3,256,256) f32, `slots`, `attn` f32, `masks` (B,256,256) i64.
pub fn write_golden_npz(fixtures: &Path, model: &str, images: &[String], out: &Path) {
    let refdir = fixtures.join("ref");
    let f32s = |suffix: &str| -> ArrayD<f32> {
        let parts: Vec<ArrayD<f32>> = images
            .iter()
            .map(|img| {
                let p = refdir.join(format!("{img}.{suffix}.npy"));
                ndarray_npy::read_npy(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            })
            .collect();
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("stack goldens")
    };
    let input = f32s("input");
    let slots = f32s(&format!("{model}.slots"));
    let attn = f32s(&format!("{model}.attn"));
    let masks: Vec<ArrayD<i64>> = images
        .iter()
        .map(|img| {
            let p = refdir.join(format!("{img}.{model}.segment.npy"));
            let seg: ArrayD<u8> = ndarray_npy::read_npy(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            let seg = if seg.ndim() == 2 { seg.insert_axis(Axis(0)) } else { seg };
            seg.mapv(i64::from)
        })
        .collect();
    let views: Vec<_> = masks.iter().map(|a| a.view()).collect();
    let masks = ndarray::concatenate(Axis(0), &views).expect("stack masks");
    assert_eq!(input.shape()[0], images.len());
    assert_eq!(masks.shape(), &[images.len(), 256, 256][..]);
    let file = std::fs::File::create(out).unwrap_or_else(|e| panic!("creating {}: {e}", out.display()));
    let mut npz = ndarray_npy::NpzWriter::new(file);
    npz.add_array("input", &input).expect("npz input");
    npz.add_array("slots", &slots).expect("npz slots");
    npz.add_array("attn", &attn).expect("npz attn");
    npz.add_array("masks", &masks.into_dimensionality::<IxDyn>().expect("dyn")).expect("npz masks");
    npz.finish().expect("npz finish");
}

// ----------------------------------------------------------------------------------------------------
// Parsing what the tools print
// ----------------------------------------------------------------------------------------------------

/// Worst differences reported by `check_onnx.py` or `msf-export --reference`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Diffs {
    pub slots: f64,
    pub attn: f64,
    /// Fraction of equal mask pixels (the smallest seen).
    pub masks: f64,
    pub cases: usize,
}

impl Diffs {
    pub fn worst(self, o: Diffs) -> Diffs {
        if self.cases == 0 {
            return o;
        }
        if o.cases == 0 {
            return self;
        }
        Diffs { slots: self.slots.max(o.slots), attn: self.attn.max(o.attn), masks: self.masks.min(o.masks), cases: self.cases + o.cases }
    }
}

impl std::fmt::Display for Diffs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "slots max|Δ| {:.2e}, attn max|Δ| {:.2e}, masks ≥ {:.4} % equal ({} case(s))", self.slots, self.attn, self.masks * 100.0, self.cases)
    }
}

fn number_after(line: &str, label: &str) -> Option<f64> {
    let rest = &line[line.find(label)? + label.len()..];
    let tok = rest.split_whitespace().next()?;
    tok.trim_end_matches([',', '%']).parse().ok()
}

/// Parse lines like `slots max|d| 1.4e-06  attn max|d| 1.1e-05  masks 100.0000% equal` (check_onnx)
/// or `slots max|Δ| 1.25e-6, attn max|Δ| 1.06e-5, masks 100.0000% equal` (msf-export): the worst
/// values over all such lines.
pub fn parse_diffs(text: &str) -> Diffs {
    let mut d = Diffs::default();
    for line in text.lines() {
        let s = number_after(line, "slots max|d|").or_else(|| number_after(line, "slots max|Δ|"));
        let a = number_after(line, "attn max|d|").or_else(|| number_after(line, "attn max|Δ|"));
        let m = number_after(line, "masks");
        if let (Some(s), Some(a), Some(m)) = (s, a, m) {
            d = d.worst(Diffs { slots: s, attn: a, masks: m / 100.0, cases: 1 });
        }
    }
    d
}

// ----------------------------------------------------------------------------------------------------
// Full-size checkpoints
// ----------------------------------------------------------------------------------------------------

/// The folder of full-size checkpoints (`make_fullsize.py` output) shared by the tests of one process.
#[derive(Debug)]
pub struct FullSize {
    pub dir: PathBuf,
    /// Seconds `make_fullsize.py` took (0 when `MSF_FULLSIZE_DIR` was given).
    pub seconds: f64,
}

impl FullSize {
    pub fn checkpoint(&self, model: &str) -> PathBuf {
        self.dir.join(format!("{model}.pth"))
    }
    pub fn reference(&self, model: &str) -> PathBuf {
        self.dir.join(format!("{model}.ref.npz"))
    }
    pub fn vae(&self) -> PathBuf {
        self.dir.join(FULLSIZE_VAE)
    }
    fn complete(dir: &Path) -> bool {
        FULLSIZE_MODELS.iter().all(|m| dir.join(format!("{m}.pth")).is_file() && dir.join(format!("{m}.ref.npz")).is_file())
            && dir.join(FULLSIZE_VAE).is_file()
    }
}

static CLEANUP: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

#[cfg(unix)]
extern "C" fn remove_temp_folders() {
    if let Ok(dirs) = CLEANUP.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Remove `dir` when the process exits (statics are never dropped, so a `TempDir` in a `OnceLock` would leak).
fn remove_at_exit(dir: PathBuf) {
    CLEANUP.lock().expect("cleanup list").push(dir);
    #[cfg(unix)]
    {
        static REGISTERED: OnceLock<()> = OnceLock::new();
        REGISTERED.get_or_init(|| {
            extern "C" {
                fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
            }
            // SAFETY: registers a plain `extern "C" fn()` with the C runtime; it only touches a static.
            unsafe { atexit(remove_temp_folders) };
        });
    }
}

/// The full-size checkpoints, made once per test process: `MSF_FULLSIZE_DIR` if set, else
/// `make_fullsize.py` into a temporary folder (≈0.8 GB, a few seconds; removed at exit). `None` (after
/// a skip note, or a failure under CI) when there is no Python; panics if generation fails.
pub fn require_fullsize(test: &str) -> Option<&'static FullSize> {
    static FULL: OnceLock<Result<FullSize, String>> = OnceLock::new();
    if let Some(dir) = std::env::var_os("MSF_FULLSIZE_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(FullSize::complete(&dir), "MSF_FULLSIZE_DIR={} lacks make_fullsize.py's files", dir.display());
        let r = FULL.get_or_init(|| Ok(FullSize { dir, seconds: 0.0 }));
        return Some(r.as_ref().expect("given folder"));
    }
    let python = require_python(test)?;
    let r = FULL.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("msf-fullsize-").tempdir().map_err(|e| e.to_string())?.keep();
        remove_at_exit(dir.clone());
        let mut args = vec![dir.clone().into_os_string()];
        // Key listings beside the fixtures (make_fullsize's own default assumes ../shared/spec/keys).
        let keys = fixtures_dir().join("..").join("spec").join("keys");
        if keys.is_dir() {
            args.extend(["--keys".into(), keys.into_os_string()]);
        }
        let run = run_py_tool(python, "make_fullsize.py", &args);
        if !run.status.success() || !FullSize::complete(&dir) {
            return Err(format!("make_fullsize.py failed\n{}", run.transcript()));
        }
        note(format!("msf-tests: make_fullsize.py wrote {} in {:.1} s", dir.display(), run.elapsed.as_secs_f64()));
        Ok(FullSize { dir, seconds: run.elapsed.as_secs_f64() })
    });
    match r {
        Ok(f) => Some(f),
        Err(e) => panic!("{test}: {e}"),
    }
}
