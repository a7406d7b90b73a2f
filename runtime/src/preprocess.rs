//! Upstream eval preprocessing (spec §2), reproduced to the grey level.
//!
//! 1. centre crop to the largest square (`s = min(h, w)`, `top = (h − s) / 2`, `left = (w − s) / 2`,
//!    integer division) — done by slicing the borrowed view, no copy; other [`crate::fit::Fit`]s
//!    give other rectangles of the frame ([`Preprocessor::run_placed`]);
//! 2. resize the uint8 crop to `image_size`² with torchvision v2 `Resize(antialias=True)` semantics:
//!    PyTorch's `_upsample_bilinear2d_aa` uint8 path = Pillow-style separable triangle filter whose
//!    support grows with the downscale factor, int16 fixed-point weights, **horizontal pass first**,
//!    rounded to uint8 after each pass;
//! 3. normalise `(x − mean) / std` on the 0..255 scale into f32 NCHW, RGB;
//! 4. when the graph does not resize (`backbone_resize_in_graph == false`), the bicubic
//!    `image_size → backbone_size` resize of PyTorch `F.interpolate(mode="bicubic",
//!    align_corners=False)` on the normalised floats.
//!
//! Step 2 uses `fast_image_resize`'s `Bilinear` convolution, whose coefficients, int16 precision
//! choice and rounding are those of Pillow-SIMD, as are PyTorch's. One thing differs: for u8
//! images fast_image_resize runs the *vertical* pass first when both are needed, and the uint8
//! rounding between the passes then differs from PyTorch by 1 on a few % of pixels. So we run two
//! single-axis resizes ourselves (width, then height), each of which fast_image_resize performs as
//! exactly one pass. The centre crop is likewise given to it as a sub-view (not as
//! `ResizeOptions::crop`): with a crop box it would let the filter read pixels outside the box, where
//! PyTorch, resizing the cropped tensor, clamps the filter to the crop edge.

use std::marker::PhantomData;

use fast_image_resize as fir;
use fir::images::{TypedImage, TypedImageRef};
use fir::pixels::{InnerPixel, U8x3, U8x4, U8};
use msf_models::Preprocess;

use crate::error::{Error, Result};
use crate::fit::{Fit, Placement, Rect};
use crate::view::{ImageView, PixelFormat};

/// `fast_image_resize` view over our strided buffer: rows are cast in place (pixels of `u8`
/// components have alignment 1, so the cast always succeeds).
struct FirView<'a, P> {
    view: ImageView<'a>,
    _pixel: PhantomData<P>,
}

impl<'a, P> FirView<'a, P> {
    fn new(view: ImageView<'a>) -> Self {
        FirView {
            view,
            _pixel: PhantomData,
        }
    }
}

// SAFETY: every row yielded has exactly `width` pixels (`ImageView::new` checked that the buffer
// holds them) and rows are yielded in order from `start_row`, as the trait requires.
unsafe impl<P: InnerPixel + bytemuck::Pod> fir::ImageView for FirView<'_, P> {
    type Pixel = P;

    fn width(&self) -> u32 {
        self.view.width
    }

    fn height(&self) -> u32 {
        self.view.height
    }

    fn iter_rows(&self, start_row: u32) -> impl Iterator<Item = &[P]> {
        let row_bytes = self.view.width as usize * P::size();
        let v = &self.view;
        (start_row.min(v.height)..v.height).map(move |y| {
            let off = y as usize * v.stride;
            bytemuck::cast_slice(&v.data[off..off + row_bytes])
        })
    }
}

/// PyTorch's bicubic taps per axis, shared with the exporter's in-graph resize.
pub use msf_models::interpolate::CubicAxis;

/// Bicubic resize of a (C, H, W) f32 image with separate row/column plans; `tmp` is scratch.
///
/// Each output is `Σ_j wy_j · (Σ_i wx_i · src[y_j][x_i])`, accumulated in tap order like PyTorch's
/// `Interpolate` (inner sum along x first). Doing the x pass once per needed source row and reusing
/// it gives the same sums.
pub fn bicubic_resize_chw(
    src: &[f32],
    channels: usize,
    ys: &CubicAxis,
    xs: &CubicAxis,
    tmp: &mut Vec<f32>,
    dst: &mut [f32],
) {
    let (in_h, in_w, out_h, out_w) = (ys.in_size(), xs.in_size(), ys.out_size(), xs.out_size());
    assert_eq!(src.len(), channels * in_h * in_w, "bicubic source size");
    assert_eq!(
        dst.len(),
        channels * out_h * out_w,
        "bicubic destination size"
    );
    tmp.clear();
    tmp.resize(in_h * out_w, 0.0);
    for c in 0..channels {
        let plane = &src[c * in_h * in_w..(c + 1) * in_h * in_w];
        for (y, row) in plane.chunks_exact(in_w).enumerate() {
            for (o, (ix, w)) in tmp[y * out_w..(y + 1) * out_w].iter_mut().zip(xs.taps()) {
                let mut acc = row[ix[0]] * w[0];
                acc += row[ix[1]] * w[1];
                acc += row[ix[2]] * w[2];
                acc += row[ix[3]] * w[3];
                *o = acc;
            }
        }
        let out = &mut dst[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (out_row, (iy, w)) in out.chunks_exact_mut(out_w).zip(ys.taps()) {
            let r = [0, 1, 2, 3].map(|k| &tmp[iy[k] * out_w..(iy[k] + 1) * out_w]);
            for (x, o) in out_row.iter_mut().enumerate() {
                let mut acc = r[0][x] * w[0];
                acc += r[1][x] * w[1];
                acc += r[2][x] * w[2];
                acc += r[3][x] * w[3];
                *o = acc;
            }
        }
    }
}

/// Reusable preprocessing state: the resizer, its coefficient-free scratch buffers and the bicubic
/// plan, so that a video loop allocates nothing per frame once the first frame has been seen.
///
/// ```
/// use msf_runtime::{ImageView, PixelFormat, Preprocessor};
/// // Upstream eval: centre crop, 256 px, ImageNet mean/std; the bicubic 256→224 is in the graph.
/// let cfg = msf_models::Preprocess::upstream(224, true);
/// let mut pre = Preprocessor::new(&cfg)?;
/// let mut input = vec![0f32; pre.output_len()]; // (3, S, S), reused for every frame
/// let frame = vec![255u8; 300 * 200 * 3];
/// pre.run(&ImageView::packed(&frame, 300, 200, PixelFormat::Rgb8)?, &mut input)?;
/// // White normalises to (1 − mean) / std in every channel.
/// assert!((input[0] - (1.0 - 0.485) / 0.229).abs() < 1e-4);
/// # Ok::<(), msf_runtime::Error>(())
/// ```
pub struct Preprocessor {
    p: Preprocess,
    resizer: fir::Resizer,
    /// Width-resized source rectangle (pixel format of the input).
    tmp: Vec<u8>,
    /// The `image_size`² uint8 result (pixel format of the input).
    resized: Vec<u8>,
    /// The resized rectangle before it is placed on the canvas (pad).
    placed: Vec<u8>,
    /// Normalised (3, image_size, image_size) before the bicubic step, and its row scratch.
    norm: Vec<f32>,
    cubic_tmp: Vec<f32>,
    cubic: Option<CubicAxis>,
}

impl Preprocessor {
    pub fn new(p: &Preprocess) -> Result<Self> {
        if p.image_size == 0 || p.image_size > 1 << 15 {
            return Err(Error::InvalidConfig(format!(
                "image_size {} not in 1..=32768",
                p.image_size
            )));
        }
        if !p.backbone_resize_in_graph && (p.backbone_size == 0 || p.backbone_size > 1 << 15) {
            return Err(Error::InvalidConfig(format!(
                "backbone_size {} not in 1..=32768",
                p.backbone_size
            )));
        }
        if p.std.iter().chain(&p.mean).any(|v| !v.is_finite()) || p.std.contains(&0.0) {
            return Err(Error::InvalidConfig(format!(
                "mean {:?} / std {:?} must be finite, std non-zero",
                p.mean, p.std
            )));
        }
        if !p.cubic_a.is_finite() {
            return Err(Error::InvalidConfig(format!(
                "cubic_a {} is not finite",
                p.cubic_a
            )));
        }
        let cubic = (!p.backbone_resize_in_graph)
            .then(|| CubicAxis::new(p.image_size, p.backbone_size, p.cubic_a));
        Ok(Preprocessor {
            p: p.clone(),
            resizer: fir::Resizer::new(),
            tmp: Vec::new(),
            resized: Vec::new(),
            placed: Vec::new(),
            norm: Vec::new(),
            cubic_tmp: Vec::new(),
            cubic,
        })
    }

    pub fn config(&self) -> &Preprocess {
        &self.p
    }

    /// Side S of the (3, S, S) output: `image_size`, or `backbone_size` when the bicubic step is ours.
    pub fn output_size(&self) -> usize {
        self.p.graph_input_size()
    }

    /// Number of f32 in one output image, 3·S².
    pub fn output_len(&self) -> usize {
        3 * self.output_size() * self.output_size()
    }

    /// Steps 1–4: write one (3, S, S) RGB f32 image into `out` (length [`Self::output_len`]).
    pub fn run(&mut self, view: &ImageView, out: &mut [f32]) -> Result<()> {
        let p = Fit::Crop.placements(view.width, view.height, self.p.image_size as u32)?[0];
        self.run_placed(view, &p, out)
    }

    /// Steps 2–4 for one model view of the frame (see [`crate::fit`]): the placement's frame
    /// rectangle resized into its input rectangle, the rest of the input the mean colour (0 once
    /// normalised). With [`Fit::Crop`]'s placement this is [`Self::run`].
    pub fn run_placed(&mut self, view: &ImageView, placement: &Placement, out: &mut [f32]) -> Result<()> {
        let expected = self.output_len();
        if out.len() != expected {
            return Err(Error::OutputSize {
                got: out.len(),
                expected,
                size: self.output_size(),
            });
        }
        self.place_resize(view, placement)?;
        let n = self.p.image_size;
        let fmt = view.format;
        match &self.cubic {
            None => normalise(&self.resized, fmt, &self.p, out),
            Some(axis) => {
                self.norm.resize(3 * n * n, 0.0);
                normalise(&self.resized, fmt, &self.p, &mut self.norm);
                bicubic_resize_chw(&self.norm, 3, axis, axis, &mut self.cubic_tmp, out);
            }
        }
        Ok(())
    }

    /// Steps 1–2 only: the `image_size`² uint8 RGB image (interleaved, `image_size`²·3 bytes) that
    /// upstream feeds to its normalisation. For checks against upstream and for overlays.
    pub fn resize_rgb8(&mut self, view: &ImageView, out: &mut [u8]) -> Result<()> {
        let n = self.p.image_size;
        if out.len() != n * n * 3 {
            return Err(Error::OutputSize {
                got: out.len(),
                expected: n * n * 3,
                size: n,
            });
        }
        let p = Fit::Crop.placements(view.width, view.height, n as u32)?[0];
        self.place_resize(view, &p)?;
        let (bpp, off) = (view.format.bytes_per_pixel(), view.format.rgb_offsets());
        for (o, px) in out.chunks_exact_mut(3).zip(self.resized.chunks_exact(bpp)) {
            o.copy_from_slice(&[px[off[0]], px[off[1]], px[off[2]]]);
        }
        Ok(())
    }

    /// The placement's frame rectangle, antialiased bilinear into its input rectangle of an
    /// `image_size`² canvas, into `self.resized` (input's layout). Every channel goes through the
    /// same integer filter, so resizing BGR/RGBA/grey as they are and reordering afterwards equals
    /// converting to RGB first.
    fn place_resize(&mut self, view: &ImageView, p: &Placement) -> Result<()> {
        let n = self.p.image_size;
        let (f, i) = (p.frame, p.input);
        let bad = || Error::InvalidConfig(format!("placement {p:?} does not fit a {}×{} frame and a {n}² input", view.width, view.height));
        if p.size as usize != n || i.x.checked_add(i.width).is_none_or(|e| e as usize > n) || i.y.checked_add(i.height).is_none_or(|e| e as usize > n) {
            return Err(bad());
        }
        let sub = view.crop(f.x, f.y, f.width, f.height).ok_or_else(bad)?;
        match view.format {
            PixelFormat::Gray8 => self.place_resize_typed::<U8>(sub, i),
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => self.place_resize_typed::<U8x3>(sub, i),
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => self.place_resize_typed::<U8x4>(sub, i),
        }
        if (i.width as usize, i.height as usize) != (n, n) {
            self.pad_around(view.format, i);
        }
        Ok(())
    }

    fn place_resize_typed<P: fir::PixelTrait + bytemuck::Pod>(&mut self, sub: ImageView, into: Rect) {
        let n = self.p.image_size;
        let (sw, sh) = (sub.width as usize, sub.height as usize);
        let (w, h) = (into.width as usize, into.height as usize);
        let bpp = P::size();
        // The resized rectangle, packed, before it is placed on the canvas.
        let mut placed = std::mem::take(&mut self.placed);
        placed.resize(w * h * bpp, 0);
        let opts = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear))
            .use_alpha(false);
        // Pass 1, width only: sw × sh → w × sh. The same size is an identity (PyTorch's weights
        // are then exactly 1 and 0): copy.
        self.tmp.resize(w * sh * bpp, 0);
        if sw == w {
            for (y, dst) in self.tmp.chunks_exact_mut(w * bpp).enumerate() {
                let off = y * sub.stride;
                dst.copy_from_slice(&sub.data[off..off + w * bpp]);
            }
        } else {
            let src = FirView::<P>::new(sub);
            // The sizes below match the buffers just sized and pixel types match, so these cannot fail.
            let mut mid = TypedImage::<P>::from_buffer(w as u32, sh as u32, &mut self.tmp).expect("tmp size");
            self.resizer.resize_typed(&src, &mut mid, &opts).expect("width pass");
        }
        // Pass 2, height only: w × sh → w × h.
        if sh == h {
            placed.copy_from_slice(&self.tmp);
        } else {
            let mid = TypedImageRef::<P>::from_buffer(w as u32, sh as u32, &self.tmp).expect("tmp size");
            let mut dst = TypedImage::<P>::from_buffer(w as u32, h as u32, &mut placed).expect("dst size");
            self.resizer.resize_typed(&mid, &mut dst, &opts).expect("height pass");
        }
        if (w, h) == (n, n) {
            std::mem::swap(&mut self.resized, &mut placed);
        } else {
            self.resized.resize(n * n * bpp, 0);
            for (y, row) in placed.chunks_exact(w * bpp).enumerate() {
                let off = ((into.y as usize + y) * n + into.x as usize) * bpp;
                self.resized[off..off + w * bpp].copy_from_slice(row);
            }
        }
        self.placed = placed;
    }

    /// Fill the canvas outside `inner` with the normalisation's mean colour (rounded to uint8; grey
    /// frames take the mean of the three), so the padding is ~0 for the model.
    fn pad_around(&mut self, fmt: PixelFormat, inner: Rect) {
        let n = self.p.image_size;
        let bpp = fmt.bytes_per_pixel();
        let mean = self.p.mean.map(|v| v.round().clamp(0.0, 255.0) as u8);
        let mut px = [255u8; 4];
        match fmt {
            PixelFormat::Gray8 => px[0] = (self.p.mean.iter().sum::<f32>() / 3.0).round().clamp(0.0, 255.0) as u8,
            _ => {
                for (c, off) in fmt.rgb_offsets().into_iter().enumerate() {
                    px[off] = mean[c];
                }
            }
        }
        let (x0, x1) = (inner.x as usize, (inner.x + inner.width) as usize);
        let (y0, y1) = (inner.y as usize, (inner.y + inner.height) as usize);
        for (y, row) in self.resized.chunks_exact_mut(n * bpp).enumerate() {
            for (x, p) in row.chunks_exact_mut(bpp).enumerate() {
                if y < y0 || y >= y1 || x < x0 || x >= x1 {
                    p.copy_from_slice(&px[..bpp]);
                }
            }
        }
    }
}

/// `(x − mean) / std` per channel in f32, exactly as upstream's `sub` then `div` (not a multiply by
/// a reciprocal, which would differ in the last bit), from interleaved pixels to planar RGB.
fn normalise(pixels: &[u8], fmt: PixelFormat, p: &Preprocess, out: &mut [f32]) {
    let (bpp, off) = (fmt.bytes_per_pixel(), fmt.rgb_offsets());
    let plane = pixels.len() / bpp;
    for c in 0..3 {
        let (m, s) = (p.mean[c], p.std[c]);
        for (o, px) in out[c * plane..(c + 1) * plane]
            .iter_mut()
            .zip(pixels.chunks_exact(bpp))
        {
            *o = (f32::from(px[off[c]]) - m) / s;
        }
    }
}

/// One image: write the (3, S, S) model input, S = `p.graph_input_size()`, into `out`.
/// For many frames keep a [`Preprocessor`] instead (it reuses its buffers).
pub fn preprocess_into(view: &ImageView, p: &Preprocess, out: &mut [f32]) -> Result<()> {
    Preprocessor::new(p)?.run(view, out)
}

/// One image: the (3, S, S) model input as a new vector.
pub fn preprocess(view: &ImageView, p: &Preprocess) -> Result<Vec<f32>> {
    let mut pre = Preprocessor::new(p)?;
    let mut out = vec![0.0; pre.output_len()];
    pre.run(view, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn upstream() -> Preprocess {
        Preprocess::upstream(224, true)
    }

    /// Deterministic pseudo-random bytes (xorshift), so tests need no rand crate.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Smooth-ish test image (gradients + noise) so that rounding ties are exercised like photos.
    fn photo_like(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let n = noise(w * h * 3, seed);
        (0..w * h * 3)
            .map(|i| {
                let (px, c) = (i / 3, i % 3);
                let (x, y) = (px % w, px / w);
                let g = (x * 255 / w.max(1) + y * 131 / h.max(1) + c * 60) % 256;
                ((g as u32 * 3 + u32::from(n[i]) / 4) / 4 + u32::from(n[i] % 64)).min(255) as u8
            })
            .collect()
    }

    fn rgb8_of(view: &ImageView, p: &Preprocess) -> Vec<u8> {
        let mut out = vec![0u8; p.image_size * p.image_size * 3];
        Preprocessor::new(p)
            .unwrap()
            .resize_rgb8(view, &mut out)
            .unwrap();
        out
    }

    // ---------------------------------------------------------------------------------------------
    // Independent scalar port of PyTorch's uint8 antialiased bilinear (`_upsample_bilinear2d_aa`,
    // `_compute_index_ranges_int16_weights` + `basic_loop_aa_*`), written from the ATen source, to
    // check the fast_image_resize arrangement on sizes the fixtures do not cover.

    fn torch_aa_weights(in_size: usize, out_size: usize) -> (Vec<(usize, Vec<i16>)>, u32) {
        let scale = in_size as f64 / out_size as f64;
        let support = if scale >= 1.0 { scale } else { 1.0 }; // interp_size (2) * 0.5 * scale
        let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
        let max_interp = support.ceil() as i64 * 2 + 1;
        let mut wt_max = 0.0f64;
        let mut rows = Vec::new();
        for i in 0..out_size {
            let center = scale * (i as f64 + 0.5);
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xsize =
                (((center + support + 0.5) as i64).min(in_size as i64) - xmin).clamp(0, max_interp);
            let mut w: Vec<f64> = (0..xsize)
                .map(|j| {
                    let x = ((j + xmin) as f64 - center + 0.5) * invscale;
                    (1.0 - x.abs()).max(0.0)
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            wt_max = w.iter().cloned().fold(wt_max, f64::max);
            rows.push((xmin as usize, w));
        }
        let mut prec = 0u32;
        while prec < 22 {
            if (0.5 + wt_max * f64::from(1u32 << (prec + 1))) as i64 >= 1 << 15 {
                break;
            }
            prec += 1;
        }
        let rows = rows
            .into_iter()
            .map(|(s, w)| {
                let q = w
                    .iter()
                    .map(|&v| {
                        let v = v * f64::from(1u32 << prec);
                        (if v < 0.0 { -0.5 + v } else { 0.5 + v }) as i16
                    })
                    .collect();
                (s, q)
            })
            .collect();
        (rows, prec)
    }

    /// Interleaved u8 (w×h×ch) → (ow×oh×ch), width pass first, rounding to u8 in between.
    fn torch_resize_aa(src: &[u8], w: usize, h: usize, ch: usize, ow: usize, oh: usize) -> Vec<u8> {
        // Width pass over rows (src stride w), output rows of ow.
        let mid = if w == ow {
            src.to_vec()
        } else {
            let (wts, prec) = torch_aa_weights(w, ow);
            let mut out = vec![0u8; ow * h * ch];
            for y in 0..h {
                for (o, (start, ws)) in wts.iter().enumerate() {
                    for c in 0..ch {
                        let mut acc: i64 = 1 << (prec - 1);
                        for (k, &wk) in ws.iter().enumerate() {
                            acc += i64::from(src[(y * w + start + k) * ch + c]) * i64::from(wk);
                        }
                        out[(y * ow + o) * ch + c] = (acc >> prec).clamp(0, 255) as u8;
                    }
                }
            }
            out
        };
        if h == oh {
            return mid;
        }
        // Height pass: line = column x, position = row.
        let (wts, prec) = torch_aa_weights(h, oh);
        let mut out = vec![0u8; ow * oh * ch];
        for x in 0..ow {
            for (o, (start, ws)) in wts.iter().enumerate() {
                for c in 0..ch {
                    let mut acc: i64 = 1 << (prec - 1);
                    for (k, &wk) in ws.iter().enumerate() {
                        acc += i64::from(mid[((start + k) * ow + x) * ch + c]) * i64::from(wk);
                    }
                    out[(o * ow + x) * ch + c] = (acc >> prec).clamp(0, 255) as u8;
                }
            }
        }
        out
    }

    fn center_crop_copy(src: &[u8], w: usize, h: usize, ch: usize) -> (Vec<u8>, usize) {
        let s = w.min(h);
        let (l, t) = ((w - s) / 2, (h - s) / 2);
        let mut out = Vec::with_capacity(s * s * ch);
        for y in t..t + s {
            out.extend_from_slice(&src[(y * w + l) * ch..(y * w + l + s) * ch]);
        }
        (out, s)
    }

    #[test]
    fn stretch_and_pad_match_the_scalar_port_of_pytorch() {
        // Stretch: the whole frame resized to n×n (torchvision `Resize((n, n))`). Pad: resized to
        // the aspect-kept rectangle, on a canvas of the mean colour.
        let p = upstream();
        let n = p.image_size;
        let mut pre = Preprocessor::new(&p).unwrap();
        for (i, &(w, h)) in [(640usize, 480usize), (100, 37), (37, 100), (301, 257), (3, 3), (854, 480)].iter().enumerate() {
            let img = photo_like(w, h, 40 + i as u64);
            let view = ImageView::packed(&img, w as u32, h as u32, PixelFormat::Rgb8).unwrap();
            let st = Fit::Stretch.placements(w as u32, h as u32, n as u32).unwrap()[0];
            pre.place_resize(&view, &st).unwrap();
            assert!(pre.resized == torch_resize_aa(&img, w, h, 3, n, n), "stretch {w}×{h}");
            let pad = Fit::Pad.placements(w as u32, h as u32, n as u32).unwrap()[0];
            pre.place_resize(&view, &pad).unwrap();
            let (iw, ih, ix, iy) = (pad.input.width as usize, pad.input.height as usize, pad.input.x as usize, pad.input.y as usize);
            let inner = torch_resize_aa(&img, w, h, 3, iw, ih);
            let mut want: Vec<u8> = [124u8, 116, 104].repeat(n * n);
            for y in 0..ih {
                want[((iy + y) * n + ix) * 3..][..iw * 3].copy_from_slice(&inner[y * iw * 3..][..iw * 3]);
            }
            assert!(pre.resized == want, "pad {w}×{h}");
            // Normalised, the padding is ~0.
            let mut out = vec![0.0; pre.output_len()];
            pre.run_placed(&view, &pad, &mut out).unwrap();
            if ih < n {
                assert!(out[0].abs() < 0.01 && out[n * n].abs() < 0.01 && out[2 * n * n].abs() < 0.01, "{:?}", (out[0], out[n * n]));
            }
        }
        // A placement that does not fit the frame or the input is an error, not a panic.
        let img = vec![0u8; 10 * 10 * 3];
        let view = ImageView::packed(&img, 10, 10, PixelFormat::Rgb8).unwrap();
        let mut bad = Fit::Crop.placements(20, 20, n as u32).unwrap()[0];
        assert!(pre.place_resize(&view, &bad).is_err());
        bad = Fit::Crop.placements(10, 10, n as u32 + 1).unwrap()[0];
        assert!(pre.place_resize(&view, &bad).is_err());
    }

    #[test]
    fn matches_scalar_port_of_pytorch_on_many_sizes() {
        // Downscales with integer and fractional factors (incl. the fixtures' 500, 512, 872),
        // odd/even margins, identity (256) and upscales (crop < 256, also 1×1).
        let sizes = [
            (741, 500),
            (1000, 872),
            (512, 512),
            (500, 500),
            (301, 257),
            (257, 300),
            (256, 400),
            (1920, 1080),
            (640, 480),
            (255, 255),
            (100, 37),
            (3, 3),
            (1, 1),
            (2, 5),
            (2048, 1531),
        ];
        let p = upstream();
        let mut worst = 0usize;
        for (i, &(w, h)) in sizes.iter().enumerate() {
            let img = photo_like(w, h, i as u64 + 1);
            let view = ImageView::packed(&img, w as u32, h as u32, PixelFormat::Rgb8).unwrap();
            let ours = rgb8_of(&view, &p);
            let (crop, s) = center_crop_copy(&img, w, h, 3);
            let theirs = torch_resize_aa(&crop, s, s, 3, 256, 256);
            let diff = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            worst = worst.max(diff);
            assert_eq!(
                diff, 0,
                "{w}x{h}: {diff} values differ from the PyTorch port"
            );
        }
        eprintln!(
            "scalar PyTorch port: {} sizes, all bit-identical (worst {worst} differing values)",
            sizes.len()
        );
    }

    /// fast_image_resize picks SIMD code at run time; every variant must give the same bytes, so
    /// that results do not depend on the user's CPU.
    #[test]
    fn all_cpu_extensions_agree() {
        let p = upstream();
        let (w, h) = (777usize, 600usize);
        let rgb = photo_like(w, h, 42);
        let alpha = noise(w * h, 43);
        let rgba: Vec<u8> = rgb
            .chunks_exact(3)
            .zip(&alpha)
            .flat_map(|(c, &a)| [c[0], c[1], c[2], a])
            .collect();
        let grey: Vec<u8> = rgb.chunks_exact(3).map(|c| c[0]).collect();
        for (buf, fmt) in [
            (&rgb, PixelFormat::Rgb8),
            (&rgba, PixelFormat::Rgba8),
            (&grey, PixelFormat::Gray8),
        ] {
            let view = ImageView::packed(buf, w as u32, h as u32, fmt).unwrap();
            let mut reference: Option<Vec<u8>> = None;
            #[allow(unused_mut)]
            let mut exts = vec![fir::CpuExtensions::None];
            #[cfg(target_arch = "x86_64")]
            exts.extend([fir::CpuExtensions::Sse4_1, fir::CpuExtensions::Avx2]);
            #[cfg(target_arch = "aarch64")]
            exts.push(fir::CpuExtensions::Neon);
            for ext in exts.into_iter().filter(|e| e.is_supported()) {
                let mut pre = Preprocessor::new(&p).unwrap();
                // SAFETY: only extensions this CPU supports are set.
                unsafe { pre.resizer.set_cpu_extensions(ext) };
                let mut out = vec![0u8; 256 * 256 * 3];
                pre.resize_rgb8(&view, &mut out).unwrap();
                match &reference {
                    None => reference = Some(out),
                    Some(r) => assert!(*r == out, "{fmt:?}: {ext:?} differs from the scalar code"),
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Upstream goldens.

    fn fixtures_dir() -> PathBuf {
        std::env::var_os("MSF_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../shared/fixtures"
                ))
            })
    }

    #[test]
    fn fixture_images_match_upstream_goldens() {
        let dir = fixtures_dir();
        assert!(
            dir.join("images").is_dir(),
            "fixtures not found at {} (set MSF_FIXTURES)",
            dir.display()
        );
        let p = upstream();
        let mut pre = Preprocessor::new(&p).unwrap();
        for name in [
            "camera.png",
            "hubble_deep_field.jpg",
            "ihc.png",
            "logo.png",
            "motorcycle_left.png",
        ] {
            let stem = name.rsplit_once('.').unwrap().0;
            let img =
                crate::load_image(&dir.join("images").join(name), &Default::default()).unwrap();
            let golden: ndarray::Array4<f32> =
                ndarray_npy::read_npy(dir.join("ref").join(format!("{stem}.input.npy"))).unwrap();
            assert_eq!(golden.shape(), &[1, 3, 256, 256]);
            let view = ImageView::from_rgb_image(&img).unwrap();

            let mut u8s = vec![0u8; 256 * 256 * 3];
            pre.resize_rgb8(&view, &mut u8s).unwrap();
            let mut f = vec![0f32; pre.output_len()];
            pre.run(&view, &mut f).unwrap();

            let (mut max_u8, mut differ, mut max_f) = (0i32, 0usize, 0f32);
            for c in 0..3 {
                for y in 0..256 {
                    for x in 0..256 {
                        let g = golden[[0, c, y, x]];
                        let gu = (g * p.std[c] + p.mean[c]).round() as i32;
                        let d = (i32::from(u8s[(y * 256 + x) * 3 + c]) - gu).abs();
                        max_u8 = max_u8.max(d);
                        differ += usize::from(d != 0);
                        max_f = max_f.max((f[(c * 256 + y) * 256 + x] - g).abs());
                    }
                }
            }
            let total = 3 * 256 * 256;
            eprintln!(
                "{name:24} {}x{}: uint8 max|Δ| = {max_u8}, differing {differ}/{total} ({:.4} %), float max|Δ| = {max_f:.3e}",
                img.width(),
                img.height(),
                100.0 * differ as f64 / total as f64
            );
            assert!(max_u8 <= 1, "{name}: uint8 max |Δ| {max_u8} > 1");
            assert!(max_f <= 1.0 / 57.0 + 1e-6, "{name}: float max |Δ| {max_f}");
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Pixel formats, strides, views.

    #[test]
    fn every_pixel_format_equals_the_rgb_path() {
        let p = upstream();
        for &(w, h) in &[(300usize, 200usize), (199, 411), (128, 128)] {
            let rgb = photo_like(w, h, (w * h) as u64);
            let alpha = noise(w * h, 7);
            let want = rgb8_of(
                &ImageView::packed(&rgb, w as u32, h as u32, PixelFormat::Rgb8).unwrap(),
                &p,
            );
            let conv = |order: [usize; 3], with_alpha: bool| -> Vec<u8> {
                rgb.chunks_exact(3)
                    .zip(&alpha)
                    .flat_map(|(px, &a)| {
                        let mut v = vec![px[order[0]], px[order[1]], px[order[2]]];
                        if with_alpha {
                            v.push(a);
                        }
                        v
                    })
                    .collect()
            };
            for (fmt, buf) in [
                (PixelFormat::Bgr8, conv([2, 1, 0], false)),
                (PixelFormat::Rgba8, conv([0, 1, 2], true)),
                (PixelFormat::Bgra8, conv([2, 1, 0], true)),
            ] {
                let got = rgb8_of(
                    &ImageView::packed(&buf, w as u32, h as u32, fmt).unwrap(),
                    &p,
                );
                assert!(got == want, "{fmt:?} {w}x{h} differs from Rgb8");
                // And the float path agrees too.
                let a = preprocess(
                    &ImageView::packed(&buf, w as u32, h as u32, fmt).unwrap(),
                    &p,
                )
                .unwrap();
                let b = preprocess(
                    &ImageView::packed(&rgb, w as u32, h as u32, PixelFormat::Rgb8).unwrap(),
                    &p,
                )
                .unwrap();
                assert!(a == b, "{fmt:?} float output differs");
            }
            // Grey: same as RGB with R = G = B.
            let grey: Vec<u8> = rgb.chunks_exact(3).map(|px| px[1]).collect();
            let grey3: Vec<u8> = grey.iter().flat_map(|&g| [g, g, g]).collect();
            let want = rgb8_of(
                &ImageView::packed(&grey3, w as u32, h as u32, PixelFormat::Rgb8).unwrap(),
                &p,
            );
            let got = rgb8_of(
                &ImageView::packed(&grey, w as u32, h as u32, PixelFormat::Gray8).unwrap(),
                &p,
            );
            assert!(got == want, "Gray8 {w}x{h} differs from replicated RGB");
        }
    }

    #[test]
    fn padded_strides_give_the_packed_result() {
        let p = upstream();
        let (w, h) = (333usize, 250usize);
        let rgb = photo_like(w, h, 99);
        let want = rgb8_of(
            &ImageView::packed(&rgb, w as u32, h as u32, PixelFormat::Rgb8).unwrap(),
            &p,
        );
        // Padding that is not a multiple of the pixel size, filled with junk; last row unpadded.
        for pad in [1usize, 5, 64] {
            let stride = w * 3 + pad;
            let mut buf = noise(stride * (h - 1) + w * 3, pad as u64);
            for y in 0..h {
                buf[y * stride..y * stride + w * 3]
                    .copy_from_slice(&rgb[y * w * 3..(y + 1) * w * 3]);
            }
            let view = ImageView::new(&buf, w as u32, h as u32, stride, PixelFormat::Rgb8).unwrap();
            assert!(rgb8_of(&view, &p) == want, "stride {stride}");
        }
    }

    #[test]
    fn view_constructor_rejects_bad_buffers() {
        let buf = vec![0u8; 100];
        assert!(matches!(
            ImageView::new(&buf, 0, 5, 10, PixelFormat::Rgb8),
            Err(Error::ZeroSizeView { .. })
        ));
        assert!(matches!(
            ImageView::new(&buf, 5, 0, 15, PixelFormat::Rgb8),
            Err(Error::ZeroSizeView { .. })
        ));
        assert!(matches!(
            ImageView::new(&buf, 5, 2, 14, PixelFormat::Rgb8),
            Err(Error::StrideTooSmall { .. })
        ));
        // 4 rows of stride 30 need 3·30 + 15 = 105 bytes.
        assert!(matches!(
            ImageView::new(&buf, 5, 4, 30, PixelFormat::Rgb8),
            Err(Error::BufferTooShort { need: 105, .. })
        ));
        assert!(ImageView::new(&buf, 5, 4, 28, PixelFormat::Rgb8).is_ok()); // 3·28 + 15 = 99
        assert!(ImageView::new(&buf, 5, 4, 25, PixelFormat::Rgba8).is_ok()); // 3·25 + 20 = 95
                                                                             // Overflowing sizes are errors, not panics.
        assert!(ImageView::new(&buf, u32::MAX, u32::MAX, usize::MAX, PixelFormat::Rgba8).is_err());
        assert!(ImageView::packed(&buf, u32::MAX, 2, PixelFormat::Bgra8).is_err());
        // Crops stay inside.
        let v = ImageView::packed(&buf, 10, 10, PixelFormat::Gray8).unwrap();
        assert!(
            v.crop(5, 5, 6, 1).is_none()
                && v.crop(0, 0, 0, 1).is_none()
                && v.crop(u32::MAX, 0, 2, 1).is_none()
        );
        let c = v.crop(2, 3, 4, 5).unwrap();
        assert_eq!((c.width(), c.height(), c.stride()), (4, 5, 10));
        assert!(std::ptr::eq(&c.data()[0], &buf[32]));
    }

    #[test]
    fn centre_square_follows_upstream_integer_division() {
        let buf = vec![0u8; 7 * 4];
        let v = ImageView::packed(&buf, 7, 4, PixelFormat::Gray8).unwrap();
        let sq = v.center_square(); // left = (7 - 4) // 2 = 1
        assert_eq!((sq.width(), sq.height()), (4, 4));
        assert!(std::ptr::eq(&sq.data()[0], &buf[1]));
        let v = ImageView::packed(&buf, 4, 7, PixelFormat::Gray8).unwrap();
        assert!(std::ptr::eq(&v.center_square().data()[0], &buf[4])); // top = 1
    }

    #[test]
    fn output_and_config_errors() {
        let img = photo_like(20, 20, 3);
        let view = ImageView::packed(&img, 20, 20, PixelFormat::Rgb8).unwrap();
        let p = upstream();
        let mut short = vec![0f32; 10];
        assert!(matches!(
            preprocess_into(&view, &p, &mut short),
            Err(Error::OutputSize {
                expected: 196608,
                ..
            })
        ));
        let mut bad = p.clone();
        bad.std[1] = 0.0;
        assert!(matches!(
            Preprocessor::new(&bad),
            Err(Error::InvalidConfig(_))
        ));
        let mut bad = p.clone();
        bad.image_size = 0;
        assert!(matches!(
            Preprocessor::new(&bad),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn preprocessor_reuse_across_frame_sizes_is_stateless() {
        let p = upstream();
        let mut pre = Preprocessor::new(&p).unwrap();
        let a = photo_like(640, 480, 1);
        let b = photo_like(123, 456, 2);
        let va = ImageView::packed(&a, 640, 480, PixelFormat::Rgb8).unwrap();
        let vb = ImageView::packed(&b, 123, 456, PixelFormat::Rgb8).unwrap();
        let mut out1 = vec![0f32; pre.output_len()];
        let mut out2 = vec![0f32; pre.output_len()];
        pre.run(&va, &mut out1).unwrap();
        pre.run(&vb, &mut out2).unwrap();
        pre.run(&va, &mut out2).unwrap();
        assert!(out1 == out2);
        assert!(out1 == preprocess(&va, &p).unwrap());
    }

    // ---------------------------------------------------------------------------------------------
    // Bicubic (backbone resize outside the graph).

    #[test]
    fn bicubic_hand_computed() {
        // 1×4 → 1×2: scale 2, source x = 0.5 and 2.5, t = 0.5, a = −0.75 weights
        // [−0.09375, 0.59375, 0.59375, −0.09375]; taps clamp at the edges:
        // out0 = 0.59375·(0 + 1) − 0.09375·(0 + 2) = 0.40625, out1 = −0.09375·(1 + 3) + 0.59375·(2 + 3) = 2.59375.
        // Height 1 → 1 is the identity (t = 0 gives weights [0, 1, 0, 0]).
        let src = [0.0f32, 1.0, 2.0, 3.0];
        let (ys, xs) = (CubicAxis::new(1, 1, -0.75), CubicAxis::new(4, 2, -0.75));
        let mut dst = [0f32; 2];
        bicubic_resize_chw(&src, 1, &ys, &xs, &mut Vec::new(), &mut dst);
        assert_eq!(dst, [0.40625, 2.59375]);
        assert_eq!(xs.taps()[0].1, [-0.09375, 0.59375, 0.59375, -0.09375]);
        assert_eq!(ys.taps()[0].1, [0.0, 1.0, 0.0, 0.0]);
        // Same size is the identity.
        let v: Vec<f32> = (0..25).map(|i| i as f32 * 0.37 - 3.0).collect();
        let a = CubicAxis::new(5, 5, -0.75);
        let mut o = vec![0f32; 25];
        bicubic_resize_chw(&v, 1, &a, &a, &mut Vec::new(), &mut o);
        assert_eq!(o, v);
    }

    /// Goldens from a one-off numpy (float32) port of PyTorch's `upsample_bicubic2d`
    /// (`area_pixel_compute_source_index(cubic)`, `guard_index_and_lambda`,
    /// `get_cubic_upsample_coefficients` with A = −0.75, clamped taps, inner sum along x in tap order,
    /// written as a direct 4×4 loop), run on the (2, 8, 8) input
    /// `x[c,y,x] = ((c·64 + y·8 + x)·37 mod 101) / 10 − 5` (float32). numpy 2.x, printed with repr.
    #[test]
    fn bicubic_matches_numpy_port_of_pytorch() {
        let src: Vec<f32> = (0..2 * 64)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let run = |oh: usize, ow: usize| {
            let (ys, xs) = (CubicAxis::new(8, oh, -0.75), CubicAxis::new(8, ow, -0.75));
            let mut dst = vec![0f32; 2 * oh * ow];
            bicubic_resize_chw(&src, 2, &ys, &xs, &mut Vec::new(), &mut dst);
            move |c: usize, y: usize, x: usize| dst[(c * oh + y) * ow + x]
        };
        let down = run(7, 7); // the 256 → 224 ratio (8/7)
        let up = run(11, 5);
        let checks: [(f32, f32); 9] = [
            (down(0, 0, 0), -4.2941947),
            (down(0, 3, 4), -1.2187243),
            (down(0, 6, 6), -3.783108),
            (down(1, 2, 5), -1.4170971),
            (down(1, 6, 0), 3.813422),
            (up(0, 0, 0), -4.644621),
            (up(0, 10, 4), -2.292973),
            (up(1, 5, 2), -0.099999964),
            (up(1, 7, 3), 3.7687662),
        ];
        for (i, (got, want)) in checks.iter().enumerate() {
            assert!((got - want).abs() <= 2e-6, "check {i}: {got} vs {want}");
        }
    }

    #[test]
    fn backbone_resize_outside_graph_gives_224() {
        let img = photo_like(400, 300, 5);
        let view = ImageView::packed(&img, 400, 300, PixelFormat::Rgb8).unwrap();
        let p_in = Preprocess::upstream(224, true);
        let p_out = Preprocess::upstream(224, false);
        let full = preprocess(&view, &p_in).unwrap();
        let small = preprocess(&view, &p_out).unwrap();
        assert_eq!(full.len(), 3 * 256 * 256);
        assert_eq!(small.len(), 3 * 224 * 224);
        let axis = CubicAxis::new(256, 224, -0.75);
        let mut want = vec![0f32; 3 * 224 * 224];
        bicubic_resize_chw(&full, 3, &axis, &axis, &mut Vec::new(), &mut want);
        assert!(small == want);
    }
}
