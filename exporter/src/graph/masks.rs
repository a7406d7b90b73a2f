//! Masks from the last round's attention (upstream's `interpolat_argmax_attent`): reshape to the
//! patch grid, bilinear upsample to the image size (half-pixel centres), argmax over slots.

use super::builder::{attr_i, attr_s, Builder};
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
        let up = self.image_size as f32 / self.grid as f32;
        let scales = g.f32("mask_scales", &[4], vec![1.0, 1.0, up, up]);
        let big = g.op(
            "Resize",
            &[&attn, "", &scales],
            vec![attr_s("mode", "linear"), attr_s("coordinate_transformation_mode", "half_pixel")],
            None,
        );
        let masks = g.op("ArgMax", &[&big], vec![attr_i("axis", 1), attr_i("keepdims", 0)], Some(OUTPUT_MASKS));
        (attn, masks)
    }
}
