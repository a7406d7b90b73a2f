//! Score a model (or a trivial baseline) on labelled samples the way upstream evaluates:
//! centre crop, ground truth resized to the model's mask grid with nearest-exact, metrics per
//! image, means over the images where each metric is defined.

use crate::data::Sample;
use crate::metrics::{score, Scores};
use msf_runtime::fit::Rect;
use msf_runtime::{Decomposer, ImageView};

/// Ground-truth labels as the model sees the frame: the centre crop, resized to `size`×`size`
/// with PyTorch's `nearest-exact` (source pixel `⌊(i + ½)·in/out⌋`), as upstream's `Resize` does for masks.
pub fn labels_in_model_view(labels: &image::GrayImage, size: usize) -> Vec<u8> {
    let crop = Rect::centre_square(labels.width(), labels.height());
    let scale = crop.width as f64 / size as f64;
    let src: Vec<u32> = (0..size).map(|i| (((i as f64 + 0.5) * scale).floor() as u32).min(crop.width - 1)).collect();
    let mut out = Vec::with_capacity(size * size);
    for &y in &src {
        for &x in &src {
            out.push(labels.get_pixel(crop.x + x, crop.y + y).0[0]);
        }
    }
    out
}

/// A prediction that looks at no pixel: the yardstick a trained model must beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// Every pixel in one segment.
    One,
    /// A fixed grid of as many cells as there are slots.
    Grid,
}

impl Baseline {
    /// The baseline's `size`×`size` label map for `slots` segments.
    pub fn predict(self, size: usize, slots: usize) -> Vec<u8> {
        match self {
            Baseline::One => vec![0; size * size],
            Baseline::Grid => {
                let slots = slots.clamp(1, 255);
                let rows = (slots as f64).sqrt().floor().max(1.0) as usize;
                let cols = slots.div_ceil(rows);
                (0..size * size)
                    .map(|i| {
                        let (y, x) = (i / size, i % size);
                        ((y * rows / size) * cols + x * cols / size).min(slots - 1) as u8
                    })
                    .collect()
            }
        }
    }
}

/// The decomposition's mask (slot per pixel of the centre crop) scored against the sample, as
/// upstream does: the decomposer must use `Fit::Crop`.
pub fn score_model(decomposer: &Decomposer, sample: &Sample) -> msf_runtime::Result<Scores> {
    if decomposer.fit() != msf_runtime::Fit::Crop {
        return Err(msf_runtime::Error::InvalidConfig(format!(
            "upstream's protocol scores the centre crop; this decomposer fits frames with `{}` (build it with Fit::Crop, or score the whole frame with score_model_frame)",
            decomposer.fit()
        )));
    }
    let view = ImageView::from_rgb_image(&sample.image)?;
    let d = decomposer.decompose(&view)?;
    Ok(score(&d.mask, &labels_in_model_view(&sample.labels, d.mask_size)))
}

/// The decomposition scored over the whole frame at frame resolution ([`crate::metrics::score_frame`]):
/// how the decomposer's fit (`msf_runtime::Fit`) serves a camera. Pixels no view covers count as missed.
pub fn score_model_frame(decomposer: &Decomposer, sample: &Sample) -> msf_runtime::Result<Scores> {
    let view = ImageView::from_rgb_image(&sample.image)?;
    let d = decomposer.decompose(&view)?;
    Ok(crate::metrics::score_frame(&d.mask_in_frame(), sample.labels.as_raw()))
}

/// An existing prediction scored over the whole frame like [`score_model_frame`]: the mask PNG of
/// `sample` in an msf-run output folder (`dir/masks/<name>.png`, or `dir/<name>.png`), slot ids
/// at frame resolution with 255 where no view covered the frame.
pub fn score_prediction(dir: &std::path::Path, sample: &Sample) -> Result<Scores, crate::data::DataError> {
    let file = format!("{}.png", sample.name);
    let path = [dir.join("masks").join(&file), dir.join(&file)].into_iter().find(|p| p.is_file()).ok_or_else(|| crate::data::DataError::Read {
        path: dir.join("masks").join(&file),
        reason: "no prediction for this image (expected an msf-run output folder: masks/<name>.png)".into(),
    })?;
    let pred = crate::data::read_label_png(&path)?;
    if pred.dimensions() != sample.labels.dimensions() {
        let ((mw, mh), (iw, ih)) = (pred.dimensions(), sample.labels.dimensions());
        return Err(crate::data::DataError::SizeMismatch { mask: path, mw, mh, iw, ih });
    }
    Ok(crate::metrics::score_frame(pred.as_raw(), sample.labels.as_raw()))
}

/// A checkpoint (upstream's or msf-train's) scored through the tch forward, on the runtime's
/// preprocessing of the sample (centre crop, antialiased resize to 256, normalise).
#[cfg(feature = "tch")]
pub fn score_checkpoint(encoder: &crate::nn::Encoder, sample: &Sample) -> msf_runtime::Result<Scores> {
    let view = ImageView::from_rgb_image(&sample.image)?;
    let input = msf_runtime::preprocess(&view, &encoder.preprocess)?;
    let s = encoder.preprocess.image_size as i64;
    let x = tch::Tensor::from_slice(&input).view([1, 3, s, s]);
    let out = tch::no_grad(|| encoder.forward(&x, false));
    let mask: Vec<u8> = Vec::try_from(out.masks.to_kind(tch::Kind::Uint8).flatten(0, -1)).expect("u8 masks");
    let size = out.masks.size()[1] as usize;
    Ok(score(&mask, &labels_in_model_view(&sample.labels, size)))
}

pub fn score_baseline(baseline: Baseline, slots: usize, size: usize, sample: &Sample) -> Scores {
    score(&baseline.predict(size, slots), &labels_in_model_view(&sample.labels, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};

    #[test]
    fn nearest_exact_of_the_centre_crop() {
        // 6×4: the crop is columns 1..5; downscaled 4 → 2 picks source pixels 1 and 3.
        let labels = GrayImage::from_fn(6, 4, |x, y| Luma([(10 * y + x) as u8]));
        assert_eq!(labels_in_model_view(&labels, 2), vec![12, 14, 32, 34]);
        // Upscaled 4 → 8: every source pixel twice.
        let up = labels_in_model_view(&labels, 8);
        assert_eq!(&up[..8], &[1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn grid_baseline_uses_every_slot_once() {
        for slots in [1, 4, 5, 7, 11] {
            let p = Baseline::Grid.predict(64, slots);
            let mut seen = vec![false; slots];
            p.iter().for_each(|&l| seen[l as usize] = true);
            assert!(seen.iter().all(|&s| s), "{slots} slots");
        }
    }
}
