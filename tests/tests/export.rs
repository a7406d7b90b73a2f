//! End-to-end tests of `msf-export`, run as a user runs it: the built binary on upstream checkpoints,
//! its output checked by the ONNX checker + onnxruntime (`tests/python/check_onnx.py`) and by tract
//! (`msf-export --reference`) against independent goldens (the upstream PyTorch outputs for the tiny
//! fixtures, `reference.py`'s numpy forward for the full-size checkpoints), and its refusals of broken
//! or hostile checkpoints. See `src/lib.rs` for where the binary, fixtures and Python come from.
//!
//! Run: `cargo test --workspace` (builds the binary), or `cargo build -p msf-exporter && cargo test -p
//! msf-tests --test export`. Add `-- --nocapture` for each tool's full output; the measured numbers
//! (max differences, full-size export time and size) are printed in any case.

use msf_exporter::graph::{MAX_OPSET, MIN_OPSET};
use msf_tests::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Tolerances of the issue: slots/attn max |Δ| ≤ 1e-4, masks ≥ 99.9 % equal.
const TOL: f64 = 1e-4;
const MIN_MASKS: f64 = 0.999;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Export `ckpt` to `out` with extra flags; must succeed. Returns the run (stdout has `--json` output).
fn export_ok(ckpt: &Path, out: &Path, flags: &[&str]) -> Run {
    let mut args = vec!["--ckpt", s(ckpt), "-o", s(out), "--json"];
    args.extend_from_slice(flags);
    let r = msf_export(&args);
    r.assert_ok();
    assert!(out.is_file(), "no {} after a successful export\n{}", out.display(), r.transcript());
    r
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("--json output is not JSON ({e})\n{}", r.transcript()))
}

/// `check_onnx.py MODEL args…` must pass; returns the worst differences it printed.
fn check_onnx(python: &Path, model: &Path, args: &[&str]) -> Diffs {
    check_onnx_run(python, model, args).0
}

/// [`check_onnx`], also returning what it printed.
fn check_onnx_run(python: &Path, model: &Path, args: &[&str]) -> (Diffs, String) {
    let mut all = vec![s(model)];
    all.extend_from_slice(args);
    let r = run_py_tool(python, "check_onnx.py", &all);
    println!("{}", r.transcript());
    r.assert_ok();
    assert!(r.stdout.contains("onnx.checker (full_check): ok") || args.contains(&"--skip-checker"), "checker did not run\n{}", r.transcript());
    let d = parse_diffs(&r.stdout);
    assert!(d.cases > 0, "check_onnx printed no comparisons\n{}", r.transcript());
    assert!(d.slots <= TOL && d.attn <= TOL && d.masks >= MIN_MASKS, "outside tolerance: {d}\n{}", r.transcript());
    (d, r.stdout)
}

/// check_onnx.py against the upstream goldens of a fixture model (every image).
fn check_onnx_fixture(python: &Path, model: &Path, fixtures: &Path, name: &str) -> Diffs {
    check_onnx(python, model, &["--fixtures", s(fixtures), "--model", name])
}

/// `msf-export CKPT -o OUT --reference NPZ flags…` must exit 0; returns tract's differences.
fn tract_reference(ckpt: &Path, out: &Path, npz: &Path, flags: &[&str]) -> Diffs {
    let mut f = vec!["--reference", s(npz)];
    f.extend_from_slice(flags);
    let r = export_ok(ckpt, out, &f);
    println!("{}", r.transcript());
    let v = json(&r);
    let line = v["verify"].as_str().unwrap_or_else(|| panic!("no verify line in --json output\n{}", r.transcript()));
    let d = parse_diffs(line);
    assert_eq!(d.cases, 1, "cannot read tract's differences from {line:?}");
    assert!(d.slots <= TOL && d.attn <= TOL && d.masks >= MIN_MASKS, "outside tolerance: {d}");
    d
}

// ====================================================================================================
// a. Tiny upstream fixtures
// ====================================================================================================

/// Default export of each fixture, checked by the ONNX checker (full_check) and onnxruntime against
/// the upstream PyTorch goldens of every fixture image.
#[test]
fn tiny_default_export_onnxruntime_matches_upstream() {
    let t = "tiny_default_export_onnxruntime_matches_upstream";
    let Some(fx) = require_fixtures(t) else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    for m in FIXTURE_MODELS {
        let out = tmp.path().join(format!("{m}.onnx"));
        let r = export_ok(&fx.join(format!("{m}.pth")), &out, &[]);
        let v = json(&r);
        assert_eq!(v["opset"], 17);
        assert_eq!(v["data_file"], serde_json::Value::Null);
        let d = check_onnx_fixture(py, &out, &fx, m);
        note(format!("msf-tests: {m} onnxruntime vs upstream: {d}"));
    }
}

/// Default export of each fixture run by tract (`--reference`) against the upstream goldens, one
/// npz per image, then all images in one batch (the batch axis is dynamic).
#[test]
fn tiny_default_export_tract_matches_upstream() {
    let t = "tiny_default_export_tract_matches_upstream";
    let Some(fx) = require_fixtures(t) else { return };
    let tmp = temp_dir(t);
    let images = fixture_images(&fx);
    for m in FIXTURE_MODELS {
        let ckpt = fx.join(format!("{m}.pth"));
        let out = tmp.path().join(format!("{m}.onnx"));
        let mut worst = Diffs::default();
        for img in &images {
            let npz = tmp.path().join(format!("{img}.{m}.npz"));
            write_golden_npz(&fx, m, std::slice::from_ref(img), &npz);
            worst = worst.worst(tract_reference(&ckpt, &out, &npz, &[]));
        }
        let npz = tmp.path().join(format!("all.{m}.npz"));
        write_golden_npz(&fx, m, &images, &npz);
        let batched = tract_reference(&ckpt, &out, &npz, &[]);
        note(format!("msf-tests: {m} tract vs upstream: per image {worst}; batch of {}: {batched}", images.len()));
    }
}

/// `--no-resize`: the graph takes (B,3,224,224); check_onnx applies the bicubic resize itself, and
/// tract runs on a 224 input made by `reference.bicubic_resize` (msf-export does not resize a 256
/// reference input for such a model).
#[test]
fn tiny_variant_no_resize() {
    let t = "tiny_variant_no_resize";
    let Some(fx) = require_fixtures(t) else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let images = fixture_images(&fx);
    for m in FIXTURE_MODELS {
        let ckpt = fx.join(format!("{m}.pth"));
        let out = tmp.path().join(format!("{m}.onnx"));
        export_ok(&ckpt, &out, &["--no-resize"]);
        let (ort, printed) = check_onnx_run(py, &out, &["--fixtures", s(&fx), "--model", m]);
        assert!(printed.contains("done here (not in graph)") && printed.contains("224"), "check_onnx did not see the resize left out\n{printed}");
        let n256 = tmp.path().join(format!("{m}.256.npz"));
        let n224 = tmp.path().join(format!("{m}.224.npz"));
        write_golden_npz(&fx, m, &images, &n256);
        run_py_snippet(
            py,
            "import numpy as np, reference\nz = dict(np.load(sys.argv[1]))\n\
             z['input'] = reference.bicubic_resize(z['input'].astype(np.float64)).astype(np.float32)\n\
             assert z['input'].shape[-2:] == (224, 224)\nnp.savez(sys.argv[2], **z)",
            [&n256, &n224],
        )
        .assert_ok();
        let tract = tract_reference(&ckpt, &out, &n224, &["--no-resize"]);
        note(format!("msf-tests: {m} --no-resize: onnxruntime {ort}; tract {tract}"));
    }
}

/// `slots_init` is a plain input by default: onnxruntime lists it with no warning, an empty one
/// (N = 0) gives the upstream goldens (the learned slots), and so does feeding the learned mean;
/// tract feeds the mean. `--no-slots-in` leaves it out; the older `--slots-in` is still accepted.
#[test]
fn tiny_variant_slots_input_by_default() {
    let t = "tiny_variant_slots_input_by_default";
    let Some(fx) = require_fixtures(t) else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let images = fixture_images(&fx);
    let listed = "import onnxruntime as ort\n\
        so = ort.SessionOptions(); so.log_severity_level = 1  # warnings and up, to stderr\n\
        s = ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])\n\
        print([i.name for i in s.get_inputs()], [i.name for i in s.get_overridable_initializers()])";
    for m in FIXTURE_MODELS {
        let ckpt = fx.join(format!("{m}.pth"));
        let out = tmp.path().join(format!("{m}.onnx"));
        export_ok(&ckpt, &out, &[]);
        let r = run_py_snippet(py, listed, [&out]);
        r.assert_ok();
        assert_eq!(r.stdout.trim(), "['image', 'slots_init'] []", "{}", r.transcript());
        assert!(!r.stderr.contains("slots_init"), "onnxruntime warns about slots_init:\n{}", r.transcript());
        let d1 = check_onnx_fixture(py, &out, &fx, m);
        let d2 = check_onnx(py, &out, &["--fixtures", s(&fx), "--model", m, "--slots-init", "mean", "--skip-checker"]);
        let npz = tmp.path().join(format!("{m}.npz"));
        write_golden_npz(&fx, m, &images, &npz);
        let tract = tract_reference(&ckpt, &out, &npz, &["--slots-in"]);
        let none = tmp.path().join(format!("{m}.plain.onnx"));
        export_ok(&ckpt, &none, &["--no-slots-in"]);
        let r = run_py_snippet(py, listed, [&none]);
        assert_eq!(r.stdout.trim(), "['image'] []", "{}", r.transcript());
        note(format!("msf-tests: {m} slots_init (empty / the mean): onnxruntime {}; tract {tract}", d1.worst(d2)));
    }
}

/// `--external-data`: weights in `<out>.data`; the pair still loads after being moved elsewhere.
#[test]
fn tiny_variant_external_data() {
    let t = "tiny_variant_external_data";
    let Some(fx) = require_fixtures(t) else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let images = fixture_images(&fx);
    for m in FIXTURE_MODELS {
        let ckpt = fx.join(format!("{m}.pth"));
        let dir = tmp.path().join(m);
        std::fs::create_dir(&dir).unwrap();
        let out = dir.join("model.onnx");
        let r = export_ok(&ckpt, &out, &["--external-data"]);
        let data = dir.join("model.onnx.data");
        assert_eq!(json(&r)["data_file"].as_str().map(PathBuf::from), Some(data.clone()));
        assert_eq!(dir_entries(&dir), ["model.onnx", "model.onnx.data"]);
        let (model_len, data_len) = (std::fs::metadata(&out).unwrap().len(), std::fs::metadata(&data).unwrap().len());
        assert!(data_len > 10 * model_len, "weights not external: model {model_len} B, data {data_len} B");
        // Move both: the model refers to its data by relative name.
        let moved = tmp.path().join(format!("{m}-moved"));
        std::fs::rename(&dir, &moved).unwrap();
        let ort = check_onnx_fixture(py, &moved.join("model.onnx"), &fx, m);
        let npz = tmp.path().join(format!("{m}.npz"));
        write_golden_npz(&fx, m, &images, &npz);
        let tract = tract_reference(&ckpt, &tmp.path().join("again.onnx"), &npz, &["--external-data"]);
        note(format!("msf-tests: {m} --external-data ({model_len} B + {data_len} B): onnxruntime {ort}; tract {tract}"));
    }
}

fn opset_variant(t: &str, opset: &str) {
    let Some(fx) = require_fixtures(t) else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let images = fixture_images(&fx);
    for m in FIXTURE_MODELS {
        let ckpt = fx.join(format!("{m}.pth"));
        let out = tmp.path().join(format!("{m}.onnx"));
        let r = export_ok(&ckpt, &out, &["--opset", opset]);
        assert_eq!(json(&r)["opset"].to_string(), opset);
        let ort = check_onnx_fixture(py, &out, &fx, m);
        let npz = tmp.path().join(format!("{m}.npz"));
        write_golden_npz(&fx, m, &images, &npz);
        let tract = tract_reference(&ckpt, &out, &npz, &["--opset", opset]);
        note(format!("msf-tests: {m} --opset {opset}: onnxruntime {ort}; tract {tract}"));
    }
}

/// `--opset 13` (lowest supported: LayerNormalization decomposed).
#[test]
fn tiny_variant_opset_13() {
    opset_variant("tiny_variant_opset_13", "13");
}

/// `--opset 18`.
#[test]
fn tiny_variant_opset_18() {
    opset_variant("tiny_variant_opset_18", "18");
}

// ====================================================================================================
// b. Full-size checkpoints (ViT-S/14, 7 slots of 256)
// ====================================================================================================

fn fullsize_model(t: &str, model: &str) {
    let Some(full) = require_fullsize(t) else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let ckpt = full.checkpoint(model);
    let npz = full.reference(model);
    let out = tmp.path().join(format!("{model}.onnx"));
    // Export alone (timed by the exporter itself), then with tract verification.
    let r = export_ok(&ckpt, &out, &[]);
    let v = json(&r);
    let (secs, bytes) = (v["seconds"].as_f64().unwrap(), v["bytes"].as_u64().unwrap());
    assert_eq!(v["config"]["slots"]["num_slots"], 7, "{}", r.stdout);
    assert_eq!(v["inference_params"], 23_242_368, "{}", r.stdout);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), bytes);
    let ort = check_onnx(py, &out, &["--ref", s(&npz)]);
    let t0 = std::time::Instant::now();
    let tract = tract_reference(&ckpt, &out, &npz, &[]);
    note(format!(
        "msf-tests: {model} ({:.0} MB checkpoint): export {secs:.2} s ({:.2} s wall), {:.1} MB ONNX; onnxruntime {ort}; tract {tract} (export + tract {:.1} s)",
        std::fs::metadata(&ckpt).unwrap().len() as f64 / 1e6,
        r.elapsed.as_secs_f64(),
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    ));
}

/// Full-size SLATE-MSF (319 keys): export, check_onnx `--ref` (checker + onnxruntime), tract `--reference`.
#[test]
fn fullsize_slate_msf() {
    fullsize_model("fullsize_slate_msf", "full-slate-msf");
}

/// Full-size SlotDiffusion-MSF (968 keys, 160 M params, 640 MB file): same checks.
#[test]
fn fullsize_slotdiffusion_msf() {
    fullsize_model("fullsize_slotdiffusion_msf", "full-slotdiffusion-msf");
}

// ====================================================================================================
// c. Failures: exit 1, one line naming the problem, nothing left in the output folder
// ====================================================================================================

/// Export `ckpt` into an empty folder; must exit `code` with exactly one line on stderr containing
/// every `needles` entry, nothing on stdout, and leave the folder empty.
fn export_fails(t: &str, ckpt: &Path, code: i32, needles: &[&str], flags: &[&str]) -> String {
    let tmp = temp_dir(t);
    let outdir = tmp.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("model.onnx");
    let mut args = vec!["--ckpt", s(ckpt), "-o", s(&out)];
    args.extend_from_slice(flags);
    let r = msf_export(&args);
    r.assert_code(code);
    let err = r.stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "expected one line on stderr\n{}", r.transcript());
    assert!(r.stdout.is_empty(), "expected nothing on stdout\n{}", r.transcript());
    for n in needles {
        assert!(err.contains(n), "stderr does not mention {n:?}\n{}", r.transcript());
    }
    assert!(!err.contains("panicked"), "{}", r.transcript());
    assert_eq!(dir_entries(&outdir), Vec::<String>::new(), "files left in the output folder\n{}", r.transcript());
    println!("{}", r.transcript());
    err.to_string()
}

fn fixture(t: &str, name: &str) -> Option<PathBuf> {
    require_fixtures(t).map(|d| d.join(name))
}

/// The first half of the fixture checkpoint (the zip's central directory is missing).
#[test]
fn refuses_truncated_checkpoint() {
    let t = "refuses_truncated_checkpoint";
    let Some(src) = fixture(t, "tiny-slate-msf.pth") else { return };
    let tmp = temp_dir(t);
    let bytes = std::fs::read(&src).unwrap();
    let ckpt = tmp.path().join("half.pth");
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    export_fails(t, &ckpt, 1, &["half.pth", "truncated or corrupt"], &[]);
}

/// 64 KiB of (deterministic pseudo-)random bytes.
#[test]
fn refuses_random_bytes() {
    let t = "refuses_random_bytes";
    let tmp = temp_dir(t);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let ckpt = tmp.path().join("random.pth");
    std::fs::write(&ckpt, bytes).unwrap();
    export_fails(t, &ckpt, 1, &["not a checkpoint"], &[]);
}

/// A zero-byte file.
#[test]
fn refuses_empty_file() {
    let t = "refuses_empty_file";
    let tmp = temp_dir(t);
    let ckpt = tmp.path().join("empty.pth");
    std::fs::write(&ckpt, b"").unwrap();
    export_fails(t, &ckpt, 1, &["empty"], &[]);
}

/// A torch-layout zip whose pickle calls a forbidden global (`os.system`, by GLOBAL and by
/// STACK_GLOBAL; also `builtins.eval`, `subprocess.Popen`). The command would create a marker file:
/// it must not exist afterwards.
#[test]
fn refuses_forbidden_pickle_global() {
    let t = "refuses_forbidden_pickle_global";
    let tmp = temp_dir(t);
    let marker = tmp.path().join("pwned");
    let cmd = format!("touch {}", marker.display());
    // BINUNICODE: 'X' + u32 length + UTF-8.
    let uni = |s: &str| [&[b'X'][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat();
    // `{'m.initializ.mean': <global>(cmd)}`: PROTO 2, EMPTY_DICT, MARK, key, callable, (cmd,), REDUCE, SETITEMS, STOP.
    let pickle = |global: Vec<u8>| -> Vec<u8> {
        [&b"\x80\x02}("[..], &uni("m.initializ.mean"), &global, &uni(&cmd), b"\x85R", b"u."].concat()
    };
    let global = |m: &str, n: &str| format!("c{m}\n{n}\n").into_bytes();
    // Protocol 4 style: SHORT_BINUNICODE module, name, STACK_GLOBAL.
    let stack_global = |m: &str, n: &str| [&[0x8c, m.len() as u8][..], m.as_bytes(), &[0x8c, n.len() as u8], n.as_bytes(), b"\x93"].concat();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("os-global", pickle(global("os", "system")), "os.system"),
        ("os-stack-global", pickle(stack_global("os", "system")), "os.system"),
        ("builtins-eval", pickle(global("builtins", "eval")), "builtins.eval"),
        ("subprocess", pickle(global("subprocess", "Popen")), "subprocess.Popen"),
    ];
    for (name, pkl, needle) in cases {
        let ckpt = tmp.path().join(format!("{name}.pth"));
        let mut z = zip::ZipWriter::new(std::fs::File::create(&ckpt).unwrap());
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (entry, data) in [("data.pkl", &pkl[..]), ("byteorder", b"little"), ("version", b"3\n"), ("data/0", &[0u8; 64][..])] {
            z.start_file(format!("{name}/{entry}"), o).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
        export_fails(t, &ckpt, 1, &[needle, "refusing"], &[]);
        assert!(!marker.exists(), "the pickle's command ran");
    }
}

/// The fixture without `m.aggregat.proj_k.weight` (rewritten by torchfmt.py).
#[test]
fn refuses_missing_key() {
    let t = "refuses_missing_key";
    let Some(src) = fixture(t, "tiny-slate-msf.pth") else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let ckpt = tmp.path().join("missing.pth");
    rewrite_checkpoint(py, &src, &ckpt, "del d['m.aggregat.proj_k.weight']");
    export_fails(t, &ckpt, 1, &["missing", "m.aggregat.proj_k.weight"], &[]);
}

/// A tensor stored transposed: `m.encode_project.1.weight` (256,128) as (128,256); and a slot-attention
/// weight cut in half.
#[test]
fn refuses_wrong_shapes() {
    let t = "refuses_wrong_shapes";
    let Some(src) = fixture(t, "tiny-slate-msf.pth") else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let ckpt = tmp.path().join("transposed.pth");
    rewrite_checkpoint(py, &src, &ckpt, "k = 'm.encode_project.1.weight'\nassert d[k].shape == (256, 128)\nd[k] = np.ascontiguousarray(d[k].T)");
    export_fails(t, &ckpt, 1, &["`m.encode_project.1.weight` has shape [128, 256]"], &[]);
    let ckpt = tmp.path().join("narrow.pth");
    rewrite_checkpoint(py, &src, &ckpt, "k = 'm.aggregat.proj_k.weight'\nd[k] = np.ascontiguousarray(d[k][:, :32])");
    export_fails(t, &ckpt, 1, &["`m.aggregat.proj_k.weight` has shape [64, 32], expected [64, 64]"], &[]);
}

/// A NaN in a weight the graph uses: refused, naming the tensor.
#[test]
fn refuses_non_finite_weights() {
    let t = "refuses_non_finite_weights";
    let Some(src) = fixture(t, "tiny-slotdiffusion-msf.pth") else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let ckpt = tmp.path().join("nan.pth");
    rewrite_checkpoint(py, &src, &ckpt, "d['m.aggregat.proj_v.weight'][3, 5] = np.nan");
    export_fails(t, &ckpt, 1, &["m.aggregat.proj_v.weight", "non-finite"], &[]);
}

/// An unknown extra key is a warning by default and an error with `--strict`.
#[test]
fn strict_refuses_unexpected_key() {
    let t = "strict_refuses_unexpected_key";
    let Some(src) = fixture(t, "tiny-slate-msf.pth") else { return };
    let Some(py) = require_python(t) else { return };
    let tmp = temp_dir(t);
    let ckpt = tmp.path().join("extra.pth");
    rewrite_checkpoint(py, &src, &ckpt, "d['m.surprise.weight'] = np.zeros(3, np.float32)");
    let err = export_fails(t, &ckpt, 1, &["unexpected key", "m.surprise.weight"], &["--strict"]);
    assert!(err.contains("--strict") && !err.contains("--allow-unexpected"), "the message should name the flag that refused it: {err}");
    let out = tmp.path().join("ok.onnx");
    let r = export_ok(&ckpt, &out, &[]);
    assert_eq!(json(&r)["unexpected_keys"], serde_json::json!(["m.surprise.weight"]));
}

/// The stage-1 VAE checkpoint from make_fullsize.py: refused, naming stage 1.
#[test]
fn refuses_stage1_vae_checkpoint() {
    let t = "refuses_stage1_vae_checkpoint";
    let Some(full) = require_fullsize(t) else { return };
    export_fails(t, &full.vae(), 1, &["stage-1"], &[]);
}

#[test]
fn refuses_nonexistent_checkpoint() {
    let t = "refuses_nonexistent_checkpoint";
    let tmp = temp_dir(t);
    let ckpt = tmp.path().join("no-such-best.pth");
    let err = export_fails(t, &ckpt, 1, &["cannot read", "no-such-best.pth"], &[]);
    assert_eq!(err.matches("os error").count(), 1, "the cause is repeated: {err}");
}

/// `-o missing/model.onnx`: refused before reading the checkpoint; the folder is not created.
#[test]
fn refuses_missing_output_folder() {
    let t = "refuses_missing_output_folder";
    let Some(ckpt) = fixture(t, "tiny-slate-msf.pth") else { return };
    let tmp = temp_dir(t);
    let out = tmp.path().join("missing").join("model.onnx");
    let r = msf_export(["--ckpt", s(&ckpt), "-o", s(&out)]);
    r.assert_code(1);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.transcript());
    assert!(r.stderr.contains("output folder") && r.stderr.contains("does not exist"), "{}", r.transcript());
    assert_eq!(dir_entries(tmp.path()), Vec::<String>::new());
}

/// `-o` naming an existing folder: the write fails, nothing is left beside it.
#[test]
fn refuses_output_path_that_is_a_folder() {
    let t = "refuses_output_path_that_is_a_folder";
    let Some(ckpt) = fixture(t, "tiny-slate-msf.pth") else { return };
    let tmp = temp_dir(t);
    let out = tmp.path().join("model.onnx");
    std::fs::create_dir(&out).unwrap();
    let r = msf_export(["--ckpt", s(&ckpt), "-o", s(&out)]);
    r.assert_code(1);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.transcript());
    assert!(r.stderr.contains("cannot write"), "{}", r.transcript());
    assert_eq!(r.stderr.matches("os error").count(), 1, "the cause is repeated\n{}", r.transcript());
    assert_eq!(dir_entries(tmp.path()), ["model.onnx"]);
    assert_eq!(dir_entries(&out), Vec::<String>::new());
}

/// `--opset 5`: a usage error from clap (exit 2) naming the accepted range.
#[test]
fn rejects_unsupported_opset() {
    let t = "rejects_unsupported_opset";
    let Some(ckpt) = fixture(t, "tiny-slate-msf.pth") else { return };
    let tmp = temp_dir(t);
    let out = tmp.path().join("model.onnx");
    for opset in ["5", &(MAX_OPSET + 1).to_string()] {
        let r = msf_export(["--ckpt", s(&ckpt), "-o", s(&out), "--opset", opset]);
        r.assert_code(2);
        assert!(r.stderr.contains("--opset") && r.stderr.contains(&format!("{MIN_OPSET}..={MAX_OPSET}")), "{}", r.transcript());
    }
    assert_eq!(dir_entries(tmp.path()), Vec::<String>::new());
}

/// `--reference` with the other model's goldens: tract runs, the outputs differ, exit 3, one line,
/// and the model (and its external data) removed.
#[test]
fn verify_mismatch_exits_3_and_removes_output() {
    let t = "verify_mismatch_exits_3_and_removes_output";
    let Some(fx) = require_fixtures(t) else { return };
    let tmp = temp_dir(t);
    let images = fixture_images(&fx);
    let npz = tmp.path().join("other.npz");
    write_golden_npz(&fx, "tiny-slotdiffusion-msf", &images[..1], &npz);
    let ckpt = fx.join("tiny-slate-msf.pth");
    for flags in [&[][..], &["--external-data"][..]] {
        let mut f = vec!["--reference", s(&npz)];
        f.extend_from_slice(flags);
        let err = export_fails(t, &ckpt, 3, &["verification failed", "output removed", "outside tolerance"], &f);
        let d = parse_diffs(&err);
        assert!(d.cases == 1 && d.slots > TOL, "{err}");
    }
}

/// `--precision int8`: the ViT and projection matmuls dynamically quantised. Against the upstream
/// goldens of every fixture image, in one batch, run by tract (`--reference`): the masks must agree
/// on at least 98 % of the pixels (random tiny weights are a hard case for quantisation; the
/// full-size model's agreement with fp32 is measured by `benches/compare`). The file is smaller and
/// its metadata says int8.
#[test]
fn int8_export_stays_close_to_upstream() {
    let t = "int8_export_stays_close_to_upstream";
    let Some(fx) = require_fixtures(t) else { return };
    let tmp = temp_dir(t);
    let images = fixture_images(&fx);
    let m = "tiny-slate-msf";
    let ckpt = fx.join(format!("{m}.pth"));
    let fp32 = tmp.path().join("fp32.onnx");
    export_ok(&ckpt, &fp32, &[]);
    let out = tmp.path().join("int8.onnx");
    let npz = tmp.path().join("all.npz");
    write_golden_npz(&fx, m, &images, &npz);
    let r = export_ok(&ckpt, &out, &["--precision", "int8", "--reference", s(&npz), "--tolerance", "0.1", "--min-mask-agreement", "0.98"]);
    let v = json(&r);
    assert_eq!(v["precision"], "int8");
    let d = parse_diffs(v["verify"].as_str().expect("verify line"));
    assert!(d.masks >= 0.98 && d.slots <= 0.1, "int8 too far from upstream: {d}");
    let (a, b) = (std::fs::metadata(&fp32).unwrap().len(), std::fs::metadata(&out).unwrap().len());
    assert!(b * 3 < a * 2, "int8 file {b} bytes is not much smaller than fp32 {a}");
    note(format!("msf-tests: {m} int8 (tract) vs upstream, {} images: {d}; {a} → {b} bytes", images.len()));
}
