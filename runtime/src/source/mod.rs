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
pub use open::{open, open_all, SourceOptions};
pub use prefetch::{ByteBudget, Prefetch};
