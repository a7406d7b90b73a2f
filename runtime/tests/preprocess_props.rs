//! Property tests of the preprocessing on random frame sizes, pixel formats, strides and contents:
//! whatever a camera or decoder hands over, the output has the model's shape, stays in the range the
//! normalisation allows, and depends only on the pixels (not on their layout in memory).

use msf_models::Preprocess;
use msf_runtime::{preprocess, ImageView, PixelFormat, Preprocessor};
use proptest::prelude::*;

fn cfg(in_graph: bool) -> Preprocess {
    Preprocess::upstream(224, in_graph)
}

/// (width, height, packed RGB8 bytes): sizes from 1×1 to wide, tall and larger-than-256 frames.
fn rgb_frame() -> impl Strategy<Value = (u32, u32, Vec<u8>)> {
    (1u32..300, 1u32..300).prop_flat_map(|(w, h)| (Just(w), Just(h), proptest::collection::vec(any::<u8>(), (w * h * 3) as usize)))
}

/// Repack packed RGB8 into `format` with `pad` bytes after each row (alpha bytes set to `alpha`).
fn repack(rgb: &[u8], w: u32, h: u32, format: PixelFormat, pad: usize, alpha: u8) -> (Vec<u8>, usize) {
    let bpp = format.bytes_per_pixel();
    let stride = w as usize * bpp + pad;
    let mut out = vec![0xAB; stride * h as usize];
    for y in 0..h as usize {
        for x in 0..w as usize {
            let s = &rgb[(y * w as usize + x) * 3..][..3];
            let d = &mut out[y * stride + x * bpp..][..bpp];
            match format {
                PixelFormat::Rgb8 => d.copy_from_slice(s),
                PixelFormat::Bgr8 => d.copy_from_slice(&[s[2], s[1], s[0]]),
                PixelFormat::Rgba8 => d.copy_from_slice(&[s[0], s[1], s[2], alpha]),
                PixelFormat::Bgra8 => d.copy_from_slice(&[s[2], s[1], s[0], alpha]),
                PixelFormat::Gray8 => d[0] = s[0],
            }
        }
    }
    (out, stride)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Shape and range: (3, S, S) finite values within [(0 − mean)/std, (255 − mean)/std] per channel
    /// (bilinear and the antialiased resize never overshoot; the bicubic step may, slightly).
    #[test]
    fn output_has_the_model_shape_and_range((w, h, rgb) in rgb_frame(), in_graph in any::<bool>()) {
        let p = cfg(in_graph);
        let out = preprocess(&ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap(), &p).unwrap();
        let s = if in_graph { p.image_size } else { p.backbone_size };
        prop_assert_eq!(out.len(), 3 * s * s);
        // The bicubic step (Keys, a = −0.75) overshoots by at most (S² − 1)/2 of the range in 2-D,
        // S = Σ|w| ≤ 1.375 being the largest absolute weight sum of one axis.
        let overshoot = (1.375f32 * 1.375 - 1.0) / 2.0;
        let slack = |c: usize| if in_graph { 1e-4 } else { overshoot * 255.0 / p.std[c] };
        for c in 0..3 {
            let (lo, hi) = ((0.0 - p.mean[c]) / p.std[c], (255.0 - p.mean[c]) / p.std[c]);
            for &v in &out[c * s * s..(c + 1) * s * s] {
                prop_assert!(v.is_finite());
                prop_assert!(v >= lo - slack(c) && v <= hi + slack(c), "channel {} value {} outside [{}, {}]", c, v, lo, hi);
            }
        }
    }

    /// The same pixels in any channel order, with any alpha and any row padding, give the same input.
    #[test]
    fn layout_does_not_change_the_result((w, h, rgb) in rgb_frame(), pad in 0usize..9, alpha in any::<u8>(), f in 0usize..4) {
        let p = cfg(true);
        let want = preprocess(&ImageView::packed(&rgb, w, h, PixelFormat::Rgb8).unwrap(), &p).unwrap();
        let format = [PixelFormat::Rgb8, PixelFormat::Bgr8, PixelFormat::Rgba8, PixelFormat::Bgra8][f];
        let (buf, stride) = repack(&rgb, w, h, format, pad, alpha);
        let got = preprocess(&ImageView::new(&buf, w, h, stride, format).unwrap(), &p).unwrap();
        prop_assert!(got == want, "{:?} with {} bytes of padding differs from packed RGB", format, pad);
    }

    /// Grey input is RGB with R = G = B.
    #[test]
    fn grey_is_replicated_rgb((w, h, rgb) in rgb_frame(), pad in 0usize..5) {
        let p = cfg(true);
        let grey_rgb: Vec<u8> = rgb.chunks_exact(3).flat_map(|px| [px[0]; 3]).collect();
        let want = preprocess(&ImageView::packed(&grey_rgb, w, h, PixelFormat::Rgb8).unwrap(), &p).unwrap();
        let (buf, stride) = repack(&rgb, w, h, PixelFormat::Gray8, pad, 0);
        let got = preprocess(&ImageView::new(&buf, w, h, stride, PixelFormat::Gray8).unwrap(), &p).unwrap();
        prop_assert!(got == want);
    }

    /// A reused preprocessor (the video path) gives what a fresh one gives, whatever came before.
    #[test]
    fn reuse_across_sizes_is_stateless(frames in proptest::collection::vec(rgb_frame(), 1..4)) {
        let p = cfg(false);
        let mut pre = Preprocessor::new(&p).unwrap();
        let mut out = vec![0.0; pre.output_len()];
        for (w, h, rgb) in &frames {
            let v = ImageView::packed(rgb, *w, *h, PixelFormat::Rgb8).unwrap();
            pre.run(&v, &mut out).unwrap();
            prop_assert!(out == preprocess(&v, &p).unwrap());
        }
    }

    /// Views that do not fit their buffer are errors, never out-of-bounds reads or panics.
    #[test]
    fn bad_views_are_errors(len in 0usize..4000, w in 0u32..70, h in 0u32..70, stride in 0usize..300, f in 0usize..5) {
        let format = [PixelFormat::Rgb8, PixelFormat::Bgr8, PixelFormat::Rgba8, PixelFormat::Bgra8, PixelFormat::Gray8][f];
        let buf = vec![7u8; len];
        let fits = w > 0 && h > 0 && stride >= w as usize * format.bytes_per_pixel()
            && len >= (h as usize - 1) * stride + w as usize * format.bytes_per_pixel();
        match ImageView::new(&buf, w, h, stride, format) {
            Ok(v) => {
                prop_assert!(fits);
                prop_assert!(preprocess(&v, &cfg(true)).is_ok());
            }
            Err(_) => prop_assert!(!fits),
        }
    }
}
