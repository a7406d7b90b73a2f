//! Labelled datasets for evaluation (and, with the tch part, training): a built-in generated
//! multi-object dataset with exact instance masks, and a folder of images with index-PNG masks.
//!
//! Labels follow [`crate::metrics`]: 0 background, 1..=254 objects, 255 unannotated.

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;
use std::path::{Path, PathBuf};

/// One labelled image.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub image: RgbImage,
    /// Same size as `image`; one label per pixel.
    pub labels: GrayImage,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{0}: no images (expected DIR/images/*.png|jpg with masks in DIR/masks/<name>.png)")]
    Empty(PathBuf),
    #[error("{image}: no mask {mask}")]
    NoMask { image: PathBuf, mask: PathBuf },
    #[error("{mask}: {mw}×{mh} mask for a {iw}×{ih} image")]
    SizeMismatch { mask: PathBuf, mw: u32, mh: u32, iw: u32, ih: u32 },
    #[error("generated dataset: {0}")]
    Config(String),
}

/// Random shapes with random colours and textures on random backgrounds; sample `i` depends
/// only on `(seed, i)`, so any subset is reproducible without generating the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub count: usize,
    pub seed: u64,
    /// Square side in pixels.
    pub size: u32,
    pub min_objects: usize,
    pub max_objects: usize,
    /// `(width, height)` of frames that are not square (instead of `size`²); objects scale with
    /// the short side.
    pub frame: Option<(u32, u32)>,
    /// The first four objects cross the left, right, top and bottom borders (at least four objects
    /// then): scenes where a centre crop misses objects.
    pub touch_borders: bool,
}

impl Default for Generated {
    fn default() -> Self {
        Generated { count: 100, seed: 0, size: 256, min_objects: 2, max_objects: 5, frame: None, touch_borders: false }
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Ellipse { rx: f32, ry: f32 },
    Rect { hw: f32, hh: f32 },
    Triangle { r: f32 },
    Ring { r_out: f32, r_in: f32 },
}

#[derive(Clone, Copy, Debug)]
enum Texture {
    Solid,
    Stripes { period: f32, angle: f32 },
    Checker { period: f32 },
}

struct Object {
    cx: f32,
    cy: f32,
    /// Rotation (radians) of the shape's frame.
    angle: f32,
    shape: Shape,
    texture: Texture,
    colour: [f32; 3],
    shade: [f32; 3],
}

impl Object {
    fn contains(&self, x: f32, y: f32) -> bool {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
        match self.shape {
            Shape::Ellipse { rx, ry } => (u / rx).powi(2) + (v / ry).powi(2) <= 1.0,
            Shape::Rect { hw, hh } => u.abs() <= hw && v.abs() <= hh,
            Shape::Ring { r_out, r_in } => {
                let d2 = u * u + v * v;
                d2 <= r_out * r_out && d2 >= r_in * r_in
            }
            Shape::Triangle { r } => {
                // Equilateral, circumradius r, one vertex up: inside all three edge half-planes.
                (0..3).all(|k| {
                    let a = std::f32::consts::FRAC_PI_2 + k as f32 * 2.0 * std::f32::consts::FRAC_PI_3;
                    let (ny, nx) = (a + std::f32::consts::PI).sin_cos();
                    u * nx + v * -ny <= r / 2.0
                })
            }
        }
    }

    fn colour_at(&self, x: f32, y: f32) -> [f32; 3] {
        let alt = match self.texture {
            Texture::Solid => false,
            Texture::Stripes { period, angle } => {
                let (s, c) = angle.sin_cos();
                ((x * c + y * s) / period).rem_euclid(2.0) < 1.0
            }
            Texture::Checker { period } => (((x / period).floor() + (y / period).floor()) as i64).rem_euclid(2) == 0,
        };
        if alt {
            self.shade
        } else {
            self.colour
        }
    }
}

fn random_colour(rng: &mut XorShiftRng) -> [f32; 3] {
    // Saturated: one channel high, one low, one anywhere (then shuffled).
    let mut c = [rng.random_range(0.7..1.0f32), rng.random_range(0.0..0.3f32), rng.random_range(0.0..1.0f32)];
    for i in (1..3).rev() {
        c.swap(i, rng.random_range(0..=i));
    }
    c
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt()
}

impl Generated {
    pub fn validate(&self) -> Result<(), DataError> {
        if self.size < 16 {
            return Err(DataError::Config(format!("size {} is below 16 pixels", self.size)));
        }
        if let Some((w, h)) = self.frame {
            if w.min(h) < 16 || w.max(h) > 8192 {
                return Err(DataError::Config(format!("frame {w}×{h}: each side must be 16..=8192 pixels")));
            }
        }
        if self.min_objects == 0 || self.min_objects > self.max_objects || self.max_objects > 254 {
            return Err(DataError::Config(format!("objects {}..={} (want 1 ≤ min ≤ max ≤ 254)", self.min_objects, self.max_objects)));
        }
        Ok(())
    }

    /// Sample `index` (any index; `count` only bounds [`Generated::iter`]).
    pub fn sample(&self, index: usize) -> Sample {
        // SplitMix-style mixing so that neighbouring seeds and indices give unrelated streams.
        let mut z = self.seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let mut rng = XorShiftRng::seed_from_u64(z ^ (z >> 31));
        let (width, height) = self.frame.unwrap_or((self.size, self.size));
        let (fw, fh) = (width as f32, height as f32);
        // Object scale and texture periods follow the short side.
        let s = fw.min(fh);

        let bg_a = random_colour(&mut rng).map(|v| v * 0.6 + 0.2);
        let bg_b = random_colour(&mut rng).map(|v| v * 0.6 + 0.2);
        let gradient_angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        let gradient = rng.random_bool(0.5);

        let min_objects = if self.touch_borders { self.min_objects.max(4) } else { self.min_objects };
        let n = rng.random_range(min_objects..=self.max_objects.max(min_objects));
        let mut objects = Vec::with_capacity(n);
        for _ in 0..n {
            let scale = s * rng.random_range(0.09..0.2f32);
            let shape = match rng.random_range(0..4) {
                0 => Shape::Ellipse { rx: scale, ry: scale * rng.random_range(0.5..1.0f32) },
                1 => Shape::Rect { hw: scale * 0.9, hh: scale * rng.random_range(0.4..0.9f32) },
                2 => Shape::Triangle { r: scale * 1.2 },
                _ => Shape::Ring { r_out: scale, r_in: scale * rng.random_range(0.35..0.6f32) },
            };
            let texture = match rng.random_range(0..3) {
                0 => Texture::Solid,
                1 => Texture::Stripes { period: s * rng.random_range(0.015..0.04f32), angle: rng.random_range(0.0..std::f32::consts::PI) },
                _ => Texture::Checker { period: s * rng.random_range(0.015..0.04f32) },
            };
            // Keep objects distinguishable from the background colours.
            let mut colour = random_colour(&mut rng);
            for _ in 0..8 {
                if distance(colour, bg_a) > 0.5 && distance(colour, bg_b) > 0.5 {
                    break;
                }
                colour = random_colour(&mut rng);
            }
            let shade = colour.map(|v| v * 0.55);
            let margin = 0.12 * s;
            let (mut cx, mut cy) = (rng.random_range(margin..fw - margin), rng.random_range(margin..fh - margin));
            if self.touch_borders && objects.len() < 4 {
                // Centre within a third of the object's scale of the border: the shape crosses it.
                let d = rng.random_range(-0.3..0.3f32) * scale;
                match objects.len() {
                    0 => cx = d,
                    1 => cx = fw + d,
                    2 => cy = d,
                    _ => cy = fh + d,
                }
            }
            objects.push(Object {
                cx,
                cy,
                angle: rng.random_range(0.0..std::f32::consts::TAU),
                shape,
                texture,
                colour,
                shade,
            });
        }

        let mut image = RgbImage::new(width, height);
        let mut labels = GrayImage::new(width, height);
        let (gs, gc) = gradient_angle.sin_cos();
        for y in 0..height {
            for x in 0..width {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                // Topmost object wins: later objects are painted over earlier ones.
                let hit = objects.iter().enumerate().rev().find(|(_, o)| o.contains(fx, fy));
                let (rgb, label) = match hit {
                    Some((i, o)) => (o.colour_at(fx, fy), i as u8 + 1),
                    None => {
                        let t = if gradient { ((fx - fw / 2.0) * gc + (fy - fh / 2.0) * gs) / s + 0.5 } else { 0.0 };
                        let t = t.clamp(0.0, 1.0);
                        (std::array::from_fn(|c| bg_a[c] * (1.0 - t) + bg_b[c] * t), 0)
                    }
                };
                image.put_pixel(x, y, Rgb(rgb.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)));
                labels.put_pixel(x, y, Luma([label]));
            }
        }
        Sample { name: format!("gen_{:05}_{index:06}", self.seed % 100_000), image, labels }
    }

    pub fn iter(&self) -> impl Iterator<Item = Sample> + '_ {
        (0..self.count).map(|i| self.sample(i))
    }
}

/// `DIR/images/<name>.{png,jpg,jpeg,bmp,webp}` with `DIR/masks/<name>.png` (8-bit grey or
/// palette PNG whose pixel values are the labels).
#[derive(Clone, Debug)]
pub struct Folder {
    pub root: PathBuf,
    pub images: Vec<PathBuf>,
}

const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

impl Folder {
    pub fn open(root: &Path) -> Result<Folder, DataError> {
        let dir = root.join("images");
        let read = std::fs::read_dir(&dir).map_err(|e| DataError::Read { path: dir.clone(), reason: e.to_string() })?;
        let mut images: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            // Regular files only: a FIFO named like an image would block the run (as msf-run's scan).
            .filter(|p| p.is_file())
            .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
            .collect();
        images.sort();
        if images.is_empty() {
            return Err(DataError::Empty(root.to_path_buf()));
        }
        Ok(Folder { root: root.to_path_buf(), images })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn mask_path(&self, image: &Path) -> PathBuf {
        let stem = image.file_stem().unwrap_or_default();
        self.root.join("masks").join(stem).with_extension("png")
    }

    pub fn load(&self, index: usize) -> Result<Sample, DataError> {
        let path = &self.images[index];
        let image = msf_runtime::load_image(path, &msf_runtime::DecodeLimits::default()).map_err(|e| DataError::Read { path: path.clone(), reason: e.to_string() })?;
        let mask = self.mask_path(path);
        if !mask.is_file() {
            return Err(DataError::NoMask { image: path.clone(), mask });
        }
        let labels = read_label_png(&mask)?;
        if labels.dimensions() != image.dimensions() {
            let ((mw, mh), (iw, ih)) = (labels.dimensions(), image.dimensions());
            return Err(DataError::SizeMismatch { mask, mw, mh, iw, ih });
        }
        let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        Ok(Sample { name, image, labels })
    }
}

/// COCO panoptic in upstream's layout (`datum/dataset_coco.py`): `DIR/<split>/<name>.jpg`,
/// `DIR/annotations/panoptic_<split>.json` and `DIR/annotations/panoptic_<split>/<name>.png`
/// (segment id = R + 256·G + 256²·B). Labels as upstream's instance mode: "thing" segments are
/// the objects (1, 2, …), "stuff" merges into the background (0), unlabelled pixels are 255.
#[derive(Clone, Debug)]
pub struct CocoPanoptic {
    pub root: PathBuf,
    pub split: String,
    images: Vec<CocoImage>,
    isthing: std::collections::HashMap<u64, bool>,
}

#[derive(Clone, Debug)]
struct CocoImage {
    /// File stem shared by the JPEG and the panoptic PNG.
    stem: String,
    /// Segment id → category id.
    segments: Vec<(u32, u64)>,
}

impl CocoPanoptic {
    pub fn open(root: &Path, split: &str) -> Result<CocoPanoptic, DataError> {
        let json_path = root.join("annotations").join(format!("panoptic_{split}.json"));
        let err = |reason: String| DataError::Read { path: json_path.clone(), reason };
        let text = std::fs::read(&json_path).map_err(|e| err(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?;
        let isthing = v["categories"]
            .as_array()
            .ok_or_else(|| err("no `categories` list".into()))?
            .iter()
            .filter_map(|c| Some((c["id"].as_u64()?, c["isthing"].as_u64()? == 1)))
            .collect();
        let mut images = vec![];
        for a in v["annotations"].as_array().ok_or_else(|| err("no `annotations` list".into()))? {
            let file = a["file_name"].as_str().ok_or_else(|| err("an annotation without `file_name`".into()))?;
            let stem = file.rsplit_once('.').map_or(file, |(s, _)| s).to_string();
            let segments = a["segments_info"]
                .as_array()
                .ok_or_else(|| err(format!("{file}: no `segments_info`")))?
                .iter()
                .filter_map(|s| Some((s["id"].as_u64()? as u32, s["category_id"].as_u64()?)))
                .collect();
            images.push(CocoImage { stem, segments });
        }
        images.sort_by(|a, b| a.stem.cmp(&b.stem));
        if images.is_empty() {
            return Err(DataError::Empty(root.to_path_buf()));
        }
        Ok(CocoPanoptic { root: root.to_path_buf(), split: split.to_string(), images, isthing })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn load(&self, index: usize) -> Result<Sample, DataError> {
        let entry = &self.images[index];
        let image_path = self.root.join(&self.split).join(format!("{}.jpg", entry.stem));
        let limits = msf_runtime::DecodeLimits::default();
        let image = msf_runtime::load_image(&image_path, &limits).map_err(|e| DataError::Read { path: image_path.clone(), reason: e.to_string() })?;
        let png = self.root.join("annotations").join(format!("panoptic_{}", self.split)).join(format!("{}.png", entry.stem));
        let ids = msf_runtime::load_image(&png, &limits).map_err(|e| DataError::Read { path: png.clone(), reason: e.to_string() })?;
        if ids.dimensions() != image.dimensions() {
            let ((mw, mh), (iw, ih)) = (ids.dimensions(), image.dimensions());
            return Err(DataError::SizeMismatch { mask: png, mw, mh, iw, ih });
        }
        // Things in segment-id order become 1, 2, …; stuff is background; id 0 is unlabelled.
        let mut things: Vec<u32> = entry.segments.iter().filter(|(_, c)| self.isthing.get(c).copied().unwrap_or(false)).map(|(id, _)| *id).collect();
        things.sort_unstable();
        if things.len() > 254 {
            return Err(DataError::Read { path: png, reason: format!("{} thing segments (at most 254 fit a label map)", things.len()) });
        }
        let label_of: std::collections::HashMap<u32, u8> = entry
            .segments
            .iter()
            .map(|(id, _)| (*id, things.binary_search(id).map_or(0, |i| i as u8 + 1)))
            .collect();
        let labels = GrayImage::from_fn(ids.width(), ids.height(), |x, y| {
            let p = ids.get_pixel(x, y).0;
            let id = p[0] as u32 + 256 * p[1] as u32 + 65536 * p[2] as u32;
            Luma([if id == 0 { 255 } else { label_of.get(&id).copied().unwrap_or(255) }])
        });
        Ok(Sample { name: entry.stem.clone(), image, labels })
    }
}

/// The raw 8-bit values of a grey or palette PNG (a palette is not expanded: its indices are the labels).
pub fn read_label_png(path: &Path) -> Result<GrayImage, DataError> {
    let err = |reason: String| DataError::Read { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| err(e.to_string()))?;
    let info = reader.info();
    let (w, h) = (info.width, info.height);
    let max = msf_runtime::DecodeLimits::default().max_pixels;
    if u64::from(w) * u64::from(h) > max {
        return Err(err(format!("{w}x{h} is over the decode limit of {max} pixels")));
    }
    if info.bit_depth != png::BitDepth::Eight || !matches!(info.color_type, png::ColorType::Grayscale | png::ColorType::Indexed) {
        return Err(err(format!("a label mask must be an 8-bit grey or palette PNG, not {:?} {:?}", info.color_type, info.bit_depth)));
    }
    let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| err("image too large".into()))?];
    let frame = reader.next_frame(&mut buf).map_err(|e| err(e.to_string()))?;
    buf.truncate(frame.buffer_size());
    GrayImage::from_raw(w, h, buf).ok_or_else(|| err("short pixel data".into()))
}

/// Write a label map as an 8-bit grey PNG (what [`read_label_png`] and [`Folder`] read).
pub fn write_label_png(labels: &GrayImage, path: &Path) -> Result<(), image::ImageError> {
    labels.save_with_format(path, image::ImageFormat::Png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_seed_dependent() {
        let g = Generated { count: 3, ..Default::default() };
        let (a, b) = (g.sample(1), g.sample(1));
        assert_eq!(a.image, b.image);
        assert_eq!(a.labels, b.labels);
        let other = Generated { seed: 1, ..g.clone() }.sample(1);
        assert_ne!(a.image, other.image);
        assert_ne!(g.sample(0).image, a.image);
    }

    #[test]
    fn frames_with_objects_on_every_border() {
        let g = Generated { count: 10, seed: 3, frame: Some((160, 96)), touch_borders: true, ..Default::default() };
        g.validate().unwrap();
        let mut touched = [0; 4];
        for s in g.iter() {
            assert_eq!(s.image.dimensions(), (160, 96));
            let l = &s.labels;
            let on = |mut pts: &mut dyn Iterator<Item = (u32, u32)>| (&mut pts).any(|(x, y)| l.get_pixel(x, y).0[0] != 0);
            for (i, hit) in [
                on(&mut (0..96).map(|y| (0, y))),
                on(&mut (0..96).map(|y| (159, y))),
                on(&mut (0..160).map(|x| (x, 0))),
                on(&mut (0..160).map(|x| (x, 95))),
            ]
            .into_iter()
            .enumerate()
            {
                touched[i] += usize::from(hit);
            }
        }
        // Later objects may cover a border object; nearly every frame still has all four.
        assert!(touched.iter().all(|&t| t >= 8), "{touched:?}");
        assert!(Generated { frame: Some((8, 100)), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn labels_mark_exactly_the_painted_objects() {
        let g = Generated { count: 20, seed: 7, ..Default::default() };
        for s in g.iter() {
            let mut present = [false; 256];
            s.labels.pixels().for_each(|p| present[p.0[0] as usize] = true);
            let objects = present[1..].iter().filter(|&&p| p).count();
            assert!(present[0], "{}: background visible", s.name);
            assert!((1..=g.max_objects).contains(&objects), "{}: {objects} objects", s.name);
            assert!(s.labels.pixels().all(|p| (p.0[0] as usize) <= g.max_objects));
            // Objects are visible: each one's mean colour stands apart from the background's.
            let mean = |label: u8| {
                let px: Vec<[u8; 3]> = s.image.pixels().zip(s.labels.pixels()).filter(|(_, l)| l.0[0] == label).map(|(p, _)| p.0).collect();
                let n = px.len().max(1) as f32;
                std::array::from_fn::<f32, 3, _>(|c| px.iter().map(|p| p[c] as f32).sum::<f32>() / n / 255.0)
            };
            let bg = mean(0);
            for label in (1..=g.max_objects as u8).filter(|&l| present[l as usize]) {
                assert!(distance(mean(label), bg) > 0.1, "{}: object {label} blends into the background", s.name);
            }
        }
    }

    #[test]
    fn label_pngs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Generated::default().sample(3);
        let p = dir.path().join("m.png");
        write_label_png(&s.labels, &p).unwrap();
        assert_eq!(read_label_png(&p).unwrap(), s.labels);
    }
}
