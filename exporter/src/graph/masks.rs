//! Masks from the last round's attention (upstream's `interpolat_argmax_attent`): reshape to the
//! patch grid, bilinear upsample to the image size (half-pixel centres), argmax over slots.
//!
//! The upsample is two `MatMul`s by PyTorch's bilinear taps ([`msf_models::interpolate`]), not a
//! linear `Resize`: tract's took 4.3 ms of a ~205 ms frame (full-size model, one thread).

use super::builder::{attr_i, transpose, Builder};
use msf_models::interpolate::LinearAxis;
use msf_models::interface::{OUTPUT_ATTN, OUTPUT_MASKS};

pub(super) struct Masks {
    grid: usize,
    image_size: usize,
}

impl Masks {
    pub(super) fn new(grid: usize, image_size: usize) -> Masks {
        Masks { grid, image_size }
    }

    /// Attention (B, K, G²) → `attn` (B, K, G, G) and `masks` (B, M, M), int64 slot indices.
    pub(super) fn emit(&self, g: &mut Builder, attn: &str) -> (String, String) {
        let grid = self.grid as i64;
        let attn_shape = g.i64s(&[0, 0, grid, grid]);
        let attn = g.op("Reshape", &[attn, &attn_shape], vec![], Some(OUTPUT_ATTN));
        // (B, K, G, G) · Uᵀ (G, M) → (B, K, G, M); U (M, G) · that → (B, K, M, M).
        let (gs, m) = (self.grid, self.image_size);
        let rows = LinearAxis::new(gs, m).matrix();
        let cols_t = g.f32("mask_cols_t", &[gs, m], transpose(&rows, m, gs));
        let rows = g.f32("mask_rows", &[m, gs], rows);
        let wide = g.op("MatMul", &[&attn, &cols_t], vec![], None);
        let big = g.op("MatMul", &[&rows, &wide], vec![], None);
        let masks = g.op("ArgMax", &[&big], vec![attr_i("axis", 1), attr_i("keepdims", 0)], Some(OUTPUT_MASKS));
        (attn, masks)
    }
}
