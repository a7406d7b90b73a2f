//! Frames and frame sources: what every input (image, folder, video, camera) yields.

use crate::error::Result;
use crate::view::{ImageView, PixelFormat};

/// One decoded RGB8 frame with where it came from.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Position in the source (0-based, counting frames skipped by `--every`/`--start` too).
    pub index: u64,
    /// Which input of a run the frame comes from (0 for a single source; [`super::open_all`]
    /// numbers its inputs), so that temporal state follows streams without guessing.
    pub stream: u32,
    /// Presentation time in seconds, for video and camera frames.
    pub pts_seconds: Option<f64>,
    /// A name for output files: the image's file stem, or `frame_000123`.
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Packed RGB8, `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl Frame {
    pub fn view(&self) -> Result<ImageView<'_>> {
        ImageView::packed(&self.data, self.width, self.height, PixelFormat::Rgb8)
    }
}

/// A stream of frames, decoded one at a time (never all in memory).
pub trait FrameSource: Iterator<Item = Result<Frame>> + Send {
    /// Number of frames this source will yield, when known up front.
    fn len_hint(&self) -> Option<u64> {
        None
    }
    /// Short description for logs and summaries (path, codec, size, fps).
    fn describe(&self) -> String;
    /// Whether the frames this source yields now come in real time and wait for nobody (a camera,
    /// a network stream): a consumer that falls behind should take the newest frame rather than
    /// queue them ([`crate::pipeline::LivePolicy`]). Files are not live (the default).
    fn is_live(&self) -> bool {
        false
    }
}
