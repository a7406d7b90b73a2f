//! Upstream checkpoint key schema: which `state_dict` key feeds which tensor of the inference path.
//!
//! Upstream saves `torch.save(model.state_dict())` of a wrapper whose attribute is `m`, so every key
//! starts with `m.`. Only the keys listed by [`inference_keys`] are needed for slots and masks; the
//! VQ-VAE (`m.mediat.*`), the decoders (`m.decode.*`) and the training noise scale are training-only.

/// Prefix of every upstream key.
pub const PREFIX: &str = "m.";

/// The DINOv2 ViT sits at index 1 of `encode_backbone` (index 0 is the bicubic resize).
pub const VIT_PREFIX: &str = "m.encode_backbone.1.";
pub const VIT_CLS_TOKEN: &str = "m.encode_backbone.1.cls_token";
pub const VIT_POS_EMBED: &str = "m.encode_backbone.1.pos_embed";
pub const VIT_PATCH_WEIGHT: &str = "m.encode_backbone.1.patch_embed.proj.weight";
pub const VIT_PATCH_BIAS: &str = "m.encode_backbone.1.patch_embed.proj.bias";
pub const VIT_NORM_WEIGHT: &str = "m.encode_backbone.1.norm.weight";
pub const VIT_NORM_BIAS: &str = "m.encode_backbone.1.norm.bias";

/// Tensors of one ViT block, relative to `m.encode_backbone.1.blocks.<i>.`.
pub const VIT_BLOCK_PARAMS: [&str; 14] = [
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "ls1.gamma",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
    "ls2.gamma",
];

/// Key of a ViT block tensor, e.g. `vit_block(0, "attn.qkv.weight")`.
pub fn vit_block(i: usize, param: &str) -> String {
    format!("{VIT_PREFIX}blocks.{i}.{param}")
}

/// Prefix shared by all ViT block keys; the depth is the number of distinct indices after it.
pub const VIT_BLOCKS_PREFIX: &str = "m.encode_backbone.1.blocks.";

/// Projection MLP: `Sequential(LayerNorm, Linear, GELU, Linear)`.
pub const PROJECT_PREFIX: &str = "m.encode_project.";
pub const PROJECT_LN_WEIGHT: &str = "m.encode_project.0.weight";
pub const PROJECT_LN_BIAS: &str = "m.encode_project.0.bias";
pub const PROJECT_FC1_WEIGHT: &str = "m.encode_project.1.weight";
pub const PROJECT_FC1_BIAS: &str = "m.encode_project.1.bias";
pub const PROJECT_FC2_WEIGHT: &str = "m.encode_project.3.weight";
pub const PROJECT_FC2_BIAS: &str = "m.encode_project.3.bias";

/// Slot initialiser (`m.initializ.*`).
pub const SLOTS_PREFIX: &str = "m.initializ.";
/// Learned initial slots (1, K, D); the eval path uses the mean without noise.
pub const SLOTS_MEAN: &str = "m.initializ.mean";
/// Training-only noise scale of the initial slots.
pub const SLOTS_LOGSTD: &str = "m.initializ.logstd";

/// Slot Attention (`m.aggregat.*`).
pub const SA_PREFIX: &str = "m.aggregat.";
pub const SA_NORM_Q_WEIGHT: &str = "m.aggregat.norm1q.weight";
pub const SA_NORM_Q_BIAS: &str = "m.aggregat.norm1q.bias";
pub const SA_PROJ_Q: &str = "m.aggregat.proj_q.weight";
pub const SA_NORM_KV_WEIGHT: &str = "m.aggregat.norm1kv.weight";
pub const SA_NORM_KV_BIAS: &str = "m.aggregat.norm1kv.bias";
pub const SA_PROJ_K: &str = "m.aggregat.proj_k.weight";
pub const SA_PROJ_V: &str = "m.aggregat.proj_v.weight";
/// GRUCell weights, PyTorch gate order (r, z, n).
pub const SA_GRU_W_IH: &str = "m.aggregat.rnn.weight_ih";
pub const SA_GRU_W_HH: &str = "m.aggregat.rnn.weight_hh";
pub const SA_GRU_B_IH: &str = "m.aggregat.rnn.bias_ih";
pub const SA_GRU_B_HH: &str = "m.aggregat.rnn.bias_hh";
pub const SA_NORM2_WEIGHT: &str = "m.aggregat.norm2.weight";
pub const SA_NORM2_BIAS: &str = "m.aggregat.norm2.bias";
/// FFN `Sequential(Linear, GELU, Dropout, Linear)`: indices 0 and 3.
pub const SA_FFN1_WEIGHT: &str = "m.aggregat.ffn.0.weight";
pub const SA_FFN1_BIAS: &str = "m.aggregat.ffn.0.bias";
pub const SA_FFN2_WEIGHT: &str = "m.aggregat.ffn.3.weight";
pub const SA_FFN2_BIAS: &str = "m.aggregat.ffn.3.bias";

/// Keys outside the backbone blocks that the inference path reads.
pub const INFERENCE_FIXED_KEYS: [&str; 30] = [
    VIT_CLS_TOKEN,
    VIT_POS_EMBED,
    VIT_PATCH_WEIGHT,
    VIT_PATCH_BIAS,
    VIT_NORM_WEIGHT,
    VIT_NORM_BIAS,
    PROJECT_LN_WEIGHT,
    PROJECT_LN_BIAS,
    PROJECT_FC1_WEIGHT,
    PROJECT_FC1_BIAS,
    PROJECT_FC2_WEIGHT,
    PROJECT_FC2_BIAS,
    SLOTS_MEAN,
    SA_NORM_Q_WEIGHT,
    SA_NORM_Q_BIAS,
    SA_PROJ_Q,
    SA_NORM_KV_WEIGHT,
    SA_NORM_KV_BIAS,
    SA_PROJ_K,
    SA_PROJ_V,
    SA_GRU_W_IH,
    SA_GRU_W_HH,
    SA_GRU_B_IH,
    SA_GRU_B_HH,
    SA_NORM2_WEIGHT,
    SA_NORM2_BIAS,
    SA_FFN1_WEIGHT,
    SA_FFN1_BIAS,
    SA_FFN2_WEIGHT,
    SA_FFN2_BIAS,
];

/// Every key the inference path needs, for a backbone of `depth` blocks.
pub fn inference_keys(depth: usize) -> Vec<String> {
    let mut keys: Vec<String> = INFERENCE_FIXED_KEYS.iter().map(|k| k.to_string()).collect();
    for i in 0..depth {
        keys.extend(VIT_BLOCK_PARAMS.iter().map(|p| vit_block(i, p)));
    }
    keys
}

/// Key prefixes of training-only parts of a stage-2 checkpoint: present, expected, not exported.
pub const TRAINING_ONLY_PREFIXES: [&str; 3] = ["m.mediat.", "m.decode.", SLOTS_LOGSTD];

/// A SLATE-MSF checkpoint has the autoregressive decoder's begin-of-sequence token.
pub const SLATE_MARKER: &str = "m.decode.bos";
/// A SlotDiffusion-MSF checkpoint has the UNet's input convolution.
pub const SLOTDIFFUSION_MARKER: &str = "m.decode.backbone.conv_in.weight";
/// A stage-1 MSF VQ-VAE checkpoint has its own encoder and quantisers at the top level.
pub const VAE_MARKERS: [&str; 2] = ["m.encode.", "m.quant."];

/// Key renames across upstream versions: (old, new). Decoder-only, so they never block export,
/// but they are recognised rather than reported as unexpected.
pub const KEY_ALIASES: [(&str, &str); 1] = [("m.decode.posit_embed.pe", "m.decode.posit_embed._pe")];

/// The current name of a key (applies [`KEY_ALIASES`]).
pub fn canonical(key: &str) -> &str {
    KEY_ALIASES
        .iter()
        .find(|(old, _)| *old == key)
        .map(|(_, new)| *new)
        .unwrap_or(key)
}

/// True for keys that belong to training-only parts.
pub fn is_training_only(key: &str) -> bool {
    TRAINING_ONLY_PREFIXES.iter().any(|p| key.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_key_count_matches_spec() {
        // Spec §1: the part needed for slots and masks is 12 blocks of ViT-S plus 30 other tensors.
        assert_eq!(inference_keys(12).len(), 30 + 12 * 14);
        assert!(inference_keys(2).contains(&"m.encode_backbone.1.blocks.1.ls2.gamma".to_string()));
    }

    #[test]
    fn keys_sit_under_their_module_prefix() {
        // Readers that scope by prefix (the exporter's graph blocks) rely on these.
        for k in INFERENCE_FIXED_KEYS {
            let prefixes = [VIT_PREFIX, PROJECT_PREFIX, SLOTS_PREFIX, SA_PREFIX];
            assert_eq!(prefixes.iter().filter(|p| k.starts_with(*p)).count(), 1, "{k}");
        }
        assert!(vit_block(3, "norm1.weight").starts_with(VIT_BLOCKS_PREFIX));
    }

    #[test]
    fn old_decoder_key_is_aliased() {
        assert_eq!(canonical("m.decode.posit_embed.pe"), "m.decode.posit_embed._pe");
        assert_eq!(canonical(SLOTS_MEAN), SLOTS_MEAN);
    }
}
