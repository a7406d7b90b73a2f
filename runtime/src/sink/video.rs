//! Overlay videos (feature `video`): RGB8 frames encoded with the system FFmpeg libraries.
//!
//! [`VideoWriter`] encodes H.264 with libx264 (`preset=veryfast`, `crf=20`) when FFmpeg has it,
//! else MPEG-4 part 2, as yuv420p tagged BT.709 (limited range), at a constant frame rate, into an
//! `.mp4`/`.m4v`/`.mov` (with the index at the front, `+faststart`) or `.mkv` file.
//!
//! - Every frame given is written: the encoder is drained and the trailer written by
//!   [`VideoWriter::finish`]. The file is written under a temporary name in the same folder
//!   (`.<name>.<pid>.<n>.tmp`, like every other sink file) and renamed into place by `finish`;
//!   a writer dropped without `finish` (an error, a panic, Ctrl-C unwinding) removes it.
//! - yuv420p needs even sizes: an odd width or height is padded by one column/row repeating the
//!   edge pixels ([`VideoWriter::encoded_size`] says what the file holds).

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ffmpeg_next as ffmpeg;

use ffmpeg::ffi;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{codec, encoder, format, frame, Dictionary, Packet, Rational};

use super::TEMP_SUFFIX;
use crate::decompose::Decomposition;
use crate::error::{Error, Result};
use crate::pipeline::{RunReport, Sink};
use crate::ffmpeg::{capture, describe_error, init_ffmpeg};
use crate::source::Frame;

/// swscale context, used behind `&mut` only (see `source::video`).
struct SendScaler(scaling::Context);
// SAFETY: an `SwsContext` has no thread affinity; this one is owned and never shared.
unsafe impl Send for SendScaler {}

/// Encoders tried in order: (FFmpeg encoder name, options).
const ENCODERS: &[(&str, &[(&str, &str)])] = &[("libx264", &[("preset", "veryfast"), ("crf", "20")]), ("mpeg4", &[])];

/// Writes RGB8 frames to a video file; see the module doc.
pub struct VideoWriter {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once finished.
    octx: Option<format::context::Output>,
    encoder: encoder::Video,
    scaler: SendScaler,
    codec_name: String,
    width: u32,
    height: u32,
    enc_width: u32,
    enc_height: u32,
    rgb: frame::Video,
    yuv: frame::Video,
    frame_tb: Rational,
    stream_tb: Rational,
    frames: u64,
    packets: u64,
}

fn container_for(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "mp4" | "m4v" => "mp4",
        "mov" => "mov",
        "mkv" => "matroska",
        _ => return None,
    })
}

impl VideoWriter {
    /// Start writing `path` (`.mp4`, `.m4v`, `.mov` or `.mkv`) for `width`×`height` frames at `fps`
    /// frames per second. The folder must exist. Nothing appears at `path` before [`Self::finish`].
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self> {
        init_ffmpeg();
        let err = |reason: String| Error::VideoEncode { path: path.to_path_buf(), reason };
        if width == 0 || height == 0 {
            return Err(err(format!("frame size {width}x{height} is empty")));
        }
        if !(fps.is_finite() && fps > 0.0) {
            return Err(err(format!("frame rate {fps} is not a positive number")));
        }
        let container = container_for(path)
            .ok_or_else(|| err("unsupported video file extension (use .mp4, .m4v, .mov or .mkv)".into()))?;
        let name = path.file_name().ok_or_else(|| err("the path has no file name".into()))?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{}.{}.{n}{TEMP_SUFFIX}", name.to_string_lossy(), std::process::id()));

        let (enc_width, enc_height) = ((width + 1) & !1, (height + 1) & !1);
        // 30000/1001 for 29.97, 25/1 for 25.
        let rate = unsafe { ffi::av_d2q(fps, 100_000) };
        let frame_rate = Rational::new(rate.num, rate.den);
        let frame_tb = frame_rate.invert();

        let (octx, logged) = capture(|| format::output_as(&tmp, container));
        let mut octx = octx.map_err(|e| Error::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(describe_error(e, &logged)),
        })?;
        // From here on `guard` removes the temporary file on every error path.
        let guard = RemoveOnDrop(tmp.clone());
        let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);

        let mut failures = Vec::new();
        let mut opened = None;
        for (enc_name, options) in ENCODERS {
            let Some(codec) = encoder::find_by_name(enc_name) else {
                failures.push(format!("{enc_name}: not in this FFmpeg build"));
                continue;
            };
            let mut enc = match codec::context::Context::new_with_codec(codec).encoder().video() {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{enc_name}: {e}"));
                    continue;
                }
            };
            enc.set_width(enc_width);
            enc.set_height(enc_height);
            enc.set_format(Pixel::YUV420P);
            enc.set_time_base(frame_tb);
            enc.set_frame_rate(Some(frame_rate));
            enc.set_colorspace(ffmpeg::color::Space::BT709);
            enc.set_color_range(ffmpeg::color::Range::MPEG);
            // SAFETY: plain field writes on an unopened encoder context.
            unsafe {
                let c = enc.as_mut_ptr();
                (*c).color_primaries = ffi::AVColorPrimaries::AVCOL_PRI_BT709;
                (*c).color_trc = ffi::AVColorTransferCharacteristic::AVCOL_TRC_BT709;
                if *enc_name == "mpeg4" {
                    // Constant quantiser 3: close to x264's crf 20 in look, bigger files.
                    (*c).flags |= ffi::AV_CODEC_FLAG_QSCALE as c_int;
                    (*c).global_quality = 3 * ffi::FF_QP2LAMBDA as c_int;
                    (*c).gop_size = 12;
                }
            }
            if global_header {
                enc.set_flags(codec::Flags::GLOBAL_HEADER);
            }
            let mut dict = Dictionary::new();
            for (k, v) in *options {
                dict.set(k, v);
            }
            let (res, logged) = capture(|| enc.open_with(dict));
            match res {
                Ok(e) => {
                    opened = Some((e, codec, enc_name.to_string()));
                    break;
                }
                Err(e) => failures.push(format!("{enc_name}: {}", describe_error(e, &logged))),
            }
        }
        let (encoder, codec, codec_name) =
            opened.ok_or_else(|| err(format!("no usable video encoder ({})", failures.join("; "))))?;

        let mut ost = octx.add_stream(codec).map_err(|e| err(format!("cannot add the video stream: {e}")))?;
        ost.set_parameters(&encoder);
        ost.set_time_base(frame_tb);
        ost.set_avg_frame_rate(frame_rate);
        ost.set_rate(frame_rate);
        let mut header_opts = Dictionary::new();
        if container != "matroska" {
            header_opts.set("movflags", "+faststart");
        }
        let (res, logged) = capture(|| octx.write_header_with(header_opts).map(|_| ()));
        res.map_err(|e| err(format!("cannot write the header: {}", describe_error(e, &logged))))?;
        let stream_tb = octx.stream(0).expect("the stream added above").time_base();

        let scaler = scaling::Context::get(
            Pixel::RGB24,
            enc_width,
            enc_height,
            Pixel::YUV420P,
            enc_width,
            enc_height,
            scaling::Flags::BICUBIC | scaling::Flags::ACCURATE_RND | scaling::Flags::FULL_CHR_H_INP,
        )
        .map_err(|e| err(format!("cannot set up RGB to YUV conversion: {e}")))?;
        let mut scaler = SendScaler(scaler);
        // SAFETY: valid context; the coefficient tables are static.
        unsafe {
            let bt709 = ffi::sws_getCoefficients(ffi::SWS_CS_ITU709 as c_int);
            ffi::sws_setColorspaceDetails(scaler.0.as_mut_ptr(), bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16);
        }

        std::mem::forget(guard);
        Ok(VideoWriter {
            path: path.to_path_buf(),
            tmp,
            octx: Some(octx),
            encoder,
            scaler,
            codec_name,
            width,
            height,
            enc_width,
            enc_height,
            rgb: frame::Video::new(Pixel::RGB24, enc_width, enc_height),
            yuv: frame::Video::new(Pixel::YUV420P, enc_width, enc_height),
            frame_tb,
            stream_tb,
            frames: 0,
            packets: 0,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The encoder in use (`libx264` or `mpeg4`).
    pub fn codec_name(&self) -> &str {
        &self.codec_name
    }

    /// Size of the frames in the file (the frame size rounded up to even numbers).
    pub fn encoded_size(&self) -> (u32, u32) {
        (self.enc_width, self.enc_height)
    }

    /// Frames given so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    fn err(&self, reason: String) -> Error {
        Error::VideoEncode { path: self.path.clone(), reason }
    }

    /// Append one frame of packed RGB8, `width * height * 3` bytes (the size given to `create`).
    pub fn write_rgb(&mut self, rgb: &[u8]) -> Result<()> {
        let (w, h) = (self.width as usize, self.height as usize);
        if rgb.len() != w * h * 3 {
            return Err(self.err(format!("frame has {} bytes, {w}x{h} RGB8 needs {}", rgb.len(), w * h * 3)));
        }
        if self.octx.is_none() {
            return Err(self.err("write after finish".into()));
        }
        // Our frames may still be referenced by the encoder: get writable buffers first.
        // SAFETY: valid, allocated frames.
        unsafe {
            if ffi::av_frame_make_writable(self.rgb.as_mut_ptr()) < 0 || ffi::av_frame_make_writable(self.yuv.as_mut_ptr()) < 0 {
                return Err(self.err("out of memory for a frame".into()));
            }
        }
        let (ew, eh) = (self.enc_width as usize, self.enc_height as usize);
        let stride = self.rgb.stride(0);
        let plane = self.rgb.data_mut(0);
        for y in 0..eh {
            let src = &rgb[y.min(h - 1) * w * 3..][..w * 3];
            let dst = &mut plane[y * stride..y * stride + ew * 3];
            dst[..w * 3].copy_from_slice(src);
            if ew > w {
                let last = [src[w * 3 - 3], src[w * 3 - 2], src[w * 3 - 1]];
                dst[w * 3..].copy_from_slice(&last);
            }
        }
        self.scaler.0.run(&self.rgb, &mut self.yuv).map_err(|e| self.err(format!("RGB to YUV conversion failed: {e}")))?;
        self.yuv.set_pts(Some(self.frames as i64));
        self.yuv.set_color_space(ffmpeg::color::Space::BT709);
        self.yuv.set_color_range(ffmpeg::color::Range::MPEG);
        let (res, logged) = capture(|| self.encoder.send_frame(&self.yuv));
        res.map_err(|e| self.err(format!("encoding frame {} failed: {}", self.frames, describe_error(e, &logged))))?;
        self.frames += 1;
        self.write_packets()
    }

    /// Append one frame; its size must be the one given to `create`.
    pub fn write_frame(&mut self, frame: &Frame) -> Result<()> {
        if (frame.width, frame.height) != (self.width, self.height) {
            return Err(self.err(format!(
                "frame {} is {}x{}, the video is {}x{}",
                frame.index, frame.width, frame.height, self.width, self.height
            )));
        }
        self.write_rgb(&frame.data)
    }

    /// Move every packet the encoder has ready into the file.
    fn write_packets(&mut self) -> Result<()> {
        let octx = self.octx.as_mut().expect("checked by callers");
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    packet.set_stream(0);
                    packet.rescale_ts(self.frame_tb, self.stream_tb);
                    let (res, logged) = capture(|| packet.write_interleaved(octx));
                    res.map_err(|e| Error::VideoEncode {
                        path: self.path.clone(),
                        reason: format!("writing to {} failed: {}", self.tmp.display(), describe_error(e, &logged)),
                    })?;
                    self.packets += 1;
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => return Ok(()),
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(self.err(format!("encoder failed: {e}"))),
            }
        }
    }

    /// Drain the encoder, write the trailer and rename the file into place. Returns the number of
    /// frames in the file. With no frames written, this is an error (and nothing is left behind).
    pub fn finish(mut self) -> Result<u64> {
        if self.frames == 0 {
            return Err(self.err("no frames were written".into()));
        }
        let (res, logged) = capture(|| self.encoder.send_eof());
        res.map_err(|e| self.err(format!("flushing the encoder failed: {}", describe_error(e, &logged))))?;
        self.write_packets()?;
        let mut octx = self.octx.take().expect("finish runs once");
        let (res, logged) = capture(|| octx.write_trailer());
        res.map_err(|e| self.err(format!("writing the trailer failed: {}", describe_error(e, &logged))))?;
        drop(octx); // closes the file
        if self.packets < self.frames {
            return Err(self.err(format!("{} frames given but only {} encoded", self.frames, self.packets)));
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|source| Error::Write { path: self.path.clone(), source })?;
        Ok(self.frames)
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        // Close the file (if still open) before removing it; after `finish` the temporary name
        // no longer exists.
        drop(self.octx.take());
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Frame rate of an overlay video whose frames carry no timestamps (images).
pub const DEFAULT_FPS: f64 = 25.0;

/// The overlays of a run as one video (`msf-run --overlay-video`), a [`Sink`]. The writer opens on
/// the second frame, so that the frame rate comes from the first two timestamps (which also
/// accounts for a source keeping every n-th frame); frames without timestamps play at
/// [`DEFAULT_FPS`]. Frames must all have one size. Finishing keeps the frames written so far,
/// whatever ended the run.
pub struct OverlayVideo {
    path: PathBuf,
    first: Option<(image::RgbImage, Option<f64>)>,
    writer: Option<VideoWriter>,
}

impl OverlayVideo {
    /// A video at `path` (`.mp4`, `.m4v`, `.mov` or `.mkv`); nothing is written before the first frame.
    pub fn new(path: &Path) -> Self {
        OverlayVideo { path: path.to_path_buf(), first: None, writer: None }
    }

    fn open(&mut self, first: &image::RgbImage, fps: f64) -> Result<()> {
        let mut w = VideoWriter::create(&self.path, first.width(), first.height(), fps)?;
        w.write_rgb(first.as_raw())?;
        self.writer = Some(w);
        Ok(())
    }
}

impl Sink for OverlayVideo {
    fn write(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()> {
        let img = super::overlay::render(&frame.data, frame.width, frame.height, &dec.mask_in_frame());
        if self.writer.is_none() {
            match self.first.take() {
                None => {
                    self.first = Some((img, frame.pts_seconds));
                    return Ok(());
                }
                Some((first, pts0)) => {
                    let fps = match (pts0, frame.pts_seconds) {
                        (Some(a), Some(b)) if b > a => 1.0 / (b - a),
                        _ => DEFAULT_FPS,
                    };
                    self.open(&first, fps)?;
                }
            }
        }
        self.writer.as_mut().expect("opened above").write_rgb(img.as_raw())?;
        Ok(())
    }

    fn finish(&mut self, _: &RunReport) -> Result<Vec<PathBuf>> {
        if let Some((first, _)) = self.first.take() {
            self.open(&first, DEFAULT_FPS)?;
        }
        match self.writer.take() {
            Some(w) => {
                w.finish()?;
                Ok(vec![self.path.clone()])
            }
            None => Ok(Vec::new()),
        }
    }
}

/// Removes a path when dropped (until forgotten).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(all(test, feature = "video"))]
mod tests {
    use super::*;
    use crate::ffmpeg::test_util::scratch;
    use crate::sink::tests::leftovers;
    use crate::source::video::VideoSource;
    use crate::source::{FrameSource, SourceOptions};

    /// A frame with a gradient and a square that moves with `k`.
    fn picture(w: u32, h: u32, k: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let inside = (2 * k..2 * k + 16).contains(&x) && (8..24).contains(&y);
                if inside {
                    v.extend_from_slice(&[250, 250, 20]);
                } else {
                    v.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 128]);
                }
            }
        }
        v
    }

    #[test]
    fn writes_every_frame_and_reads_back() {
        let d = scratch("writer");
        for (name, w, h, fps) in [("a.mp4", 96u32, 64u32, 25.0), ("b.mkv", 80, 48, 30000.0 / 1001.0), ("c.mov", 64, 64, 10.0)] {
            let p = d.join(name);
            let mut wr = VideoWriter::create(&p, w, h, fps).unwrap();
            assert_eq!(wr.codec_name(), "libx264");
            assert!(!p.exists(), "nothing at the final path before finish");
            let frames: Vec<Vec<u8>> = (0..30).map(|k| picture(w, h, k)).collect();
            for f in &frames {
                wr.write_rgb(f).unwrap();
            }
            assert_eq!(wr.finish().unwrap(), 30);
            assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));

            let src = VideoSource::open(&p, &SourceOptions::default()).unwrap();
            let desc = src.describe();
            assert!(desc.contains(&format!("{w}x{h}")), "{desc}");
            let fps_read = src.fps().unwrap();
            assert!((fps_read - fps).abs() < 1e-3, "{name}: fps {fps_read}");
            let back: Vec<Frame> = src.map(|f| f.unwrap()).collect();
            assert_eq!(back.len(), 30, "{name}");
            for (k, f) in back.iter().enumerate() {
                assert_eq!((f.index, f.width, f.height), (k as u64, w, h));
                assert!((f.pts_seconds.unwrap() - k as f64 / fps).abs() < 1e-3, "{name}: {:?}", f.pts_seconds);
                let mad = f.data.iter().zip(&frames[k]).map(|(&a, &b)| (a as i32 - b as i32).unsigned_abs()).sum::<u32>() as f64
                    / f.data.len() as f64;
                assert!(mad < 4.0, "{name}: frame {k} differs by {mad} on average");
            }
        }
    }

    #[test]
    fn odd_sizes_are_padded_to_even() {
        let d = scratch("writer-odd");
        let p = d.join("odd.mp4");
        let mut wr = VideoWriter::create(&p, 65, 49, 25.0).unwrap();
        assert_eq!(wr.encoded_size(), (66, 50));
        let pic = picture(65, 49, 3);
        for _ in 0..5 {
            wr.write_rgb(&pic).unwrap();
        }
        wr.finish().unwrap();
        let back: Vec<Frame> = VideoSource::open(&p, &SourceOptions::default()).unwrap().map(|f| f.unwrap()).collect();
        assert_eq!(back.len(), 5);
        assert_eq!((back[0].width, back[0].height), (66, 50));
    }

    #[test]
    fn dropped_without_finish_leaves_nothing_and_errors_name_the_file() {
        let d = scratch("writer-drop");
        let p = d.join("gone.mp4");
        let mut wr = VideoWriter::create(&p, 32, 32, 25.0).unwrap();
        wr.write_rgb(&picture(32, 32, 0)).unwrap();
        let e = wr.write_rgb(&[0u8; 10]).unwrap_err();
        assert!(matches!(e, Error::VideoEncode { .. }) && e.to_string().contains("gone.mp4"), "{e}");
        drop(wr);
        assert!(!p.exists());
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));

        let empty = VideoWriter::create(&p, 32, 32, 25.0).unwrap();
        assert!(empty.finish().is_err());
        assert!(!p.exists() && leftovers(&d).is_empty());

        assert!(matches!(VideoWriter::create(&d.join("x.gif"), 32, 32, 25.0), Err(Error::VideoEncode { .. })));
        assert!(VideoWriter::create(&d.join("x.mp4"), 0, 32, 25.0).is_err());
        assert!(VideoWriter::create(&d.join("x.mp4"), 32, 32, f64::NAN).is_err());
        assert!(VideoWriter::create(&d.join("no-such-dir").join("x.mp4"), 32, 32, 25.0).is_err());
    }

    #[test]
    fn frames_round_trip_through_write_frame() {
        let d = scratch("writer-frames");
        let src_path = d.join("src.mkv");
        crate::ffmpeg::test_util::ffmpeg(&[
            "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-frames:v", "40", "-pix_fmt", "yuv420p",
            src_path.to_str().unwrap(),
        ]);
        let out = d.join("copy.mp4");
        let src = VideoSource::open(&src_path, &SourceOptions { every: 2, ..Default::default() }).unwrap();
        let (w, h) = src.size();
        let mut wr = VideoWriter::create(&out, w, h, 12.5).unwrap();
        for f in src {
            wr.write_frame(&f.unwrap()).unwrap();
        }
        assert_eq!(wr.finish().unwrap(), 20);
        assert_eq!(VideoSource::open(&out, &SourceOptions::default()).unwrap().count(), 20);
    }
}
