//! `msf-eval --davis ROOT --predictions PRED` against the official DAVIS 2017 evaluation
//! (davisvideochallenge/davis2017-evaluation, unsupervised task): `tests/python/davis_golden.py`
//! regenerates the small dataset the golden `tests/goldens/davis_jf.json` was computed on (and
//! checks it is the same), msf-eval scores it, every number must match within 1e-6.

use msf_tests::{repo_root, require_python, run, run_py_tool, temp_dir, Run};
use serde_json::Value;
use std::path::Path;

const TOLERANCE: f64 = 1e-6;

fn msf_eval(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    run(Path::new(env!("CARGO_BIN_EXE_msf-eval")), args.iter().map(|a| a.as_ref()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// `|got - want|`, panicking with `what` when over the tolerance.
fn close(got: &Value, want: &Value, what: &str) -> f64 {
    let (g, w) = (got.as_f64().unwrap_or_else(|| panic!("{what}: no number in ours: {got}")), want.as_f64().unwrap());
    let d = (g - w).abs();
    assert!(d <= TOLERANCE, "{what}: ours {g}, upstream {w}");
    d
}

#[test]
fn davis_scores_match_the_official_evaluation() {
    let Some(python) = require_python("davis_scores_match_the_official_evaluation") else { return };
    let golden_path = repo_root().join("tests/goldens/davis_jf.json");
    let golden = read_json(&golden_path);
    let dir = temp_dir("davis-golden");
    run_py_tool(python, "davis_golden.py", [&"--out" as &dyn AsRef<std::ffi::OsStr>, &dir.path(), &"--verify", &golden_path]).assert_ok();

    let json = dir.path().join("davis.json");
    let o = msf_eval(&[&"--davis", &dir.path().join("DAVIS"), &"--predictions", &dir.path().join("predictions"), &"--json", &json]);
    o.assert_ok();
    for name in ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay", "orbit", "stripes", "cross"] {
        assert!(o.stdout.contains(name), "{name} not printed\n{}", o.transcript());
    }
    assert!(o.stderr.contains("val.txt") && o.stderr.contains("3 sequences"), "{}", o.transcript());
    let ours = read_json(&json);

    let mut worst = 0f64;
    for (k, want) in golden["global"].as_object().unwrap() {
        worst = worst.max(close(&ours["summary"][k], want, &format!("global {k}")));
    }
    assert_eq!(ours["summary"]["objects"], golden["objects"].as_array().unwrap().len());

    let sequences = ours["sequences"].as_array().unwrap();
    assert_eq!(sequences.len(), 3);
    for (name, want) in golden["sequences"].as_object().unwrap() {
        let s = sequences.iter().find(|s| s["name"] == name.as_str()).unwrap_or_else(|| panic!("no sequence {name} in ours"));
        assert_eq!(s["objects"].as_array().unwrap().len() as u64, want["objects"].as_u64().unwrap(), "{name}: objects");
        assert_eq!(s["predicted_objects"], want["predicted_objects"], "{name}: predicted objects");
        for m in ["J-Mean", "F-Mean", "J&F-Mean"] {
            worst = worst.max(close(&s[m], &want[m], &format!("{name} {m}")));
        }
    }

    let mut compared = 0;
    for want in golden["objects"].as_array().unwrap() {
        let seq = want["sequence"].as_str().unwrap();
        let s = sequences.iter().find(|s| s["name"] == seq).unwrap();
        let obj = s["objects"].as_array().unwrap().iter().find(|o| o["object"] == want["object"]);
        let obj = obj.unwrap_or_else(|| panic!("{seq}: no object {} in ours", want["object"]));
        let what = format!("{seq} object {}", want["object"]);
        assert_eq!(obj["proposal"], want["proposal"], "{what}: matched proposal");
        assert_eq!(obj["upstream_name"], want["upstream_name"], "{what}: upstream's name");
        for (m, (key, stat)) in [("J-Mean", ("J", "mean")), ("J-Recall", ("J", "recall")), ("J-Decay", ("J", "decay")), ("F-Mean", ("F", "mean")), ("F-Recall", ("F", "recall")), ("F-Decay", ("F", "decay"))] {
            worst = worst.max(close(&obj[key][stat], &want[m], &format!("{what} {m}")));
        }
        for frames in ["J_frames", "F_frames"] {
            let (g, w) = (obj[frames].as_array().unwrap(), want[frames].as_array().unwrap());
            assert_eq!(g.len(), w.len(), "{what}: {frames}");
            for (t, (g, w)) in g.iter().zip(w).enumerate() {
                worst = worst.max(close(g, w, &format!("{what} {frames}[{t}]")));
            }
        }
        compared += 1;
    }
    assert_eq!(compared, 8);
    msf_tests::note(format!(
        "davis: {compared} objects in 3 sequences and the global scores equal davis2017-evaluation {} within {worst:.1e}",
        &golden["upstream"]["commit"].as_str().unwrap()[..12]
    ));
}

#[test]
fn davis_mode_errors_are_clear() {
    let dir = temp_dir("davis-errors");
    let root = dir.path().join("DAVIS");
    let preds = dir.path().join("pred");
    let gt = image::GrayImage::from_fn(8, 6, |x, _| image::Luma([u8::from(x < 3)]));
    for (folder, name) in [(root.join("Annotations/480p/seq"), "00000.png"), (root.join("Annotations/480p/seq"), "00001.png"), (preds.join("seq"), "00000.png")] {
        std::fs::create_dir_all(&folder).unwrap();
        msf_train::data::write_label_png(&gt, &folder.join(name)).unwrap();
    }
    // A missing prediction names the file; nothing is written.
    let json = dir.path().join("out.json");
    let o = msf_eval(&[&"--davis", &root, &"--predictions", &preds, &"--json", &json]);
    o.assert_code(1);
    assert!(o.stderr.contains(&preds.join("seq/00001.png").display().to_string()) && !o.stderr.contains("panicked"), "{}", o.transcript());
    assert!(!json.exists());
    // A prediction of another size names both files.
    msf_train::data::write_label_png(&image::GrayImage::new(9, 6), &preds.join("seq/00001.png")).unwrap();
    let o = msf_eval(&[&"--davis", &root, &"--predictions", &preds]);
    o.assert_code(1);
    assert!(o.stderr.contains("seq/00001.png: 9×6") && o.stderr.contains("00000.png is 8×6"), "{}", o.transcript());
    // Fixed, it scores: identical masks.
    msf_train::data::write_label_png(&gt, &preds.join("seq/00001.png")).unwrap();
    let o = msf_eval(&[&"--davis", &root, &"--predictions", &preds, &"--json", &json, &"-q"]);
    o.assert_ok();
    assert_eq!(read_json(&json)["summary"]["J&F-Mean"], 1.0);
    // Not a DAVIS folder; a set that does not exist.
    let o = msf_eval(&[&"--davis", &preds, &"--predictions", &preds]);
    o.assert_code(1);
    assert!(o.stderr.contains("not a DAVIS folder"), "{}", o.transcript());
    let o = msf_eval(&[&"--davis", &root, &"--predictions", &preds, &"--davis-set", &"test-dev"]);
    o.assert_code(1);
    assert!(o.stderr.contains("test-dev.txt"), "{}", o.transcript());
    // Usage errors: --davis without --predictions, with a model, --predictions alone.
    msf_eval(&[&"--davis", &root]).assert_code(2);
    msf_eval(&[&"--davis", &root, &"--predictions", &preds, &"--baseline", &"one"]).assert_code(2);
    msf_eval(&[&"--predictions", &preds]).assert_code(2);
    // --help says the exit codes.
    let o = msf_eval(&[&"--help"]);
    o.assert_ok();
    assert!(o.stdout.contains("Exit codes: 0") && o.stdout.contains("2 usage error") && o.stdout.contains("--davis"), "{}", o.transcript());
}
