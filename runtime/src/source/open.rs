//! One entry point from a user's input argument to a frame source: [`open`] decides what a path
//! is (folder, glob, image, video, camera) so that the CLI, the C ABI and examples agree.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::{has_image_extension, ImageFiles};
use super::frame::{Frame, FrameSource};
use super::image::DecodeLimits;
use crate::error::{Error, Result};

/// Which frames of a source to read, and how to decode them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOptions {
    /// Keep every `every`-th frame from `start` on (1 = all; 0 is taken as 1).
    pub every: u64,
    /// Index of the first frame kept (frames before it are skipped, not decoded where avoidable).
    pub start: u64,
    /// Stop after this many kept frames.
    pub max_frames: Option<u64>,
    /// Caps checked before decoding image files (decompression bombs).
    pub decode_limits: DecodeLimits,
    /// Network streams: longest wait for a connection or for data, so that a dead or silent
    /// server ends the run with an error instead of hanging it (default [`DEFAULT_STREAM_TIMEOUT`]).
    pub stream_timeout: Duration,
}

/// Default [`SourceOptions::stream_timeout`].
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions { every: 1, start: 0, max_frames: None, decode_limits: DecodeLimits::default(), stream_timeout: DEFAULT_STREAM_TIMEOUT }
    }
}

impl SourceOptions {
    /// Whether the frame at position `index` of a source is kept by `start` and `every`.
    pub fn keeps(&self, index: u64) -> bool {
        index >= self.start && (index - self.start).is_multiple_of(self.every.max(1))
    }
}

/// What an input argument names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Folder,
    Glob,
    Image,
    Video,
    /// A network stream (`rtsp://`, `http://`, `udp://`, … see [`STREAM_SCHEMES`]), read through
    /// the video source: live, so a consumer that falls behind gets the newest frame.
    Stream,
    Camera,
}

/// URL schemes read as live network streams (through FFmpeg, feature `video`), lower case. Any
/// other `scheme://` is handed to FFmpeg as a video it reads at its own pace.
pub const STREAM_SCHEMES: &[&str] = &["rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp", "tls"];

/// The scheme of `input` when it is a network stream URL ([`STREAM_SCHEMES`]), lower case.
pub fn stream_scheme(input: &Path) -> Option<String> {
    let text = input.to_str()?;
    let (scheme, _) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    STREAM_SCHEMES.contains(&scheme.as_str()).then_some(scheme)
}

/// Whether `input` names a live source: a camera or a network stream. Such sources do not wait
/// for the model, so [`crate::pipeline::LivePolicy::Newest`] applies to them.
pub fn is_live_input(input: &Path) -> bool {
    input.to_string_lossy().starts_with("/dev/video") || stream_scheme(input).is_some()
}

/// Container extensions read as video (through FFmpeg, feature `video`), lower case.
pub const VIDEO_EXTENSIONS: &[&str] =
    &["mp4", "mkv", "avi", "mov", "webm", "m4v", "mpg", "mpeg", "ts", "m2ts", "mts", "wmv", "flv", "3gp", "ogv", "y4m"];

fn has_video_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn is_glob(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '['])
}

/// Decide what `input` is. An existing path wins over a glob reading of the same text; a file
/// with an unknown extension is read as an image (its content decides the format).
pub fn classify(input: &Path) -> Result<InputKind> {
    let text = input.to_string_lossy();
    if text.starts_with("/dev/video") {
        return Ok(InputKind::Camera);
    }
    if stream_scheme(input).is_some() {
        return Ok(InputKind::Stream);
    }
    if text.contains("://") {
        // Other FFmpeg protocols (file://, …) are for the video source.
        return Ok(InputKind::Video);
    }
    if input.is_dir() {
        return Ok(InputKind::Folder);
    }
    if input.exists() {
        return Ok(if has_video_extension(input) && !has_image_extension(input) { InputKind::Video } else { InputKind::Image });
    }
    if is_glob(input) {
        return Ok(InputKind::Glob);
    }
    Err(Error::InputNotFound { path: input.to_path_buf() })
}

/// Open one input: a folder (its images, natural order), a glob pattern, an image file, a video
/// file or network stream (`rtsp://`, `http://`, `udp://`, `tcp://`, `srt://`; feature `video`) or
/// a camera `/dev/videoN` (feature `camera`).
///
/// Frames are decoded one at a time as the iterator is advanced (memory stays flat on long videos).
///
/// ```
/// use msf_runtime::source::{open, SourceOptions};
/// # let folder = msf_tests::fixture_image("camera.png").parent().unwrap().to_path_buf();
/// let opts = SourceOptions { max_frames: Some(2), ..SourceOptions::default() };
/// let mut n = 0;
/// for frame in open(&folder, &opts)? {     // a folder of images, a video, "/dev/video0", …
///     let frame = frame?;                  // a bad file is an error for that frame only
///     println!("{} {}×{}", frame.name, frame.width, frame.height);
///     n += 1;
/// }
/// assert_eq!(n, 2);
/// # Ok::<(), msf_runtime::Error>(())
/// ```
pub fn open(input: &Path, opts: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    match classify(input)? {
        InputKind::Folder => Ok(Box::new(ImageFiles::folder(input, opts)?)),
        InputKind::Glob => Ok(Box::new(ImageFiles::glob(input, opts)?)),
        InputKind::Image => Ok(Box::new(ImageFiles::single(input, opts))),
        InputKind::Video | InputKind::Stream => open_video(input, opts),
        InputKind::Camera => open_camera(input, opts),
    }
}

#[cfg(feature = "video")]
fn open_video(input: &Path, opts: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    Ok(Box::new(super::video::VideoSource::open(input, opts)?))
}

#[cfg(not(feature = "video"))]
fn open_video(input: &Path, _: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    Err(Error::UnsupportedInput {
        path: input.to_path_buf(),
        reason: "reading video needs a build with `--features video` (FFmpeg)".into(),
    })
}

#[cfg(feature = "camera")]
fn open_camera(input: &Path, opts: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    Ok(Box::new(super::camera::CameraSource::open(input, opts)?))
}

#[cfg(not(feature = "camera"))]
fn open_camera(input: &Path, _: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    Err(Error::UnsupportedInput {
        path: input.to_path_buf(),
        reason: "reading a camera needs a build with `--features camera` (V4L2)".into(),
    })
}

/// Open several inputs as one stream, in order. Consecutive image files (a shell-expanded
/// `*.jpg`) become one list, so `start`/`every` count over them as the user sees them;
/// `max_frames` caps the whole stream. Every input is opened (and checked) before any frame is read.
pub fn open_all(inputs: &[PathBuf], opts: &SourceOptions) -> Result<Box<dyn FrameSource>> {
    let mut sources: VecDeque<Box<dyn FrameSource>> = VecDeque::new();
    let mut images: Vec<PathBuf> = Vec::new();
    let flush = |images: &mut Vec<PathBuf>, sources: &mut VecDeque<Box<dyn FrameSource>>| {
        match images.len() {
            0 => {}
            1 => sources.push_back(Box::new(ImageFiles::single(&images[0], opts))),
            n => {
                let desc = format!("{n} image files");
                sources.push_back(Box::new(ImageFiles::new(std::mem::take(images), opts, desc)));
            }
        }
        images.clear();
    };
    for input in inputs {
        if classify(input)? == InputKind::Image {
            images.push(input.clone());
        } else {
            flush(&mut images, &mut sources);
            sources.push_back(open(input, opts)?);
        }
    }
    flush(&mut images, &mut sources);
    if sources.len() == 1 {
        return Ok(sources.pop_front().expect("one source"));
    }
    Ok(Box::new(Chain { sources, taken: 0, max: opts.max_frames, stream: 0 }))
}

/// Sources one after the other, capped at `max` frames in all; each source's frames carry its
/// position as their [`Frame::stream`].
struct Chain {
    sources: VecDeque<Box<dyn FrameSource>>,
    taken: u64,
    max: Option<u64>,
    stream: u32,
}

impl Iterator for Chain {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        if self.max.is_some_and(|m| self.taken >= m) {
            return None;
        }
        while let Some(src) = self.sources.front_mut() {
            if let Some(item) = src.next() {
                self.taken += 1;
                let stream = self.stream;
                return Some(item.map(|f| Frame { stream, ..f }));
            }
            self.sources.pop_front();
            self.stream += 1;
        }
        None
    }
}

impl FrameSource for Chain {
    fn len_hint(&self) -> Option<u64> {
        let total = self.sources.iter().map(|s| s.len_hint()).sum::<Option<u64>>()?;
        Some(self.max.map_or(total, |m| total.min(m.saturating_sub(self.taken))))
    }
    fn describe(&self) -> String {
        self.sources.iter().map(|s| s.describe()).collect::<Vec<_>>().join(", ")
    }
    /// Whether the source being read now is live.
    fn is_live(&self) -> bool {
        self.sources.front().is_some_and(|s| s.is_live())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("msf-open-tests-{}", std::process::id())).join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn classify_by_what_the_path_is() {
        let d = scratch("classify");
        for f in ["a.png", "b.MP4", "c.weird"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        assert_eq!(classify(&d).unwrap(), InputKind::Folder);
        assert_eq!(classify(&d.join("a.png")).unwrap(), InputKind::Image);
        assert_eq!(classify(&d.join("b.MP4")).unwrap(), InputKind::Video);
        assert_eq!(classify(&d.join("c.weird")).unwrap(), InputKind::Image);
        assert_eq!(classify(&d.join("*.png")).unwrap(), InputKind::Glob);
        assert_eq!(classify(Path::new("/dev/video0")).unwrap(), InputKind::Camera);
        for url in ["rtsp://cam.local/stream", "HTTP://127.0.0.1:8080/x.ts", "https://h/x", "udp://127.0.0.1:5000", "tcp://[::1]:9", "srt://h:1?mode=caller"] {
            assert_eq!(classify(Path::new(url)).unwrap(), InputKind::Stream, "{url}");
            assert!(is_live_input(Path::new(url)), "{url}");
        }
        assert_eq!(classify(Path::new("file:///videos/x.mp4")).unwrap(), InputKind::Video);
        assert!(!is_live_input(Path::new("file:///videos/x.mp4")) && !is_live_input(&d.join("b.MP4")));
        assert!(is_live_input(Path::new("/dev/video0")));
        assert!(matches!(classify(&d.join("missing.png")), Err(Error::InputNotFound { .. })));
    }

    #[cfg(not(feature = "video"))]
    #[test]
    fn video_without_the_feature_says_how_to_get_it() {
        let d = scratch("video");
        std::fs::write(d.join("v.mp4"), b"x").unwrap();
        let e = open(&d.join("v.mp4"), &SourceOptions::default()).err().unwrap();
        assert!(e.to_string().contains("--features video"), "{e}");
    }

    #[test]
    fn consecutive_images_are_one_list_and_max_frames_caps_the_run() {
        let d = scratch("chain");
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([1, 2, 3]));
        let mut inputs = Vec::new();
        for i in 0..5 {
            let p = d.join(format!("i{i}.png"));
            img.save(&p).unwrap();
            inputs.push(p);
        }
        let sub = d.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        img.save(sub.join("s1.png")).unwrap();
        img.save(sub.join("s2.png")).unwrap();
        inputs.push(sub);

        let opts = SourceOptions { every: 2, ..Default::default() };
        let names: Vec<String> = open_all(&inputs, &opts).unwrap().map(|f| f.unwrap().name).collect();
        assert_eq!(names, ["i0", "i2", "i4", "s1"]);
        let streams: Vec<u32> = open_all(&inputs, &opts).unwrap().map(|f| f.unwrap().stream).collect();
        assert_eq!(streams, [0, 0, 0, 1], "the image list is one stream, the folder the next");

        let opts = SourceOptions { max_frames: Some(6), ..Default::default() };
        let src = open_all(&inputs, &opts).unwrap();
        assert_eq!(src.len_hint(), Some(6));
        assert_eq!(src.count(), 6);
    }
}
