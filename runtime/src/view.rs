//! Borrowed frames: a camera driver's or decoder's pixel buffer, any of the common 8-bit layouts,
//! rows padded to any stride, checked once so that every later stage can read it without copying.

use crate::error::{Error, Result};

/// Layout of one pixel in a borrowed buffer. Camera and decoder buffers come in all of these; the
/// preprocessing reads them in place instead of converting the whole frame to RGB first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Rgb8,
    Bgr8,
    /// The alpha byte is ignored (upstream drops alpha without compositing).
    Rgba8,
    Bgra8,
    /// Replicated to R = G = B, like OpenCV's grey → BGR.
    Gray8,
}

impl PixelFormat {
    pub const fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
            PixelFormat::Gray8 => 1,
        }
    }

    /// Byte offsets of R, G, B inside one pixel.
    pub(crate) const fn rgb_offsets(self) -> [usize; 3] {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => [0, 1, 2],
            PixelFormat::Bgr8 | PixelFormat::Bgra8 => [2, 1, 0],
            PixelFormat::Gray8 => [0, 0, 0],
        }
    }
}

/// A borrowed, possibly row-padded, 8-bit image. Checked once at construction so that the
/// preprocessing can index it without further bounds worries.
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Bytes from the start of one row to the start of the next (≥ width · bytes per pixel).
    pub(crate) stride: usize,
    pub(crate) format: PixelFormat,
}

impl<'a> ImageView<'a> {
    /// Checks that `data` holds `height` rows of `stride` bytes (the last row only needs its
    /// `width` pixels, as many camera APIs do not pad it).
    ///
    /// ```
    /// use msf_runtime::{Error, ImageView, PixelFormat};
    /// // A V4L2-style BGRA buffer: 100 pixels per row, rows 512 bytes apart.
    /// let buf = vec![0u8; 512 * 79 + 400];
    /// let v = ImageView::new(&buf, 100, 80, 512, PixelFormat::Bgra8)?;
    /// assert_eq!((v.width(), v.height(), v.stride()), (100, 80, 512));
    /// // Wrong strides and short buffers are errors, not out-of-bounds reads.
    /// assert!(matches!(ImageView::new(&buf, 200, 80, 512, PixelFormat::Bgra8), Err(Error::StrideTooSmall { .. })));
    /// assert!(matches!(ImageView::new(&buf[..1000], 100, 80, 512, PixelFormat::Bgra8), Err(Error::BufferTooShort { .. })));
    /// # Ok::<(), msf_runtime::Error>(())
    /// ```
    pub fn new(
        data: &'a [u8],
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::ZeroSizeView { width, height });
        }
        let row = (width as usize).checked_mul(format.bytes_per_pixel());
        let min = row.unwrap_or(usize::MAX);
        if row.is_none() || stride < min {
            return Err(Error::StrideTooSmall { stride, width, min });
        }
        let need = (height as usize - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(min));
        match need {
            Some(need) if data.len() >= need => Ok(ImageView {
                data,
                width,
                height,
                stride,
                format,
            }),
            _ => Err(Error::BufferTooShort {
                len: data.len(),
                need: need.unwrap_or(usize::MAX),
                width,
                height,
                stride,
            }),
        }
    }

    /// A view of tightly packed rows (`stride = width · bytes per pixel`).
    pub fn packed(data: &'a [u8], width: u32, height: u32, format: PixelFormat) -> Result<Self> {
        let stride = (width as usize).saturating_mul(format.bytes_per_pixel());
        Self::new(data, width, height, stride, format)
    }

    /// A view of a decoded RGB8 image (e.g. from [`crate::load_image`]).
    pub fn from_rgb_image(img: &'a image::RgbImage) -> Result<Self> {
        Self::packed(img.as_raw(), img.width(), img.height(), PixelFormat::Rgb8)
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// A sub-rectangle, by slicing (no copy). `None` if it is empty or leaves the image.
    pub fn crop(&self, left: u32, top: u32, width: u32, height: u32) -> Option<ImageView<'a>> {
        if width == 0
            || height == 0
            || left.checked_add(width)? > self.width
            || top.checked_add(height)? > self.height
        {
            return None;
        }
        let start = top as usize * self.stride + left as usize * self.format.bytes_per_pixel();
        ImageView::new(&self.data[start..], width, height, self.stride, self.format).ok()
    }

    /// Upstream's centre crop to the largest square: `s = min(h, w)`, `top = (h − s) // 2`,
    /// `left = (w − s) // 2` (the extra odd pixel goes to the bottom/right margin).
    pub fn center_square(&self) -> ImageView<'a> {
        let r = crate::fit::Rect::centre_square(self.width, self.height);
        // Cannot fail: the square lies inside a checked, non-empty view.
        self.crop(r.x, r.y, r.width, r.height).unwrap_or(*self)
    }
}

