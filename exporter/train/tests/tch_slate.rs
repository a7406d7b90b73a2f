//! SLATE-MSF on tch: the whole model's parameters are upstream's `state_dict` layout (the key
//! dump of the real module), the fixture checkpoint loads into it completely, a short stage-2
//! training lowers the loss, and the saved checkpoint exports (msf-export's library) to an ONNX
//! model whose slots and masks equal tch's.
#![cfg(feature = "tch")]

mod common;

use msf_exporter::{checkpoint, spec};
use msf_tests::require_fixtures;
use msf_train::nn::model::{sizes_from_checkpoint, SlateMsf};
use msf_train::nn::slate::SlateConfig;
use msf_train::nn::vqvae::VqVaeConfig;
use std::collections::BTreeMap;
use tch::{nn, nn::OptimizerConfig, Device};

#[test]
fn full_size_layout_is_upstreams() {
    let Some(_) = require_fixtures("full_size_layout_is_upstreams") else { return };
    let info = common::key_dump("slate_r_vqvae-coco-msf.state_dict.tsv").expect("key dump next to the fixtures");
    let config = spec::infer_config(&info, spec::detect_kind(&info).unwrap(), 3).unwrap();
    let (vq, dec) = sizes_from_checkpoint(&info).unwrap();
    assert_eq!((vq, dec), (VqVaeConfig::default(), SlateConfig::default()), "upstream's sizes are the defaults");
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = SlateMsf::new(&vs.root(), &config, &VqVaeConfig::default(), &SlateConfig::default());
    let want: BTreeMap<String, Vec<usize>> = info.into_iter().map(|(k, v)| (k, v.shape)).collect();
    assert_eq!(common::shapes(&vs), want);
    msf_tests::note(format!("SLATE-MSF on tch: {} parameters, the layout of upstream's state_dict", want.len()));
}

#[test]
fn fixture_trains_saves_and_exports() {
    let Some(fx) = require_fixtures("fixture_trains_saves_and_exports") else { return };
    tch::manual_seed(1);
    let ck = checkpoint::load(&fx.join("tiny-slate-msf.pth"), &checkpoint::Limits::default(), &|_| true).unwrap();
    let (vq, dec) = sizes_from_checkpoint(&ck.info).unwrap();
    let config = spec::infer_config(&ck.info, spec::detect_kind(&ck.info).unwrap(), 3).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlateMsf::new(&vs.root(), &config, &vq, &dec);
    let rest = msf_train::nn::encoder::load_weights(&vs, msf_train::nn::encoder::checkpoint_tensors(&ck)).unwrap();
    assert!(rest.is_empty(), "variables the fixture lacks: {rest:?}");
    assert_eq!(common::shapes(&vs).len(), ck.info.len(), "every tensor of the file has a variable");

    // Stage 2: backbone and VQ-VAE frozen, the rest trained.
    common::freeze_backbone_and_mediat(&vs);
    let batch = common::generated_batch(4, 11);
    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    let before: Vec<f32> = Vec::try_from(vs.variables()["m.encode_backbone.1.norm.weight"].shallow_clone()).unwrap();
    let mut losses = vec![];
    for _ in 0..12 {
        let out = model.stage2(&batch, true);
        opt.zero_grad();
        out.loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step();
        losses.push(out.loss.double_value(&[]));
    }
    let after: Vec<f32> = Vec::try_from(vs.variables()["m.encode_backbone.1.norm.weight"].shallow_clone()).unwrap();
    assert_eq!(before, after, "the backbone stays frozen");
    let (first, last) = (losses[..2].iter().sum::<f64>() / 2.0, losses[10..].iter().sum::<f64>() / 2.0);
    assert!(last < 0.9 * first, "stage-2 loss {first:.4} → {last:.4}: {losses:?}");

    // Save in upstream's format; msf-export's library reads and exports it; tract runs it.
    let dir = msf_tests::temp_dir("tch-slate");
    let (d, same) = common::export_and_compare(&vs, &model.encoder, &batch, dir.path());
    assert!(d <= 1e-4, "trained slots: tch vs exported ONNX max |Δ| {d}");
    assert!(same >= 0.999, "trained masks: {:.4} % equal", same * 100.0);
    msf_tests::note(format!(
        "stage 2 from the fixture, 12 steps on 4 generated images: loss {first:.4} → {last:.4}; exported: slots max|Δ| {d:.2e}, masks {:.4} % equal",
        same * 100.0
    ));
}
