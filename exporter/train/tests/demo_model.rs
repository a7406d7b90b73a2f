//! The trained demo model committed in `exporter/train/demo/` (what `scripts/setup` shows a new
//! user): on held-out generated shapes it must still beat the trivial baselines, scored by msf-eval
//! through msf-runtime. This catches a wrong file, a broken export or a preprocessing change.

use msf_tests::{run, temp_dir};
use serde_json::Value;
use std::path::Path;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/slate-msf-shapes.onnx");

fn summary(args: &[&str], json: &Path) -> Value {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    all.extend([std::ffi::OsStr::new("--json"), json.as_os_str(), std::ffi::OsStr::new("-q")]);
    run(Path::new(env!("CARGO_BIN_EXE_msf-eval")), all).assert_ok();
    serde_json::from_slice::<Value>(&std::fs::read(json).unwrap()).unwrap()["summary"].clone()
}

#[test]
fn committed_demo_model_beats_the_baselines() {
    let dir = temp_dir("demo-model");
    // Images the trainer never saw (its training seed is 0, its validation 1000003).
    let data = ["--generated", "48", "--seed", "424242"];
    let model = summary(&[&["--onnx", MODEL][..], &data].concat(), &dir.path().join("model.json"));
    // A grid of 7 cells: as many segments as the model has slots.
    let grid = summary(&[&["--baseline", "grid", "--slots", "7"][..], &data].concat(), &dir.path().join("grid.json"));
    let one = summary(&[&["--baseline", "one"][..], &data].concat(), &dir.path().join("one.json"));
    let m = |s: &Value, k: &str| s[k].as_f64().unwrap();
    for k in ["fg_ari", "ari", "mbo", "miou"] {
        assert!(m(&model, k) > m(&grid, k) && m(&model, k) > m(&one, k), "{k}: model {} vs grid {} and one segment {}", m(&model, k), m(&grid, k), m(&one, k));
    }
    msf_tests::note(format!(
        "committed demo model on 48 new generated images: FG-ARI {:.3} ARI {:.3} mBO {:.3} mIoU {:.3} (grid: {:.3} {:.3} {:.3} {:.3})",
        m(&model, "fg_ari"), m(&model, "ari"), m(&model, "mbo"), m(&model, "miou"),
        m(&grid, "fg_ari"), m(&grid, "ari"), m(&grid, "mbo"), m(&grid, "miou")
    ));
}
