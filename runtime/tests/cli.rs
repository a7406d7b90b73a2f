//! `msf-run` used the way a user does: export the fixture checkpoints with the `msf-export`
//! binary, run `msf-run` on the fixture photos, and compare what it wrote with the upstream goldens.
//!
//! Needs `target/<profile>/msf-export`: run `cargo build -p msf-exporter` first (the tests say so if
//! it is missing). Fixtures: `MSF_FIXTURES`, else `<runtime>/../../shared/fixtures`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use msf_runtime::sink::json::{rle_decode, rle_from_string};
use msf_runtime::sink::{png as mask_png, LabelMap, TEMP_SUFFIX};
use ndarray::{Array2, ArrayD};
use ndarray_npy::ReadNpyExt;
use serde_json::Value;

const IMAGES: [&str; 5] = ["camera.png", "hubble_deep_field.jpg", "ihc.png", "logo.png", "motorcycle_left.png"];
/// (fixture checkpoint / golden name, exported file name)
const MODELS: [&str; 2] = ["tiny-slate-msf", "tiny-slotdiffusion-msf"];

/// A line on the real stderr (past the harness's capture): measured numbers worth seeing.
fn note(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

fn fixtures() -> PathBuf {
    let d = match std::env::var_os("MSF_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    };
    assert!(d.join("images").is_dir(), "fixtures not found at {}: set MSF_FIXTURES to the shared fixtures folder", d.display());
    d
}

fn image(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

fn msf_run_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_msf-run"))
}

/// `msf-export` from the same target folder as `msf-run`.
fn msf_export_bin() -> PathBuf {
    let p = msf_run_bin().with_file_name(format!("msf-export{}", std::env::consts::EXE_SUFFIX));
    assert!(p.is_file(), "{} is missing: run `cargo build -p msf-exporter` before these tests", p.display());
    p
}

/// A fresh scratch folder for one test, under cargo's target tmp folder.
fn scratch(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("msf-run-cli-{}", std::process::id())).join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Models {
    dir: PathBuf,
}

impl Models {
    fn plain(&self, model: &str) -> PathBuf {
        self.dir.join(format!("{model}.onnx"))
    }
    fn with_slots(&self) -> PathBuf {
        self.dir.join("tiny-slate-msf.slots-in.onnx")
    }
    fn without_slots(&self) -> PathBuf {
        self.dir.join("tiny-slate-msf.no-slots-in.onnx")
    }
}

/// Export the fixture checkpoints once per test process.
fn models() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| {
        let dir = scratch("models");
        let export = |ckpt: &str, out: &Path, extra: &[&str]| {
            let o = Command::new(msf_export_bin())
                .arg("--ckpt")
                .arg(fixtures().join(format!("{ckpt}.pth")))
                .arg("-o")
                .arg(out)
                .arg("--quiet")
                .args(extra)
                .output()
                .unwrap();
            assert!(o.status.success(), "msf-export {ckpt} failed: {}", String::from_utf8_lossy(&o.stderr));
        };
        let m = Models { dir };
        for model in MODELS {
            export(model, &m.plain(model), &[]);
        }
        // `--slots-in` is the default now, still accepted.
        export("tiny-slate-msf", &m.with_slots(), &["--slots-in"]);
        export("tiny-slate-msf", &m.without_slots(), &["--no-slots-in"]);
        m
    })
}

fn msf_run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(msf_run_bin()).args(args.iter().map(|a| a.as_ref())).stdin(Stdio::null()).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_mask(path: &Path) -> LabelMap {
    mask_png::decode(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn assert_no_temp_files(dir: &Path) {
    let temps: Vec<_> = all_files(dir).into_iter().filter(|p| p.to_string_lossy().ends_with(TEMP_SUFFIX)).collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}

/// Fraction of equal pixels between a written model-resolution mask and an upstream golden.
fn agreement(mask: &LabelMap, golden: &Array2<u8>) -> f64 {
    assert_eq!((mask.height as usize, mask.width as usize), golden.dim());
    let same = mask.labels.iter().zip(golden.iter()).filter(|(a, b)| a == b).count();
    same as f64 / mask.labels.len() as f64
}

fn golden(stem: &str, model: &str) -> Array2<u8> {
    let p = fixtures().join("ref").join(format!("{stem}.{model}.segment.npy"));
    Array2::<u8>::read_npy(std::fs::File::open(&p).unwrap()).unwrap()
}

fn stem(image: &str) -> &str {
    image.rsplit_once('.').unwrap().0
}

/// Run `model_file` on the five photos and check every `--mask-res model` PNG against the golden.
fn check_against_goldens(test: &str, model_file: &Path, golden_model: &str, extra: &[&str]) {
    let out = scratch(test);
    // Upstream evaluates the centre crop: --fit crop is the fidelity setting.
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--onnx", &model_file, &"-o", &out, &"--fit", &"crop", &"--mask-res", &"model", &"--no-overlay", &"--quiet"];
    for e in extra {
        args.push(e);
    }
    let paths: Vec<PathBuf> = IMAGES.iter().map(|i| image(i)).collect();
    for p in &paths {
        args.push(p);
    }
    let o = msf_run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let mut worst = 1.0f64;
    let mut line = format!("{test}: mask agreement with upstream {golden_model}:");
    for img in IMAGES {
        let a = agreement(&read_mask(&out.join("masks").join(format!("{}.png", stem(img)))), &golden(stem(img), golden_model));
        line += &format!(" {} {:.4}%", stem(img), a * 100.0);
        worst = worst.min(a);
    }
    note(&line);
    assert!(worst >= 0.999, "{line}");
    assert_no_temp_files(&out);
}

#[test]
fn masks_match_upstream_goldens_for_both_models() {
    for model in MODELS {
        check_against_goldens(&format!("goldens-{model}"), &models().plain(model), model, &["--backend", "tract"]);
    }
}

#[test]
fn torch_onnx_without_metadata_needs_preprocess_upstream() {
    let torch = fixtures().join("tiny-slate-msf.torch.onnx");
    let out = scratch("torch-refused");
    let o = msf_run(&[&"--onnx", &torch, &"-o", &out, &image("camera.png")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = stderr(&o);
    assert!(e.contains("no MSF metadata") && e.contains("--preprocess-upstream"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(all_files(&out).is_empty(), "nothing written: {:?}", all_files(&out));

    check_against_goldens("torch-upstream", &torch, "tiny-slate-msf", &["--preprocess-upstream"]);
}

#[test]
fn folder_in_batches_or_parallel_jobs_gives_the_same_masks_as_one_by_one() {
    let folder = fixtures().join("images");
    let one = scratch("batch-1");
    let four = scratch("batch-4");
    let jobs = scratch("jobs-3");
    let model = models().plain("tiny-slate-msf");
    for (out, flags) in [(&one, ["--batch", "1", "--jobs", "1"]), (&four, ["--batch", "4", "--jobs", "1"]), (&jobs, ["--batch", "1", "--jobs", "3"])] {
        let o = msf_run(&[&"--onnx", &model, &folder, &"-o", out, &flags[0], &flags[1], &flags[2], &flags[3], &"--quiet", &"--no-overlay"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    for other in [&four, &jobs] {
        for img in IMAGES {
            let name = format!("{}.png", stem(img));
            let (a, b) = (read_mask(&one.join("masks").join(&name)), read_mask(&other.join("masks").join(&name)));
            // A batch runs other matmul kernels than a single frame, so the last bits of the
            // attention may differ; only a pixel whose top two slots tie that closely may flip.
            assert_eq!((a.width, a.height), (b.width, b.height), "{name}");
            let differ = a.labels.iter().zip(&b.labels).filter(|(x, y)| x != y).count();
            assert!(differ * 10_000 <= a.labels.len(), "{name}: {} has {differ} of {} mask pixels unlike one by one", other.display(), a.labels.len());
            let s1 = ArrayD::<f32>::read_npy(std::fs::File::open(one.join("slots").join(format!("{}.npy", stem(img)))).unwrap()).unwrap();
            let s4 = ArrayD::<f32>::read_npy(std::fs::File::open(other.join("slots").join(format!("{}.npy", stem(img)))).unwrap()).unwrap();
            let max = s1.iter().zip(s4.iter()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(max < 1e-4, "{img}: slots differ by {max}");
        }
    }
    // Frames in natural order, the same in every run.
    let names = |d: &Path| -> Vec<String> { read_json(&d.join("decomposition.json"))["frames"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect() };
    assert_eq!(names(&one), IMAGES.iter().map(|i| stem(i).to_string()).collect::<Vec<_>>());
    assert_eq!(names(&one), names(&four));
    assert_eq!(names(&one), names(&jobs));
}

/// Checks every slot's RLE in `decomposition.json` against the PNG written for the same frame.
fn check_json_against_pngs(out: &Path) -> Value {
    let j = read_json(&out.join("decomposition.json"));
    for f in j["frames"].as_array().unwrap() {
        let mask = read_mask(&out.join(f["files"]["mask"].as_str().unwrap()));
        let (h, w) = (mask.height as usize, mask.width as usize);
        assert_eq!((f["mask"]["width"].as_u64().unwrap() as usize, f["mask"]["height"].as_u64().unwrap() as usize), (w, h));
        let mut total = 0;
        for s in f["slots"].as_array().unwrap() {
            let id = s["id"].as_u64().unwrap() as u8;
            assert_eq!(s["rle"]["size"], serde_json::json!([h, w]));
            let counts = rle_from_string(s["rle"]["counts"].as_str().unwrap()).unwrap();
            let decoded = rle_decode(h, w, &counts).unwrap();
            let want: Vec<bool> = mask.labels.iter().map(|&l| l == id).collect();
            assert!(decoded == want, "{}: slot {id}: RLE does not decode to the PNG mask", f["name"]);
            let area = want.iter().filter(|&&b| b).count() as u64;
            assert_eq!(s["area"].as_u64().unwrap(), area);
            total += area;
        }
        assert_eq!(f["mask"]["covered"].as_u64().unwrap(), total, "slots cover the crop exactly once");
    }
    j
}

#[test]
fn json_rle_decodes_to_the_png_masks_and_npy_shapes_are_right() {
    let model = models().plain("tiny-slate-msf");
    let out = scratch("json-frame");
    let (a, b) = (image("motorcycle_left.png"), image("camera.png"));
    let o = msf_run(&[&"--onnx", &model, &a, &b, &"-o", &out, &"--fit", &"crop", &"--save-attn", &"--json", &"--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let j = check_json_against_pngs(&out);
    assert_eq!(j["schema"], 3);
    assert_eq!(j["options"]["fit"], "crop");
    // The ecosystem's own reader takes the RLE as it is (pycocotools.mask.decode / area / toBbox).
    if let Some(py) = msf_tests::require_python("json_rle_decodes_to_the_png_masks_and_npy_shapes_are_right") {
        let script = msf_tests::repo_root().join("tests/python/coco_rle_check.py");
        let c = Command::new(py).arg(&script).arg(&out).output().unwrap();
        assert!(c.status.success(), "{}", text(&c));
        eprintln!("{}", String::from_utf8_lossy(&c.stdout).trim());
    }
    assert_eq!(j["model"]["num_slots"], 5);
    assert_eq!(j["model"]["slot_dim"], 64);
    assert_eq!(j["model"]["backend"], "tract");
    assert_eq!(j["model"]["provider"], "cpu");
    assert_eq!(j["model"]["kind"], "slate-msf");
    assert_eq!(j["summary"]["status"], "ok");
    assert_eq!(j["summary"]["frames_written"], 2);
    let f0 = &j["frames"][0];
    assert_eq!(f0["name"], "motorcycle_left");
    assert_eq!(f0["mask"]["resolution"], "frame");
    // Frame resolution: void outside the centre crop; the crop is what the slots cover.
    let (fw, fh) = (f0["width"].as_u64().unwrap(), f0["height"].as_u64().unwrap());
    let size = f0["view"]["frame"][2].as_u64().unwrap();
    assert_eq!(f0["view"]["frame"][3].as_u64().unwrap(), size, "a square");
    assert_eq!(f0["view"]["covers_frame"], fw == fh);
    assert_eq!(size, fw.min(fh));
    assert_eq!(f0["mask"]["covered"].as_u64().unwrap(), size * size);
    let mask = read_mask(&out.join("masks/motorcycle_left.png"));
    assert_eq!((mask.width as u64, mask.height as u64), (fw, fh));
    if fw > fh {
        assert_eq!(mask.labels[0], 255, "left of the crop is void");
    }

    let slots = ArrayD::<f32>::read_npy(std::fs::File::open(out.join("slots/motorcycle_left.npy")).unwrap()).unwrap();
    assert_eq!(slots.shape(), &[5, 64]);
    let attn = ArrayD::<f32>::read_npy(std::fs::File::open(out.join("attn/camera.npy")).unwrap()).unwrap();
    assert_eq!(attn.shape(), &[5, 16, 16]);
    // Attention is a softmax over slots.
    for y in 0..16 {
        for x in 0..16 {
            let s: f32 = (0..5).map(|k| attn[[k, y, x]]).sum();
            assert!((s - 1.0).abs() < 1e-4);
        }
    }
    let overlay = image::open(out.join("overlays/motorcycle_left.jpg")).unwrap();
    assert_eq!((overlay.width() as u64, overlay.height() as u64), (fw, fh));

    // --json: one line on stdout.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["status"], "ok");
    assert_eq!(line["frames"], 2);
    assert!(line["fps"].as_f64().unwrap() > 0.0);

    // The same at model resolution.
    let out = scratch("json-model");
    let o = msf_run(&[&"--onnx", &model, &a, &"-o", &out, &"--mask-res", &"model", &"--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let j = check_json_against_pngs(&out);
    assert_eq!(j["frames"][0]["mask"]["covered"], 256 * 256);
}

#[test]
fn temporal_without_the_slots_input_matches_ids_and_with_it_carries_slots() {
    let out = scratch("temporal-refused");
    let folder = fixtures().join("images");
    // Without the input, ids are still matched between frames, with a warning that says how to
    // get the slots carried too.
    let o = msf_run(&[&"--onnx", &models().without_slots(), &folder, &"-o", &out, &"--temporal", &"--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stderr(&o).contains("--no-slots-in") && stderr(&o).contains("matched between frames only"), "{}", text(&o));
    assert_eq!(read_json(&out.join("decomposition.json"))["frames"].as_array().unwrap().len(), 5);

    // A plain `msf-export` carries slots: no warning.
    let out = scratch("temporal");
    let o = msf_run(&[&"--onnx", &models().plain("tiny-slate-msf"), &folder, &"-o", &out, &"--temporal", &"--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!stderr(&o).contains("warning"), "{}", text(&o));
    let j = check_json_against_pngs(&out);
    assert_eq!(j["options"]["temporal"], true);
    assert_eq!(j["frames"].as_array().unwrap().len(), 5);

    let o = msf_run(&[&"--onnx", &models().with_slots(), &folder, &"-o", &out, &"--temporal", &"--batch", &"2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn missing_model_is_one_line_exit_1() {
    let out = scratch("missing-model");
    let o = msf_run(&[&"--onnx", &out.join("nope.onnx"), &image("camera.png"), &"-o", &out.join("o")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("nope.onnx: model file not found"), "{}", text(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1);
    assert!(!out.join("o").exists());
}

/// An ONNX graph that is valid and carries MSF metadata but is not a decomposition graph
/// (one Identity node), and a file that is not ONNX at all.
#[test]
fn non_msf_onnx_is_refused() {
    use msf_models::onnx::{type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TypeProto, ValueInfoProto};
    use prost::Message;
    let dir = scratch("non-msf");
    let real = ModelProto::decode(&std::fs::read(models().plain("tiny-slate-msf")).unwrap()[..]).unwrap();
    let tensor = |name: &str| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(1), shape: None })), ..Default::default() }),
        ..Default::default()
    };
    let fake = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(GraphProto {
            name: Some("identity".into()),
            node: vec![NodeProto { op_type: Some("Identity".into()), input: vec!["image".into()], output: vec!["out".into()], ..Default::default() }],
            input: vec![tensor("image")],
            output: vec![tensor("out")],
            ..Default::default()
        }),
        metadata_props: real.metadata_props.clone(),
        ..Default::default()
    };
    let fake_path = dir.join("identity.onnx");
    std::fs::write(&fake_path, fake.encode_to_vec()).unwrap();
    let o = msf_run(&[&"--onnx", &fake_path, &image("camera.png"), &"-o", &dir.join("o1")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("not an MSF decomposition graph"), "{}", text(&o));

    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"this is not protobuf \xff\xff\xff").unwrap();
    let o = msf_run(&[&"--onnx", &junk, &image("camera.png"), &"-o", &dir.join("o2")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("junk.onnx"), "{}", text(&o));
    assert!(!dir.join("o1").exists() && !dir.join("o2").exists());
}

#[test]
fn zero_byte_image_fails_cleanly() {
    let dir = scratch("zero-byte");
    let empty = dir.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let out = dir.join("out");
    let o = msf_run(&[&"--onnx", &models().plain("tiny-slate-msf"), &empty, &"-o", &out]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = stderr(&o);
    assert!(e.contains("empty.png") && e.contains("no frame was written"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(all_files(&out).is_empty(), "{:?}", all_files(&out));
}

#[test]
fn truncated_png_after_good_frames_keeps_them_and_says_how_many() {
    let dir = scratch("truncated");
    let full = std::fs::read(image("ihc.png")).unwrap();
    let bad = dir.join("zz_truncated.png");
    std::fs::write(&bad, &full[..full.len() / 3]).unwrap();
    let out = dir.join("out");
    let o = msf_run(&[&"--onnx", &models().plain("tiny-slate-msf"), &image("camera.png"), &image("logo.png"), &bad, &"-o", &out, &"--batch", &"2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = stderr(&o);
    assert!(e.contains("zz_truncated.png") && e.contains("2 frames already written"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let masks: Vec<_> = all_files(&out.join("masks"));
    assert_eq!(masks.len(), 2, "{masks:?}");
    let j = read_json(&out.join("decomposition.json"));
    assert_eq!(j["summary"]["status"], "error");
    assert_eq!(j["frames"].as_array().unwrap().len(), 2);
    assert!(j["summary"]["error"].as_str().unwrap().contains("zz_truncated.png"));
    assert_no_temp_files(&out);
}

#[test]
fn unwritable_output_dir_is_refused_before_starting() {
    let dir = scratch("unwritable");
    let file = dir.join("regular-file");
    std::fs::write(&file, b"x").unwrap();
    let o = msf_run(&[&"--onnx", &models().plain("tiny-slate-msf"), &image("camera.png"), &"-o", &file.join("out")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("regular-file") && stderr(&o).contains("cannot write"), "{}", text(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1);
    assert_no_temp_files(&dir);
}

#[test]
fn missing_input_and_bad_arguments() {
    let dir = scratch("bad-input");
    let model = models().plain("tiny-slate-msf");
    let o = msf_run(&[&"--onnx", &model, &dir.join("nope.jpg"), &"-o", &dir.join("out")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("nope.jpg: input not found"), "{}", text(&o));
    let o = msf_run(&[&"--onnx", &model, &dir.join("*.nothing"), &"-o", &dir.join("out")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("matches no file"), "{}", text(&o));
    assert!(!dir.join("out").exists());
    // Usage errors: exit 2.
    let o = msf_run(&[&"--onnx", &model, &image("camera.png")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = msf_run(&[&"--onnx", &model, &image("camera.png"), &"-o", &dir, &"--batch", &"0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = msf_run(&[&"--onnx", &model, &image("camera.png"), &"-o", &dir, &"--temporal", &"--jobs", &"2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("drop --jobs"), "{}", text(&o));
    let o = msf_run(&[&"--onnx", &model, &image("camera.png"), &"-o", &dir, &"--provider", &"cuda"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn glob_input_with_every_and_max_frames() {
    let out = scratch("glob");
    let pattern = fixtures().join("images").join("*.png");
    let o = msf_run(&[&"--onnx", &models().plain("tiny-slate-msf"), &pattern, &"-o", &out, &"--every", &"2", &"--max-frames", &"2", &"--no-overlay", &"--no-slots", &"--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let j = read_json(&out.join("decomposition.json"));
    let names: Vec<&str> = j["frames"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    // *.png in natural order: camera, ihc, logo, motorcycle_left → every 2nd: camera, logo.
    assert_eq!(names, ["camera", "logo"]);
    assert_eq!(j["frames"][1]["index"], 2);
    assert!(!out.join("overlays").exists() && !out.join("slots").exists());
}

#[test]
fn help_documents_inputs_outputs_and_exit_codes() {
    let o = msf_run(&[&"--help"]);
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for s in ["Exit codes", "130", "--temporal", "--mask-res", "decomposition.json", "'frames/*.jpg'", "Examples", "--preprocess-upstream"] {
        assert!(h.contains(s), "--help lacks {s}:\n{h}");
    }
}

/// Start `msf-run` on `input`, send SIG`signal` once 3 masks are written, and check that it stopped
/// with exit 130, kept and described every finished frame, and left no temporary file. Returns the
/// output folder and the number of frames kept.
#[cfg(unix)]
fn interrupt_after_three_frames(test: &str, input: &Path, total: usize, extra: &[&str]) -> (PathBuf, usize) {
    stop_after_three_frames(test, input, total, extra, "INT", |_| {})
}

/// [`interrupt_after_three_frames`] with any signal, and `meanwhile` called with the output folder
/// while the run is going (before the signal).
#[cfg(unix)]
fn stop_after_three_frames(test: &str, input: &Path, total: usize, extra: &[&str], signal: &str, meanwhile: impl FnOnce(&Path)) -> (PathBuf, usize) {
    let out = scratch(test).join("out");
    let mut child = Command::new(msf_run_bin())
        .args(["--onnx".as_ref(), models().plain("tiny-slate-msf").as_os_str(), input.as_os_str(), "-o".as_ref(), out.as_os_str(), "--quiet".as_ref()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while all_files(&out.join("masks")).len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(120), "no frame written in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "msf-run ended before the signal");
        std::thread::sleep(Duration::from_millis(20));
    }
    meanwhile(&out);
    assert!(child.try_wait().unwrap().is_none(), "msf-run ended before the signal");
    let kill = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let j = read_json(&out.join("decomposition.json"));
    assert_eq!(j["summary"]["status"], "interrupted");
    let n = j["frames"].as_array().unwrap().len();
    assert!(n < total, "stopped early");
    assert_eq!(all_files(&out.join("masks")).len(), n, "every written mask is in the JSON");
    assert_eq!(all_files(&out.join("slots")).len(), n);
    assert_no_temp_files(&out);
    (out, n)
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_between_frames_and_keeps_them() {
    let frames = scratch("ctrl-c-frames").join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    // Many small frames so the run is still going when the signal comes.
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
    for i in 0..2000 {
        img.save(frames.join(format!("f{i}.png"))).unwrap();
    }
    interrupt_after_three_frames("ctrl-c", &frames, 2000, &[]);
    // SIGTERM and SIGHUP (a service manager, a closed terminal) stop a run the same way; while the
    // first one runs, a second run into its output folder is refused and touches nothing.
    stop_after_three_frames("sigterm", &frames, 2000, &[], "TERM", |out| {
        let o = Command::new(msf_run_bin())
            .args(["--onnx".as_ref(), models().plain("tiny-slate-msf").as_os_str(), frames.join("f1.png").as_os_str(), "-o".as_ref(), out.as_os_str()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("in use by another run"), "{}", text(&o));
    });
    stop_after_three_frames("sighup", &frames, 2000, &[], "HUP", |_| {});
}

/// Ctrl-C in the middle of a video: the finished frames stay, and so does the overlay video made of
/// exactly those frames.
#[cfg(all(unix, feature = "video"))]
#[test]
fn ctrl_c_in_the_middle_of_a_video_keeps_the_finished_frames() {
    use msf_runtime::sink::video::VideoWriter;
    use msf_runtime::source::{open, SourceOptions};
    let input = scratch("ctrl-c-video-in").join("long.mp4");
    let total = 1500;
    let mut vw = VideoWriter::create(&input, 64, 48, 25.0).unwrap();
    for t in 0..total as u32 {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([((x + t) * 4) as u8, (y * 5) as u8, 90]));
        vw.write_rgb(img.as_raw()).unwrap();
    }
    vw.finish().unwrap();
    let (out, n) = interrupt_after_three_frames("ctrl-c-video", &input, total, &["--overlay-video"]);
    let back = open(&out.join("overlay.mp4"), &SourceOptions::default()).unwrap().count();
    assert_eq!(back, n, "the overlay video holds exactly the kept frames");
}

/// A video in, temporal mode, and the overlays out as a video (feature `video`). The input is made
/// with the library's own encoder, so no `ffmpeg` program is needed.
#[cfg(feature = "video")]
#[test]
fn video_temporal_with_overlay_video() {
    use msf_runtime::sink::video::VideoWriter;
    use msf_runtime::source::{open, SourceOptions};
    let dir = scratch("video");
    let input = dir.join("moving.mp4");
    let (w, h) = (96u32, 64u32);
    let mut vw = VideoWriter::create(&input, w, h, 10.0).unwrap();
    for t in 0..12u32 {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let inside = x >= 10 + 4 * t && x < 34 + 4 * t && (20..44).contains(&y);
            if inside { image::Rgb([230, 40, 40]) } else { image::Rgb([(x * 2) as u8, 90, (y * 3) as u8]) }
        });
        vw.write_rgb(img.as_raw()).unwrap();
    }
    vw.finish().unwrap();

    let out = dir.join("out");
    let o = msf_run(&[&"--onnx", &models().with_slots(), &input, &"-o", &out, &"--temporal", &"--overlay-video", &"--every", &"2", &"--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let j = check_json_against_pngs(&out);
    let frames = j["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 6);
    assert_eq!(frames[1]["index"], 2);
    assert!(frames[1]["pts"].as_f64().is_some());
    // The overlay video has every written frame, at the frame size.
    let back: Vec<_> = open(&out.join("overlay.mp4"), &SourceOptions::default()).unwrap().map(|f| f.unwrap()).collect();
    assert_eq!(back.len(), 6);
    assert_eq!((back[0].width, back[0].height), (w, h));
    assert_no_temp_files(&out);
}

/// The `video_loop` example (feature `video`) as a user runs it: a video in, per-frame objects on
/// stdout, an overlay video out with every frame.
#[cfg(feature = "video")]
#[test]
fn video_loop_example_runs() {
    use msf_runtime::sink::video::VideoWriter;
    use msf_runtime::source::{open, SourceOptions};
    let example = msf_run_bin().with_file_name("examples").join(format!("video_loop{}", std::env::consts::EXE_SUFFIX));
    assert!(example.is_file(), "{} is not built (`cargo test --features video` builds the examples)", example.display());
    let dir = scratch("video_loop");
    let input = dir.join("in.mp4");
    let (w, h) = (80u32, 64u32);
    let mut vw = VideoWriter::create(&input, w, h, 8.0).unwrap();
    for t in 0..5u32 {
        let img = image::RgbImage::from_fn(w, h, |x, y| if x / 8 == t + 2 && y > 10 { image::Rgb([20, 200, 60]) } else { image::Rgb([90, (x * 3) as u8, (y * 2) as u8]) });
        vw.write_rgb(img.as_raw()).unwrap();
    }
    vw.finish().unwrap();
    let out = dir.join("overlay.mp4");
    let o = Command::new(&example).arg(models().with_slots()).arg(&input).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 5, "one line per frame:\n{stdout}");
    assert!(stdout.lines().all(|l| l.contains("px [")), "every frame lists its objects:\n{stdout}");
    let back = open(&out, &SourceOptions::default()).unwrap().count();
    assert_eq!(back, 5);
}

/// A folder that holds an earlier run is refused; `--overwrite` removes exactly that run's files
/// (what its decomposition.json lists) before writing, and leaves anything else alone. Files of a
/// run without its log are refused even with `--overwrite`: nothing says which are whose.
#[test]
fn an_earlier_run_is_refused_or_replaced_never_mixed() {
    let dir = scratch("overwrite");
    let (a, b) = (dir.join("in-a"), dir.join("in-b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let img = |seed: u32| image::RgbImage::from_fn(64, 48, move |x, y| image::Rgb([(x * seed) as u8, (y * 5) as u8, 90]));
    img(3).save(a.join("first.png")).unwrap();
    img(4).save(a.join("second.png")).unwrap();
    img(5).save(b.join("third.png")).unwrap();
    let out = dir.join("out");
    let model = models().plain("tiny-slate-msf");
    let o = msf_run(&[&"--onnx", &model, &a, &"-o", &out, &"--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    let before = all_files(&out);

    let o = msf_run(&[&"--onnx", &model, &b, &"-o", &out, &"--quiet"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("holds an earlier run") && stderr(&o).contains("--overwrite"), "{}", text(&o));
    assert_eq!(all_files(&out), before, "a refused run changed the folder");

    let o = msf_run(&[&"--onnx", &model, &b, &"-o", &out, &"--quiet", &"--overwrite"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut names: Vec<String> = all_files(&out).iter().map(|p| p.strip_prefix(&out).unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["decomposition.json", "masks/third.png", "notes.txt", "overlays/third.jpg", "slots/third.npy"]);
    assert_eq!(read_json(&out.join("decomposition.json"))["frames"].as_array().unwrap().len(), 1);

    // Mask files of some run, without the log that would list them.
    let stray = dir.join("stray");
    std::fs::create_dir_all(stray.join("masks")).unwrap();
    std::fs::write(stray.join("masks").join("x.png"), b"?").unwrap();
    let o = msf_run(&[&"--onnx", &model, &b, &"-o", &stray, &"--quiet", &"--overwrite"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("no decomposition.json"), "{}", text(&o));
    assert!(stray.join("masks").join("x.png").is_file());
}

/// `--jsonl -` streams one line per frame on stdout (messages on stderr) and, without `-o`,
/// writes no file at all; its records are decomposition.json's for the same frames.
#[test]
fn jsonl_streams_the_frame_records_and_needs_no_output_folder() {
    let dir = scratch("jsonl");
    let folder = fixtures().join("images");
    let model = models().plain("tiny-slate-msf");
    let o = Command::new(msf_run_bin()).args(["--onnx".as_ref(), model.as_os_str(), folder.as_os_str(), "--jsonl".as_ref(), "-".as_ref(), "--jobs".as_ref(), "1".as_ref()])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(all_files(&dir).is_empty(), "files written without -o: {:?}", all_files(&dir));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), IMAGES.len() + 1, "one line per frame and a summary");
    assert_eq!(lines.last().unwrap()["summary"]["frames"], IMAGES.len());
    assert!(stderr(&o).contains("as JSON lines"), "{}", text(&o));

    let out = dir.join("out");
    let o = msf_run(&[&"--onnx", &model, &folder, &"-o", &out, &"--jsonl", &dir.join("frames.jsonl"), &"--jobs", &"1", &"--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = read_json(&out.join("decomposition.json"));
    let file: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("frames.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (i, (a, b)) in log["frames"].as_array().unwrap().iter().zip(file.iter().chain(lines.iter())).enumerate() {
        for key in ["name", "index", "width", "height", "view", "mask", "slots"] {
            assert_eq!(a[key], b[key], "frame {i}: {key}");
        }
    }
    let o = msf_run(&[&"--onnx", &model, &folder, &"--jsonl", &"-", &"--overlay-video"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Every file under `dir` as a sorted list of `/`-separated paths relative to it.
fn relative_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = all_files(dir).iter().map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/")).collect();
    v.sort();
    v
}

/// `--layout davis`: one folder per input (two image folders of the same name, and a video with
/// feature `video`) in each of masks/, overlays/, slots/ and attn/; frames 00000, 00001, … in
/// order; PNG pixel = slot id + 1 (1..K), 0 only where no slot is; `--overwrite` removes exactly
/// that run's files and folders.
#[test]
fn davis_layout_has_one_folder_per_input_and_overwrite_removes_exactly_it() {
    let dir = scratch("davis");
    let model = models().plain("tiny-slate-msf");
    let k = 5u8;
    let frame = |w: u32, h: u32, t: u32| {
        image::RgbImage::from_fn(w, h, move |x, y| {
            if x >= 8 + 6 * t && x < 28 + 6 * t && (12..32).contains(&y) { image::Rgb([230, 40, 40]) } else { image::Rgb([(x * 3) as u8, 90, (y * 4) as u8]) }
        })
    };
    // Wide frames (the centre crop leaves their sides to no slot) and square ones (covered whole).
    let (a, b) = (dir.join("cam1").join("frames"), dir.join("cam2").join("frames"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for t in 0..3 {
        frame(72, 48, t).save(a.join(format!("img{t}.png"))).unwrap();
    }
    for t in 0..2 {
        frame(48, 48, t).save(b.join(format!("shot_{t}.png"))).unwrap();
    }
    let mut inputs = vec![a.clone(), b.clone()];
    #[allow(unused_mut)]
    let mut expected: Vec<(&str, u32, (u32, u32))> = vec![("frames", 3, (72, 48)), ("frames_2", 2, (48, 48))];
    #[cfg(feature = "video")]
    {
        let v = dir.join("clip.mp4");
        let mut vw = msf_runtime::sink::video::VideoWriter::create(&v, 64, 48, 10.0).unwrap();
        for t in 0..4 {
            vw.write_rgb(frame(64, 48, t).as_raw()).unwrap();
        }
        vw.finish().unwrap();
        inputs.push(v);
        expected.push(("clip", 4, (64, 48)));
    }
    let out = dir.join("out");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--onnx", &model, &"-o", &out, &"--layout", &"davis", &"--save-attn", &"--quiet"];
    for i in &inputs {
        args.push(i);
    }
    let o = msf_run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let j = read_json(&out.join("decomposition.json"));
    assert_eq!(j["options"]["layout"], "davis");
    let frames = j["frames"].as_array().unwrap();
    assert_eq!(frames.len() as u32, expected.iter().map(|e| e.1).sum::<u32>());
    for (seq, n, (w, h)) in &expected {
        let want: Vec<String> = (0..*n).map(|i| format!("{i:05}.png")).collect();
        assert_eq!(relative_files(&out.join("masks").join(seq)), want, "masks/{seq}");
        for i in 0..*n {
            let name = format!("{seq}/{i:05}");
            let rec = frames.iter().find(|f| f["name"] == name.as_str()).unwrap_or_else(|| panic!("no frame record {name}"));
            assert_eq!(rec["sequence"], *seq);
            assert_eq!(rec["index"], i);
            for (key, file) in [("mask", format!("masks/{name}.png")), ("overlay", format!("overlays/{name}.jpg")), ("slots", format!("slots/{name}.npy")), ("attn", format!("attn/{name}.npy"))] {
                assert_eq!(rec["files"][key], file.as_str());
                assert!(out.join(&file).is_file(), "{file}");
            }
            let png = read_mask(&out.join(format!("masks/{name}.png")));
            assert_eq!((png.width, png.height), (*w, *h), "{name}");
            assert!(png.labels.iter().all(|&l| l <= k), "{name}: ids 1..{k}, 0 for none");
            let zeros = png.labels.iter().filter(|&&l| l == 0).count() as u64;
            let covered = rec["mask"]["covered"].as_u64().unwrap();
            assert_eq!(zeros, u64::from(w * h) - covered, "{name}: 0 exactly where no slot is");
            if w == h {
                assert_eq!(zeros, 0, "{name}: a square frame is covered whole");
            }
            // The JSON keeps slot ids: each RLE is where the PNG holds id + 1.
            for s in rec["slots"].as_array().unwrap() {
                let id = s["id"].as_u64().unwrap() as u8;
                let counts = rle_from_string(s["rle"]["counts"].as_str().unwrap()).unwrap();
                let decoded = rle_decode(*h as usize, *w as usize, &counts).unwrap();
                assert!(decoded.iter().zip(&png.labels).all(|(&d, &l)| d == (l == id + 1)), "{name}: slot {id}");
            }
        }
    }
    assert_no_temp_files(&out);

    // With a fit that covers the whole frame (once msf-run has --fit), 0 is nowhere.
    if String::from_utf8_lossy(&msf_run(&[&"--help"]).stdout).contains("--fit") {
        let padded = dir.join("out-pad");
        let o = msf_run(&[&"--onnx", &model, &a, &"-o", &padded, &"--layout", &"davis", &"--fit", &"pad", &"--quiet"]);
        assert!(o.status.success(), "{}", text(&o));
        for f in all_files(&padded.join("masks")) {
            let png = read_mask(&f);
            assert!(png.labels.iter().all(|&l| (1..=k).contains(&l)), "{}: ids 1..{k} everywhere", f.display());
        }
    }

    // --overwrite removes exactly the listed files and the sequence folders they leave empty.
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir_all(out.join("masks/mine")).unwrap();
    std::fs::write(out.join("masks/mine/keep.png"), b"mine").unwrap();
    let o = msf_run(&[&"--onnx", &model, &b, &"-o", &out, &"--layout", &"davis", &"--quiet"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("holds an earlier run"), "{}", text(&o));
    let o = msf_run(&[&"--onnx", &model, &b, &"-o", &out, &"--layout", &"davis", &"--overwrite", &"--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let want = [
        "decomposition.json",
        "masks/frames/00000.png",
        "masks/frames/00001.png",
        "masks/mine/keep.png",
        "notes.txt",
        "overlays/frames/00000.jpg",
        "overlays/frames/00001.jpg",
        "slots/frames/00000.npy",
        "slots/frames/00001.npy",
    ];
    assert_eq!(relative_files(&out), want);
    for gone in ["masks/frames_2", "overlays/frames_2", "slots/clip", "attn"] {
        assert!(!out.join(gone).exists(), "{gone} is left");
    }
}

/// `--coco-results` on generated images with known objects: pycocotools' `COCO.loadRes` and
/// `COCOeval(iouType="segm")` take the file as written, and every entry decodes (in Rust here and
/// with pycocotools.mask in the script) to the mask PNG msf-run wrote for its frame and slot.
#[test]
fn coco_results_are_accepted_by_pycocotools_cocoeval_as_written() {
    let Some(py) = msf_tests::require_python("coco_results_are_accepted_by_pycocotools_cocoeval_as_written") else { return };
    let dir = scratch("coco-eval");
    let script = msf_tests::repo_root().join("tests/python/coco_eval_check.py");
    let c = Command::new(py).arg(&script).arg("make").arg(&dir).output().unwrap();
    assert!(c.status.success(), "{}", text(&c));
    // The demo model trained on generated shapes: masks worth a COCO score.
    let model = msf_tests::repo_root().join("exporter/train/demo/slate-msf-shapes.onnx");
    let (images, out, results) = (dir.join("images"), dir.join("out"), dir.join("results.json"));
    let o = msf_run(&[&"--onnx", &model, &images, &"-o", &out, &"--coco-results", &results, &"--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_no_temp_files(&dir);
    let line: Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(line["frames"], 5);

    let entries = read_json(&results);
    let entries = entries.as_array().unwrap();
    let mut per_image: std::collections::BTreeMap<u64, usize> = Default::default();
    for e in entries {
        let id = e["image_id"].as_u64().unwrap();
        *per_image.entry(id).or_default() += 1;
        let png = read_mask(&out.join("masks").join(format!("{id:012}.png")));
        let (h, w) = (png.height as usize, png.width as usize);
        assert_eq!(e["segmentation"]["size"], serde_json::json!([h, w]));
        assert_eq!(e["category_id"], 1);
        let slot = e["slot_id"].as_u64().unwrap() as u8;
        let decoded = rle_decode(h, w, &rle_from_string(e["segmentation"]["counts"].as_str().unwrap()).unwrap()).unwrap();
        assert!(decoded.iter().zip(&png.labels).all(|(&d, &l)| d == (l == slot)), "image {id} slot {slot}");
        assert_eq!(e["area"].as_u64().unwrap(), decoded.iter().filter(|&&d| d).count() as u64);
        let score = e["score"].as_f64().unwrap();
        assert!(score > 0.0 && score <= 1.0, "{score}");
    }
    assert_eq!(per_image.len(), 5, "{per_image:?}");

    let c = Command::new(py).arg(&script).arg("check").arg(&dir).arg(&results).arg(&out).output().unwrap();
    assert!(c.status.success(), "{}", text(&c));
    note(String::from_utf8_lossy(&c.stdout).trim());

    // The ground truth's own annotation file gives the same ids here: the same file, without -o.
    let again = dir.join("results-ann.json");
    let o = msf_run(&[&"--onnx", &model, &images, &"--coco-results", &again, &"--coco-images", &dir.join("annotations.json"), &"--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&results).unwrap());
}

/// A `--coco-images` file that is not JSON or lacks the frame, a frame name that is no number
/// without one, a category the annotations do not have: one line, exit 1, nothing written.
#[test]
fn coco_image_ids_that_cannot_be_had_are_one_line_and_exit_1() {
    let dir = scratch("coco-bad");
    let model = models().plain("tiny-slate-msf");
    let camera = image("camera.png");
    let (not_json, other) = (dir.join("not-json.json"), dir.join("other.json"));
    std::fs::write(&not_json, "{\"images\": [").unwrap();
    std::fs::write(&other, r#"{"images": [{"id": 7, "file_name": "000000000007.jpg"}], "categories": [{"id": 1}]}"#).unwrap();
    let cases: [(&[&dyn AsRef<std::ffi::OsStr>], &str); 4] = [
        (&[&"--coco-images", &not_json], "not-json.json: not a COCO annotation file"),
        (&[&"--coco-images", &other], "no image has the file name `camera.*`"),
        (&[], "camera: the frame's name is not a number"),
        (&[&"--coco-images", &other, &"--coco-category", &"2"], "no id 2"),
    ];
    for (i, (extra, phrase)) in cases.iter().enumerate() {
        let (out, results) = (dir.join(format!("out-{i}")), dir.join(format!("results-{i}.json")));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--onnx", &model, &camera, &"-o", &out, &"--coco-results", &results];
        args.extend_from_slice(extra);
        let o = msf_run(&args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(stderr(&o).contains(phrase), "{phrase}: {}", text(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "one line: {}", text(&o));
        assert!(!out.exists() && !results.exists(), "{phrase}: something was written");
    }
    assert_no_temp_files(&dir);
    // Usage errors: exit 2.
    let o = msf_run(&[&"--onnx", &model, &camera, &"-o", &dir.join("x"), &"--coco-images", &other]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = msf_run(&[&"--onnx", &model, &camera, &"--coco-results", &dir.join("r.json"), &"--layout", &"davis"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let h = String::from_utf8_lossy(&msf_run(&[&"--help"]).stdout).into_owned();
    for s in ["--layout", "davis", "--coco-results", "--coco-images", "--coco-category", "COCOeval"] {
        assert!(h.contains(s), "--help lacks {s}");
    }
}

#[test]
fn every_fit_writes_the_library_masks_and_all_but_crop_cover_the_frame() {
    use msf_runtime::{fit::Fit, Decomposer, ImageView};
    let model = models().plain("tiny-slate-msf");
    let img = image("motorcycle_left.png"); // 741×500
    let rgb = image::open(&img).unwrap().to_rgb8();
    for &fit in Fit::NAMES {
        let out = scratch(&format!("fit-{fit}"));
        let o = msf_run(&[&"--onnx", &model, &img, &"-o", &out, &"--fit", &fit, &"--no-overlay", &"--quiet"]);
        assert!(o.status.success(), "{fit}: {}", text(&o));
        let j = check_json_against_pngs(&out);
        assert_eq!(j["options"]["fit"], fit);
        let f: Fit = fit.parse().unwrap();
        let dec = Decomposer::builder().fit(f).build(&model).unwrap();
        let want = dec.decompose(&ImageView::from_rgb_image(&rgb).unwrap()).unwrap();
        let mask = read_mask(&out.join("masks/motorcycle_left.png"));
        assert!(mask.labels == want.mask_in_frame(), "{fit}: the written mask is the library's");
        let covered = j["frames"][0]["mask"]["covered"].as_u64().unwrap();
        assert_eq!(j["frames"][0]["view"]["covers_frame"], f != Fit::Crop, "{fit}");
        assert_eq!(covered == 741 * 500, f != Fit::Crop, "{fit}: {covered} px covered");
        assert_eq!(j["frames"][0]["view"]["tiled"], f == Fit::Tiles, "{fit}");
        let slots = ArrayD::<f32>::read_npy(std::fs::File::open(out.join("slots/motorcycle_left.npy")).unwrap()).unwrap();
        assert_eq!(slots.shape(), &[want.num_slots, 64], "{fit}");
    }
    // Tiles give several model views per frame; temporal mode follows one.
    let out = scratch("fit-tiles-temporal");
    let o = msf_run(&[&"--onnx", &model, &img, &"-o", &out, &"--fit", &"tiles", &"--temporal", &"--quiet"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("--fit tiles gives several"), "{}", text(&o));
    assert!(all_files(&out).is_empty(), "a usage error writes nothing");
}
