//! SlotDiffusion-MSF on tch: the whole model's parameters are upstream's `state_dict` layout (the
//! key dump of the real module), the fixture checkpoint loads into it completely, the UNet and the
//! noise schedule equal diffusers' (`tests/python/unet_golden.py`), and a short stage-2 training
//! lowers the loss and saves a checkpoint that exports to an ONNX model giving tch's slots.
#![cfg(feature = "tch")]

mod common;

use msf_exporter::{checkpoint, spec};
use msf_tests::require_fixtures;
use msf_train::nn::ddpm::{Ddpm, DdpmConfig};
use msf_train::nn::encoder::{checkpoint_tensors, load_weights};
use msf_train::nn::slotdiffusion::{sizes_from_checkpoint, unet_sizes_from_checkpoint, SlotDiffusionMsf};
use msf_train::nn::unet::{UNet, UNetConfig};
use msf_train::nn::vqvae::VqVaeConfig;
use std::collections::BTreeMap;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// The tests of this file run in parallel on few cores: libtorch's intra-op threads per test
/// would only contend (several times slower in all), so each test computes on one.
fn one_thread() {
    tch::set_num_threads(1);
}

fn load_fixture(fx: &std::path::Path) -> checkpoint::Checkpoint {
    checkpoint::load(&fx.join("tiny-slotdiffusion-msf.pth"), &checkpoint::Limits::default(), &|_| true).unwrap()
}

/// A checkpoint tensor as a tch tensor of its shape.
fn tensor(ck: &checkpoint::Checkpoint, key: &str) -> Tensor {
    let shape: Vec<i64> = ck.info[key].shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&ck.data[key]).view(shape.as_slice())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn full_size_layout_is_upstreams() {
    one_thread();
    let Some(_) = require_fixtures("full_size_layout_is_upstreams") else { return };
    let info = common::key_dump("slotdiffusion_r_vqvae-coco-msf.state_dict.tsv").expect("key dump next to the fixtures");
    let config = spec::infer_config(&info, spec::detect_kind(&info).unwrap(), 3).unwrap();
    let (vq, unet) = sizes_from_checkpoint(&info).unwrap();
    assert_eq!(vq, VqVaeConfig { code_dim: 4, ..Default::default() });
    assert_eq!(unet, UNetConfig::default(), "upstream's UNet sizes are the defaults");
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = SlotDiffusionMsf::new(&vs.root(), &config, &vq, &UNetConfig::default());
    let want: BTreeMap<String, Vec<usize>> = info.into_iter().map(|(k, v)| (k, v.shape)).collect();
    let got = common::shapes(&vs);
    assert_eq!(got.len(), 968);
    assert_eq!(got, want);
    let params: usize = want.values().map(|s| s.iter().product::<usize>()).sum();
    assert_eq!(params, 160_250_520);
    msf_tests::note(format!("SlotDiffusion-MSF on tch: {} tensors, {params} parameters, the layout of upstream's state_dict", want.len()));
}

#[test]
fn fixture_loads_completely() {
    one_thread();
    let Some(fx) = require_fixtures("fixture_loads_completely") else { return };
    let ck = load_fixture(&fx);
    let (vq, unet) = sizes_from_checkpoint(&ck.info).unwrap();
    assert_eq!(unet.block_channels, [32; 4]);
    assert_eq!(unet.layers_per_block, 1);
    assert_eq!(unet.cross_attention_dim, 64);
    let config = spec::infer_config(&ck.info, spec::detect_kind(&ck.info).unwrap(), 3).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlotDiffusionMsf::new(&vs.root(), &config, &vq, &unet);
    let rest = load_weights(&vs, checkpoint_tensors(&ck)).unwrap();
    assert!(rest.is_empty(), "variables the fixture lacks: {rest:?}");
    let want: BTreeMap<String, Vec<usize>> = ck.info.iter().map(|(k, v)| (k.clone(), v.shape.clone())).collect();
    assert_eq!(common::shapes(&vs), want, "every tensor of the file has a variable of its shape");

    // The loaded weights run: the eval loss is finite and the UNet's output has the latent's shape.
    let images = Tensor::randn([2, 3, 256, 256], (Kind::Float, Device::Cpu));
    let out = tch::no_grad(|| model.stage2(&images, false));
    assert!(out.loss.double_value(&[]).is_finite());
    assert_eq!(out.slots.size(), [2, config.slots.num_slots as i64, config.slots.slot_dim as i64]);
}

#[test]
fn unet_and_schedule_equal_diffusers() {
    one_thread();
    let Some(python) = msf_tests::require_python("unet_and_schedule_equal_diffusers") else { return };
    if let Some(why) = msf_tests::run_py_snippet(python, "import diffusers", Vec::<&str>::new()).code().filter(|&c| c != 0).map(|c| format!("exit {c}")) {
        msf_tests::skip_or_fail("unet_and_schedule_equal_diffusers", &format!("the test venv cannot import diffusers ({why}): pip install -r tests/python/requirements-torch.txt"));
        return;
    }
    let dir = msf_tests::temp_dir("unet-golden");
    let file = dir.path().join("unet.pth");
    msf_tests::run_py_tool(python, "unet_golden.py", [&file]).assert_ok();
    let ck = checkpoint::load(&file, &checkpoint::Limits::default(), &|_| true).unwrap();

    // The sizes in the file; heads and groups are not in it.
    let read = unet_sizes_from_checkpoint(&ck.info).unwrap();
    let config = UNetConfig { heads: 2, norm_groups: 8, ..read.clone() };
    assert_eq!(config, UNetConfig { block_channels: vec![32, 48, 64, 96], cross_attention_dim: 16, heads: 2, norm_groups: 8, ..Default::default() });
    let vs = nn::VarStore::new(Device::Cpu);
    let unet = UNet::new(&(vs.root() / "m" / "decode" / "backbone"), &config);
    let rest = load_weights(&vs, checkpoint_tensors(&ck)).unwrap();
    assert!(rest.is_empty(), "not in diffusers' state_dict: {rest:?}");
    let unet_keys = ck.info.keys().filter(|k| k.starts_with("m.decode.backbone.")).count();
    assert_eq!(vs.variables().len(), unet_keys, "every diffusers parameter has a variable");

    let t = tensor(&ck, "unet.t").to_kind(Kind::Int64);
    let got = tch::no_grad(|| unet.forward(&tensor(&ck, "unet.x"), &t, &tensor(&ck, "unet.context"), false));
    let want = tensor(&ck, "unet.sample");
    let d_unet = max_abs_diff(&got, &want);
    let scale = want.abs().max().double_value(&[]);
    assert!(d_unet <= 1e-4, "UNet vs diffusers: max |Δ| {d_unet:.2e} (outputs up to {scale:.2})");

    let ddpm = Ddpm::new(&DdpmConfig::default());
    let ac = Tensor::from_slice(&ddpm.alphas_cumprod).to_kind(Kind::Float);
    let d_ac = max_abs_diff(&ac, &tensor(&ck, "ddpm.alphas_cumprod"));
    assert!(d_ac <= 1e-6, "ᾱ vs diffusers: max |Δ| {d_ac:.2e}");
    let ts = tensor(&ck, "ddpm.t").to_kind(Kind::Int64);
    let noisy = ddpm.add_noise(&tensor(&ck, "ddpm.x0"), &tensor(&ck, "ddpm.noise"), &ts);
    let d_noise = max_abs_diff(&noisy, &tensor(&ck, "ddpm.noisy"));
    assert!(d_noise <= 1e-5, "add_noise vs diffusers: max |Δ| {d_noise:.2e}");
    msf_tests::note(format!(
        "UNet ({} tensors, 4 levels, 2 layers per block) vs diffusers: max |Δ| {d_unet:.2e} (outputs up to {scale:.2}); ᾱ {d_ac:.2e}, add_noise {d_noise:.2e}",
        vs.variables().len()
    ));
}

#[test]
fn fixture_trains_saves_and_exports() {
    one_thread();
    let Some(fx) = require_fixtures("fixture_trains_saves_and_exports") else { return };
    tch::manual_seed(3);
    let ck = load_fixture(&fx);
    let (vq, unet) = sizes_from_checkpoint(&ck.info).unwrap();
    let config = spec::infer_config(&ck.info, spec::detect_kind(&ck.info).unwrap(), 3).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlotDiffusionMsf::new(&vs.root(), &config, &vq, &unet);
    assert!(load_weights(&vs, checkpoint_tensors(&ck)).unwrap().is_empty());

    // Stage 2: backbone and VQ-VAE frozen, the rest trained.
    common::freeze_backbone_and_mediat(&vs);
    let batch = common::generated_batch(4, 11);
    // One timestep and one noise draw per image, the same at every step, so that the losses of
    // different steps compare (a fresh draw per step varies the loss more than training does).
    let t = Tensor::from_slice(&[40i64, 260, 520, 880]);
    let code_dim = vq.code_dim as i64;
    let noise = Tensor::randn([4, code_dim, 16, 16], (Kind::Float, Device::Cpu));
    let var = |k: &str| -> Vec<f32> { Vec::try_from(vs.variables()[k].detach().flatten(0, -1)).unwrap() };
    let (backbone0, slots0, unet0) = (var("m.encode_backbone.1.norm.weight"), var("m.aggregat.proj_q.weight"), var("m.decode.backbone.conv_in.weight"));
    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    let mut losses = vec![];
    for _ in 0..12 {
        let out = model.stage2_with(&batch, true, &|_| (t.shallow_clone(), noise.shallow_clone()));
        opt.zero_grad();
        out.loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step();
        losses.push(out.loss.double_value(&[]));
    }
    let (first, last) = (losses[..2].iter().sum::<f64>() / 2.0, losses[10..].iter().sum::<f64>() / 2.0);
    assert!(last < 0.8 * first, "stage-2 loss {first:.4} → {last:.4}: {losses:?}");
    assert!(var("m.encode_backbone.1.norm.weight") == backbone0, "the backbone stays frozen");
    assert!(var("m.aggregat.proj_q.weight") != slots0, "the loss reaches Slot Attention through the cross-attention");
    assert!(var("m.decode.backbone.conv_in.weight") != unet0, "the UNet trains");

    // Save in upstream's format; msf-export's library reads and exports it; tract runs it.
    let dir = msf_tests::temp_dir("tch-slotdiffusion");
    let (d, same) = common::export_and_compare(&vs, &model.encoder, &batch, dir.path());
    let saved = checkpoint::load(&dir.path().join("best.pth"), &checkpoint::Limits::default(), &|_| false).unwrap();
    assert_eq!(saved.info.len(), ck.info.len(), "the saved checkpoint has the fixture's keys");
    assert!(d <= 1e-4, "trained slots: tch vs exported ONNX max |Δ| {d}");
    assert!(same >= 0.999, "trained masks: {:.4} % equal", same * 100.0);
    msf_tests::note(format!(
        "SlotDiffusion stage 2 from the fixture, 12 steps on 4 generated images (fixed t and noise): loss {first:.4} → {last:.4}; exported: slots max|Δ| {d:.2e}, masks {:.4} % equal",
        same * 100.0
    ));
}
