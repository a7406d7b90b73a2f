//! Training pieces shared by the stages: image tensors and upstream's step schedules
//! (`learn/callback_sched.py`), evaluated at a step instead of tabulated.

use image::RgbImage;
use msf_models::config::{IMAGENET_MEAN, IMAGENET_STD};
use tch::Tensor;

/// An RGB image as the normalised (3, H, W) float tensor the models take (upstream's
/// `Normalize` on the 0..255 scale).
pub fn image_tensor(image: &RgbImage) -> Tensor {
    let (w, h) = (image.width() as i64, image.height() as i64);
    Tensor::from_slice(&normalised_chw(image)).view([3, h, w])
}

/// The same values as a flat channel-first vector (what the loader threads hand over).
pub fn normalised_chw(image: &RgbImage) -> Vec<f32> {
    let n = (image.width() * image.height()) as usize;
    let mut chw = vec![0f32; 3 * n];
    for (i, p) in image.pixels().enumerate() {
        for c in 0..3 {
            chw[c * n + i] = (p.0[c] as f32 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    chw
}

/// Cosine from `base` (step 0) to `end` (step `total`).
pub fn cosine(step: usize, total: usize, base: f64, end: f64) -> f64 {
    let t = step.min(total) as f64 / total.max(1) as f64;
    0.5 * (base - end) * (1.0 + (std::f64::consts::PI * t).cos()) + end
}

/// Linear warm-up from `start` to `base` over `warmup` steps, then cosine to `end` at `total`
/// (upstream `CbLinearCosine`: the learning rate).
pub fn linear_cosine(step: usize, warmup: usize, total: usize, start: f64, base: f64, end: f64) -> f64 {
    if step < warmup {
        start + (base - start) * step as f64 / warmup as f64
    } else {
        cosine(step - warmup, total.saturating_sub(warmup), base, end)
    }
}

/// Cosine in log space (upstream `CbLnCosine`: the quantisers' Gumbel scale, 1 → 2).
pub fn log_cosine(step: usize, total: usize, base: f64, end: f64) -> f64 {
    cosine(step, total, base.ln(), end.ln()).exp()
}

/// Cosine from `base` to `mid` over `cos_steps`, then linear to `end` at `total` (upstream
/// `CbCosineLinear`: the VQ-VAE's residual mix `alpha`, 1 → 0 over the first half).
pub fn cosine_linear(step: usize, cos_steps: usize, total: usize, base: f64, mid: f64, end: f64) -> f64 {
    if step <= cos_steps {
        cosine(step, cos_steps, base, mid)
    } else {
        let n = total.saturating_sub(cos_steps).max(1);
        mid + (end - mid) * ((step - cos_steps).min(n)) as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_hit_their_end_points() {
        assert_eq!(linear_cosine(0, 10, 100, 0.0, 2e-3, 2e-6), 0.0);
        assert!((linear_cosine(10, 10, 100, 0.0, 2e-3, 2e-6) - 2e-3).abs() < 1e-15);
        assert!((linear_cosine(100, 10, 100, 0.0, 2e-3, 2e-6) - 2e-6).abs() < 1e-15);
        assert!((log_cosine(0, 50, 1.0, 2.0) - 1.0).abs() < 1e-12);
        assert!((log_cosine(50, 50, 1.0, 2.0) - 2.0).abs() < 1e-12);
        // Half way in log space is the geometric mean.
        assert!((log_cosine(25, 50, 1.0, 2.0) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine_linear(0, 50, 100, 1.0, 0.0, 0.0), 1.0);
        assert!(cosine_linear(50, 50, 100, 1.0, 0.0, 0.0).abs() < 1e-12);
        assert_eq!(cosine_linear(80, 50, 100, 1.0, 0.0, 0.0), 0.0);
    }

    #[test]
    fn images_are_normalised_channel_first() {
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([(x * 40) as u8, (y * 90) as u8, 200]));
        let t = image_tensor(&img);
        assert_eq!(t.size(), [3, 2, 3]);
        let v = t.double_value(&[0, 1, 2]);
        assert!((v - (80.0 - IMAGENET_MEAN[0] as f64) / IMAGENET_STD[0] as f64).abs() < 1e-6);
        let v = t.double_value(&[1, 1, 0]);
        assert!((v - (90.0 - IMAGENET_MEAN[1] as f64) / IMAGENET_STD[1] as f64).abs() < 1e-6);
    }
}
