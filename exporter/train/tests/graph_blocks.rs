//! Each block of the exported graph on its own: `msf_exporter::graph::block_graph` run by tract
//! against the tch module that computes the same step (`msf_train::nn`, loaded by
//! `Encoder::from_spec` from the same upstream fixture checkpoint), on seeded random inputs. A
//! numeric slip in one block shows here under that block's name, not only as a worse end result.
#![cfg(feature = "tch")]

use msf_exporter::graph::{block_graph, Block, GraphOptions};
use msf_exporter::spec::ModelSpec;
use msf_exporter::{checkpoint, export, spec, write};
use msf_models::keys;
use msf_train::nn::backbone::resize_for_backbone;
use msf_train::nn::Encoder;
use prost::Message;
use tch::{Device, Kind, Tensor};

/// Batch of every random input: more than one, so that the batch dimension is exercised.
const BATCH: i64 = 2;

/// Largest max |Δ| accepted for float outputs: float32 reordering only (each test's comment says
/// what was measured).
const TOLERANCE: f32 = 1e-5;

struct Model {
    name: &'static str,
    spec: ModelSpec,
    _vs: tch::nn::VarStore,
    enc: Encoder,
}

/// Both fixture checkpoints, read by the exporter, edited by `edit`, and loaded into tch.
fn models(test: &str, edit: impl Fn(&mut ModelSpec)) -> Vec<Model> {
    let Some(fx) = msf_tests::require_fixtures(test) else { return vec![] };
    ["tiny-slate-msf", "tiny-slotdiffusion-msf"]
        .into_iter()
        .map(|name| {
            let loaded = checkpoint::load(&fx.join(format!("{name}.pth")), &checkpoint::Limits::default(), &spec::wants_data).unwrap();
            let mut spec = spec::build_spec(loaded, &spec::SpecOptions::default()).unwrap();
            edit(&mut spec);
            let (vs, enc) = Encoder::from_spec(&spec, Device::Cpu).unwrap();
            Model { name, spec, _vs: vs, enc }
        })
        .collect()
}

/// The fixtures as they are.
fn as_is(_: &mut ModelSpec) {}

/// Opset 17 writes native LayerNormalization; 13 the decomposed one.
const OPSETS: [i64; 2] = [17, 13];

/// Build `block` alone at `opset`, run it with tract on `input`; its outputs as tch tensors.
fn run_block(m: &Model, block: Block, opset: i64, input: &tch::Tensor) -> Vec<tch::Tensor> {
    // tract's prelude has its own `Tensor`: tch's is named in full here.
    use tract_onnx::prelude::*;
    // One input per block: the learned initial slots inside (the `slots_init` input is checked
    // against the goldens by tests/tests/export.rs).
    let opts = GraphOptions { opset, slots_in: false, ..Default::default() };
    let meta = export::metadata_for(&m.spec, &opts);
    let graph = block_graph(&m.spec, &meta.preprocess, &opts, block).unwrap();
    let bytes = write::model_proto(graph, opset, &meta).encode_to_vec();
    let shape: Vec<usize> = input.size().iter().map(|&d| d as usize).collect();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .and_then(|model| model.with_input_fact(0, f32::fact(&shape).into()))
        .and_then(|model| model.into_optimized())
        .and_then(|model| model.into_runnable())
        .unwrap_or_else(|e| panic!("{} {block:?}: tract: {e:#}", m.name));
    let data = Vec::<f32>::try_from(input.flatten(0, -1)).unwrap();
    let x = tract_ndarray::ArrayD::from_shape_vec(shape, data).unwrap().into_tensor();
    let outputs = plan.run(tvec!(x.into())).unwrap_or_else(|e| panic!("{} {block:?}: {e:#}", m.name));
    outputs
        .iter()
        .map(|o| {
            let dims: Vec<i64> = o.shape().iter().map(|&d| d as i64).collect();
            let t = if o.datum_type() == i64::datum_type() {
                let v: Vec<i64> = o.to_plain_array_view::<i64>().unwrap().iter().copied().collect();
                tch::Tensor::from_slice(&v)
            } else {
                let v: Vec<f32> = o.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
                tch::Tensor::from_slice(&v)
            };
            t.view(dims.as_slice())
        })
        .collect()
}

/// Max |Δ| between two float tensors of the same shape.
fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[]) as f32
}

/// Runs `block` at every opset against `want` on `input` and checks the float outputs (max |Δ| ≤
/// `tolerance`); reports the worst.
fn check_floats(m: &Model, block: Block, input: &Tensor, want: &[Tensor], tolerance: f32) {
    let mut worst = 0f32;
    for opset in OPSETS {
        let got = run_block(m, block, opset, input);
        assert_eq!(got.len(), want.len(), "{} {block:?}: outputs", m.name);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let d = max_abs(g, w);
            assert!(d <= tolerance, "{} {block:?} opset {opset}: output {i} max |Δ| {d:.2e} against tch", m.name);
            worst = worst.max(d);
        }
    }
    msf_tests::note(format!("{} {block:?}: max |Δ| {worst:.2e} against tch (opsets {OPSETS:?})", m.name));
}

fn randn(seed: i64, shape: &[i64]) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

// White noise is the hardest input for a bicubic resize in float32: source coordinates near 255
// carry a rounding of ~1.5e-5 px, times slopes of ~10 per px, so PyTorch's float32 kernel is 1.2e-4
// from its float64 result. Upstream runs that float32 kernel, and the graph's resize matrix is built
// from the same float32 taps (msf_models::interpolate), so the reference is PyTorch's float32 result;
// what is left is the order of the sums. (A cubic `Resize` in tract was 5.5e-5 from either.)
#[test]
fn resize_block_matches_torch_bicubic() {
    for m in models("resize_block_matches_torch_bicubic", as_is) {
        let (image, backbone) = (m.enc.preprocess.image_size as i64, m.spec.config.vit.input_size() as i64);
        let x = randn(1, &[BATCH, 3, image, image]);
        let want = resize_for_backbone(&x, backbone, backbone as f64 / image as f64);
        check_floats(&m, Block::Resize, &x, &[want], 1e-5);
    }
}

/// LayerScale gammas of 1: the fixtures keep timm's initial 1e-5, under which a block's attention
/// and MLP are 1e-5 of its output and a slip in them would stay far below any tolerance.
fn unit_layer_scale(spec: &mut ModelSpec) {
    for (key, w) in spec.weights.iter_mut() {
        if key.starts_with(keys::VIT_BLOCKS_PREFIX) && key.ends_with(".gamma") {
            w.fill(1.0);
        }
    }
}

// Measured: patch embedding 3.8e-6 (SLATE fixture) and 2.6e-6 (SlotDiffusion), blocks ≤ 4.8e-7,
// final norm 9.5e-7. A graph without the attention scale passed with the fixtures' own gammas
// (2.4e-7) and fails with gammas of 1 (9.4e-3).
#[test]
fn vit_blocks_match_the_tch_backbone() {
    for m in models("vit_blocks_match_the_tch_backbone", unit_layer_scale) {
        let c = &m.spec.config.vit;
        let s = c.input_size() as i64;
        let image = randn(2, &[BATCH, 3, s, s]);
        let tokens = tch::no_grad(|| m.enc.backbone.embed(&image));
        check_floats(&m, Block::PatchEmbed, &image, &[tokens], TOLERANCE);
        let shape = [BATCH, c.num_tokens() as i64 + 1, c.embed_dim as i64];
        for i in 0..c.depth {
            let x = randn(3 + i as i64, &shape);
            let want = tch::no_grad(|| m.enc.backbone.block(i, &x));
            check_floats(&m, Block::Vit(i), &x, &[want], TOLERANCE);
        }
        let x = randn(10, &shape);
        check_floats(&m, Block::VitNorm, &x, &[tch::no_grad(|| m.enc.backbone.head(&x))], TOLERANCE);
    }
}

// Measured: 7.2e-7.
#[test]
fn projection_block_matches_the_tch_mlp() {
    for m in models("projection_block_matches_the_tch_mlp", as_is) {
        let c = &m.spec.config;
        let x = randn(11, &[BATCH, c.vit.num_tokens() as i64, c.project.in_dim as i64]);
        check_floats(&m, Block::Project, &x, &[tch::no_grad(|| m.enc.project.forward(&x))], TOLERANCE);
    }
}

// Measured: 1.9e-6 (slots and attention).
#[test]
fn slot_attention_block_matches_the_tch_module() {
    for m in models("slot_attention_block_matches_the_tch_module", as_is) {
        let c = &m.spec.config;
        let x = randn(12, &[BATCH, c.vit.num_tokens() as i64, c.project.out_dim as i64]);
        let (slots, attn) = tch::no_grad(|| m.enc.slot_attention.forward(&x, &m.enc.init.slots(BATCH, false)));
        check_floats(&m, Block::SlotAttention, &x, &[slots, attn], TOLERANCE);
    }
}

// Measured: attention on the grid exact (a reshape), masks 100 % equal at both opsets.
#[test]
fn masks_block_matches_tch_upsample_and_argmax() {
    for m in models("masks_block_matches_tch_upsample_and_argmax", as_is) {
        let c = &m.spec.config;
        let attn = randn(13, &[BATCH, c.slots.num_slots as i64, c.vit.num_tokens() as i64]).softmax(1, Kind::Float);
        let (want_attn, want_masks) = m.enc.masks(&attn);
        for opset in OPSETS {
            let got = run_block(&m, Block::Masks, opset, &attn);
            assert_eq!(max_abs(&got[0], &want_attn), 0.0, "{} opset {opset}: attention reshape", m.name);
            assert_eq!(got[1].size(), want_masks.size());
            let same = got[1].eq_tensor(&want_masks).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
            assert!(same >= 0.999, "{} opset {opset}: masks {:.4} % equal to tch", m.name, same * 100.0);
            msf_tests::note(format!("{} Masks opset {opset}: {:.4} % of mask pixels equal to tch", m.name, same * 100.0));
        }
    }
}
