//! Where pixels come from. `image`: still image files decoded to RGB8. (Video sources live here too
//! when they exist; they hand frames to [`crate::preprocess::Preprocessor`] as borrowed views.)

pub mod image;
