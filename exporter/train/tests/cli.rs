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

/// The report's per-image scores equal the independent Python metrics (tests/python/metric_goldens.py)
/// on `pairs` (`{"pred", "gt"}` label maps, in the report's image order).
fn assert_python_scores(python: &Path, dir: &Path, pairs: &[Value], report: &Value) {
    let pairs_path = dir.join("pairs.json");
    std::fs::write(&pairs_path, serde_json::to_vec(pairs).unwrap()).unwrap();
    let py = run_py_snippet(
        python,
        "import json, metric_goldens as m\nprint(json.dumps([m.metrics(p['pred'], p['gt']) for p in json.load(open(sys.argv[1]))]))",
        [&pairs_path],
    );
    py.assert_ok();
    let want: Value = serde_json::from_str(py.stdout.trim()).unwrap();
    for (img, want) in images(report).iter().zip(want.as_array().unwrap()) {
        for metric in ["ari", "fg_ari", "mbo", "miou"] {
            let (g, w) = (img[metric].as_f64(), want[metric].as_f64());
            assert!(matches!((g, w), (Some(g), Some(w)) if (g - w).abs() < 1e-9), "{}: {metric} {g:?} vs Python {w:?}", img["name"]);
        }
    }
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
    let dec = Decomposer::builder().fit(msf_runtime::Fit::Crop).build(&model).unwrap();
    let mut pairs = vec![];
    for img in images(&report) {
        let name = img["name"].as_str().unwrap();
        let rgb = image::open(data.join("images").join(format!("{name}.png"))).unwrap().to_rgb8();
        let gt = msf_train::data::read_label_png(&data.join("masks").join(format!("{name}.png"))).unwrap();
        let d = dec.decompose(&ImageView::from_rgb_image(&rgb).unwrap()).unwrap();
        assert_eq!(d.mask.len(), gt.as_raw().len(), "256×256 generated images: the model's mask grid");
        pairs.push(serde_json::json!({"pred": d.mask, "gt": gt.as_raw()}));
    }
    assert_python_scores(python, dir.path(), &pairs, &report);

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
    assert!(o.stderr.contains("--data DIR") && o.stderr.contains("--generated N"), "{}", o.transcript());
    let o = msf_eval(&[&"--generated", &"3"]);
    o.assert_code(1);
    assert!(o.stderr.contains("--onnx") && o.stderr.contains("--baseline"), "{}", o.transcript());
    let o = msf_eval(&[&"--onnx", &missing, &"--generated", &"3"]);
    o.assert_code(1);
    assert!(o.stderr.contains("nowhere"), "{}", o.transcript());
    // Out-of-range sizes are usage errors (exit 2), like any bad argument.
    let o = msf_eval(&[&"--baseline", &"one", &"--generated", &"3", &"--size", &"4"]);
    o.assert_code(2);
    assert!(o.stderr.contains("16..=4096"), "{}", o.transcript());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing written beside the inputs");
}

/// COCO panoptic in upstream's layout reads as upstream's instance mode: thing segments are the
/// objects, stuff joins the background, unlabelled pixels are left out. The same images with the
/// expected label maps as a plain folder score identically.
#[test]
fn coco_panoptic_layout_reads_as_upstream_instance_mode() {
    let dir = temp_dir("eval-coco");
    let (coco, folder) = (dir.path().join("coco"), dir.path().join("folder"));
    for d in [coco.join("val2017"), coco.join("annotations/panoptic_val2017"), folder.join("images"), folder.join("masks")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut annotations = vec![];
    let generated = msf_train::data::Generated { count: 3, seed: 9, ..Default::default() };
    for sample in generated.iter() {
        let stem = sample.name.clone();
        sample.image.save(coco.join("val2017").join(format!("{stem}.jpg"))).unwrap();
        std::fs::copy(coco.join("val2017").join(format!("{stem}.jpg")), folder.join("images").join(format!("{stem}.jpg"))).unwrap();
        // Background: stuff segment 1000; object k: segment 2000 + k, a thing except object 1 (stuff).
        let id_of = |label: u8| if label == 0 { 1000u32 } else { 2000 + label as u32 };
        let (w, h) = sample.labels.dimensions();
        let mut ids = image::RgbImage::new(w, h);
        let mut expected = image::GrayImage::new(w, h);
        let mut present = std::collections::BTreeSet::new();
        for (x, y, l) in sample.labels.enumerate_pixels() {
            let unlabelled = x < 10; // a strip without annotation
            let id = if unlabelled { 0 } else { id_of(l.0[0]) };
            ids.put_pixel(x, y, image::Rgb([(id % 256) as u8, (id / 256 % 256) as u8, (id / 65536) as u8]));
            if !unlabelled {
                present.insert(l.0[0]);
            }
            // Things (objects ≥ 2) are numbered in segment-id order, i.e. in label order here.
            let want = match (unlabelled, l.0[0]) {
                (true, _) => 255,
                (false, 0 | 1) => 0,
                (false, k) => k - 1,
            };
            expected.put_pixel(x, y, image::Luma([want]));
        }
        // Thing labels must be consecutive: renumber as the reader does (by segment id) over the
        // things actually present.
        let things: Vec<u8> = present.iter().copied().filter(|&l| l >= 2).collect();
        for p in expected.pixels_mut() {
            if p.0[0] != 0 && p.0[0] != 255 {
                let original = p.0[0] + 1;
                p.0[0] = things.iter().position(|&t| t == original).unwrap() as u8 + 1;
            }
        }
        ids.save(coco.join("annotations/panoptic_val2017").join(format!("{stem}.png"))).unwrap();
        msf_train::data::write_label_png(&expected, &folder.join("masks").join(format!("{stem}.png"))).unwrap();
        let segments: Vec<Value> = present
            .iter()
            .map(|&l| serde_json::json!({"id": id_of(l), "category_id": if l >= 2 { 1 } else if l == 1 { 3 } else { 2 }}))
            .collect();
        annotations.push(serde_json::json!({"file_name": format!("{stem}.png"), "segments_info": segments}));
    }
    let json = serde_json::json!({
        "categories": [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 0}, {"id": 3, "isthing": 0}],
        "annotations": annotations,
    });
    std::fs::write(coco.join("annotations/panoptic_val2017.json"), serde_json::to_vec(&json).unwrap()).unwrap();

    let (a, b) = (dir.path().join("coco.json"), dir.path().join("folder.json"));
    let o = msf_eval(&[&"--baseline", &"grid", &"--coco", &coco, &"--json", &a]);
    o.assert_ok();
    assert!(o.stderr.contains("COCO panoptic") && o.stderr.contains("3 images"), "{}", o.transcript());
    msf_eval(&[&"--baseline", &"grid", &"--data", &folder, &"--json", &b, &"-q"]).assert_ok();
    let (a, b) = (read_json(&a), read_json(&b));
    assert_eq!(images(&a).len(), 3);
    for (x, y) in images(&a).iter().zip(images(&b)) {
        for m in ["ari", "fg_ari", "mbo", "miou"] {
            assert_eq!(x[m], y[m], "{m} of {}", x["name"]);
        }
    }
    let o = msf_eval(&[&"--baseline", &"grid", &"--coco", &coco, &"--coco-split", &"train2017"]);
    o.assert_code(1);
    assert!(o.stderr.contains("panoptic_train2017.json"), "{}", o.transcript());
}

/// `--fit` scores the whole frame at frame resolution: with a fit that covers the frame the
/// per-image scores equal the independent Python metrics on the library's frame masks; crop leaves
/// the sides uncovered, which the scores count as missed; upstream's protocol needs crop.
#[test]
fn whole_frame_scores_per_fit() {
    let Some(_) = require_fixtures("whole_frame_scores_per_fit") else { return };
    let Some(python) = require_python("whole_frame_scores_per_fit") else { return };
    let model = FixtureModel::slate(false);
    let dir = temp_dir("eval-fit");
    let data = dir.path().join("data");
    let common: [&dyn AsRef<std::ffi::OsStr>; 9] = [&"--onnx", &model.path(), &"--generated", &"4", &"--seed", &"11", &"--frame", &"120x64", &"--touch-borders"];
    let mut pairs = vec![];
    let mut reports = vec![];
    for fit in ["crop", "tiles"] {
        let json = dir.path().join(format!("{fit}.json"));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = common.to_vec();
        args.extend([&"--fit" as &dyn AsRef<std::ffi::OsStr>, &fit, &"--json", &json, &"--save-data", &data, &"-q"]);
        let o = msf_eval(&args);
        o.assert_ok();
        assert!(o.stdout.contains("ms/image"), "{}", o.transcript());
        let r = read_json(&json);
        assert_eq!(r["fit"], fit);
        assert!(r["ms_per_image"].as_f64().unwrap() > 0.0);
        assert!(r["dataset"].as_str().unwrap().contains("120×64"), "{}", r["dataset"]);
        reports.push(r);
    }
    let dec = Decomposer::builder().fit(msf_runtime::Fit::Tiles).build(&model).unwrap();
    for img in images(&reports[1]) {
        let name = img["name"].as_str().unwrap();
        let rgb = image::open(data.join("images").join(format!("{name}.png"))).unwrap().to_rgb8();
        assert_eq!(rgb.dimensions(), (120, 64));
        let gt = msf_train::data::read_label_png(&data.join("masks").join(format!("{name}.png"))).unwrap();
        let d = dec.decompose(&ImageView::from_rgb_image(&rgb).unwrap()).unwrap();
        let pred = d.mask_in_frame();
        assert!(pred.iter().all(|&p| (p as usize) < d.num_slots), "tiles cover the frame");
        // The same masks as an msf-run output folder, for --predictions below.
        let map = msf_runtime::sink::LabelMap { width: 120, height: 64, labels: pred.clone() };
        std::fs::create_dir_all(dir.path().join("pred/masks")).unwrap();
        msf_runtime::sink::png::write_mask(&dir.path().join("pred/masks").join(format!("{name}.png")), &map).unwrap();
        pairs.push(serde_json::json!({"pred": pred, "gt": gt.as_raw()}));
    }
    assert_python_scores(python, dir.path(), &pairs, &reports[1]);
    // Scoring those masks as existing predictions gives the same numbers, with no model.
    let pred_json = dir.path().join("pred.json");
    msf_eval(&[&"--data", &data, &"--predictions", &dir.path().join("pred"), &"--json", &pred_json, &"-q"]).assert_ok();
    let by_name = |r: &Value| -> std::collections::BTreeMap<String, Value> { images(r).iter().map(|i| (i["name"].as_str().unwrap().to_string(), i.clone())).collect() };
    let (got, want) = (by_name(&read_json(&pred_json)), by_name(&reports[1]));
    assert_eq!(got.len(), 4);
    for (name, w) in &want {
        for metric in ["ari", "fg_ari", "mbo", "miou"] {
            assert_eq!(got[name][metric], w[metric], "{name}: {metric} of the saved predictions");
        }
    }
    // A folder without a prediction for an image: one clear line, exit 1.
    std::fs::remove_file(dir.path().join("pred/masks").join(format!("{}.png", images(&reports[1])[0]["name"].as_str().unwrap()))).unwrap();
    let o = msf_eval(&[&"--data", &data, &"--predictions", &dir.path().join("pred"), &"-q"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.transcript());
    assert!(o.stderr.contains("no prediction for this image"), "{}", o.transcript());
    // Usage errors: --fit needs a model; --frame needs generated data.
    assert_eq!(msf_eval(&[&"--baseline", &"one", &"--generated", &"2", &"--fit", &"pad"]).status.code(), Some(2));
    assert_eq!(msf_eval(&[&"--baseline", &"one", &"--generated", &"2", &"--frame", &"10x10"]).status.code(), Some(2));
    // The upstream protocol scores the centre crop only.
    let stretch = Decomposer::builder().fit(msf_runtime::Fit::Stretch).build(&model).unwrap();
    let sample = msf_train::data::Generated::default().sample(0);
    assert!(msf_train::eval::score_model(&stretch, &sample).unwrap_err().to_string().contains("centre crop"));
}
