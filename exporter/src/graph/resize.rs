//! Bicubic resize of the normalised image to the backbone's input (upstream's `encode_backbone.0`):
//! PyTorch bicubic, a = −0.75, half-pixel centres, no antialias. Optional in the graph (the
//! runtime can do it instead).
//!
//! Written as two `MatMul`s by the resize matrix (columns, then rows, the order PyTorch sums in)
//! rather than a cubic `Resize`: the same taps as PyTorch's kernel ([`msf_models::interpolate`]), the
//! most portable ops, and fast everywhere — onnxruntime's cubic `Resize` took 62 ms of a 330 ms
//! frame on one thread (full-size model), about 20 times the matrix products.

use super::builder::{transpose, Builder};
use msf_models::interpolate::CubicAxis;
use msf_models::Preprocess;

pub(super) struct Resize {
    axis: CubicAxis,
}

impl Resize {
    pub(super) fn new(pre: &Preprocess) -> Resize {
        Resize { axis: CubicAxis::new(pre.image_size, pre.backbone_size, pre.cubic_a) }
    }

    /// (B, 3, M, M) → (B, 3, S, S): `R · image · Rᵀ` with R the (S, M) resize matrix.
    pub(super) fn emit(&self, g: &mut Builder, image: &str) -> String {
        let (m, s) = (self.axis.in_size(), self.axis.out_size());
        let rows = self.axis.matrix();
        let cols_t = g.f32("resize_cols_t", &[m, s], transpose(&rows, s, m));
        let rows = g.f32("resize_rows", &[s, m], rows);
        let wide = g.op("MatMul", &[image, &cols_t], vec![], None);
        g.op("MatMul", &[&rows, &wide], vec![], None)
    }
}
