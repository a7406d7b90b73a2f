//! The tch forward of the upstream fixture checkpoints (weights read by the exporter's pure-Rust
//! reader) against the upstream PyTorch goldens, and against the exported ONNX run by
//! msf-runtime: a second, independent reference for the exporter.
#![cfg(feature = "tch")]

use msf_exporter::{checkpoint, spec};
use msf_runtime::session::{self, SessionOptions};
use msf_tests::{fixture_images, require_fixtures};
use msf_train::nn::Encoder;
use ndarray::{Array2, Array3, Array4};
use ndarray_npy::ReadNpyExt;
use std::path::Path;
use tch::{Device, Tensor};

fn npy<A: ReadNpyExt>(path: &Path) -> A {
    A::read_npy(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn to_vec<T: tch::kind::Element + Default + Clone>(t: &Tensor) -> Vec<T> {
    let n = t.numel();
    let mut v = vec![T::default(); n];
    t.contiguous().copy_data(&mut v, n);
    v
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tch_forward_matches_upstream_and_the_export() {
    let Some(fx) = require_fixtures("tch_forward_matches_upstream_and_the_export") else { return };
    let dir = msf_tests::temp_dir("tch-reference");
    for model in ["tiny-slate-msf", "tiny-slotdiffusion-msf"] {
        let ckpt = fx.join(format!("{model}.pth"));
        let loaded = checkpoint::load(&ckpt, &checkpoint::Limits::default(), &spec::wants_data).unwrap();
        let spec = spec::build_spec(loaded, &spec::SpecOptions::default()).unwrap();
        let (_vs, enc) = Encoder::from_spec(&spec, Device::Cpu).unwrap();
        let onnx = dir.path().join(format!("{model}.onnx"));
        msf_exporter::export::export(&ckpt, &onnx, &Default::default()).unwrap();
        let exported = session::load(&onnx, &SessionOptions::default()).unwrap();

        let (mut worst_slots, mut worst_attn, mut worst_onnx, mut worst_masks) = (0f32, 0f32, 0f32, 1f64);
        for img in fixture_images(&fx) {
            let r = fx.join("ref");
            let input: Array4<f32> = npy(&r.join(format!("{img}.input.npy")));
            let x = Tensor::from_slice(input.as_slice().unwrap()).view([1, 3, 256, 256]);
            let out = tch::no_grad(|| enc.forward(&x, false));
            let slots: Vec<f32> = to_vec(&out.slots);
            let attn: Vec<f32> = to_vec(&out.attn);
            let masks: Vec<i64> = to_vec(&out.masks);

            let want_slots: Array3<f32> = npy(&r.join(format!("{img}.{model}.slots.npy")));
            let want_attn: Array4<f32> = npy(&r.join(format!("{img}.{model}.attn.npy")));
            let want_masks: Array2<u8> = npy(&r.join(format!("{img}.{model}.segment.npy")));
            let (ds, da) = (max_abs(&slots, want_slots.as_slice().unwrap()), max_abs(&attn, want_attn.as_slice().unwrap()));
            let same = masks.iter().zip(want_masks.iter()).filter(|(a, b)| **a == **b as i64).count() as f64 / masks.len() as f64;
            assert!(ds <= 1e-4, "{model} {img}: slots max |Δ| {ds} vs upstream");
            assert!(da <= 1e-4, "{model} {img}: attn max |Δ| {da} vs upstream");
            assert!(same >= 0.999, "{model} {img}: masks {:.4} % equal to upstream", same * 100.0);

            let o = exported.run(input.as_slice().unwrap(), 1, None).unwrap();
            let d_onnx = max_abs(&slots, &o.slots);
            assert!(d_onnx <= 1e-4, "{model} {img}: slots max |Δ| {d_onnx} between tch and the exported ONNX");
            let same_onnx = masks.iter().zip(&o.masks).filter(|(a, b)| a == b).count() as f64 / masks.len() as f64;
            assert!(same_onnx >= 0.999, "{model} {img}: masks {:.4} % equal between tch and ONNX", same_onnx * 100.0);
            (worst_slots, worst_attn, worst_onnx, worst_masks) = (worst_slots.max(ds), worst_attn.max(da), worst_onnx.max(d_onnx), worst_masks.min(same.min(same_onnx)));
        }
        msf_tests::note(format!(
            "tch {model}: vs upstream slots max|Δ| {worst_slots:.2e}, attn {worst_attn:.2e}; vs exported ONNX (tract) slots {worst_onnx:.2e}; masks ≥ {:.4} % equal",
            worst_masks * 100.0
        ));
    }
}

/// An encoder saved by msf-train reads back identically with the exporter's reader and with
/// PyTorch's own `torch.load(weights_only=True)`.
#[test]
fn saved_checkpoints_load_in_torch_and_the_exporter() {
    let Some(fx) = require_fixtures("saved_checkpoints_load_in_torch_and_the_exporter") else { return };
    let Some(python) = msf_tests::require_python("saved_checkpoints_load_in_torch_and_the_exporter") else { return };
    let loaded = checkpoint::load(&fx.join("tiny-slate-msf.pth"), &checkpoint::Limits::default(), &spec::wants_data).unwrap();
    let spec = spec::build_spec(loaded, &spec::SpecOptions::default()).unwrap();
    let (vs, _enc) = Encoder::from_spec(&spec, Device::Cpu).unwrap();
    let dir = msf_tests::temp_dir("tch-save");
    let path = dir.path().join("encoder.pth");
    msf_train::nn::save::save_var_store(&vs, &path).unwrap();

    let back = checkpoint::load(&path, &checkpoint::Limits::default(), &|_| true).unwrap();
    assert_eq!(back.info.len(), vs.variables().len());
    for (key, data) in &spec.weights {
        assert_eq!(&back.data[key], data, "{key} round trip");
    }
    // PyTorch reads it with its safe loader; compare sums and shapes key by key.
    let py = msf_tests::run_py_snippet(
        python,
        "import json, torch\nsd = torch.load(sys.argv[1], weights_only=True)\nprint(json.dumps({k: [list(v.shape), float(v.double().sum())] for k, v in sd.items()}))",
        [&path],
    );
    py.assert_ok();
    let from_torch: serde_json::Value = serde_json::from_str(py.stdout.trim()).unwrap();
    for (key, data) in &spec.weights {
        let entry = &from_torch[key];
        let shape: Vec<usize> = entry[0].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(shape, back.info[key].shape, "{key} shape in torch");
        let sum: f64 = data.iter().map(|&v| v as f64).sum();
        assert!((entry[1].as_f64().unwrap() - sum).abs() <= 1e-9 * sum.abs().max(1.0), "{key} sum in torch");
    }
    msf_tests::note(format!("saved {} tensors; torch.load(weights_only=True) and the exporter read them back", back.info.len()));
}
