//! Bicubic resize of the normalised image to the backbone's input (upstream's `encode_backbone.0`):
//! PyTorch bicubic, a = −0.75, half-pixel centres, no antialias. Optional in the graph because
//! cubic `Resize` is the least portable op (the runtime can do it instead).

use super::builder::{attr_f, attr_s, Builder};
use msf_models::Preprocess;

pub(super) struct Resize {
    scale: f32,
    cubic_a: f32,
}

impl Resize {
    pub(super) fn new(pre: &Preprocess) -> Resize {
        Resize { scale: pre.backbone_size as f32 / pre.image_size as f32, cubic_a: pre.cubic_a }
    }

    /// (B, 3, M, M) → (B, 3, S, S).
    pub(super) fn emit(&self, g: &mut Builder, image: &str) -> String {
        let s = self.scale;
        let scales = g.f32("resize_scales", &[4], vec![1.0, 1.0, s, s]);
        g.op(
            "Resize",
            &[image, "", &scales],
            vec![
                attr_s("mode", "cubic"),
                attr_f("cubic_coeff_a", self.cubic_a),
                attr_s("coordinate_transformation_mode", "half_pixel"),
            ],
            None,
        )
    }
}
