//! msf-eval used the way a user does: baselines and an exported model on generated and folder
//! datasets, its scores recomputed independently (scikit-learn / scipy on the same masks), and
//! its errors.

use msf_runtime::{Decomposer, ImageView};
use msf_tests::{require_fixtures, require_python, run, run_py_snippet, temp_dir, FixtureModel, Run};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn msf_eval(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    run(Path::new(env!("CARGO_BIN_EXE_msf-eval")), args.iter().map(|a| a.as_ref()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn images(report: &Value) -> &Vec<Value> {
    report["images"].as_array().unwrap()
}

#[test]
fn baselines_on_generated_data() {
    let dir = temp_dir("eval-baselines");
    let (one, grid, again) = (dir.path().join("one.json"), dir.path().join("grid.json"), dir.path().join("again.json"));
    let o = msf_eval(&[&"--baseline", &"one", &"--generated", &"12", &"--seed", &"4", &"--json", &one]);
    o.assert_ok();
    assert!(o.stdout.contains("FG-ARI") && o.stdout.contains("mIoU"), "{}", o.transcript());
    let r = read_json(&one);
    assert_eq!(images(&r).len(), 12);
    for img in images(&r) {
        // One segment for everything: chance-level Rand index by construction.
        assert_eq!(img["ari"].as_f64(), Some(0.0), "{img}");
        assert_eq!(img["fg_ari"].as_f64(), Some(0.0), "{img}");
        assert!(img["mbo"].as_f64().unwrap() > 0.0);
    }
    msf_eval(&[&"--baseline", &"grid", &"--generated", &"12", &"--seed", &"4", &"--json", &grid, &"-q"]).assert_ok();
    msf_eval(&[&"--baseline", &"grid", &"--generated", &"12", &"--seed", &"4", &"--json", &again, &"-q"]).assert_ok();
    let (g, a) = (read_json(&grid), read_json(&again));
    assert_eq!(g["summary"], a["summary"], "same seed, same scores");
    assert_eq!(g["summary"]["images"], 12);
    let fg = g["summary"]["fg_ari"].as_f64().unwrap();
    // Objects are small next to the grid's cells, so most fall in one cell: FG-ARI rewards that.
    assert!(fg > 0.0 && fg < 1.0, "grid FG-ARI {fg}");
}

/// The per-image scores of `msf-eval --onnx` equal scikit-learn / scipy on the masks the library
/// gives for the same images; a folder copy of one image, padded to 320×256 with unannotated
/// margins, scores the same through the centre crop.
#[test]
fn model_scores_match_an_independent_computation() {
    let Some(_) = require_fixtures("model_scores_match_an_independent_computation") else { return };
    let Some(python) = require_python("model_scores_match_an_independent_computation") else { return };
    let model = FixtureModel::slate(false);
    let dir = temp_dir("eval-model");
    let (data, json) = (dir.path().join("data"), dir.path().join("scores.json"));
    let o = msf_eval(&[&"--onnx", &model.path(), &"--generated", &"6", &"--seed", &"5", &"--save-data", &data, &"--json", &json]);
    o.assert_ok();
    let report = read_json(&json);
    assert_eq!(report["backend"], "tract");
    assert_eq!(images(&report).len(), 6);

    // Recompute: masks from the library, metrics in Python.
    let dec = Decomposer::builder().build(&model).unwrap();
    let mut pairs = vec![];
    for img in images(&report) {
        let name = img["name"].as_str().unwrap();
        let rgb = image::open(data.join("images").join(format!("{name}.png"))).unwrap().to_rgb8();
        let gt = msf_train::data::read_label_png(&data.join("masks").join(format!("{name}.png"))).unwrap();
        let d = dec.decompose(&ImageView::from_rgb_image(&rgb).unwrap()).unwrap();
        assert_eq!(d.mask.len(), gt.as_raw().len(), "256×256 generated images: the model's mask grid");
        pairs.push(serde_json::json!({"pred": d.mask, "gt": gt.as_raw()}));
    }
    let pairs_path = dir.path().join("pairs.json");
    std::fs::write(&pairs_path, serde_json::to_vec(&pairs).unwrap()).unwrap();
    let py = run_py_snippet(
        python,
        "import json, metric_goldens as m\nprint(json.dumps([m.metrics(p['pred'], p['gt']) for p in json.load(open(sys.argv[1]))]))",
        [&pairs_path],
    );
    py.assert_ok();
    let want: Value = serde_json::from_str(py.stdout.trim()).unwrap();
    for (img, want) in images(&report).iter().zip(want.as_array().unwrap()) {
        for metric in ["ari", "fg_ari", "mbo", "miou"] {
            let (g, w) = (img[metric].as_f64(), want[metric].as_f64());
            assert!(matches!((g, w), (Some(g), Some(w)) if (g - w).abs() < 1e-9), "{}: {metric} {g:?} vs Python {w:?}", img["name"]);
        }
    }

    // The same first image as a 320×256 folder sample with unannotated side margins.
    let first = images(&report)[0]["name"].as_str().unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(folder.join("images")).unwrap();
    std::fs::create_dir_all(folder.join("masks")).unwrap();
    let rgb = image::open(data.join("images").join(format!("{first}.png"))).unwrap().to_rgb8();
    let gt = msf_train::data::read_label_png(&data.join("masks").join(format!("{first}.png"))).unwrap();
    let mut wide = image::RgbImage::from_pixel(320, 256, image::Rgb([7, 7, 7]));
    let mut wide_gt = image::GrayImage::from_pixel(320, 256, image::Luma([255]));
    image::imageops::replace(&mut wide, &rgb, 32, 0);
    image::imageops::replace(&mut wide_gt, &gt, 32, 0);
    wide.save(folder.join("images/wide.png")).unwrap();
    msf_train::data::write_label_png(&wide_gt, &folder.join("masks/wide.png")).unwrap();
    let folder_json = dir.path().join("folder.json");
    msf_eval(&[&"--onnx", &model.path(), &"--data", &folder, &"--json", &folder_json, &"-q"]).assert_ok();
    let folder_report = read_json(&folder_json);
    let padded = &images(&folder_report)[0];
    for metric in ["ari", "fg_ari", "mbo", "miou"] {
        assert_eq!(padded[metric], images(&report)[0][metric], "{metric} of the padded copy");
    }
}

#[test]
fn errors_are_clear() {
    let dir = temp_dir("eval-errors");
    let missing: PathBuf = dir.path().join("nowhere");
    let o = msf_eval(&[&"--baseline", &"grid", &"--data", &missing]);
    o.assert_code(1);
    assert!(o.stderr.contains("nowhere") && !o.stderr.contains("panicked"), "{}", o.transcript());

    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    image::RgbImage::new(8, 8).save(data.join("images/a.png")).unwrap();
    let o = msf_eval(&[&"--baseline", &"grid", &"--data", &data]);
    o.assert_code(1);
    assert!(o.stderr.contains("no mask") && o.stderr.contains("a.png"), "{}", o.transcript());

    std::fs::create_dir_all(data.join("masks")).unwrap();
    image::RgbImage::new(8, 8).save(data.join("masks/a.png")).unwrap();
    let o = msf_eval(&[&"--baseline", &"grid", &"--data", &data]);
    o.assert_code(1);
    assert!(o.stderr.contains("8-bit grey or palette PNG"), "{}", o.transcript());

    let o = msf_eval(&[&"--baseline", &"grid"]);
    o.assert_code(1);
    assert!(o.stderr.contains("--data DIR or --generated N"), "{}", o.transcript());
    let o = msf_eval(&[&"--generated", &"3"]);
    o.assert_code(1);
    assert!(o.stderr.contains("--onnx") && o.stderr.contains("--baseline"), "{}", o.transcript());
    let o = msf_eval(&[&"--onnx", &missing, &"--generated", &"3"]);
    o.assert_code(1);
    assert!(o.stderr.contains("nowhere"), "{}", o.transcript());
    let o = msf_eval(&[&"--baseline", &"one", &"--generated", &"3", &"--size", &"4"]);
    o.assert_code(1);
    assert!(o.stderr.contains("below 16"), "{}", o.transcript());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing written beside the inputs");
}
