//! The DAVIS layout of an output folder ([`Layout::Davis`]): one folder per sequence (per input
//! stream, [`Frame::stream`](crate::source::Frame::stream)), frames numbered `00000`, `00001`, …
//!
//! ```text
//! masks/<sequence>/00000.png     pixel = slot id + 1 (1..K), 0 where no slot is (outside the crop)
//! overlays/<sequence>/00000.jpg  slots/<sequence>/00000.npy  attn/<sequence>/00000.npy
//! ```
//! `masks/` is then a DAVIS results folder as the DAVIS 2017 evaluation reads it
//! (`--results_path OUT/masks`): per sequence one indexed PNG per frame with the DAVIS palette,
//! 0 = background. A frame's number is its position in its input ([`Frame::index`]), so that the
//! files line up with the input's frames (`--every 2` gives `00000`, `00002`, …).
//!
//! [`Frame::index`]: crate::source::Frame::index

use std::path::{Path, PathBuf};

use super::LabelMap;
use crate::decompose::VOID;
use crate::source::open::{classify, InputKind};

/// How [`super::FrameWriter`] arranges the files of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// `masks/<name>.png` with the frame's name (an image's file stem, `frame_000123` for video);
    /// pixel = slot id, 255 = void.
    #[default]
    Flat,
    /// `masks/<sequence>/<nnnnn>.png`, pixel = slot id + 1, 0 = void (see the module doc).
    Davis,
}

crate::names::named_enum!(Layout, "layout", { Flat => "flat", Davis => "davis" });

/// A label map in the DAVIS convention: slot id + 1, [`VOID`] → 0.
pub fn davis_labels(map: &LabelMap) -> LabelMap {
    let labels = map.labels.iter().map(|&l| if l == VOID { 0 } else { l.saturating_add(1) }).collect();
    LabelMap { width: map.width, height: map.height, labels }
}

/// The sequence name of each stream that [`crate::source::open_all`] makes of `inputs`, in stream
/// order: a folder's name, a video's file stem, a glob pattern's folder, a camera's device name;
/// consecutive image files are one stream (as `open_all` reads them), named after their folder, or
/// after the file's stem when it is a single image. Names may repeat; [`super::FrameWriter`] makes
/// them unique (`name`, `name_2`, …).
pub fn sequence_names(inputs: &[PathBuf]) -> Vec<String> {
    let mut names = Vec::new();
    let mut images: Vec<&Path> = Vec::new();
    fn flush(images: &mut Vec<&Path>, names: &mut Vec<String>) {
        match images.as_slice() {
            [] => {}
            [one] => names.push(stem(one)),
            [first, rest @ ..] => {
                let parent = first.parent().unwrap_or(Path::new(""));
                names.push(if rest.iter().all(|p| p.parent().unwrap_or(Path::new("")) == parent) { dir_name(parent) } else { stem(first) });
            }
        }
        images.clear();
    }
    for input in inputs {
        let kind = classify(input).ok();
        if kind == Some(InputKind::Image) {
            images.push(input);
            continue;
        }
        flush(&mut images, &mut names);
        names.push(match kind {
            Some(InputKind::Folder) => dir_name(input),
            Some(InputKind::Glob) => {
                // The last folder of the pattern without wildcards: `shots/*.png` → `shots`.
                let plain = input.ancestors().skip(1).find(|p| !p.to_string_lossy().contains(['*', '?', '[']));
                dir_name(plain.unwrap_or(Path::new("")))
            }
            _ => stem(input),
        });
    }
    flush(&mut images, &mut names);
    names
}

fn stem(p: &Path) -> String {
    p.file_stem().map_or_else(|| "sequence".to_string(), |s| s.to_string_lossy().into_owned())
}

/// A folder's own name; `.`, `..` and `` are resolved first.
fn dir_name(p: &Path) -> String {
    let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    let named = p.file_name().filter(|_| !matches!(p.components().next_back(), Some(std::path::Component::ParentDir)));
    match named {
        Some(n) => n.to_string_lossy().into_owned(),
        None => std::fs::canonicalize(p).ok().and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_else(|| "sequence".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_shift_by_one_and_void_becomes_zero() {
        let map = LabelMap { width: 3, height: 1, labels: vec![VOID, 0, 4] };
        assert_eq!(davis_labels(&map).labels, [0, 1, 5]);
    }

    #[test]
    fn layout_names_round_trip() {
        for &n in Layout::NAMES {
            assert_eq!(n.parse::<Layout>().unwrap().as_str(), n);
        }
        assert!("tree".parse::<Layout>().is_err());
    }

    #[test]
    fn sequence_names_follow_the_streams_open_all_makes() {
        let d = std::env::temp_dir().join(format!("msf-davis-names-{}", std::process::id()));
        let (bear, car) = (d.join("bear"), d.join("car"));
        std::fs::create_dir_all(&bear).unwrap();
        std::fs::create_dir_all(&car).unwrap();
        for f in ["00000.png", "00001.png"] {
            std::fs::write(bear.join(f), b"x").unwrap();
        }
        std::fs::write(d.join("clip.mp4"), b"x").unwrap();
        let inputs = vec![
            bear.join("00000.png"),
            bear.join("00001.png"), // one stream with the file before: named after the folder
            car.clone(),
            d.join("clip.mp4"),
            bear.join("00000.png"), // a single image: its stem
            car.join("*.png"),
            d.join(".."),
        ];
        let names = sequence_names(&inputs);
        let parent = std::fs::canonicalize(d.parent().unwrap()).unwrap();
        assert_eq!(names, ["bear", "car", "clip", "00000", "car", &parent.file_name().unwrap().to_string_lossy()]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
