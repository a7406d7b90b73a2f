//! The whole inference path in tch: bicubic resize → ViT → MLP → Slot Attention → masks. Its
//! parameters live in a `VarStore` under upstream's names (`m.encode_backbone.1.*`, …), so
//! upstream weights load by name and a trained model saves in upstream's layout.

use super::backbone::{resize_for_backbone, Backbone};
use super::project::Project;
use super::slot_attention::{Initializer, SlotAttention};
use msf_exporter::checkpoint::save::TensorOut;
use msf_exporter::checkpoint::Checkpoint;
use msf_exporter::spec::{expected_shapes, ModelSpec};
use msf_models::{ModelConfig, Preprocess};
use tch::{nn, Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("`{key}`: the model has shape {model:?}, the checkpoint {file:?}")]
    Shape { key: String, model: Vec<i64>, file: Vec<i64> },
    #[error("the checkpoint lacks {}", .0.join(", "))]
    Missing(Vec<String>),
}

pub struct Encoder {
    pub config: ModelConfig,
    pub preprocess: Preprocess,
    pub backbone: Backbone,
    pub project: Project,
    pub init: Initializer,
    pub slot_attention: SlotAttention,
}

/// Slots (B, K, D), attention (B, K, G, G) and masks (B, M, M) (slot index, int64).
pub struct EncoderOutput {
    pub slots: Tensor,
    pub attn: Tensor,
    pub masks: Tensor,
}

impl Encoder {
    /// Fresh (randomly initialised) modules under `root` (the VarStore root: names start at `m`).
    pub fn new(root: &nn::Path, config: &ModelConfig, preprocess: &Preprocess) -> Encoder {
        let m = root / "m";
        Encoder {
            config: config.clone(),
            preprocess: preprocess.clone(),
            backbone: Backbone::new(&(&m / "encode_backbone" / "1"), &config.vit),
            project: Project::new(&(&m / "encode_project"), &config.project),
            init: Initializer::new(&(&m / "initializ"), &config.slots),
            slot_attention: SlotAttention::new(&(&m / "aggregat"), &config.slots, config.project.out_dim),
        }
    }

    /// A VarStore on `device` holding an encoder with `spec`'s architecture and weights.
    pub fn from_spec(spec: &ModelSpec, device: Device) -> Result<(nn::VarStore, Encoder), LoadError> {
        let vs = nn::VarStore::new(device);
        let enc = Encoder::new(&vs.root(), &spec.config, &Preprocess::upstream(spec.config.vit.input_size(), true));
        let shapes: std::collections::HashMap<String, Vec<usize>> = expected_shapes(&spec.config).into_iter().collect();
        let tensors = spec.weights.iter().filter_map(|(k, v)| Some(TensorOut { name: k, shape: shapes.get(k)?, data: v }));
        let rest = load_weights(&vs, tensors)?;
        // The noise scale of the initial slots is training-only: inference checkpoints may lack it.
        let missing: Vec<String> = rest.into_iter().filter(|k| k != msf_models::keys::SLOTS_LOGSTD).collect();
        if !missing.is_empty() {
            return Err(LoadError::Missing(missing));
        }
        Ok((vs, enc))
    }

    /// Backbone features of normalised images (B, 3, S, S) at the model's input size (B, G², E).
    pub fn features(&self, image: &Tensor) -> Tensor {
        let s = self.backbone.input_size;
        let x = if image.size()[2] == s { image.shallow_clone() } else { resize_for_backbone(image, s, s as f64 / image.size()[2] as f64) };
        self.backbone.forward(&x)
    }

    /// [`features`](Self::features) for a training step: with gradients only when training a
    /// backbone that is not frozen (a pretrained DINOv2 stays frozen; a small model trained from
    /// scratch learns its features).
    pub fn features_t(&self, image: &Tensor, train: bool) -> Tensor {
        if train && self.backbone.trainable() {
            self.features(image)
        } else {
            tch::no_grad(|| self.features(image))
        }
    }

    /// Backbone features → slots (B, K, D) and attention (B, K, G²): projection, initial slots
    /// (with learned noise in training) and Slot Attention.
    pub fn group(&self, feats: &Tensor, train: bool) -> (Tensor, Tensor) {
        let init = self.init.slots(feats.size()[0], train);
        self.slot_attention.forward_t(&self.project.forward(feats), &init, train)
    }

    /// Normalised images (B, 3, S, S) at the model's input size → slots, attention, masks.
    pub fn forward(&self, image: &Tensor, train: bool) -> EncoderOutput {
        let (slots, attn) = self.group(&self.features(image), train);
        let (attn, masks) = self.masks(&attn);
        EncoderOutput { slots, attn, masks }
    }

    /// Attention (B, K, G²) → attention on the grid (B, K, G, G) and masks (B, M, M): bilinear
    /// upsample to the image size, argmax over slots.
    pub fn masks(&self, attn: &Tensor) -> (Tensor, Tensor) {
        let g = self.config.vit.grid as i64;
        let attn = attn.reshape([attn.size()[0], self.config.slots.num_slots as i64, g, g]);
        let m = self.preprocess.image_size as i64;
        let masks = attn.upsample_bilinear2d([m, m], false, None, None).argmax(1, false);
        (attn, masks)
    }
}

/// The tensors of a loaded checkpoint with their shapes, in key order (what [`load_weights`] takes).
pub fn checkpoint_tensors(ck: &Checkpoint) -> impl Iterator<Item = TensorOut<'_>> {
    ck.data.iter().map(|(k, v)| TensorOut { name: k, shape: &ck.info[k].shape, data: v })
}

/// Copy tensors into the VarStore's variables of the same name (names without a variable are
/// skipped; a shape that differs from the variable's is an error) and return the names of the
/// variables that were not given, sorted.
pub fn load_weights<'a>(vs: &nn::VarStore, tensors: impl IntoIterator<Item = TensorOut<'a>>) -> Result<Vec<String>, LoadError> {
    let mut vars = vs.variables();
    let mut given = std::collections::HashSet::new();
    tch::no_grad(|| {
        for t in tensors {
            let Some(var) = vars.get_mut(t.name) else { continue };
            let shape = var.size();
            let file: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            if shape != file || t.data.len() != t.shape.iter().product::<usize>() {
                return Err(LoadError::Shape { key: t.name.to_string(), model: shape, file });
            }
            var.copy_(&Tensor::from_slice(t.data).view(shape.as_slice()).to_device(var.device()));
            given.insert(t.name.to_string());
        }
        Ok(())
    })?;
    let mut rest: Vec<String> = vars.into_keys().filter(|k| !given.contains(k)).collect();
    rest.sort();
    Ok(rest)
}
