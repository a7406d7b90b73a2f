//! What the tch tests share: a trained VarStore saved in upstream's format, exported by
//! msf-export's library and run by msf-runtime (tract), against the tch forward.
#![cfg(feature = "tch")]

use msf_runtime::session::{self, SessionOptions};
use msf_train::nn::Encoder;
use std::path::Path;
use tch::{nn, Tensor};

/// Saves `vs` to `dir/best.pth`, exports it to ONNX and runs both on `batch` (B, 3, 256, 256):
/// the slots' max |Δ| and the fraction of equal mask pixels.
pub fn export_and_compare(vs: &nn::VarStore, encoder: &Encoder, batch: &Tensor, dir: &Path) -> (f32, f64) {
    let ckpt = dir.join("best.pth");
    msf_train::nn::save::save_var_store(vs, &ckpt).unwrap();
    let onnx = dir.join("trained.onnx");
    msf_exporter::export::export(&ckpt, &onnx, &Default::default()).unwrap();
    let exported = session::load(&onnx, &SessionOptions::default()).unwrap();
    let eval = tch::no_grad(|| encoder.forward(batch, false));
    let o = exported.run(&Vec::<f32>::try_from(batch.flatten(0, -1)).unwrap(), batch.size()[0] as usize, None).unwrap();
    let slots: Vec<f32> = Vec::try_from(eval.slots.flatten(0, -1)).unwrap();
    let masks: Vec<i64> = Vec::try_from(eval.masks.flatten(0, -1)).unwrap();
    let d = slots.iter().zip(&o.slots).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let same = masks.iter().zip(&o.masks).filter(|(a, b)| a == b).count() as f64 / masks.len() as f64;
    (d, same)
}

/// Stage 2's freezing: the backbone (pretrained upstream) and the VQ-VAE stop taking gradients.
pub fn freeze_backbone_and_mediat(vs: &nn::VarStore) {
    for (k, v) in vs.variables() {
        if k.starts_with("m.encode_backbone.") || k.starts_with("m.mediat.") {
            let _ = v.set_requires_grad(false);
        }
    }
}

/// `count` generated images of `seed` as one normalised batch (B, 3, 256, 256).
pub fn generated_batch(count: usize, seed: u64) -> Tensor {
    let data = msf_train::data::Generated { count, seed, ..Default::default() };
    Tensor::stack(&data.iter().map(|s| msf_train::nn::train::image_tensor(&s.image)).collect::<Vec<_>>(), 0)
}

/// An upstream key dump (`../shared/spec/keys`) as the exporter's shape map, what its shape
/// inference and the `*sizes_from_checkpoint` functions read.
pub fn key_dump(name: &str) -> Option<std::collections::BTreeMap<String, msf_exporter::checkpoint::TensorInfo>> {
    use msf_exporter::checkpoint::{DType, TensorInfo};
    let dump = msf_tests::upstream_key_dump(name)?;
    Some(dump.into_iter().map(|(k, shape)| (k, TensorInfo { shape, dtype: DType::F32 })).collect())
}

/// Every variable's shape by name.
pub fn shapes(vs: &nn::VarStore) -> std::collections::BTreeMap<String, Vec<usize>> {
    vs.variables().into_iter().map(|(k, v)| (k, v.size().iter().map(|&d| d as usize).collect())).collect()
}
