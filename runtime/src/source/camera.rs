//! V4L2 cameras (`/dev/videoN`, feature `camera`).
//!
//! [`CameraSource`] negotiates YUYV (converted with [`yuyv_to_rgb`], BT.601 limited range, what
//! UVC webcams send) or, when the camera has no YUYV at the requested size, MJPG (decoded with the
//! `image` crate's JPEG decoder), at a requested size (the driver picks the closest it has), and
//! captures through four memory-mapped buffers. Frames are yielded as they arrive:
//! [`Frame::index`] counts captured frames from 0 (including those `start`/`every` drop), and
//! [`Frame::pts_seconds`] is the driver's capture timestamp relative to the first frame.
//! A capture that stalls for [`CAPTURE_TIMEOUT`] is an error (a camera unplugged mid-run).

use std::path::{Path, PathBuf};
use std::time::Duration;

use v4l::buffer::Type as BufType;
use v4l::capability::Flags as CapFlags;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use super::frame::{Frame, FrameSource};
use super::open::SourceOptions;
use crate::error::{Error, Result};

/// How long [`CameraSource`] waits for one frame before giving up.
pub const CAPTURE_TIMEOUT: Duration = Duration::from_secs(5);

/// What to ask the camera for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraOptions {
    /// Requested frame size; the driver answers with the closest size it supports.
    pub width: u32,
    pub height: u32,
    /// Requested frames per second (`None`: the driver's current rate).
    pub fps: Option<u32>,
}

impl Default for CameraOptions {
    fn default() -> Self {
        CameraOptions { width: 640, height: 480, fps: None }
    }
}

/// Pixel formats this source reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraFormat {
    Yuyv,
    Mjpg,
}

impl CameraFormat {
    fn fourcc(self) -> FourCC {
        match self {
            CameraFormat::Yuyv => FourCC::new(b"YUYV"),
            CameraFormat::Mjpg => FourCC::new(b"MJPG"),
        }
    }
    fn name(self) -> &'static str {
        match self {
            CameraFormat::Yuyv => "YUYV",
            CameraFormat::Mjpg => "MJPG",
        }
    }
}

/// Frames from a V4L2 capture device; see the module doc.
pub struct CameraSource {
    device: PathBuf,
    // The stream holds its own handle on the device; `_dev` keeps the negotiated device open.
    stream: MmapStream<'static>,
    _dev: Device,
    format: CameraFormat,
    width: u32,
    /// Bytes per row of YUYV buffers.
    stride: u32,
    height: u32,
    opts: SourceOptions,
    captured: u64,
    yielded: u64,
    first_ts: Option<f64>,
    done: bool,
    desc: String,
}

impl CameraSource {
    /// Open `device` (`/dev/videoN`) at 640x480 (see [`Self::open_with`]).
    pub fn open(device: &Path, opts: &SourceOptions) -> Result<Self> {
        Self::open_with(device, opts, &CameraOptions::default())
    }

    /// Open `device` and negotiate YUYV (else MJPG) at `cam.width`×`cam.height`.
    ///
    /// Errors: [`Error::CameraOpen`] naming the device when it does not exist, is not a capture
    /// device, has neither format, or cannot start streaming.
    pub fn open_with(device: &Path, opts: &SourceOptions, cam: &CameraOptions) -> Result<Self> {
        let err = |reason: String| Error::CameraOpen { device: device.to_path_buf(), reason };
        let dev = Device::with_path(device).map_err(|e| err(e.to_string()))?;
        let caps = dev.query_caps().map_err(|e| err(format!("not a V4L2 device ({e})")))?;
        if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE) {
            return Err(err(format!("{} ({}) is not a single-planar video capture device", caps.card, caps.driver)));
        }
        let offered: Vec<FourCC> = dev.enum_formats().map_err(|e| err(e.to_string()))?.into_iter().map(|d| d.fourcc).collect();
        let mut chosen = None;
        for f in [CameraFormat::Yuyv, CameraFormat::Mjpg] {
            if !offered.contains(&f.fourcc()) {
                continue;
            }
            let got = dev.set_format(&Format::new(cam.width, cam.height, f.fourcc())).map_err(|e| err(e.to_string()))?;
            // Prefer YUYV only at the requested size: webcams often offer YUYV at small sizes only.
            let exact = (got.width, got.height) == (cam.width, cam.height);
            if got.fourcc == f.fourcc() && (exact || chosen.is_none()) {
                chosen = Some((f, got));
                if exact {
                    break;
                }
            }
        }
        let (format, got) = chosen.ok_or_else(|| {
            let names: Vec<String> = offered.iter().map(|f| f.to_string()).collect();
            err(format!("the camera offers neither YUYV nor MJPG (it has: {})", names.join(", ")))
        })?;
        // Set the chosen format again (trying MJPG after YUYV changed it).
        let got = dev.set_format(&got).map_err(|e| err(e.to_string()))?;
        if got.fourcc != format.fourcc() || got.width == 0 || got.height == 0 {
            return Err(err(format!("the driver did not keep {} (got {} {}x{})", format.name(), got.fourcc, got.width, got.height)));
        }
        if let Some(fps) = cam.fps {
            // Best effort: drivers without frame-rate control refuse this.
            let _ = dev.set_params(&Parameters::with_fps(fps));
        }
        let fps = dev
            .params()
            .ok()
            .filter(|p| p.interval.numerator > 0)
            .map(|p| f64::from(p.interval.denominator) / f64::from(p.interval.numerator));
        let mut stream = MmapStream::with_buffers(&dev, BufType::VideoCapture, 4).map_err(|e| err(format!("cannot map capture buffers: {e}")))?;
        stream.set_timeout(CAPTURE_TIMEOUT);
        let fps_text = fps.map_or(String::new(), |f| format!(" @ {f:.0} fps"));
        let desc = format!("{} (camera {}: {} {}x{}{fps_text})", device.display(), caps.card, format.name(), got.width, got.height);
        let mut opts = opts.clone();
        opts.every = opts.every.max(1);
        Ok(CameraSource {
            device: device.to_path_buf(),
            stream,
            _dev: dev,
            format,
            width: got.width,
            stride: if got.stride >= got.width * 2 { got.stride } else { got.width * 2 },
            height: got.height,
            opts,
            captured: 0,
            yielded: 0,
            first_ts: None,
            done: false,
            desc,
        })
    }

    /// Negotiated frame size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Negotiated pixel format.
    pub fn format(&self) -> CameraFormat {
        self.format
    }

    fn capture_err(&self, frame: u64, reason: String) -> Error {
        Error::CameraCapture { device: self.device.clone(), frame, reason }
    }
}

impl Iterator for CameraSource {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        if self.done || self.opts.max_frames.is_some_and(|m| self.yielded >= m) {
            self.done = true;
            return None;
        }
        loop {
            let index = self.captured;
            let (buf, meta) = match self.stream.next() {
                Ok(x) => x,
                Err(e) => {
                    self.done = true;
                    let reason = if e.kind() == std::io::ErrorKind::TimedOut {
                        format!("no frame within {} s", CAPTURE_TIMEOUT.as_secs())
                    } else {
                        e.to_string()
                    };
                    return Some(Err(Error::CameraCapture { device: self.device.clone(), frame: index, reason }));
                }
            };
            self.captured += 1;
            let ts = meta.timestamp.sec as f64 + meta.timestamp.usec as f64 * 1e-6;
            let first = *self.first_ts.get_or_insert(ts);
            if !self.opts.keeps(index) {
                continue;
            }
            let used = (meta.bytesused as usize).min(buf.len());
            let data = &buf[..if used == 0 { buf.len() } else { used }];
            let (w, h) = (self.width, self.height);
            let rgb = match self.format {
                CameraFormat::Yuyv => {
                    let need = self.stride as usize * (h as usize - 1) + w as usize * 2;
                    if data.len() < need {
                        // A short buffer (a USB hiccup): skip it rather than end the capture.
                        continue;
                    }
                    let mut out = Vec::new();
                    yuyv_to_rgb(data, w, h, self.stride as usize, &mut out);
                    (out, w, h)
                }
                CameraFormat::Mjpg => match image::load_from_memory_with_format(data, image::ImageFormat::Jpeg) {
                    Ok(img) => {
                        let img = img.into_rgb8();
                        let (iw, ih) = img.dimensions();
                        (img.into_raw(), iw, ih)
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(self.capture_err(index, format!("bad MJPG frame: {e}"))));
                    }
                },
            };
            self.yielded += 1;
            let (data, width, height) = rgb;
            return Some(Ok(Frame {
                index,
                stream: 0,
                pts_seconds: Some(ts - first),
                name: format!("frame_{index:06}"),
                width,
                height,
                data,
            }));
        }
    }
}

impl FrameSource for CameraSource {
    fn len_hint(&self) -> Option<u64> {
        self.opts.max_frames.map(|m| m.saturating_sub(self.yielded))
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn is_live(&self) -> bool {
        true
    }
}

/// Convert packed YUYV (Y0 U Y1 V per pixel pair, BT.601 limited range) of `width`×`height` with
/// `stride` bytes per row to packed RGB8 in `out` (resized to `width * height * 3`). An odd last
/// column takes the chroma of its pair.
pub fn yuyv_to_rgb(src: &[u8], width: u32, height: u32, stride: usize, out: &mut Vec<u8>) {
    let (w, h) = (width as usize, height as usize);
    out.clear();
    out.resize(w * h * 3, 0);
    #[inline]
    fn px(y: u8, u: u8, v: u8) -> [u8; 3] {
        let c = 298 * (i32::from(y) - 16);
        let d = i32::from(u) - 128;
        let e = i32::from(v) - 128;
        let clip = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
        [clip(c + 409 * e), clip(c - 100 * d - 208 * e), clip(c + 516 * d)]
    }
    for row in 0..h {
        let s = &src[row * stride..];
        let d = &mut out[row * w * 3..(row + 1) * w * 3];
        for x in 0..w {
            let pair = (x / 2) * 4;
            let y = s[pair + (x % 2) * 2];
            let (u, v) = (s[pair + 1], s[pair + 3]);
            d[x * 3..x * 3 + 3].copy_from_slice(&px(y, u, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_converts_known_values() {
        // Row of 4 pixels: black, white, then a red pair; row 2: mid grey pair, blue pair.
        // BT.601 limited: black Y=16, white Y=235, red (81, 90, 240), blue (41, 240, 110), grey 50% (126, 128, 128).
        let row1 = [16, 128, 235, 128, 81, 90, 81, 240];
        let row2 = [126, 128, 126, 128, 41, 240, 41, 110];
        let stride = 10; // two bytes of padding per row
        let mut src = Vec::new();
        for r in [&row1[..], &row2[..]] {
            src.extend_from_slice(r);
            src.extend_from_slice(&[0xAA, 0xAA]);
        }
        let mut out = Vec::new();
        yuyv_to_rgb(&src, 4, 2, stride, &mut out);
        assert_eq!(out.len(), 4 * 2 * 3);
        let p = |i: usize| [out[i * 3], out[i * 3 + 1], out[i * 3 + 2]];
        assert_eq!(p(0), [0, 0, 0]);
        assert_eq!(p(1), [255, 255, 255]);
        assert_eq!(p(2), [255, 0, 0]);
        assert_eq!(p(3), [255, 0, 0]);
        assert_eq!(p(4), [128, 128, 128]);
        assert_eq!(p(5), [128, 128, 128]);
        let close = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(&x, y)| (x as i32 - y as i32).abs() <= 2);
        assert!(close(p(6), [0, 0, 255]), "{:?}", p(6));
        assert!(close(p(7), [0, 0, 255]), "{:?}", p(7));
        // Out-of-range inputs clamp instead of wrapping.
        yuyv_to_rgb(&[255, 128, 255, 128], 2, 1, 4, &mut out);
        assert_eq!(&out[..3], &[255, 255, 255][..]);
        yuyv_to_rgb(&[0, 128, 0, 128], 2, 1, 4, &mut out);
        assert_eq!(&out[..3], &[0, 0, 0][..]);
    }

    #[test]
    fn missing_or_non_camera_devices_are_errors_naming_the_device() {
        let missing = Path::new("/dev/video-msf-does-not-exist");
        match CameraSource::open(missing, &SourceOptions::default()) {
            Err(e @ Error::CameraOpen { .. }) => {
                assert!(e.to_string().contains("/dev/video-msf-does-not-exist"), "{e}");
            }
            Err(other) => panic!("expected CameraOpen, got {other:?}"),
            Ok(_) => panic!("opened a missing device"),
        }
        // A character device that is not V4L2.
        match CameraSource::open(Path::new("/dev/null"), &SourceOptions::default()) {
            Err(e @ Error::CameraOpen { .. }) => assert!(e.to_string().contains("/dev/null"), "{e}"),
            Err(other) => panic!("expected CameraOpen, got {other:?}"),
            Ok(_) => panic!("/dev/null opened as a camera"),
        }
    }

    #[test]
    fn camera_source_is_send() {
        fn send<T: Send>() {}
        send::<CameraSource>();
    }
}
