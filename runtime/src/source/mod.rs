//! Where pixels come from. [`open()`] turns an input argument into a [`FrameSource`]: `files` (one
//! image, a folder, a glob), video and camera sources; `image` decodes still image files to RGB8.

pub mod files;
pub mod frame;
pub mod image;
pub mod open;
pub mod prefetch;
#[cfg(feature = "video")]
pub mod video;
#[cfg(feature = "camera")]
pub mod camera;

pub use frame::{Frame, FrameSource};
pub use open::{is_live_input, open, open_all, SourceOptions, DEFAULT_STREAM_TIMEOUT};
pub use prefetch::{ByteBudget, Newest, Prefetch};
