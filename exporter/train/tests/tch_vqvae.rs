//! The MSF VQ-VAE on tch: its parameter names and shapes are upstream's (the key dumps of the
//! real modules in ../shared/spec/keys), the fixture's stage-2 `m.mediat.*` weights load into
//! it, and a short stage-1 training on generated images lowers the loss.
#![cfg(feature = "tch")]

use msf_exporter::checkpoint;
use msf_tests::require_fixtures;
use msf_train::data::Generated;
use msf_train::nn::vqvae::{stage1_loss, VqVae, VqVaeConfig};
use std::collections::BTreeMap;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// `key → shape` of an upstream key dump, for keys starting with `prefix`.
fn upstream_keys(tsv: &str, prefix: &str) -> Option<BTreeMap<String, Vec<i64>>> {
    let dump = msf_tests::upstream_key_dump(tsv)?;
    Some(dump.into_iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, s)| (k, s.into_iter().map(|d| d as i64).collect())).collect())
}

fn var_shapes(vs: &nn::VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect()
}

#[test]
fn parameter_layout_is_upstreams() {
    let Some(_) = require_fixtures("parameter_layout_is_upstreams") else { return };
    // Stage 1 (the whole VQ-VAE under `m`), SLATE-MSF's and SlotDiffusion-MSF's code widths.
    for (tsv, code_dim) in [("vqvae-coco-c256-msf.state_dict.tsv", 256), ("vqvae-coco-c4-msf.state_dict.tsv", 4)] {
        let want = upstream_keys(tsv, "m.").expect("key dump next to the fixtures");
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = VqVae::new(&(vs.root() / "m"), &VqVaeConfig { code_dim, ..Default::default() }, true);
        assert_eq!(var_shapes(&vs), want, "{tsv}");
    }
    // Stage 2 keeps the encoder and quantisers under `m.mediat`.
    let want = upstream_keys("slate_r_vqvae-coco-msf.state_dict.tsv", "m.mediat.").unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = VqVae::new(&(vs.root() / "m" / "mediat"), &VqVaeConfig::default(), false);
    assert_eq!(var_shapes(&vs), want);
}

#[test]
fn fixture_mediat_weights_load_and_encode() {
    let Some(fx) = require_fixtures("fixture_mediat_weights_load_and_encode") else { return };
    let ck = checkpoint::load(&fx.join("tiny-slate-msf.pth"), &checkpoint::Limits::default(), &|k| k.starts_with("m.mediat.")).unwrap();
    let code_dim = ck.info["m.mediat.encode.3.weight"].shape[0];
    let vs = nn::VarStore::new(Device::Cpu);
    let vae = VqVae::new(&(vs.root() / "m" / "mediat"), &VqVaeConfig { code_dim, ..Default::default() }, false);
    let rest = msf_train::nn::encoder::load_weights(&vs, msf_train::nn::encoder::checkpoint_tensors(&ck)).unwrap();
    assert!(rest.is_empty(), "not in the fixture: {rest:?}");
    for (key, shape) in var_shapes(&vs) {
        assert_eq!(shape.iter().map(|&d| d as usize).collect::<Vec<_>>(), ck.info[&key].shape, "{key}");
    }
    // Encoding a 256 image gives 16×16 maps of codes in range at every scale.
    let image = Tensor::randn([2, 3, 256, 256], (Kind::Float, Device::Cpu));
    let out = tch::no_grad(|| vae.forward(&image, 0.0, 0.0, false));
    assert_eq!(out.zidxs[0].size(), [2, 2, 16, 16]);
    assert_eq!(out.quants[0].size(), [2, code_dim as i64, 16, 16]);
    assert_eq!(out.zidxs[2].size(), [2, 2, 4, 4]);
    assert!(out.decodes.is_empty());
    // Group 0 indexes the shared codebook, group 1 the scale's own one, which halves per scale.
    let codes = ck.info["m.mediat.quant.0.codebook.weight"].shape[0] as i64;
    for (s, z) in out.zidxs.iter().enumerate() {
        assert!(z.select(1, 0).max().int64_value(&[]) < codes, "scale {s}: shared code out of range");
        assert!(z.select(1, 1).max().int64_value(&[]) < codes >> s, "scale {s}: own code out of its {} codes", codes >> s);
    }
}

#[test]
fn short_stage1_training_lowers_the_loss() {
    tch::manual_seed(0);
    let config = VqVaeConfig { code_dim: 16, codes: 64, codebook_dim: 32, scales: 3, channels: 16 };
    let vs = nn::VarStore::new(Device::Cpu);
    let vae = VqVae::new(&(vs.root() / "m"), &config, true);
    let data = Generated { count: 8, seed: 3, size: 64, ..Default::default() };
    let images: Vec<Tensor> = data.iter().map(|s| msf_train::nn::train::image_tensor(&s.image)).collect();
    let batch = Tensor::stack(&images, 0);
    let mut opt = nn::Adam::default().build(&vs, 2e-3).unwrap();
    let mut losses = vec![];
    for step in 0..30 {
        let out = vae.forward(&batch, 1.0, 1.0 - step as f64 / 30.0, true);
        let (loss, _) = stage1_loss(&batch, &out);
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step();
        losses.push(loss.double_value(&[]));
    }
    let (first, last) = (losses[..3].iter().sum::<f64>() / 3.0, losses[27..].iter().sum::<f64>() / 3.0);
    assert!(last < 0.7 * first, "loss {first:.4} → {last:.4}: {losses:?}");
    msf_tests::note(format!("stage-1 VQ-VAE, 30 steps on 8 generated 64×64 images: loss {first:.4} → {last:.4}"));
}
