//! SlotDiffusion-MSF as one model (upstream `SlotDiffusion` with the MSF VQ-VAE as `mediat`): the
//! inference path, the frozen stage-1 VQ-VAE encoder and quantisers (code width 4), and the
//! diffusion decoder, a UNet that predicts the noise added to the VQ-VAE's scale-0 encoding from
//! the slots. Upstream's stage-2 VQ-VAE has `eaq=True` ("encode as quant"): the diffusion target
//! is the continuous encoding, so the quantisers are kept (for the key layout) but not run.
//! Its VarStore is upstream's `state_dict` layout.

use super::ddpm::{Ddpm, DdpmConfig};
use super::encoder::Encoder;
use super::model::{numbered_children, shape_of, vqvae_sizes_from_checkpoint, CheckpointShapes, Stage2Model, Stage2Output};
use super::unet::{UNet, UNetConfig};
use super::vqvae::{VqVae, VqVaeConfig};
use msf_models::{ModelConfig, Preprocess};
use tch::{nn, Reduction, Tensor};

pub struct SlotDiffusionMsf {
    pub encoder: Encoder,
    pub mediat: VqVae,
    /// The noise predictor (`m.decode.backbone`).
    pub decode: UNet,
    pub schedule: Ddpm,
}

impl SlotDiffusionMsf {
    pub fn new(root: &nn::Path, c: &ModelConfig, vq: &VqVaeConfig, unet: &UNetConfig) -> SlotDiffusionMsf {
        let m = root / "m";
        SlotDiffusionMsf {
            encoder: Encoder::new(root, c, &Preprocess::upstream(c.vit.input_size(), true)),
            mediat: VqVae::new(&(&m / "mediat"), vq, false),
            decode: UNet::new(&(&m / "decode" / "backbone"), unet),
            schedule: Ddpm::new(&DdpmConfig::default()),
        }
    }

    /// The diffusion loss on normalised images (B, 3, 256, 256), with a random timestep per
    /// image and Gaussian noise drawn from tch's global generator (as upstream does per step).
    pub fn stage2(&self, images: &Tensor, train: bool) -> Stage2Output {
        self.stage2_with(images, train, &|target| {
            let t = self.schedule.sample_timesteps(target.size()[0], target.device());
            (t, target.randn_like())
        })
    }

    /// [`stage2`](Self::stage2) with the timesteps (B,) and noise (shaped like the target encoding
    /// (B, C, h, w)) given by `draw`, which sees the target: the VQ-VAE runs without gradients
    /// (frozen in stage 2), the backbone too unless it is trained; the UNet predicts the noise of the noised encoding
    /// from the slots, and the loss is the mean squared error of that prediction.
    pub fn stage2_with(&self, images: &Tensor, train: bool, draw: &dyn Fn(&Tensor) -> (Tensor, Tensor)) -> Stage2Output {
        let b = images.size()[0];
        let feats = self.encoder.features_t(images, train);
        let (slots, attn) = self.encoder.group(&feats, train);
        let target = tch::no_grad(|| self.mediat.encode(images));
        let (t, noise) = draw(&target);
        let noisy = self.schedule.add_noise(&target, &noise, &t);
        let predicted = self.decode.forward(&noisy, &t, &slots, train);
        let loss = predicted.mse_loss(&noise, Reduction::Mean);
        let g = self.encoder.config.vit.grid as i64;
        Stage2Output { loss, attn: attn.reshape([b, -1, g, g]), slots }
    }
}

impl Stage2Model for SlotDiffusionMsf {
    fn stage2(&self, images: &Tensor, train: bool) -> Stage2Output {
        SlotDiffusionMsf::stage2(self, images, train)
    }

    fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}

/// The VQ-VAE and UNet sizes of an upstream SlotDiffusion-MSF checkpoint, read from its shapes.
pub fn sizes_from_checkpoint(info: &CheckpointShapes) -> Option<(VqVaeConfig, UNetConfig)> {
    Some((vqvae_sizes_from_checkpoint(info)?, unet_sizes_from_checkpoint(info)?))
}

/// The UNet sizes of a SlotDiffusion-MSF checkpoint (`m.decode.backbone.*`), read from its
/// shapes. The head count, GroupNorm groups and dropout are not in the file: upstream's (8, 32,
/// 0.1) are assumed.
pub fn unet_sizes_from_checkpoint(info: &CheckpointShapes) -> Option<UNetConfig> {
    const P: &str = "m.decode.backbone.";
    let shape = |k: &str| shape_of(info, &format!("{P}{k}"));
    let count = |prefix: &str| numbered_children(info, &format!("{P}{prefix}"));
    let levels = count("down_blocks.")?;
    let block_channels = (0..levels).map(|i| Some(shape(&format!("down_blocks.{i}.resnets.0.conv1.weight"))?[0])).collect::<Option<Vec<_>>>()?;
    Some(UNetConfig {
        in_channels: shape("conv_in.weight")?[1],
        out_channels: shape("conv_out.weight")?[0],
        block_channels,
        layers_per_block: count("down_blocks.0.resnets.")?,
        cross_attention_dim: shape("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")?[1],
        ..UNetConfig::default()
    })
}
