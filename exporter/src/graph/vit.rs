//! The DINOv2 ViT (`m.encode_backbone.1.*`) in three blocks: patch embedding, one block per depth
//! index, final norm. Attention scale and LayerScale gammas are folded into the adjacent linear
//! layers, and q, k, v come from one fused matmul.

use super::builder::{attr_i, Builder};
use super::weights::{LayerNorm, Linear, Param, Weights};
use super::GraphError;
use msf_models::VitConfig;

/// Patch embedding (a p×p stride-p conv) as patchify + one matmul, then the class token and the
/// position embedding.
pub(super) struct PatchEmbed<'a> {
    proj: Linear<'a>,
    cls_token: Param<'a>,
    pos_embed: Param<'a>,
    grid: i64,
    patch: i64,
    embed_dim: usize,
}

impl<'a> PatchEmbed<'a> {
    /// `vb`: the ViT (`keys::VIT_PREFIX`).
    pub(super) fn new(vb: &Weights<'a>, c: &VitConfig) -> Result<PatchEmbed<'a>, GraphError> {
        let p = c.patch_size;
        Ok(PatchEmbed {
            proj: Linear::new(&vb.pp("patch_embed.proj"), c.embed_dim, 3 * p * p)?,
            cls_token: vb.param("cls_token")?,
            pos_embed: vb.param("pos_embed")?,
            grid: c.grid as i64,
            patch: p as i64,
            embed_dim: c.embed_dim,
        })
    }

    /// (B, 3, G·p, G·p) → tokens (B, 1 + G², E).
    ///
    /// Patchify: (B, 3, G·p, G·p) → (B, G², 3·p·p) @ Wᵀ → (B, G², E). Written this way the
    /// residual stream stays token-major: from a conv, tract keeps the whole ViT channel-major,
    /// where every LayerNorm reduces over a strided axis and its mean subtraction falls back to a
    /// generic broadcast.
    pub(super) fn emit(&self, g: &mut Builder, image: &str) -> String {
        let (gi, pi, e) = (self.grid, self.patch, self.embed_dim);
        let patches = g.reshape(image, &[0, 3, gi, pi, gi, pi]);
        let patches = g.transpose(&patches, &[0, 2, 4, 1, 3, 5]);
        let patches = g.reshape(&patches, &[0, gi * gi, 3 * pi * pi]);
        let tokens = self.proj.emit(g, &patches);
        // Prepend the class token (broadcast to the batch) and add the positional embedding.
        let cls = self.cls_token.emit(g, &[1, 1, e]);
        let cls_shape = g.batch_shape(&tokens, &[1, e as i64]);
        let cls_b = g.op("Expand", &[&cls, &cls_shape], vec![], None);
        let seq = g.op("Concat", &[&cls_b, &tokens], vec![attr_i("axis", 1)], None);
        let n_tok = (gi * gi) as usize + 1;
        let pos = self.pos_embed.emit(g, &[1, n_tok, e]);
        g.add(&seq, &pos)
    }
}

/// One pre-norm block: x += ls1·Attn(LN1 x); x += ls2·MLP(LN2 x).
pub(super) struct VitBlock<'a> {
    norm1: LayerNorm<'a>,
    qkv: Linear<'a>,
    proj: Linear<'a>,
    norm2: LayerNorm<'a>,
    fc1: Linear<'a>,
    fc2: Linear<'a>,
    heads: i64,
    embed_dim: i64,
}

impl<'a> VitBlock<'a> {
    /// `vb`: one block (`keys::VIT_BLOCKS_PREFIX` + index).
    pub(super) fn new(vb: &Weights<'a>, c: &VitConfig) -> Result<VitBlock<'a>, GraphError> {
        let (e, m) = (c.embed_dim, c.mlp_dim);
        // The 1/√d attention scale folded into the q third of the fused qkv weight.
        let mut qkv_scale = vec![((e / c.num_heads) as f32).powf(-0.5); e];
        qkv_scale.resize(3 * e, 1.0);
        let gamma = |name: &str| vb.get(name).map(<[f32]>::to_vec);
        Ok(VitBlock {
            norm1: LayerNorm::new(&vb.pp("norm1"), c.ln_eps)?,
            // One (e → 3·e) matmul, then a split: one large GEMM runs faster than three small ones.
            qkv: Linear::new(&vb.pp("attn.qkv"), 3 * e, e)?.scaled(qkv_scale).quantizable(),
            // LayerScale gammas folded into the attention output projection and fc2.
            proj: Linear::new(&vb.pp("attn.proj"), e, e)?.scaled(gamma("ls1.gamma")?).quantizable(),
            norm2: LayerNorm::new(&vb.pp("norm2"), c.ln_eps)?,
            fc1: Linear::new(&vb.pp("mlp.fc1"), m, e)?.quantizable(),
            fc2: Linear::new(&vb.pp("mlp.fc2"), e, m)?.scaled(gamma("ls2.gamma")?).quantizable(),
            heads: c.num_heads as i64,
            embed_dim: e as i64,
        })
    }

    /// Tokens (B, N, E) → (B, N, E).
    pub(super) fn emit(&self, g: &mut Builder, h: &str) -> String {
        let (e, heads) = (self.embed_dim, self.heads);
        let head_dim = e / heads;
        let a_in = self.norm1.emit(g, h);
        let qkv = self.qkv.emit(g, &a_in);
        let [q, k, v]: [String; 3] = g.split_last(&qkv, &[e, e, e]).try_into().expect("three parts");
        let q = g.reshape(&q, &[0, 0, heads, head_dim]);
        let q = g.transpose(&q, &[0, 2, 1, 3]); // (B, H, N, hd)
        let k = g.reshape(&k, &[0, 0, heads, head_dim]);
        let k = g.transpose(&k, &[0, 2, 3, 1]); // (B, H, hd, N)
        let v = g.reshape(&v, &[0, 0, heads, head_dim]);
        let v = g.transpose(&v, &[0, 2, 1, 3]);
        let logits = g.mm(&q, &k);
        let att = g.op("Softmax", &[&logits], vec![attr_i("axis", -1)], None);
        let o = g.mm(&att, &v);
        let o = g.transpose(&o, &[0, 2, 1, 3]);
        let o = g.reshape(&o, &[0, 0, e]);
        let o = self.proj.emit(g, &o);
        let h = g.add(h, &o);
        let m_in = self.norm2.emit(g, &h);
        let f1 = self.fc1.emit(g, &m_in);
        let f1 = g.gelu(&f1);
        let f2 = self.fc2.emit(g, &f1);
        g.add(&h, &f2)
    }
}

/// The final LayerNorm, then the class token dropped: the patch features.
pub(super) struct VitNorm<'a> {
    norm: LayerNorm<'a>,
}

impl<'a> VitNorm<'a> {
    /// `vb`: the ViT (`keys::VIT_PREFIX`).
    pub(super) fn new(vb: &Weights<'a>, c: &VitConfig) -> Result<VitNorm<'a>, GraphError> {
        Ok(VitNorm { norm: LayerNorm::new(&vb.pp("norm"), c.ln_eps)? })
    }

    /// Tokens (B, 1 + G², E) → features (B, G², E).
    pub(super) fn emit(&self, g: &mut Builder, h: &str) -> String {
        let h = self.norm.emit(g, h);
        let starts = g.i64s(&[1]);
        let ends = g.i64s(&[i64::MAX]);
        let axes = g.i64s(&[1]);
        g.op("Slice", &[&h, &starts, &ends, &axes], vec![], None)
    }
}
