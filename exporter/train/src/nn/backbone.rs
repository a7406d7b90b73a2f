//! DINOv2 ViT (timm `vit_small_patch14_dinov2` layout, `m.encode_backbone.1.*`): frozen in
//! MSF training, so it only needs a forward; the bicubic 256→224 resize in front of it is
//! upstream's `encode_backbone.0`.

use super::gelu;
use msf_models::VitConfig;
use tch::{nn, nn::Module, Kind, Tensor};

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ls1: Tensor,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    ls2: Tensor,
    heads: i64,
}

impl Block {
    fn new(p: &nn::Path, c: &VitConfig) -> Block {
        let (e, m) = (c.embed_dim as i64, c.mlp_dim as i64);
        let ln = nn::LayerNormConfig { eps: c.ln_eps as f64, ..Default::default() };
        Block {
            norm1: nn::layer_norm(p / "norm1", vec![e], ln),
            qkv: nn::linear(p / "attn" / "qkv", e, 3 * e, Default::default()),
            proj: nn::linear(p / "attn" / "proj", e, e, Default::default()),
            ls1: (p / "ls1").var("gamma", &[e], nn::Init::Const(1.0)),
            norm2: nn::layer_norm(p / "norm2", vec![e], ln),
            fc1: nn::linear(p / "mlp" / "fc1", e, m, Default::default()),
            fc2: nn::linear(p / "mlp" / "fc2", m, e, Default::default()),
            ls2: (p / "ls2").var("gamma", &[e], nn::Init::Const(1.0)),
            heads: c.num_heads as i64,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, e) = x.size3().expect("tokens are (B, N, E)");
        let hd = e / self.heads;
        let qkv = self.qkv.forward(&self.norm1.forward(x)).view([b, n, 3, self.heads, hd]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let att = (q * (hd as f64).powf(-0.5)).matmul(&k.transpose(-2, -1)).softmax(-1, Kind::Float);
        let o = self.proj.forward(&att.matmul(&v).transpose(1, 2).reshape([b, n, e]));
        let x = x + o * &self.ls1;
        let m = self.fc2.forward(&gelu(&self.fc1.forward(&self.norm2.forward(&x))));
        x + m * &self.ls2
    }
}

/// Patch embedding, class token, position embedding, blocks and the final LayerNorm.
#[derive(Debug)]
pub struct Backbone {
    patch: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    /// Input side the position embedding was made for (grid × patch).
    pub input_size: i64,
}

impl Backbone {
    /// `p` is the backbone's path (`m.encode_backbone.1`).
    pub fn new(p: &nn::Path, c: &VitConfig) -> Backbone {
        let e = c.embed_dim as i64;
        let patch = c.patch_size as i64;
        let conv = nn::ConvConfig { stride: patch, ..Default::default() };
        Backbone {
            patch: nn::conv2d(p / "patch_embed" / "proj", 3, e, patch, conv),
            // timm's initialisation: a model trained from scratch needs a non-zero position
            // embedding to tell its patches apart (a zero one gives every patch the same
            // position and nothing to break the symmetry).
            cls_token: p.var("cls_token", &[1, 1, e], nn::Init::Randn { mean: 0.0, stdev: 1e-6 }),
            pos_embed: p.var("pos_embed", &[1, (c.grid * c.grid) as i64 + 1, e], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            blocks: (0..c.depth).map(|i| Block::new(&(p / "blocks" / i), c)).collect(),
            norm: nn::layer_norm(p / "norm", vec![e], nn::LayerNormConfig { eps: c.ln_eps as f64, ..Default::default() }),
            input_size: (c.grid * c.patch_size) as i64,
        }
    }

    /// Whether training updates it (stage 2 freezes it when it is pretrained).
    pub fn trainable(&self) -> bool {
        self.pos_embed.requires_grad()
    }

    /// (B, 3, S, S) at the backbone size → patch features (B, G², E), class token dropped.
    pub fn forward(&self, image: &Tensor) -> Tensor {
        let mut x = self.embed(image);
        for i in 0..self.blocks.len() {
            x = self.block(i, &x);
        }
        self.head(&x)
    }

    /// Patch embedding, class token and position embedding: (B, 3, S, S) → tokens (B, 1 + G², E).
    pub fn embed(&self, image: &Tensor) -> Tensor {
        let b = image.size()[0];
        let tokens = self.patch.forward(image).flatten(2, -1).transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        Tensor::cat(&[cls, tokens], 1) + &self.pos_embed
    }

    /// Block `i` on tokens (B, 1 + G², E).
    pub fn block(&self, i: usize, x: &Tensor) -> Tensor {
        self.blocks[i].forward(x)
    }

    /// The final LayerNorm, class token dropped: tokens → patch features (B, G², E).
    pub fn head(&self, x: &Tensor) -> Tensor {
        self.norm.forward(x).narrow(1, 1, x.size()[1] - 1)
    }
}

/// Upstream's `encode_backbone.0`: PyTorch bicubic (a = −0.75, half-pixel centres, no
/// antialias) by `scale`, e.g. 256 → 224 with 0.875.
pub fn resize_for_backbone(image: &Tensor, out: i64, scale: f64) -> Tensor {
    image.upsample_bicubic2d([out, out], false, Some(scale), Some(scale))
}
