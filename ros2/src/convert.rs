//! Incoming messages → a frame the runtime reads: raw `sensor_msgs/Image` buffers are borrowed as
//! they are (any stride, RGB/BGR/RGBA/BGRA/mono); YUV 4:2:2 is converted to RGB; a
//! `sensor_msgs/CompressedImage` is decoded exactly as `msf-run` decodes a file.

use anyhow::{bail, Context, Result};
use msf_runtime::{load_image, DecodeLimits, ImageView, PixelFormat};

use crate::msg::{CompressedImage, Image};

/// Pixels of one input frame: borrowed from the message or converted/decoded into `owned`.
pub enum Pixels<'a> {
    Borrowed(ImageView<'a>),
    Rgb { data: Vec<u8>, width: u32, height: u32 },
}

impl Pixels<'_> {
    pub fn view(&self) -> Result<ImageView<'_>> {
        Ok(match self {
            Pixels::Borrowed(v) => *v,
            Pixels::Rgb { data, width, height } => ImageView::packed(data, *width, *height, PixelFormat::Rgb8)?,
        })
    }
}

/// The encodings of `sensor_msgs/Image` the node reads (`sensor_msgs/image_encodings.hpp` names).
pub const ENCODINGS: &[&str] = &["rgb8", "bgr8", "mono8", "rgba8", "bgra8", "yuv422 (UYVY)", "uyvy", "yuv422_yuy2", "yuyv"];

/// Which byte of a 4:2:2 pixel pair is Y0, U, Y1, V.
#[derive(Clone, Copy)]
enum Yuv422 {
    /// `yuv422` in ROS (`uyvy`): U Y0 V Y1.
    Uyvy,
    /// `yuv422_yuy2` (`yuyv`): Y0 U Y1 V.
    Yuyv,
}

pub fn raw(msg: &Image) -> Result<Pixels<'_>> {
    let (w, h, step) = (msg.width, msg.height, msg.step as usize);
    let format = match msg.encoding.to_ascii_lowercase().as_str() {
        "rgb8" => PixelFormat::Rgb8,
        "bgr8" | "8uc3" => PixelFormat::Bgr8,
        "rgba8" => PixelFormat::Rgba8,
        "bgra8" | "8uc4" => PixelFormat::Bgra8,
        "mono8" | "8uc1" => PixelFormat::Gray8,
        "yuv422" | "uyvy" => return yuv422(msg, Yuv422::Uyvy),
        "yuv422_yuy2" | "yuyv" | "yuy2" => return yuv422(msg, Yuv422::Yuyv),
        other => bail!("encoding {other:?} is not read (the node reads {})", ENCODINGS.join(", ")),
    };
    let view = ImageView::new(&msg.data, w, h, step, format)
        .with_context(|| format!("{w}x{h} {} image, step {step}, {} bytes", msg.encoding, msg.data.len()))?;
    Ok(Pixels::Borrowed(view))
}

/// BT.601 limited range, as UVC cameras send it (the same arithmetic as the runtime's camera source).
fn yuv422(msg: &Image, order: Yuv422) -> Result<Pixels<'_>> {
    let (w, h, step) = (msg.width as usize, msg.height as usize, msg.step as usize);
    if w == 0 || h == 0 || step < w.div_ceil(2) * 4 || msg.data.len() < step * (h - 1) + w.div_ceil(2) * 4 {
        bail!("{w}x{h} {} image with step {step} and {} bytes is inconsistent", msg.encoding, msg.data.len());
    }
    let (iy0, iu, iy1, iv) = match order {
        Yuv422::Uyvy => (1, 0, 3, 2),
        Yuv422::Yuyv => (0, 1, 2, 3),
    };
    let px = |y: u8, u: u8, v: u8| {
        let c = 298 * (i32::from(y) - 16);
        let d = i32::from(u) - 128;
        let e = i32::from(v) - 128;
        let clip = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
        [clip(c + 409 * e), clip(c - 100 * d - 208 * e), clip(c + 516 * d)]
    };
    let mut out = vec![0u8; w * h * 3];
    for row in 0..h {
        let s = &msg.data[row * step..];
        for x in 0..w {
            let pair = &s[(x / 2) * 4..(x / 2) * 4 + 4];
            let y = if x % 2 == 0 { pair[iy0] } else { pair[iy1] };
            out[(row * w + x) * 3..(row * w + x) * 3 + 3].copy_from_slice(&px(y, pair[iu], pair[iv]));
        }
    }
    Ok(Pixels::Rgb { data: out, width: w as u32, height: h as u32 })
}

/// Decodes compressed frames (JPEG, PNG, …; the format is sniffed from the bytes) with the runtime's
/// file decoder, so that a frame gives the pixels `msf-run` gets from the same file (libjpeg-turbo
/// for JPEG, EXIF orientation, decode limits). The bytes go through one scratch file per input.
pub struct CompressedDecoder {
    scratch: tempfile::NamedTempFile,
    limits: DecodeLimits,
}

impl CompressedDecoder {
    pub fn new() -> Result<Self> {
        let scratch = tempfile::Builder::new().prefix("msf-ros2-").tempfile().context("creating the scratch file for compressed frames")?;
        Ok(CompressedDecoder { scratch, limits: DecodeLimits::default() })
    }

    pub fn decode(&mut self, msg: &CompressedImage) -> Result<Pixels<'static>> {
        std::fs::write(self.scratch.path(), &msg.data).context("writing the scratch file for compressed frames")?;
        let img = load_image(self.scratch.path(), &self.limits)
            .with_context(|| format!("decoding a {} byte {:?} compressed image", msg.data.len(), msg.format))?;
        let (width, height) = img.dimensions();
        Ok(Pixels::Rgb { data: img.into_raw(), width, height })
    }
}
