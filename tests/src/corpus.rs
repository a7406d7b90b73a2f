//! The bad-input corpus (`tests/corpus/`): its case table and its generator, shared by the
//! end-to-end test of the binaries (`tests/corpus.rs`) and the C ABI's (`runtime/capi/tests/corpus.rs`).

use crate::{repo_root, run};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One row of `cases.tsv`.
#[derive(Debug)]
pub struct Case {
    pub id: String,
    pub tool: String,
    pub input: String,
    pub args: Vec<String>,
    pub exit: i32,
    /// Frames `msf-run` must have kept: `0`, `+` (at least one) or `-` (not checked).
    pub kept: String,
    pub class: String,
    pub message: String,
}

/// The rows of `tests/corpus/cases.tsv`.
pub fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(repo_root().join("tests/corpus/cases.tsv")).expect("tests/corpus/cases.tsv");
    let mut v: Vec<Case> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 8, "cases.tsv line {}: 8 tab-separated fields expected, got {}: {line:?}", n + 1, f.len());
        // Each case writes into a folder named by its id: ids must be unique.
        assert!(!v.iter().any(|c| c.id == f[0]), "cases.tsv line {}: id {} is used twice", n + 1, f[0]);
        v.push(Case {
            id: f[0].into(),
            tool: f[1].into(),
            input: f[2].into(),
            args: f[3].split_whitespace().filter(|a| *a != "-").map(String::from).collect(),
            exit: f[4].parse().unwrap_or_else(|_| panic!("cases.tsv line {}: exit {:?}", n + 1, f[4])),
            kept: f[5].into(),
            class: f[6].into(),
            message: f[7].into(),
        });
    }
    v
}

/// Write the corpus inputs into `out` with `make_corpus.py` (video cases only with `ffmpeg`).
pub fn generate(python: &Path, fixtures: &Path, model: &Path, ffmpeg: Option<&Path>, out: &Path) {
    let mut args: Vec<OsString> = vec![
        repo_root().join("tests/corpus/make_corpus.py").into(),
        out.into(),
        "--fixtures".into(),
        fixtures.into(),
        "--onnx".into(),
        model.into(),
    ];
    if let Some(f) = ffmpeg {
        args.extend(["--ffmpeg".into(), f.into()]);
    }
    run(python, &args).assert_ok();
}

/// `prog` on `PATH`.
pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(prog)).find(|p| p.is_file()))
}
