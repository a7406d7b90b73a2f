//! A list of image files as one frame source: a single image, a folder, or a glob pattern.
//!
//! Files are sorted in natural order (`frame2` before `frame10`), the way people number frames, and
//! `--start`/`--every`/`--max-frames` pick paths before anything is decoded. Each file is decoded
//! only when its frame is asked for, so a folder of a million frames costs one frame of memory.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use super::frame::{Frame, FrameSource};
use super::image::load_image;
use super::open::SourceOptions;
use crate::error::{Error, Result};

/// Extensions read as still images (the decoders this crate is built with), lower case.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"];

/// True when `path` has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Image files decoded one at a time, in the order given.
pub struct ImageFiles {
    /// (index in the full list, path) of the files kept by the options, in order.
    files: std::vec::IntoIter<(u64, PathBuf)>,
    opts: SourceOptions,
    desc: String,
}

impl ImageFiles {
    /// `paths` in this order; `start`/`every`/`max_frames` of `opts` choose which are read.
    pub fn new(paths: Vec<PathBuf>, opts: &SourceOptions, desc: String) -> Self {
        let kept: Vec<(u64, PathBuf)> = paths
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i as u64, p))
            .filter(|(i, _)| opts.keeps(*i))
            .take(opts.max_frames.map_or(usize::MAX, |m| m.try_into().unwrap_or(usize::MAX)))
            .collect();
        ImageFiles { files: kept.into_iter(), opts: opts.clone(), desc }
    }

    /// One image file.
    pub fn single(path: &Path, opts: &SourceOptions) -> Self {
        Self::new(vec![path.to_path_buf()], opts, path.display().to_string())
    }

    /// The image files directly inside `dir` (not recursive; hidden files skipped), natural order.
    pub fn folder(dir: &Path, opts: &SourceOptions) -> Result<Self> {
        let list_err = |e: std::io::Error| Error::ListInput { path: dir.to_path_buf(), reason: e.to_string() };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(list_err)? {
            let p = entry.map_err(list_err)?.path();
            let hidden = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if !hidden && p.is_file() && has_image_extension(&p) {
                paths.push(p);
            }
        }
        if paths.is_empty() {
            let what = format!("looked for {} files directly inside the folder", IMAGE_EXTENSIONS.join("/"));
            return Err(Error::NoImages { path: dir.to_path_buf(), what });
        }
        paths.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
        let n = paths.len();
        Ok(Self::new(paths, opts, format!("{} ({n} images)", dir.display())))
    }

    /// The files matching a glob pattern (`frames/*.jpg`), natural order. Every match is read as an
    /// image, whatever its extension: the pattern already says which files the user means.
    pub fn glob(pattern: &Path, opts: &SourceOptions) -> Result<Self> {
        let list_err = |reason: String| Error::ListInput { path: pattern.to_path_buf(), reason };
        let text = pattern.to_str().ok_or_else(|| list_err("the pattern is not valid UTF-8".into()))?;
        let mut paths = Vec::new();
        for entry in glob::glob(text).map_err(|e| list_err(e.to_string()))? {
            let p = entry.map_err(|e| list_err(e.to_string()))?;
            if p.is_file() {
                paths.push(p);
            }
        }
        if paths.is_empty() {
            return Err(Error::NoImages { path: pattern.to_path_buf(), what: "the pattern matches no file".into() });
        }
        paths.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
        let n = paths.len();
        Ok(Self::new(paths, opts, format!("{text} ({n} images)")))
    }
}

impl Iterator for ImageFiles {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        let (index, path) = self.files.next()?;
        Some(load_image(&path, &self.opts.decode_limits).map(|rgb| Frame {
            index,
            stream: 0,
            pts_seconds: None,
            name: path.file_stem().map_or_else(|| format!("frame_{index:06}"), |s| s.to_string_lossy().into_owned()),
            width: rgb.width(),
            height: rgb.height(),
            data: rgb.into_raw(),
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.files.size_hint()
    }
}

impl FrameSource for ImageFiles {
    fn len_hint(&self) -> Option<u64> {
        Some(self.files.len() as u64)
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
}

/// Natural order: runs of ASCII digits compare by value (`img2` < `img10`), everything else by
/// character; equal values with more leading zeros sort after (`a01` > `a1`) so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let mut zeros_tiebreak = Ordering::Equal;
    loop {
        match (a.first(), b.first()) {
            (None, None) => return zeros_tiebreak,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_digits(a);
                let (db, rb) = split_digits(b);
                let (na, nb) = (trim_zeros(da), trim_zeros(db));
                let by_value = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                if zeros_tiebreak == Ordering::Equal {
                    zeros_tiebreak = da.len().cmp(&db.len());
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    // Compare whole UTF-8 sequences the same way as bytes: byte order is code point order.
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_sorts_frame_numbers_by_value() {
        let mut v = vec!["f10.png", "f2.png", "f1.png", "f02.png", "g.png", "f100.png", "f.png", "f1a.png"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["f.png", "f1.png", "f1a.png", "f2.png", "f02.png", "f10.png", "f100.png", "g.png"]);
        assert_eq!(natural_cmp("x99999999999999999999999", "x100000000000000000000000"), Ordering::Less);
        assert_eq!(natural_cmp("same", "same"), Ordering::Equal);
    }

    #[test]
    fn start_every_max_pick_paths_before_decoding() {
        let paths: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("/nonexistent/{i}.png"))).collect();
        let opts = SourceOptions { start: 2, every: 3, max_frames: Some(2), ..Default::default() };
        let src = ImageFiles::new(paths, &opts, "t".into());
        assert_eq!(src.len_hint(), Some(2));
        let picked: Vec<u64> = src.files.as_slice().iter().map(|(i, _)| *i).collect();
        assert_eq!(picked, [2, 5]);
    }
}
