//! Video files and streams through the system FFmpeg libraries (feature `video`).
//!
//! [`VideoSource`] opens anything FFmpeg can demux (mp4, mkv, avi, mov, webm, ts, ... and
//! `rtsp://`/`http://` URLs), picks the best video stream and decodes it **one frame at a time**:
//! only the frame being returned (and the decoder's few reference frames) are ever in memory.
//!
//! - Frames are converted to packed RGB8 with swscale set up as `cv2.VideoCapture` sets it up (plain
//!   `SWS_BICUBIC` to BGR24, then reordered; the stream's colour matrix and range, BT.601 when
//!   untagged), at any size (odd sizes too) and from any pixel format FFmpeg decodes to. For 8-bit
//!   YUV the pixels are those of OpenCV 4.13 (`tests/decode_parity.rs`), ~9× cheaper than swscale's
//!   `ACCURATE_RND | FULL_CHR_H_INT` conversion; high-bit-depth video goes through
//!   swscale's generic scaler, whose chroma filter differs between FFmpeg releases (mean 1.6 levels
//!   from OpenCV's bundled FFmpeg 8 on 10-bit 4:2:2).
//! - A rotation in the stream's display matrix (phones) is applied, as FFmpeg's CLI does by default.
//! - [`Frame::index`] counts decoded frames from 0 in presentation order, including those dropped by
//!   `start`/`every`; [`Frame::pts_seconds`] is the frame's best-effort presentation timestamp ×
//!   the stream's time base (not shifted to start at 0: an mpeg-ts file starts near 1.4 s).
//! - The decoder is flushed at the end of the file, so the last (delayed) frames are not lost.
//! - Damage (a read error, a truncated packet, a frame the decoder flags as corrupt, or the
//!   demuxer reporting an error such as a file that ended prematurely): every frame decoded before
//!   it is yielded, then one [`Error::VideoDecode`] naming the file, the frame index reached and
//!   FFmpeg's message, then the iterator ends. For network streams (`scheme://`), damaged packets
//!   are decoded anyway (FFmpeg conceals the loss) instead of ending the stream.
//! - Network streams ([`super::open::STREAM_SCHEMES`]: `rtsp://`, `http(s)://`, `udp://`, `tcp://`,
//!   `srt://`, …) are opened with a connect/read timeout ([`SourceOptions::stream_timeout`]), so a
//!   dead or silent server is one [`Error::VideoOpen`] (or, once frames came, one
//!   [`Error::VideoDecode`]) instead of a hang; RTSP asks for interleaved TCP first (no loss, passes
//!   NAT) and falls back to FFmpeg's default transport when the server refuses it. Their decoder
//!   uses slice threads only (frame threads would hold frames back), and they are
//!   [live](FrameSource::is_live) (an `http(s)://` URL the server lets FFmpeg seek in is a file).
//!   A stream that ends (the server closes it) ends the source; on connectionless `udp://`/`rtp://`
//!   silence for the timeout after frames came is the end.
//! - FFmpeg's own logging is silenced: its error messages are captured and put into the errors
//!   this module returns. Set `MSF_FFMPEG_LOG=1` to let FFmpeg print its log to stderr instead.

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ffmpeg_next as ffmpeg;

use ffmpeg::ffi;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{codec, decoder, format, frame, media, Packet, Rational};

use super::frame::{Frame, FrameSource};
use super::image::DecodeLimits;
use super::open::{stream_scheme, SourceOptions};
use crate::error::{Error, Result};
use crate::ffmpeg::{capture, describe_error, init_ffmpeg};

// ---------------------------------------------------------------------------------------------
// RGB conversion
// ---------------------------------------------------------------------------------------------

/// swscale context, set up as `cv2.VideoCapture` sets up its own (see the module doc). `SwsContext`
/// has no thread affinity: it is used from one thread at a time (behind `&mut`) and may move between
/// threads.
struct Scaler {
    ctx: scaling::Context,
    /// (format, width, height, colour space, full range) of the frames it was built for.
    key: (Pixel, u32, u32, ffmpeg::color::Space, bool),
}

// SAFETY: see the type's doc; the raw pointer inside is owned and never shared.
unsafe impl Send for Scaler {}

fn is_full_range(format: Pixel, range: ffmpeg::color::Range) -> bool {
    range == ffmpeg::color::Range::JPEG
        || matches!(format, Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P | Pixel::YUVJ411P)
}

/// True for formats whose samples are Y'CbCr (not RGB, not grey, not paletted).
fn is_yuv(format: Pixel) -> bool {
    let desc = unsafe { ffi::av_pix_fmt_desc_get(format.into()) };
    if desc.is_null() {
        return false;
    }
    // SAFETY: non-null descriptors are static.
    let desc = unsafe { &*desc };
    let flags = desc.flags;
    desc.nb_components >= 3
        && flags & (ffi::AV_PIX_FMT_FLAG_RGB as u64) == 0
        && flags & (ffi::AV_PIX_FMT_FLAG_PAL as u64) == 0
}

impl Scaler {
    fn new(frame: &frame::Video) -> std::result::Result<Self, ffmpeg::Error> {
        let (format, w, h) = (frame.format(), frame.width(), frame.height());
        let space = frame.color_space();
        let full = is_full_range(format, frame.color_range());
        // OpenCV's flags and destination: plain SWS_BICUBIC (no ACCURATE_RND, no FULL_CHR_H_INT,
        // so 8-bit 4:2:0/4:2:2/4:4:4 take swscale's unscaled YUV→RGB path), BGR24.
        let mut ctx = scaling::Context::get(format, w, h, Pixel::BGR24, w, h, scaling::Flags::BICUBIC)?;
        if is_yuv(format) {
            // SAFETY: valid context; the coefficient tables are static.
            unsafe {
                let src = ffi::sws_getCoefficients(space as c_int);
                let dst = ffi::sws_getCoefficients(ffi::SWS_CS_DEFAULT as c_int);
                ffi::sws_setColorspaceDetails(ctx.as_mut_ptr(), src, c_int::from(full), dst, 1, 0, 1 << 16, 1 << 16);
            }
        }
        Ok(Scaler { ctx, key: (format, w, h, space, full) })
    }

    fn matches(&self, frame: &frame::Video) -> bool {
        let (format, w, h) = (frame.format(), frame.width(), frame.height());
        self.key == (format, w, h, frame.color_space(), is_full_range(format, frame.color_range()))
    }
}

/// Clockwise rotation applied to decoded frames (from the stream's display matrix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rotation {
    #[default]
    None,
    Cw90,
    Cw180,
    Cw270,
}

impl Rotation {
    /// From the counter-clockwise angle of `av_display_rotation_get`, snapped to quarter turns
    /// (as FFmpeg's `-autorotate` does).
    fn from_display_ccw_degrees(ccw: f64) -> Self {
        if !ccw.is_finite() {
            return Rotation::None;
        }
        let cw = (-ccw.round()).rem_euclid(360.0);
        match ((cw / 90.0).round() as i64).rem_euclid(4) {
            1 => Rotation::Cw90,
            2 => Rotation::Cw180,
            3 => Rotation::Cw270,
            _ => Rotation::None,
        }
    }

    pub fn degrees(self) -> u32 {
        match self {
            Rotation::None => 0,
            Rotation::Cw90 => 90,
            Rotation::Cw180 => 180,
            Rotation::Cw270 => 270,
        }
    }

    /// Size after rotation.
    pub fn apply_size(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            Rotation::Cw90 | Rotation::Cw270 => (h, w),
            _ => (w, h),
        }
    }
}

/// Rotate packed RGB8 `src` (`w`×`h`) clockwise.
pub fn rotate_rgb(src: &[u8], w: u32, h: u32, rot: Rotation) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    if rot == Rotation::None {
        return src.to_vec();
    }
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (nx, ny, nw) = match rot {
                Rotation::Cw90 => (h - 1 - y, x, h),
                Rotation::Cw180 => (w - 1 - x, h - 1 - y, w),
                Rotation::Cw270 => (y, w - 1 - x, h),
                Rotation::None => unreachable!(),
            };
            let s = (y * w + x) * 3;
            let d = (ny * nw + nx) * 3;
            out[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
    out
}

fn display_rotation(stream: &format::stream::Stream) -> Rotation {
    for sd in stream.side_data() {
        if sd.kind() == codec::packet::side_data::Type::DisplayMatrix {
            let d = sd.data();
            if d.len() >= 36 {
                let mut m = [0i32; 9];
                for (i, v) in m.iter_mut().enumerate() {
                    *v = i32::from_ne_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]]);
                }
                // SAFETY: `m` is the 3x3 matrix the function reads.
                let ccw = unsafe { ffi::av_display_rotation_get(m.as_ptr()) };
                return Rotation::from_display_ccw_degrees(ccw);
            }
        }
    }
    Rotation::None
}

/// `Err(description)` when a `w`×`h` frame is over `limits` (RGB8 output bytes count as decoded).
pub(crate) fn check_limits(limits: &DecodeLimits, w: u32, h: u32) -> std::result::Result<(), String> {
    let pixels = u64::from(w) * u64::from(h);
    if w > limits.max_width || h > limits.max_height {
        Err(format!("max {}x{}", limits.max_width, limits.max_height))
    } else if pixels > limits.max_pixels {
        Err(format!("max {} pixels, got {pixels}", limits.max_pixels))
    } else if pixels * 3 > limits.max_decoded_bytes {
        Err(format!("max {} decoded bytes, needs {}", limits.max_decoded_bytes, pixels * 3))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Network streams
// ---------------------------------------------------------------------------------------------

/// FFmpeg options for reading a `scheme` stream: `timeout` bounds the connection and every read
/// (the generic `rw_timeout`, and each protocol's own `timeout`, all in microseconds in FFmpeg 5+).
fn stream_options(scheme: &str, timeout: Duration, rtsp_tcp: bool) -> ffmpeg::Dictionary<'static> {
    let micros = timeout.as_micros().clamp(1, i64::MAX as u128).to_string();
    let mut d = ffmpeg::Dictionary::new();
    d.set("rw_timeout", &micros);
    match scheme {
        "rtsp" | "rtsps" => {
            d.set("timeout", &micros);
            if rtsp_tcp {
                d.set("rtsp_transport", "tcp");
            }
        }
        "http" | "https" | "tcp" | "srt" => d.set("timeout", &micros),
        "udp" => {
            d.set("timeout", &micros);
            // A consumer that falls behind loses packets (the decoder conceals them), it does not
            // end the stream.
            d.set("overrun_nonfatal", "1");
        }
        _ => {}
    }
    d
}

/// The errno behind `e`, when it is one.
fn errno(e: &ffmpeg::Error) -> Option<c_int> {
    match *e {
        ffmpeg::Error::Other { errno } => Some(errno),
        _ => None,
    }
}

/// FFmpeg never reached the server, or heard nothing from it: the same again will not do better.
fn no_server(e: &ffmpeg::Error) -> bool {
    errno(e).is_some_and(|n| [libc::ECONNREFUSED, libc::ETIMEDOUT, libc::EHOSTUNREACH, libc::ENETUNREACH, libc::EIO, libc::ECONNRESET].contains(&n))
        || matches!(e, ffmpeg::Error::Exit)
}

/// Open a network stream with [`stream_options`]. `Err` is the reason, one line.
fn open_stream(path: &Path, scheme: &str, timeout: Duration) -> std::result::Result<format::context::Input, String> {
    let rtsp = matches!(scheme, "rtsp" | "rtsps");
    let (first, logged) = capture(|| format::input_with_dictionary(&path, stream_options(scheme, timeout, rtsp)));
    let e = match first {
        Ok(input) => return Ok(input),
        Err(e) => e,
    };
    if rtsp && !no_server(&e) {
        // The server answered but would not stream over TCP: let FFmpeg pick the transport (UDP).
        let (second, _) = capture(|| format::input_with_dictionary(&path, stream_options(scheme, timeout, false)));
        if let Ok(input) = second {
            return Ok(input);
        }
    }
    let secs = trim_float(timeout.as_secs_f64());
    let why = match errno(&e) {
        Some(libc::ECONNREFUSED) => "connection refused, is the server running?".to_string(),
        Some(libc::ETIMEDOUT | libc::EIO) => format!("no connection or no data within {secs} s, is the stream running?"),
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => "the host cannot be reached".to_string(),
        _ => return Err(describe_error(e, &logged)),
    };
    let detail = if logged.is_empty() { e.to_string() } else { logged.join("; ") };
    Err(format!("{why} ({detail})"))
}

// ---------------------------------------------------------------------------------------------
// VideoSource
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading packets and decoding.
    Reading,
    /// EOF (or damage) sent to the decoder; draining its last frames.
    Draining,
    /// Nothing more to yield.
    Done,
}

/// Frames of one video stream, decoded lazily; see the module doc.
pub struct VideoSource {
    path: PathBuf,
    input: format::context::Input,
    stream_index: usize,
    decoder: decoder::Video,
    time_base: Rational,
    fps: Option<f64>,
    rotation: Rotation,
    opts: SourceOptions,
    /// Damaged packets end the stream (files) or are decoded anyway (network streams).
    strict: bool,
    /// The network stream's scheme (`udp`, `rtsp`, …), `None` for files.
    scheme: Option<String>,
    /// Frames come in real time (a network stream that cannot be seeked in).
    live: bool,
    scaler: Option<Scaler>,
    decoded: frame::Video,
    rgb: frame::Video,
    /// Frames received from the decoder so far = index of the next one.
    next_index: u64,
    yielded: u64,
    state: State,
    /// Damage found while reading (FFmpeg's message), reported once the frames decoded before it
    /// are drained, at the index reached then.
    pending: Option<String>,
    /// Frame count the container declares, if any.
    nb_frames: Option<u64>,
    desc: String,
    /// Raw-frame containers (y4m, raw video) end with the last whole frame; their demuxers report
    /// a cut inside a frame as a plain end of file. The file's size, and where the last packet of
    /// the stream ended, tell the two apart.
    raw_file_len: Option<u64>,
    last_packet_end: u64,
}

impl VideoSource {
    /// Open `path` (a file, or a URL FFmpeg can read) with `opts` (`start`, `every`, `max_frames`,
    /// and the decode limits on frame size).
    ///
    /// Errors: [`Error::InputNotFound`] for a missing file; [`Error::VideoOpen`] when FFmpeg cannot
    /// read it, finds no video stream or has no decoder for it; [`Error::ImageTooLarge`] when the
    /// frame size is over `opts.decode_limits`.
    pub fn open(path: &Path, opts: &SourceOptions) -> Result<Self> {
        init_ffmpeg();
        let is_url = path.to_string_lossy().contains("://");
        if !is_url && !path.exists() {
            return Err(Error::InputNotFound { path: path.to_path_buf() });
        }
        let open_err = |reason: String| Error::VideoOpen { path: path.to_path_buf(), reason };
        let scheme = stream_scheme(path);
        let mut input = match scheme.as_deref() {
            None => {
                let (input, logged) = capture(|| format::input(&path));
                input.map_err(|e| open_err(describe_error(e, &logged)))?
            }
            Some(scheme) => open_stream(path, scheme, opts.stream_timeout).map_err(open_err)?,
        };
        // A network stream is live unless it is a file on a web server (FFmpeg can seek in it).
        // SAFETY: `pb` is the opened context's I/O context (null for demuxers that do their own I/O).
        let seekable = unsafe {
            let pb = (*input.as_ptr()).pb;
            !pb.is_null() && (*pb).seekable != 0
        };
        let live = match scheme.as_deref() {
            Some("http" | "https") => !seekable,
            Some(_) => true,
            None => false,
        };

        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| open_err(format!("no video stream (format {})", input.format().name())))?;
        let stream_index = stream.index();
        let time_base = stream.time_base();
        let rotation = display_rotation(&stream);
        let nb_frames = u64::try_from(stream.frames()).ok().filter(|&n| n > 0);
        let rate = |r: Rational| (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r));
        let fps = rate(stream.avg_frame_rate()).or_else(|| rate(stream.rate()));
        let duration = if stream.duration() > 0 {
            Some(stream.duration() as f64 * f64::from(time_base))
        } else if input.duration() > 0 {
            Some(input.duration() as f64 / f64::from(ffi::AV_TIME_BASE))
        } else {
            None
        };

        let mut ctx = codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| open_err(format!("cannot read the video stream's parameters: {e}")))?;
        // SAFETY: plain field writes on an unopened codec context.
        unsafe {
            let c = ctx.as_mut_ptr();
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (*c).thread_count = cores.min(4) as c_int;
            // Frame threads hold back one frame per thread: live streams use slice threads only.
            let threads = if live { ffi::FF_THREAD_SLICE } else { ffi::FF_THREAD_FRAME | ffi::FF_THREAD_SLICE };
            (*c).thread_type = threads as c_int;
        }
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(time_base);
        let codec_id = stream.parameters().id();
        let (decoder, logged) = capture(|| dec.video());
        let decoder = decoder.map_err(|e| open_err(format!("no usable decoder for {codec_id:?}: {}", describe_error(e, &logged))))?;

        // Only the chosen stream is demuxed (audio, subtitles and data packets are skipped).
        // SAFETY: the streams array has nb_streams valid entries.
        unsafe {
            let fc = input.as_mut_ptr();
            for i in 0..(*fc).nb_streams as usize {
                if i != stream_index {
                    (**(*fc).streams.add(i)).discard = ffi::AVDiscard::AVDISCARD_ALL;
                }
            }
        }

        let (w, h) = (decoder.width(), decoder.height());
        if let Err(limit) = check_limits(&opts.decode_limits, w, h) {
            return Err(Error::ImageTooLarge { path: path.to_path_buf(), width: w, height: h, limit });
        }

        let (dw, dh) = rotation.apply_size(w, h);
        let codec_name = decoder.codec().map_or_else(|| format!("{codec_id:?}").to_lowercase(), |c| c.name().to_string());
        let mut parts = vec![format!("{codec_name} {dw}x{dh}")];
        if rotation != Rotation::None {
            parts.push(format!("rotated {}°", rotation.degrees()));
        }
        if let Some(f) = fps {
            parts.push(format!("{} fps", trim_float(f)));
        }
        if let Some(d) = duration {
            parts.push(format!("{d:.2} s"));
        }
        if let Some(n) = nb_frames {
            parts.push(format!("{n} frames"));
        }
        if live {
            parts.push("live".into());
        }
        let desc = format!("{} ({})", path.display(), parts.join(", "));

        let mut opts = opts.clone();
        opts.every = opts.every.max(1);
        let raw_file_len = match input.format().name() {
            "yuv4mpegpipe" | "rawvideo" if !is_url => std::fs::metadata(path).ok().map(|m| m.len()),
            _ => None,
        };
        Ok(VideoSource {
            path: path.to_path_buf(),
            input,
            stream_index,
            decoder,
            time_base,
            fps,
            rotation,
            opts,
            strict: !is_url,
            scheme,
            live,
            scaler: None,
            decoded: frame::Video::empty(),
            rgb: frame::Video::empty(),
            next_index: 0,
            yielded: 0,
            state: State::Reading,
            pending: None,
            nb_frames,
            desc,
            raw_file_len,
            last_packet_end: 0,
        })
    }

    /// Frames per second the container declares (average rate, else the base rate).
    pub fn fps(&self) -> Option<f64> {
        self.fps
    }

    /// Frame count the container declares (before `start`/`every`/`max_frames`), when it does.
    pub fn frame_count(&self) -> Option<u64> {
        self.nb_frames
    }

    /// Size of the yielded frames (after rotation).
    pub fn size(&self) -> (u32, u32) {
        self.rotation.apply_size(self.decoder.width(), self.decoder.height())
    }

    /// Whether this is a live network stream (see the module doc).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The display-matrix rotation applied to every frame.
    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// Index the next decoded frame will have (frames decoded so far).
    pub fn frames_decoded(&self) -> u64 {
        self.next_index
    }

    fn decode_error(&self, frame: u64, reason: String) -> Error {
        Error::VideoDecode { path: self.path.clone(), frame, reason }
    }

    /// Stop reading: remember the damage (if any) for after the drain, and send EOF to the decoder.
    fn stop_reading(&mut self, damage: Option<String>) {
        if self.pending.is_none() {
            self.pending = damage;
        }
        let _ = self.decoder.send_eof();
        self.state = State::Draining;
    }

    /// Read one packet and feed it to the decoder (or start draining at EOF / damage).
    fn feed(&mut self) {
        let mut packet = Packet::empty();
        let (read, logged) = capture(|| packet.read(&mut self.input));
        match read {
            Ok(()) => {
                if packet.stream() != self.stream_index {
                    return;
                }
                if let Ok(pos) = u64::try_from(packet.position()) {
                    self.last_packet_end = pos + packet.size() as u64;
                }
                if self.strict && packet.is_corrupt() {
                    self.stop_reading(Some(describe_error("truncated or damaged packet", &logged)));
                    return;
                }
                let (sent, dec_logged) = capture(|| self.decoder.send_packet(&packet));
                match sent {
                    Ok(()) => {}
                    Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => {
                        // Cannot happen: frames are always received before the next packet.
                    }
                    Err(e) if !self.strict => {
                        // Network streams: skip the undecodable packet.
                        let _ = e;
                    }
                    Err(e) => self.stop_reading(Some(describe_error(e, &dec_logged))),
                }
            }
            Err(ffmpeg::Error::Eof) => {
                // A clean EOF, unless the demuxer complained on the way (a truncated mkv).
                let mut damage = (self.strict && !logged.is_empty()).then(|| format!("the file ends early ({})", logged.join("; ")));
                if let Some(len) = self.raw_file_len.filter(|&len| damage.is_none() && len > self.last_packet_end) {
                    damage = Some(format!("the file ends inside a frame ({} bytes after the last whole frame)", len - self.last_packet_end));
                }
                self.stop_reading(damage);
            }
            Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => {
                // Non-blocking network input with nothing yet: try again on the next call.
            }
            Err(e) if self.scheme.is_some() => {
                let silent = errno(&e).is_some_and(|n| n == libc::ETIMEDOUT || n == libc::EIO);
                if silent && self.next_index > 0 && matches!(self.scheme.as_deref(), Some("udp" | "rtp")) {
                    // Connectionless streams have no end but silence.
                    self.stop_reading(None);
                } else if silent {
                    let secs = trim_float(self.opts.stream_timeout.as_secs_f64());
                    self.stop_reading(Some(format!("the stream stalled: no data for {secs} s ({})", describe_error(e, &logged))));
                } else {
                    self.stop_reading(Some(format!("the stream broke off: {}", describe_error(e, &logged))));
                }
            }
            Err(e) => self.stop_reading(Some(describe_error(e, &logged))),
        }
    }

    /// The damage found while reading, as the error at the frame reached after draining.
    fn take_pending(&mut self) -> Option<Error> {
        let reason = self.pending.take()?;
        Some(self.decode_error(self.next_index, reason))
    }

    /// Convert the frame in `self.decoded` to a [`Frame`].
    fn convert(&mut self, index: u64) -> Result<Frame> {
        let (w, h) = (self.decoded.width(), self.decoded.height());
        if let Err(limit) = check_limits(&self.opts.decode_limits, w, h) {
            return Err(Error::ImageTooLarge { path: self.path.clone(), width: w, height: h, limit });
        }
        if !self.scaler.as_ref().is_some_and(|s| s.matches(&self.decoded)) {
            let s = Scaler::new(&self.decoded)
                .map_err(|e| self.decode_error(index, format!("cannot convert {:?} to RGB: {e}", self.decoded.format())))?;
            self.scaler = Some(s);
            self.rgb = frame::Video::empty();
        }
        let scaler = self.scaler.as_mut().expect("scaler set above");
        scaler
            .ctx
            .run(&self.decoded, &mut self.rgb)
            .map_err(|e| Error::VideoDecode { path: self.path.clone(), frame: index, reason: format!("RGB conversion failed: {e}") })?;
        let row = w as usize * 3;
        let stride = self.rgb.stride(0);
        let plane = self.rgb.data(0);
        // BGR (what swscale wrote, as for OpenCV) to RGB, row by row out of the padded plane.
        let mut data = vec![0u8; row * h as usize];
        for (y, out) in data.chunks_exact_mut(row).enumerate() {
            let bgr = &plane[y * stride..y * stride + row];
            for (o, i) in out.chunks_exact_mut(3).zip(bgr.chunks_exact(3)) {
                o[0] = i[2];
                o[1] = i[1];
                o[2] = i[0];
            }
        }
        let (data, (fw, fh)) = if self.rotation == Rotation::None {
            (data, (w, h))
        } else {
            (rotate_rgb(&data, w, h, self.rotation), self.rotation.apply_size(w, h))
        };
        let pts_seconds = match self.decoded.timestamp() {
            Some(ts) => Some(ts as f64 * f64::from(self.time_base.numerator()) / f64::from(self.time_base.denominator())),
            None => self.fps.map(|f| index as f64 / f),
        };
        Ok(Frame { index, stream: 0, pts_seconds, name: format!("frame_{index:06}"), width: fw, height: fh, data })
    }

    /// Frames still to yield as declared by the container, after `start`/`every`/`max_frames`.
    fn kept_of(&self, total: u64) -> u64 {
        let o = &self.opts;
        let kept = if total <= o.start { 0 } else { (total - o.start).div_ceil(o.every) };
        o.max_frames.map_or(kept, |m| kept.min(m))
    }
}

fn trim_float(f: f64) -> String {
    let s = format!("{f:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Iterator for VideoSource {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        loop {
            if self.state == State::Done {
                return None;
            }
            if self.opts.max_frames.is_some_and(|m| self.yielded >= m) {
                self.state = State::Done;
                return None;
            }
            let (received, logged) = capture(|| self.decoder.receive_frame(&mut self.decoded));
            match received {
                Ok(()) => {
                    let index = self.next_index;
                    self.next_index += 1;
                    if self.strict && self.decoded.is_corrupt() {
                        self.state = State::Done;
                        let why = describe_error("the decoder flagged the frame as corrupt", &logged);
                        return Some(Err(self.decode_error(index, why)));
                    }
                    if !self.opts.keeps(index) {
                        continue;
                    }
                    match self.convert(index) {
                        Ok(f) => {
                            self.yielded += 1;
                            return Some(Ok(f));
                        }
                        Err(e) => {
                            self.state = State::Done;
                            return Some(Err(e));
                        }
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => match self.state {
                    State::Reading => self.feed(),
                    // A decoder asking for input after EOF: nothing more will come.
                    _ => {
                        self.state = State::Done;
                        return self.take_pending().map(Err);
                    }
                },
                Err(ffmpeg::Error::Eof) => {
                    self.state = State::Done;
                    return self.take_pending().map(Err);
                }
                Err(e) => {
                    self.state = State::Done;
                    let index = self.next_index;
                    let err = self.take_pending().unwrap_or_else(|| self.decode_error(index, describe_error(e, &logged)));
                    return Some(Err(err));
                }
            }
        }
    }
}

impl FrameSource for VideoSource {
    fn is_live(&self) -> bool {
        self.live
    }

    fn len_hint(&self) -> Option<u64> {
        if self.state == State::Done {
            return Some(0);
        }
        let total = self.nb_frames?;
        Some(self.kept_of(total).saturating_sub(self.yielded))
    }

    fn describe(&self) -> String {
        self.desc.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(all(test, feature = "video"))]
mod tests {
    use crate::ffmpeg::test_util::*;
    use super::*;

    fn opts(every: u64, start: u64, max_frames: Option<u64>) -> SourceOptions {
        SourceOptions { every, start, max_frames, ..Default::default() }
    }

    fn collect(src: VideoSource) -> Vec<Frame> {
        src.map(|f| f.unwrap()).collect()
    }

    #[test]
    fn decodes_every_frame_of_common_containers_with_exact_timestamps() {
        let d = scratch("containers");
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("x.mp4", vec!["-pix_fmt", "yuv420p"]),
            ("x.mkv", vec!["-pix_fmt", "yuv420p"]),
            ("x.avi", vec!["-pix_fmt", "yuv420p"]),
            ("x.mov", vec!["-pix_fmt", "yuv420p"]),
            ("x.webm", vec!["-c:v", "libvpx-vp9", "-deadline", "realtime", "-pix_fmt", "yuv420p"]),
        ];
        for (name, extra) in cases {
            let p = testsrc(&d, name, "320x240", 50, &extra);
            let src = VideoSource::open(&p, &SourceOptions::default()).unwrap();
            let desc = src.describe();
            assert!(desc.contains("320x240") && desc.contains("25 fps"), "{desc}");
            let hint = src.len_hint();
            let frames = collect(src);
            assert_eq!(frames.len(), 50, "{name}: {desc}");
            if let Some(n) = hint {
                assert_eq!(n, 50, "{name}: len_hint");
            }
            for (k, f) in frames.iter().enumerate() {
                assert_eq!(f.index, k as u64, "{name}");
                assert_eq!((f.width, f.height, f.data.len()), (320, 240, 320 * 240 * 3), "{name}");
                assert_eq!(f.name, format!("frame_{k:06}"));
                let t = f.pts_seconds.unwrap();
                assert!((t - k as f64 / 25.0).abs() < 1e-6, "{name}: frame {k} at {t}");
            }
            // Frames differ (testsrc moves): not 50 copies of one buffer.
            assert_ne!(frames[0].data, frames[49].data, "{name}");
        }
    }

    #[test]
    fn every_start_and_max_frames_pick_the_right_indices() {
        let d = scratch("select");
        let p = testsrc(&d, "x.mp4", "320x240", 50, &["-pix_fmt", "yuv420p"]);
        let all = collect(VideoSource::open(&p, &SourceOptions::default()).unwrap());

        let src = VideoSource::open(&p, &opts(3, 0, None)).unwrap();
        assert_eq!(src.len_hint(), Some(17));
        let every3 = collect(src);
        assert_eq!(every3.iter().map(|f| f.index).collect::<Vec<_>>(), (0..50).step_by(3).collect::<Vec<_>>());
        for f in &every3 {
            assert_eq!(f.data, all[f.index as usize].data, "frame {} decodes the same when picked", f.index);
            assert!((f.pts_seconds.unwrap() - f.index as f64 / 25.0).abs() < 1e-6);
        }

        let src = VideoSource::open(&p, &opts(1, 10, Some(5))).unwrap();
        assert_eq!(src.len_hint(), Some(5));
        let picked = collect(src);
        assert_eq!(picked.iter().map(|f| f.index).collect::<Vec<_>>(), vec![10, 11, 12, 13, 14]);
        assert_eq!(picked[0].data, all[10].data);

        let picked = collect(VideoSource::open(&p, &opts(4, 45, None)).unwrap());
        assert_eq!(picked.iter().map(|f| f.index).collect::<Vec<_>>(), vec![45, 49]);
        assert!(collect(VideoSource::open(&p, &opts(1, 60, None)).unwrap()).is_empty());
        let mut src = VideoSource::open(&p, &opts(1, 0, Some(0))).unwrap();
        assert!(src.next().is_none());
    }

    #[test]
    fn odd_sizes_and_other_pixel_formats_convert_to_packed_rgb() {
        let d = scratch("odd");
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("odd444.mkv", vec!["-pix_fmt", "yuv444p"]),
            ("odd_ffv1.mkv", vec!["-c:v", "ffv1", "-pix_fmt", "yuv420p"]),
            ("odd_rgb.avi", vec!["-c:v", "rawvideo", "-pix_fmt", "bgr24"]),
            ("odd_mpeg4.avi", vec!["-c:v", "mpeg4", "-pix_fmt", "yuv420p"]),
            ("odd_gray.mkv", vec!["-c:v", "ffv1", "-pix_fmt", "gray"]),
            ("odd_10bit.mkv", vec!["-c:v", "ffv1", "-pix_fmt", "yuv422p10le"]),
        ];
        let mut reference: Option<Vec<u8>> = None;
        for (name, extra) in cases {
            let p = testsrc(&d, name, "321x241", 5, &extra);
            let frames = collect(VideoSource::open(&p, &SourceOptions::default()).unwrap());
            assert_eq!(frames.len(), 5, "{name}");
            let f = &frames[0];
            assert_eq!((f.width, f.height, f.data.len()), (321, 241, 321 * 241 * 3), "{name}");
            // The lossless colour formats agree with each other (up to chroma subsampling).
            if name == "odd_rgb.avi" {
                reference = Some(f.data.clone());
            }
        }
        // Lossless 4:2:2 10-bit and packed BGR differ only by YUV rounding and chroma subsampling.
        let bgr = reference.unwrap();
        let p = d.join("odd_10bit.mkv");
        let yuv = collect(VideoSource::open(&p, &SourceOptions::default()).unwrap()).remove(0).data;
        let mean_abs = bgr.iter().zip(&yuv).map(|(&a, &b)| (a as i32 - b as i32).unsigned_abs() as u64).sum::<u64>() as f64
            / bgr.len() as f64;
        assert!(mean_abs < 6.0, "mean |bgr - yuv422p10| = {mean_abs}");
    }

    #[test]
    fn solid_colours_decode_to_their_rgb_values() {
        let d = scratch("colour");
        for (colour, rgb, extra) in [
            ("red", [255u8, 0, 0], vec!["-pix_fmt", "yuv420p"]),
            ("lime", [0, 255, 0], vec!["-pix_fmt", "yuv420p"]),
            ("blue", [0, 0, 255], vec!["-pix_fmt", "yuvj420p"]),
            ("0x808080", [128, 128, 128], vec!["-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_range", "tv"]),
        ] {
            let p = d.join(format!("{colour}.mp4"));
            let src = format!("color=c={colour}:size=64x48:rate=25");
            let mut args = vec!["-f", "lavfi", "-i", &src, "-frames:v", "3"];
            args.extend_from_slice(&extra);
            args.push(p.to_str().unwrap());
            ffmpeg(&args);
            let frames = collect(VideoSource::open(&p, &SourceOptions::default()).unwrap());
            assert_eq!(frames.len(), 3);
            for f in &frames {
                let n = (f.width * f.height) as usize;
                for (c, &want) in rgb.iter().enumerate() {
                    let mean = f.data.iter().skip(c).step_by(3).map(|&v| v as f64).sum::<f64>() / n as f64;
                    assert!((mean - want as f64).abs() <= 4.0, "{colour}: channel {c} mean {mean}, want {want}");
                }
            }
        }
    }

    #[test]
    fn display_matrix_rotation_is_applied_like_the_ffmpeg_cli() {
        let d = scratch("rotate");
        let p = testsrc(&d, "plain.mp4", "64x48", 2, &["-pix_fmt", "yuv444p", "-qp", "0"]);
        let r = d.join("rot.mp4");
        // FFmpeg 5.1 stores `rotate=90` as a display matrix of +90° (counter-clockwise), which its
        // CLI shows turned a quarter counter-clockwise (`transpose=cclock`): 270° clockwise.
        ffmpeg(&["-i", p.to_str().unwrap(), "-c", "copy", "-metadata:s:v:0", "rotate=90", r.to_str().unwrap()]);
        let plain = collect(VideoSource::open(&p, &SourceOptions::default()).unwrap());
        let src = VideoSource::open(&r, &SourceOptions::default()).unwrap();
        assert_eq!(src.rotation(), Rotation::Cw270, "{}", src.describe());
        assert_eq!(src.size(), (48, 64));
        let rot = collect(src);
        assert_eq!((rot[0].width, rot[0].height), (48, 64));
        assert_eq!(rot[0].data, rotate_rgb(&plain[0].data, 64, 48, Rotation::Cw270));

        // The CLI's own autorotated decode agrees (up to its different swscale flags).
        let raw = d.join("cli.rgb");
        ffmpeg(&["-i", r.to_str().unwrap(), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", raw.to_str().unwrap()]);
        let cli = std::fs::read(&raw).unwrap();
        assert_eq!(cli.len(), rot[0].data.len());
        let mad = cli.iter().zip(&rot[0].data).map(|(&a, &b)| (a as i32 - b as i32).unsigned_abs() as u64).sum::<u64>() as f64
            / cli.len() as f64;
        assert!(mad < 3.0, "mean |cli - ours| = {mad}");
    }

    #[test]
    fn rotate_rgb_moves_pixels_clockwise() {
        // 2x1: [A B] -> 90° cw: column [A; B] (1x2).
        let (a, b) = ([1u8, 2, 3], [4u8, 5, 6]);
        let src = [a, b].concat();
        assert_eq!(rotate_rgb(&src, 2, 1, Rotation::Cw90), [a, b].concat());
        assert_eq!(rotate_rgb(&src, 2, 1, Rotation::Cw270), [b, a].concat());
        assert_eq!(rotate_rgb(&src, 2, 1, Rotation::Cw180), [b, a].concat());
        // 2x2: [A B; C D] -> cw: [C A; D B].
        let c = [7u8, 8, 9];
        let dd = [10u8, 11, 12];
        let sq = [a, b, c, dd].concat();
        assert_eq!(rotate_rgb(&sq, 2, 2, Rotation::Cw90), [c, a, dd, b].concat());
        assert_eq!(Rotation::from_display_ccw_degrees(-90.0), Rotation::Cw90);
        assert_eq!(Rotation::from_display_ccw_degrees(90.0), Rotation::Cw270);
        assert_eq!(Rotation::from_display_ccw_degrees(180.0), Rotation::Cw180);
        assert_eq!(Rotation::from_display_ccw_degrees(-0.0), Rotation::None);
    }

    fn truncate(src: &Path, dst: &Path, percent: u64) {
        let bytes = std::fs::read(src).unwrap();
        std::fs::write(dst, &bytes[..bytes.len() * percent as usize / 100]).unwrap();
    }

    #[test]
    fn truncated_files_yield_the_good_frames_then_one_error() {
        let d = scratch("truncated");
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("x.mkv", vec!["-pix_fmt", "yuv420p"]),
            ("x.mp4", vec!["-pix_fmt", "yuv420p", "-movflags", "+faststart"]),
            ("x.avi", vec!["-pix_fmt", "yuv420p"]),
        ];
        for (name, extra) in cases {
            let p = testsrc(&d, name, "320x240", 50, &extra);
            let t = d.join(format!("cut-{name}"));
            truncate(&p, &t, 60);
            let mut src = VideoSource::open(&t, &SourceOptions::default()).unwrap();
            let mut good = 0u64;
            let err = loop {
                match src.next() {
                    Some(Ok(f)) => {
                        assert_eq!(f.index, good);
                        good += 1;
                    }
                    Some(Err(e)) => break e,
                    None => panic!("{name}: {good} frames and no error for a truncated file"),
                }
            };
            assert!(good > 0 && good < 50, "{name}: {good} good frames");
            assert!(src.next().is_none(), "{name}: the iterator ends after the error");
            assert!(src.next().is_none());
            match &err {
                Error::VideoDecode { path, frame, .. } => {
                    assert_eq!(path, &t);
                    assert_eq!(*frame, good, "{name}: {err}");
                }
                other => panic!("{name}: expected VideoDecode, got {other:?}"),
            }
            let msg = err.to_string();
            assert!(msg.contains(&format!("cut-{name}")) && msg.contains(&format!("frame {good}")), "{msg}");
            eprintln!("{name}: {good} frames, then: {msg}");
        }
    }

    #[test]
    fn missing_and_non_video_files_are_typed_errors() {
        let d = scratch("bad");
        let missing = d.join("missing.mp4");
        assert!(matches!(VideoSource::open(&missing, &SourceOptions::default()), Err(Error::InputNotFound { .. })));

        let text = d.join("notes.mp4");
        std::fs::write(&text, "these are not the frames you are looking for\n".repeat(50)).unwrap();
        let e = VideoSource::open(&text, &SourceOptions::default()).err().unwrap();
        assert!(matches!(e, Error::VideoOpen { .. }), "{e:?}");
        assert!(e.to_string().contains("notes.mp4"), "{e}");
        eprintln!("{e}");

        // An mp4 cut before its index (moov at the end) cannot be opened at all.
        let p = testsrc(&d, "x.mp4", "64x48", 50, &["-pix_fmt", "yuv420p"]);
        let bytes = std::fs::read(&p).unwrap();
        let cut = d.join("cut.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = VideoSource::open(&cut, &SourceOptions::default()).err().unwrap();
        assert!(matches!(e, Error::VideoOpen { .. }) && e.to_string().contains("cut.mp4"), "{e:?}");
        eprintln!("{e}");

        let empty = d.join("empty.mkv");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(VideoSource::open(&empty, &SourceOptions::default()), Err(Error::VideoOpen { .. })));

        let audio = d.join("tone.mkv");
        ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", audio.to_str().unwrap()]);
        let e = VideoSource::open(&audio, &SourceOptions::default()).err().unwrap();
        assert!(matches!(e, Error::VideoOpen { .. }) && e.to_string().contains("no video stream"), "{e}");
        eprintln!("{e}");
    }

    #[test]
    fn sources_are_send() {
        fn send<T: Send>() {}
        send::<VideoSource>();
        send::<crate::sink::video::VideoWriter>();
    }

    #[test]
    fn decode_limits_refuse_large_frames() {
        let d = scratch("limits");
        let p = testsrc(&d, "x.mkv", "320x240", 2, &["-pix_fmt", "yuv420p"]);
        let o = SourceOptions {
            decode_limits: DecodeLimits { max_width: 100, ..Default::default() },
            ..Default::default()
        };
        let e = VideoSource::open(&p, &o).err().unwrap();
        assert!(matches!(e, Error::ImageTooLarge { width: 320, height: 240, .. }), "{e:?}");
    }

    fn rss_kib() -> u64 {
        crate::memory::rss_kib().expect("VmRSS in /proc/self/status")
    }

    #[test]
    fn long_videos_are_streamed_in_constant_memory() {
        let d = scratch("long");
        let p = testsrc(&d, "long.mkv", "320x240", 2000, &["-pix_fmt", "yuv420p", "-preset", "ultrafast"]);
        let mut at_100 = 0;
        let mut n = 0u64;
        let mut checksum = 0u64;
        for f in VideoSource::open(&p, &SourceOptions::default()).unwrap() {
            let f = f.unwrap();
            assert_eq!(f.index, n);
            checksum = f.data.iter().step_by(997).fold(checksum, |c, &v| c.wrapping_mul(31).wrapping_add(v as u64));
            n += 1;
            if n == 100 {
                at_100 = rss_kib();
            }
        }
        let end = rss_kib();
        assert_eq!(n, 2000);
        let growth = end as i64 - at_100 as i64;
        eprintln!("RSS at frame 100: {at_100} KiB, after 2000 frames: {end} KiB (growth {growth} KiB), checksum {checksum}");
        assert!(growth < 50 * 1024, "RSS grew by {growth} KiB while decoding");
    }
}
