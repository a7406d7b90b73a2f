//! A COCO results file: what `COCO.loadRes` and `COCOeval(iouType="segm")` take as they are.
//!
//! ```text
//! [ {"image_id": 397133, "category_id": 1, "slot_id": 2, "score": 0.87, "area": 5120, "bbox": [x, y, w, h],
//!    "segmentation": {"size": [h, w], "counts": "<COCO compressed RLE>"}}, … ]
//! ```
//! One entry per non-empty slot per frame, the mask at the frame's resolution (pixels outside the
//! region the model saw belong to no slot). `slot_id` ties an entry to the slot's files
//! (`masks/<name>.png` == slot_id, `slots/<name>.npy` row); COCO's tools ignore the extra key.
//!
//! - `image_id`: the frame's name (an image's file stem) when it is all digits, as COCO names its
//!   files (`000000397133.jpg` → 397133); or, with [`ImageIds::from_annotations`], the `id` of the
//!   annotation file's image whose `file_name` has the frame's stem. A frame without an id stops
//!   the run with an error that names it.
//! - `category_id`: one for all (class-agnostic; [`CocoOptions::category_id`], default 1). For a
//!   class-agnostic evaluation on a data set with several categories set `params.useCats = 0`.
//! - `score`: the slot's mean attention over its own mask: at every pixel of the model's mask the
//!   slot won, its attention bilinearly upsampled as the model does before its argmax (the
//!   probability the slot got there), averaged over those pixels. In (1/K, 1]: near 1 for an object
//!   the slots agree on, near 1/K for a slot that won its pixels by a hair. A ranking for COCOeval's
//!   precision/recall curve; it is not calibrated.
//!
//! The file is streamed into a temporary file and renamed into place when the run finishes (also
//! when it was interrupted or failed after some frames: then it holds those frames, as
//! `decomposition.json` does); a run that failed before its first frame leaves no file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::json::{rle_counts, rle_string};
use super::{AtomicFile, LabelMap, MaskRes};
use crate::decompose::Decomposition;
use crate::error::{Error, Result};
use crate::pipeline::{Outcome, RunReport, Sink};
use crate::source::Frame;

/// Where a frame's COCO `image_id` comes from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ImageIds {
    /// The frame's name read as a number, when it is all digits (`000000397133` → 397133).
    #[default]
    FromName,
    /// The `images` of a COCO annotation file: `file_name` (its stem) → `id`.
    Annotations(CocoImages),
}

/// The images (and categories) of a COCO annotation file.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoImages {
    path: PathBuf,
    /// File stem → id; `None` when two images share the stem.
    by_stem: HashMap<String, Option<u64>>,
    categories: Vec<u64>,
}

#[derive(Deserialize)]
struct AnnotationFile {
    images: Vec<AnnotationImage>,
    #[serde(default)]
    categories: Vec<AnnotationCategory>,
}

#[derive(Deserialize)]
struct AnnotationImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct AnnotationCategory {
    id: u64,
}

fn bad_file(path: &Path, reason: String) -> Error {
    Error::UnsupportedInput { path: path.to_path_buf(), reason }
}

impl ImageIds {
    /// Read `images` (and `categories`) of a COCO annotation file (`instances_val2017.json`);
    /// everything else in it is skipped.
    pub fn from_annotations(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| bad_file(path, format!("cannot read the COCO annotation file: {e}")))?;
        let file: AnnotationFile = serde_json::from_slice(&bytes)
            .map_err(|e| bad_file(path, format!("not a COCO annotation file (an object with \"images\": [{{\"id\", \"file_name\"}}]): {e}")))?;
        let mut by_stem: HashMap<String, Option<u64>> = HashMap::new();
        for img in file.images {
            let stem = Path::new(&img.file_name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            by_stem.entry(stem).and_modify(|v| *v = None).or_insert(Some(img.id));
        }
        Ok(ImageIds::Annotations(CocoImages { path: path.to_path_buf(), by_stem, categories: file.categories.into_iter().map(|c| c.id).collect() }))
    }

    /// The `image_id` of the frame named `name` (an image's file stem).
    pub fn image_id(&self, name: &str) -> Result<u64> {
        match self {
            ImageIds::FromName => {
                let id = (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse::<u64>().ok()).flatten();
                id.ok_or_else(|| Error::UnsupportedInput {
                    path: PathBuf::from(name),
                    reason: "the frame's name is not a number, so it gives no COCO image id: map file names to ids with a COCO annotation file (msf-run --coco-images)".into(),
                })
            }
            ImageIds::Annotations(a) => match a.by_stem.get(name) {
                Some(Some(id)) => Ok(*id),
                Some(None) => Err(bad_file(&a.path, format!("two images have the file name `{name}.*`: which id frame `{name}` has is ambiguous"))),
                None => Err(bad_file(&a.path, format!("no image has the file name `{name}.*` (frame `{name}`): the annotation file must list every input image"))),
            },
        }
    }
}

/// What [`CocoResults`] writes.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoOptions {
    /// `category_id` of every entry (class-agnostic results). With an annotation file that lists
    /// categories it must be one of them.
    pub category_id: u64,
    pub image_ids: ImageIds,
}

impl Default for CocoOptions {
    fn default() -> Self {
        CocoOptions { category_id: 1, image_ids: ImageIds::FromName }
    }
}

/// Each slot's mean attention over the pixels of the model's mask it won (see the module doc);
/// 0 for a slot with no pixel.
pub fn slot_scores(dec: &Decomposition) -> Vec<f32> {
    let (k, g, m) = (dec.num_slots, dec.grid, dec.mask_size);
    if g == 0 || m == 0 || dec.attn.len() < k * g * g || dec.mask.len() < m * m {
        return vec![0.0; k];
    }
    // PyTorch's bilinear taps along one axis (the graph's upsample).
    let axis = msf_models::interpolate::LinearAxis::new(g, m);
    let mut sum = vec![0f64; k];
    let mut n = vec![0u64; k];
    for (y, &([y0, y1], [wy0, wy1])) in axis.taps().iter().enumerate() {
        for (x, &([x0, x1], [wx0, wx1])) in axis.taps().iter().enumerate() {
            let l = dec.mask[y * m + x] as usize;
            if l >= k {
                continue;
            }
            let a = &dec.attn[l * g * g..(l + 1) * g * g];
            let top = wx0 * a[y0 * g + x0] + wx1 * a[y0 * g + x1];
            let bottom = wx0 * a[y1 * g + x0] + wx1 * a[y1 * g + x1];
            sum[l] += f64::from(wy0 * top + wy1 * bottom);
            n[l] += 1;
        }
    }
    sum.iter().zip(&n).map(|(&s, &c)| if c > 0 && s.is_finite() { (s / c as f64) as f32 } else { 0.0 }).collect()
}

/// The results entries of one frame: one per non-empty slot, the mask at frame resolution.
pub fn frame_results(dec: &Decomposition, image_id: u64, category_id: u64) -> Vec<Value> {
    let map = LabelMap::new(dec, MaskRes::Frame);
    let extents = map.extents(dec.num_slots);
    let rles = rle_counts(&map, dec.num_slots);
    let scores = slot_scores(dec);
    extents
        .iter()
        .zip(rles)
        .zip(scores)
        .enumerate()
        .filter(|(_, ((e, _), _))| e.area > 0)
        .map(|(slot, ((e, counts), score))| {
            json!({
                "image_id": image_id,
                "category_id": category_id,
                "slot_id": slot,
                // Six decimals: ranks as the f32 does, without its long decimal expansion.
                "score": (f64::from(score) * 1e6).round() / 1e6,
                "area": e.area,
                "bbox": e.bbox,
                "segmentation": {"size": [map.height, map.width], "counts": rle_string(&counts)},
            })
        })
        .collect()
}

/// A [`Sink`] that writes a COCO results file (see the module doc).
pub struct CocoResults {
    path: PathBuf,
    /// `None` once finished.
    file: Option<AtomicFile>,
    opts: CocoOptions,
    frames: u64,
    entries: u64,
}

impl CocoResults {
    /// Start the file (under a temporary name in its folder, which must exist). Refuses a
    /// `category_id` the annotation file's categories do not have.
    pub fn create(path: &Path, opts: CocoOptions) -> Result<Self> {
        if let ImageIds::Annotations(a) = &opts.image_ids {
            if !a.categories.is_empty() && !a.categories.contains(&opts.category_id) {
                return Err(bad_file(&a.path, format!("its categories have no id {} for the results' category_id", opts.category_id)));
            }
        }
        let mut file = AtomicFile::create(path)?;
        file.writer().write_all(b"[").map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
        Ok(CocoResults { path: path.to_path_buf(), file: Some(file), opts, frames: 0, entries: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
    /// Entries (slot masks) written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Add one frame's entries.
    pub fn write(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()> {
        let image_id = self.opts.image_ids.image_id(&frame.name)?;
        let entries = frame_results(dec, image_id, self.opts.category_id);
        let path = self.path.clone();
        let err = |source| Error::Write { path: path.clone(), source };
        let w = self.file.as_mut().ok_or(Error::InvalidConfig("frame written after the COCO results file was closed".into()))?.writer();
        for e in &entries {
            w.write_all(if self.entries == 0 { b"\n" } else { b",\n" }).map_err(err)?;
            serde_json::to_writer(&mut *w, e).map_err(|e| err(e.into()))?;
            self.entries += 1;
        }
        self.frames += 1;
        Ok(())
    }

    /// Close the array and rename the file into place. Returns its path.
    pub fn finish(&mut self) -> Result<PathBuf> {
        let mut file = self.file.take().ok_or(Error::InvalidConfig("the COCO results file was already closed".into()))?;
        file.writer().write_all(b"\n]\n").map_err(|source| Error::Write { path: self.path.clone(), source })?;
        file.commit()?;
        Ok(self.path.clone())
    }
}

impl Sink for CocoResults {
    fn write(&mut self, frame: &Frame, dec: &Decomposition) -> Result<()> {
        CocoResults::write(self, frame, dec)
    }

    /// The file, or, for a failed run that wrote no frame, nothing (the temporary file is removed).
    fn finish(&mut self, report: &RunReport) -> Result<Vec<PathBuf>> {
        if self.frames == 0 && report.outcome == Outcome::Failed {
            drop(self.file.take());
            return Ok(Vec::new());
        }
        Ok(vec![CocoResults::finish(self)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("msf-coco-tests-{}", std::process::id())).join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn image_ids_from_numeric_names() {
        let ids = ImageIds::FromName;
        assert_eq!(ids.image_id("000000397133").unwrap(), 397133);
        assert_eq!(ids.image_id("7").unwrap(), 7);
        for bad in ["camera", "", "12a", "-3", "99999999999999999999999"] {
            let e = ids.image_id(bad).unwrap_err().to_string();
            assert!(e.contains("no COCO image id"), "{bad}: {e}");
        }
    }

    #[test]
    fn image_ids_from_an_annotation_file() {
        let d = scratch("ann");
        let p = d.join("instances.json");
        let ann = json!({
            "images": [{"id": 5, "file_name": "cat.jpg", "width": 4}, {"id": 9, "file_name": "sub/000000000001.jpg"},
                       {"id": 11, "file_name": "dup.jpg"}, {"id": 12, "file_name": "dup.png"}],
            "annotations": [{"id": 1, "image_id": 5}], "categories": [{"id": 1, "name": "thing"}, {"id": 3, "name": "x"}],
        });
        std::fs::write(&p, ann.to_string()).unwrap();
        let ids = ImageIds::from_annotations(&p).unwrap();
        assert_eq!(ids.image_id("cat").unwrap(), 5);
        assert_eq!(ids.image_id("000000000001").unwrap(), 9, "the file name's stem, not the numbers");
        let e = ids.image_id("dog").unwrap_err().to_string();
        assert!(e.contains("instances.json") && e.contains("`dog.*`"), "{e}");
        assert!(ids.image_id("dup").unwrap_err().to_string().contains("ambiguous"));
        let opts = |category_id| CocoOptions { category_id, image_ids: ids.clone() };
        assert!(CocoResults::create(&d.join("r.json"), opts(3)).is_ok());
        let e = CocoResults::create(&d.join("r.json"), opts(2)).err().unwrap().to_string();
        assert!(e.contains("no id 2"), "{e}");

        for (name, text) in [("not-json.json", "this is not json"), ("no-images.json", "{\"annotations\": []}"), ("list.json", "[1, 2]")] {
            std::fs::write(d.join(name), text).unwrap();
            let e = ImageIds::from_annotations(&d.join(name)).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("not a COCO annotation file"), "{e}");
            assert_eq!(e.lines().count(), 1);
        }
        let e = ImageIds::from_annotations(&d.join("missing.json")).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

    /// A 2-slot decomposition of a 6×4 frame whose 4×4 centre crop is the whole model mask.
    fn dec() -> Decomposition {
        let (g, m) = (2usize, 4usize);
        // Slot 0 owns the left half with attention 0.9, slot 1 the right half with 0.6.
        let mut attn = vec![0f32; 2 * g * g];
        for y in 0..g {
            attn[y * g] = 0.9;
            attn[g * g + y * g] = 0.1;
            attn[y * g + 1] = 0.4;
            attn[g * g + y * g + 1] = 0.6;
        }
        let mask = (0..m * m).map(|i| if i % m < 2 { 0 } else { 1 }).collect();
        Decomposition {
            num_slots: 2,
            slot_dim: 1,
            grid: g,
            mask_size: m,
            slots: vec![0.0; 2],
            attn,
            mask,
            frame_width: 6,
            frame_height: 4,
            placement: crate::fit::Fit::Crop.placements(6, 4, 4).unwrap()[0],
            frame_labels: None,
        }
    }

    #[test]
    fn scores_are_the_upsampled_attention_over_the_slots_pixels() {
        let d = dec();
        let s = slot_scores(&d);
        // Columns of the 4-wide mask sample the 2-cell grid at 0, 0.25, 0.75, 1 (clamped): slot 0's
        // columns 0 and 1 get 0.9 and 0.9·0.75 + 0.4·0.25 = 0.775; slot 1's 0.6·0.75 + 0.1·0.25 = 0.475 and 0.6.
        assert!((s[0] - (0.9 + 0.775) / 2.0).abs() < 1e-6, "{s:?}");
        assert!((s[1] - (0.475 + 0.6) / 2.0).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn results_file_has_one_entry_per_non_empty_slot_and_is_written_atomically() {
        let d = scratch("file");
        let p = d.join("results.json");
        let mut r = CocoResults::create(&p, CocoOptions { category_id: 4, image_ids: ImageIds::FromName }).unwrap();
        let frame = |name: &str| Frame { index: 0, stream: 0, pts_seconds: None, name: name.into(), width: 6, height: 4, data: vec![0; 72] };
        let mut one_slot = dec();
        one_slot.mask = vec![1; 16];
        r.write(&frame("0042"), &dec()).unwrap();
        r.write(&frame("43"), &one_slot).unwrap();
        assert!(!p.exists(), "renamed into place only at the end");
        assert!(r.write(&frame("cat"), &dec()).is_err());
        assert_eq!((r.frames(), r.entries()), (2, 3));
        r.finish().unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0]["image_id"], 42);
        assert_eq!(a[0]["category_id"], 4);
        assert_eq!(a[0]["segmentation"]["size"], json!([4, 6]));
        // Frame column 0 and 5 are outside the crop; slot 0 has frame columns 1–2.
        assert_eq!(a[0]["bbox"], json!([1, 0, 2, 4]));
        assert_eq!(a[0]["area"], 8);
        let counts = super::super::json::rle_from_string(a[0]["segmentation"]["counts"].as_str().unwrap()).unwrap();
        assert_eq!(counts, [4, 8, 12]);
        assert_eq!((a[2]["image_id"].as_u64(), a[2]["slot_id"].as_u64()), (Some(43), Some(1)));
        assert!(super::super::tests::leftovers(&d).is_empty());

        // A failed run with no frame leaves nothing; any other run leaves the file.
        let q = d.join("none.json");
        let mut r = CocoResults::create(&q, CocoOptions::default()).unwrap();
        let report = |outcome| RunReport { outcome, frames: 0, skipped: vec![], errors: vec![], seconds: 0.0, finished_files: vec![], frames_dropped: 0, latency: Default::default() };
        assert!(Sink::finish(&mut r, &report(Outcome::Failed)).unwrap().is_empty());
        assert!(!q.exists() && super::super::tests::leftovers(&d).is_empty());
        let mut r = CocoResults::create(&q, CocoOptions::default()).unwrap();
        assert_eq!(Sink::finish(&mut r, &report(Outcome::Done)).unwrap(), std::slice::from_ref(&q));
        assert_eq!(serde_json::from_slice::<Value>(&std::fs::read(&q).unwrap()).unwrap(), json!([]));
    }
}
