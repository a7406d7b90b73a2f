//! A picture a person can check at a glance: the frame, each slot tinted with its own colour, slot
//! boundaries in white, and the part outside the centre crop (which the model never saw) dimmed.
//!
//! Colours depend only on the slot id, so with temporal slot ids an object keeps its colour.

use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use super::write_atomic;
use crate::decompose::VOID;
use crate::error::Result;

/// Image format of overlay files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// JPEG, quality [`JPEG_QUALITY`]: small files for long runs.
    #[default]
    Jpeg,
    /// Lossless PNG.
    Png,
}

pub const JPEG_QUALITY: u8 = 90;

crate::names::named_enum!(Format, "overlay format", { Jpeg => "jpg" | "jpeg", Png => "png" });

impl Format {
    /// The file extension (the name).
    pub fn extension(self) -> &'static str {
        self.as_str()
    }
}

/// Weight of the slot colour in the blend, out of 256.
const TINT: u32 = 112;
/// Brightness kept outside the centre crop, out of 256.
const DIM: u32 = 96;
const BOUNDARY: [u8; 3] = [255, 255, 255];

/// A stable, well-separated colour for slot `id`: hues a golden angle apart, so neighbours in id
/// never look alike.
pub fn slot_colour(id: u8) -> [u8; 3] {
    let h = (f32::from(id) * 0.618_034 + 0.1).fract() * 6.0;
    let (s, v) = (0.75f32, 0.95f32);
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|t| ((t + m) * 255.0).round() as u8)
}

/// Blend packed RGB8 `rgb` (`width`×`height`) with `labels` (same size, [`VOID`] outside the crop).
pub fn render(rgb: &[u8], width: u32, height: u32, labels: &[u8]) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    assert_eq!(rgb.len(), w * h * 3, "frame buffer size");
    assert_eq!(labels.len(), w * h, "label map size");
    let colours: Vec<[u8; 3]> = (0..=255u8).map(slot_colour).collect();
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let l = labels[i];
            let src = &rgb[i * 3..i * 3 + 3];
            let dst = &mut out[i * 3..i * 3 + 3];
            if l == VOID {
                for c in 0..3 {
                    dst[c] = ((u32::from(src[c]) * DIM) >> 8) as u8;
                }
                continue;
            }
            let differs = |j: usize| labels[j] != l && labels[j] != VOID;
            let edge = (x > 0 && differs(i - 1)) || (x + 1 < w && differs(i + 1)) || (y > 0 && differs(i - w)) || (y + 1 < h && differs(i + w));
            if edge {
                dst.copy_from_slice(&BOUNDARY);
            } else {
                let col = colours[l as usize];
                for c in 0..3 {
                    dst[c] = ((u32::from(src[c]) * (256 - TINT) + u32::from(col[c]) * TINT) >> 8) as u8;
                }
            }
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized above")
}

/// Write `img` to `path` atomically as JPEG or PNG.
pub fn write(path: &Path, img: &RgbImage, format: Format) -> Result<()> {
    write_atomic(path, |w| {
        let (raw, wd, ht) = (img.as_raw(), img.width(), img.height());
        match format {
            Format::Jpeg => JpegEncoder::new_with_quality(w, JPEG_QUALITY).write_image(raw, wd, ht, ExtendedColorType::Rgb8),
            Format::Png => PngEncoder::new(w).write_image(raw, wd, ht, ExtendedColorType::Rgb8),
        }
        .map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stable_and_distinct() {
        let c: Vec<[u8; 3]> = (0..8).map(slot_colour).collect();
        assert_eq!(c, (0..8).map(slot_colour).collect::<Vec<_>>());
        for i in 0..8 {
            for j in 0..i {
                let d: i32 = (0..3).map(|k| (i32::from(c[i][k]) - i32::from(c[j][k])).abs()).sum();
                assert!(d > 60, "slots {i} and {j} look alike: {:?} {:?}", c[i], c[j]);
            }
        }
    }

    #[test]
    fn tint_boundary_and_dimmed_void() {
        // 4×1: void, slot 0, slot 0, slot 1 → dimmed, tinted, boundary, boundary.
        let rgb = vec![200u8; 12];
        let img = render(&rgb, 4, 1, &[VOID, 0, 0, 1]);
        assert_eq!(img.get_pixel(0, 0).0, [75, 75, 75]);
        assert_eq!(img.get_pixel(2, 0).0, BOUNDARY);
        assert_eq!(img.get_pixel(3, 0).0, BOUNDARY);
        let p = img.get_pixel(1, 0).0;
        assert_ne!(p, [200, 200, 200]);
        assert_ne!(p, BOUNDARY);
    }
}
