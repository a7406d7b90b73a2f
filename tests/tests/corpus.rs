//! The bad-input corpus (`tests/corpus/cases.tsv`) through every front end: `msf-export`, `msf-run`
//! and the C ABI (`msf_decomposer_create`). Each case must end with its expected exit code and error
//! message, never a panic or a signal, and leave no partial file behind; the odd-but-valid images
//! must work. The inputs are written by `tests/corpus/make_corpus.py` from the upstream fixtures and a
//! real export (see `tests/corpus/README.md`). The C ABI half is `runtime/capi/tests/corpus.rs`.

use msf_tests::*;
use msf_tests::corpus;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Files anywhere under `dir` (relative paths), for "nothing partial left" checks.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Address space each case may use: runaway memory fails the case (an allocation failure aborts,
/// which the checks below see as a signal) instead of exhausting the machine.
const CASE_MEMORY: u64 = 4 << 30;
/// Wall-clock bound of each case: a hang fails it.
const CASE_SECONDS: u64 = 60;

/// Runs `program` under [`CASE_MEMORY`] and [`CASE_SECONDS`], with an optional file-size limit
/// (`RLIMIT_FSIZE`: a write past it fails with EFBIG like a full disk; the tools ignore SIGXFSZ
/// themselves, so the default disposition is left for them to change).
fn run_limited(program: &Path, args: &[String], fsize: Option<u64>) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("RUST_BACKTRACE").env_remove("RUST_LOG");
    let fsize = fsize.unwrap_or(libc::RLIM_INFINITY);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (resource, limit) in [(libc::RLIMIT_FSIZE, fsize), (libc::RLIMIT_AS, CASE_MEMORY)] {
                let r = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(resource, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let what = format!("{} {}", program.display(), args.join(" "));
    let t = std::time::Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    fn reader(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    }
    let (out_t, err_t) = (reader(child.stdout.take().unwrap()), reader(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > std::time::Duration::from_secs(CASE_SECONDS) {
            let _ = child.kill();
            let st = child.wait().unwrap();
            let mut stderr = err_t.join().unwrap();
            stderr.push_str(&format!("\n[hung: killed after {CASE_SECONDS} s]"));
            return Run { what, status: st, stdout: out_t.join().unwrap(), stderr, elapsed: t.elapsed() };
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Run { what, status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap(), elapsed: t.elapsed() }
}

#[test]
fn every_corpus_case_fails_cleanly_or_works() {
    let test = "every_corpus_case_fails_cleanly_or_works";
    let Some(fx) = require_fixtures(test) else { return };
    let Some(py) = require_python(test) else { return };
    let work = temp_dir(test);
    let corpus_dir = work.path().join("corpus");

    // A real model to run the image and video cases with, and to derive the model cases from.
    let model = work.path().join("tiny-slate-msf.onnx");
    msf_export([OsString::from("--ckpt"), fx.join("tiny-slate-msf.pth").into(), "-o".into(), model.clone().into()]).assert_ok();
    let ffmpeg = corpus::which("ffmpeg");
    if ffmpeg.is_none() {
        skip_or_fail(test, "no `ffmpeg` program on PATH: the video cases are not generated");
    }
    corpus::generate(py, &fx, &model, ffmpeg.as_deref(), &corpus_dir);

    let run_bin = exporter_bin().with_file_name(format!("msf-run{}", std::env::consts::EXE_SUFFIX));
    assert!(run_bin.is_file(), "{} is not built (cargo test --workspace builds it)", run_bin.display());
    let eval_bin = exporter_bin().with_file_name(format!("msf-eval{}", std::env::consts::EXE_SUFFIX));
    assert!(eval_bin.is_file(), "{} is not built (cargo test --workspace builds it)", eval_bin.display());
    let photo = fx.join("images").join("motorcycle_left.png");

    let all = corpus::cases();
    let mut failures = Vec::new();
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    let mut ran = 0;
    for c in &all {
        let input = corpus_dir.join(&c.input);
        if c.input.starts_with("video-") && ffmpeg.is_none() {
            continue;
        }
        if !matches!(c.input.as_str(), "-" | "missing.pth" | "missing.onnx" | "missing.png") {
            assert!(input.exists(), "{}: the generator did not write {}", c.id, c.input);
        }
        let out = work.path().join("out").join(&c.id);
        std::fs::create_dir_all(&out).unwrap();
        let mut fsize = None;
        let mut sentinels: Vec<PathBuf> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let mut target = out.join("result");
        for a in &c.args {
            match a.as_str() {
                "@out-is-file" => {
                    std::fs::write(&target, b"a file, not a folder").unwrap();
                }
                "@out-under-file" => {
                    std::fs::write(out.join("file"), b"a file").unwrap();
                    target = out.join("file").join("result");
                }
                "@infer" => {}
                // An earlier run in the output folder: listed by its log (which also names files
                // outside the run's folders, which --overwrite must leave), listed by a log that is
                // not JSON, or mask files without a log.
                "@out-has-run" | "@out-bad-log" | "@out-stale" => {
                    std::fs::create_dir_all(target.join("masks")).unwrap();
                    std::fs::write(target.join("masks/old.png"), b"an earlier run's mask").unwrap();
                    std::fs::write(out.join("keep.txt"), b"not the run's").unwrap();
                    std::fs::write(target.join("notes.txt"), b"the user's").unwrap();
                    let log = match a.as_str() {
                        "@out-has-run" => Some(r#"{"schema":3,"frames":[{"files":{"mask":"masks/old.png","a":"../keep.txt","b":"masks/../../keep.txt","c":"notes.txt"}}],"summary":{}}"#),
                        "@out-bad-log" => Some("{\"frames\": [ cut"),
                        _ => None,
                    };
                    if let Some(log) = log {
                        std::fs::write(target.join("decomposition.json"), log).unwrap();
                    }
                    sentinels.extend([out.join("keep.txt"), target.join("notes.txt")]);
                }
                s if s.starts_with("@fsize=") => fsize = Some(s["@fsize=".len()..].parse::<u64>().unwrap()),
                s => args.push(s.replace("{corpus}", &corpus_dir.to_string_lossy())),
            }
        }
        let before = files_under(&out);
        let p = |x: &Path| x.to_string_lossy().into_owned();
        let r = match c.tool.as_str() {
            "export" => {
                let mut a = vec!["--ckpt".into(), p(&input), "-o".into(), p(&target)];
                a.extend(args);
                run_limited(exporter_bin(), &a, fsize)
            }
            "run-model" => {
                let mut a = vec!["--onnx".into(), p(&input), p(&photo), "-o".into(), p(&target), "--quiet".into()];
                a.extend(args);
                run_limited(&run_bin, &a, fsize)
            }
            "run-input" => {
                let mut a = vec!["--onnx".into(), p(&model), p(&input), "-o".into(), p(&target), "--quiet".into()];
                a.extend(args);
                run_limited(&run_bin, &a, fsize)
            }
            "eval" => {
                let mut a = vec!["--onnx".into(), p(&model), "--quiet".into()];
                if c.input != "-" {
                    a.extend(["--data".into(), p(&input)]);
                }
                a.extend(args);
                run_limited(&eval_bin, &a, fsize)
            }
            t => panic!("{}: unknown tool {t:?}", c.id),
        };
        ran += 1;
        *classes.entry(c.class.clone()).or_default() += 1;
        let mut problems = Vec::new();
        match r.code() {
            None => problems.push(format!("killed by a signal ({:?})", r.status)),
            Some(code) if code != c.exit => problems.push(format!("exit {code}, expected {}", c.exit)),
            _ => {}
        }
        for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
            if r.stderr.contains(bad) {
                problems.push(format!("stderr mentions {bad:?}"));
            }
        }
        if c.exit != 0 && !r.stderr.to_lowercase().contains(&c.message.to_lowercase()) {
            problems.push(format!("stderr does not contain {:?}", c.message));
        }
        if c.exit != 0 && r.stderr.lines().filter(|l| !l.trim().is_empty()).count() > 3 {
            problems.push("more than 3 lines on stderr for one error".into());
        }
        let earlier_mask = target.join("masks/old.png");
        if c.args.iter().any(|a| a == "@out-has-run") && c.exit == 0 && earlier_mask.exists() {
            problems.push("--overwrite left the earlier run's mask".into());
        }
        for s in &sentinels {
            if !s.is_file() {
                problems.push(format!("{} (not a file of the earlier run) was removed", s.display()));
            }
        }
        let after = files_under(&out);
        let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
        if let Some(t) = new.iter().find(|f| f.contains(".tmp")) {
            problems.push(format!("temporary file left: {t}"));
        }
        match c.tool.as_str() {
            "export" if c.exit != 0 && target.is_file() && !before.iter().any(|f| out.join(f) == target) => {
                problems.push("an output model was left after the failure".into())
            }
            "export" if c.exit == 0 && !target.is_file() => problems.push("no model written".into()),
            "run-model" | "run-input" => {
                let masks = new.iter().filter(|f| f.starts_with("result/masks/") && f.ends_with(".png")).count();
                match c.kept.as_str() {
                    "0" if !new.is_empty() => problems.push(format!("files written although nothing should be: {new:?}")),
                    "+" if masks == 0 => problems.push("no frame kept".into()),
                    "+" if !described(&target) => problems.push("kept frames not described in decomposition.json".into()),
                    _ => {}
                }
                if c.exit == 0 && masks == 0 {
                    problems.push("exit 0 but no mask written".into());
                }
            }
            _ => {}
        }
        if !problems.is_empty() {
            failures.push(format!("{} ({}): {}\n{}", c.id, c.input, problems.join("; "), r.transcript()));
        }
    }
    let bad = all.iter().filter(|c| c.exit != 0).count();
    note(format!(
        "msf-tests: corpus: {} cases run ({} must fail, {} must work) in {} classes; {} failed",
        ran,
        bad,
        all.len() - bad,
        classes.len(),
        failures.len()
    ));
    assert!(all.len() >= 50, "the corpus has {} cases, fewer than 50", all.len());
    assert!(failures.is_empty(), "{} corpus case(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}


/// Whether `dir/decomposition.json` is a finished run log of this version with at least one frame
/// (a replaced earlier run's log has the same name, so its being new says nothing).
fn described(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("decomposition.json")) else { return false };
    let Ok(log) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    log["summary"].is_object() && log["frames"].as_array().is_some_and(|f| !f.is_empty() && f[0]["view"].is_object())
}
