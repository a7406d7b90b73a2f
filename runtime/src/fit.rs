//! How a frame of any shape becomes the model's square input, and how the masks come back.
//!
//! The model sees one `image_size`² square. Upstream evaluates on the centre crop, so the sides of
//! a wide frame get no object at all; a robot cannot ignore the edges of its camera image. [`Fit`]
//! chooses how the frame is put into the square:
//!
//! - [`Fit::Crop`]: upstream's centre crop to the largest square (masks cover only that square;
//!   kept for fidelity checks against upstream);
//! - [`Fit::Stretch`]: the whole frame resized to the square (objects are squeezed);
//! - [`Fit::Pad`]: the whole frame resized keeping its aspect ratio, centred on a square of the
//!   normalisation's mean colour (the padding is 0 after normalising; fewer pixels per object);
//! - [`Fit::Tiles`]: overlapping squares of the frame's short side along its long side, one model
//!   view each, whose slots are merged into one set of object ids by mask overlap and slot
//!   similarity ([`merge_tiles`]).
//!
//! A [`Placement`] says where one model view lies in the frame; [`Placement::paint`] maps its mask
//! back to frame pixels.

use crate::decompose::Decomposition;
use crate::error::{Error, Result};
use pathfinding::prelude::{kuhn_munkres, Matrix};

/// How a frame is fitted into the model's square input (see the module doc).
///
/// The default is [`Fit::Stretch`], chosen by measurement (`msf-eval --fit`, README "Whole
/// frame"): on generated 640×480 and 854×480 scenes with objects on every border, scored over the
/// whole frame with the trained demo model, it is the best fit that keeps one model view per frame
/// (mBO 0.47/0.44 against crop's 0.33/0.26 and pad's 0.42/0.34, at crop's cost), so it also serves
/// temporal mode and keeps K slots per frame. [`Fit::Tiles`] scores higher still (mBO 0.52/0.55)
/// at 2.6–3.2× the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Fit {
    /// Centre crop to the largest square, as upstream evaluates.
    Crop,
    /// The whole frame resized to the square.
    #[default]
    Stretch,
    /// The whole frame, aspect ratio kept, padded to a square with the mean colour.
    Pad,
    /// Overlapping squares along the long side, merged into one set of objects.
    Tiles,
}

crate::names::named_enum!(Fit, "fit", { Crop => "crop", Stretch => "stretch", Pad => "pad", Tiles => "tiles" });

impl Fit {
    /// The model views of a `width × height` frame for an input of side `size`: one, or with
    /// [`Fit::Tiles`] as many as [`tile_offsets`] gives.
    pub fn placements(self, width: u32, height: u32, size: u32) -> Result<Vec<Placement>> {
        if width == 0 || height == 0 || size == 0 {
            return Err(Error::ZeroSizeView { width, height });
        }
        let full = Rect { x: 0, y: 0, width, height };
        let square = Rect { x: 0, y: 0, width: size, height: size };
        Ok(match self {
            Fit::Crop => vec![Placement { frame: Rect::centre_square(width, height), input: square, size }],
            Fit::Stretch => vec![Placement { frame: full, input: square, size }],
            Fit::Pad => {
                let long = u64::from(width.max(height));
                // Round half up; at least one input pixel per side.
                let scaled = |v: u32| ((2 * u64::from(v) * u64::from(size) + long) / (2 * long)).clamp(1, u64::from(size)) as u32;
                let (w, h) = (scaled(width), scaled(height));
                vec![Placement { frame: full, input: Rect { x: (size - w) / 2, y: (size - h) / 2, width: w, height: h }, size }]
            }
            Fit::Tiles => {
                let s = width.min(height);
                let along_x = width >= height;
                tile_offsets(width.max(height), s)
                    .into_iter()
                    .map(|o| {
                        let frame = if along_x { Rect { x: o, y: 0, width: s, height: s } } else { Rect { x: 0, y: o, width: s, height: s } };
                        Placement { frame, input: square, size }
                    })
                    .collect()
            }
        })
    }
}

/// Least overlap of neighbouring tiles, as a fraction of the tile side: enough shared pixels to
/// tell which slots show the same object.
pub const TILE_MIN_OVERLAP: f64 = 0.25;

/// Most tiles per frame. Merged ids must also fit a byte (255 is void) even if no slot matches,
/// so a frame may have at most `min(MAX_TILES, 255 / K)` tiles ([`check_tiles`]).
pub const MAX_TILES: usize = 32;

/// Refuse a frame that needs more tiles than [`MAX_TILES`], or whose tiles' `slots` each could give
/// more than 255 object ids (a very elongated frame): one model view per tile would be unbounded work,
/// and the ids would not fit the 8-bit mask.
pub fn check_tiles(tiles: usize, slots: usize, width: u32, height: u32) -> Result<()> {
    let most = MAX_TILES.min(255 / slots.max(1));
    if tiles > most.max(1) {
        return Err(Error::InvalidConfig(format!(
            "fit tiles: a {width}×{height} frame needs {tiles} tiles of {slots} slots, more than the {} a frame may have (ids fit one byte); use fit stretch or pad for frames this elongated",
            most.max(1)
        )));
    }
    Ok(())
}

/// Start offsets of squares of side `side` covering `0..long`, evenly spaced, neighbours
/// overlapping by at least [`TILE_MIN_OVERLAP`]; one square when `long == side`.
pub fn tile_offsets(long: u32, side: u32) -> Vec<u32> {
    if long <= side || side == 0 {
        return vec![0];
    }
    let step = f64::from(side) * (1.0 - TILE_MIN_OVERLAP);
    let n = (f64::from(long - side) / step).ceil() as usize + 1;
    let span = u64::from(long - side);
    (0..n).map(|i| ((span * i as u64 + (n as u64 - 1) / 2) / (n as u64 - 1)) as u32).collect()
}

/// An axis-aligned rectangle in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// Upstream's centre crop of a `width × height` frame: the largest square, `left = (w − s) / 2`,
    /// `top = (h − s) / 2` (integer division: the odd pixel goes to the right/bottom margin).
    pub fn centre_square(width: u32, height: u32) -> Rect {
        let s = width.min(height);
        Rect { x: (width - s) / 2, y: (height - s) / 2, width: s, height: s }
    }
}

/// Where one model view lies in the frame: the frame's rectangle `frame` is resized into the
/// rectangle `input` of the model's `size × size` input (the rest of the input is padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Placement {
    pub frame: Rect,
    pub input: Rect,
    pub size: u32,
}

impl Placement {
    /// For each frame column (row) of the placement's rectangle, the mask column (row) of an
    /// `m × m` mask over the input: nearest neighbour at the pixel centre.
    fn axis(flen: u32, i0: u32, ilen: u32, size: u32, m: usize) -> Vec<usize> {
        let (flen, i0, ilen, size, m) = (u64::from(flen), u64::from(i0), u64::from(ilen), u64::from(size), m as u64);
        (0..flen)
            .map(|i| {
                // u = i0 + (i + ½)·ilen/flen input pixels; mask index ⌊u·m/size⌋.
                let num = (2 * i0 * flen + (2 * i + 1) * ilen) * m;
                (num / (2 * flen * size)).min(m - 1) as usize
            })
            .collect()
    }

    /// Write the `m × m` `mask` of this view into `out`, a `width`-wide frame label map, over the
    /// placement's frame rectangle.
    pub fn paint(&self, mask: &[u8], m: usize, out: &mut [u8], width: usize) {
        let f = self.frame;
        let xs = Self::axis(f.width, self.input.x, self.input.width, self.size, m);
        let ys = Self::axis(f.height, self.input.y, self.input.height, self.size, m);
        for (yy, my) in ys.iter().enumerate() {
            let row = &mut out[(f.y as usize + yy) * width + f.x as usize..][..f.width as usize];
            for (o, mx) in row.iter_mut().zip(&xs) {
                *o = mask[my * m + mx];
            }
        }
    }
}

/// Merge the decompositions of one frame's tiles (in [`Fit::placements`] order) into one: object
/// ids shared across tiles, labels at frame resolution.
///
/// Neighbouring tiles are compared on their overlap: for each pair of slots, the IoU of their masks
/// there and the cosine similarity of the slot vectors. Pairs are assigned one-to-one (Hungarian)
/// and joined when the IoU is at least 0.25, or, for slots with no pixel in the overlap, when the
/// vectors' cosine is at least 0.9 (e.g. the background, split by an object in between). Each frame
/// pixel takes its label from the tile whose centre is nearest. Merged ids are numbered in order of
/// first tile and slot, so the first tile's slots keep their indices; a merged object's vector is
/// the area-weighted mean of its slots', and `attn`/`mask` give the merged objects over a
/// stretched view of the whole frame (the mean over the tiles that see each grid cell).
pub fn merge_tiles(tiles: Vec<Decomposition>, width: u32, height: u32) -> Decomposition {
    assert!(!tiles.is_empty(), "at least one tile");
    if tiles.len() == 1 {
        return tiles.into_iter().next().expect("one tile");
    }
    let (k, d, g, m) = (tiles[0].num_slots, tiles[0].slot_dim, tiles[0].grid, tiles[0].mask_size);
    let (w, h) = (width as usize, height as usize);
    let t = tiles.len();
    // Each tile's labels at frame resolution over its square.
    let framed: Vec<Vec<u8>> = tiles
        .iter()
        .map(|tile| {
            let mut out = vec![crate::decompose::VOID; w * h];
            tile.placement.paint(&tile.mask, m, &mut out, w);
            out
        })
        .collect();
    // Union-find over (tile, slot).
    let mut parent: Vec<usize> = (0..t * k).collect();
    fn find(p: &mut [usize], mut a: usize) -> usize {
        while p[a] != a {
            p[a] = p[p[a]];
            a = p[a];
        }
        a
    }
    for i in 0..t - 1 {
        let (a, b) = (&tiles[i], &tiles[i + 1]);
        let ov = intersect(a.placement.frame, b.placement.frame);
        let mut co = vec![0u64; k * k];
        let (mut na, mut nb) = (vec![0u64; k], vec![0u64; k]);
        if let Some(r) = ov {
            for y in r.y as usize..(r.y + r.height) as usize {
                for x in r.x as usize..(r.x + r.width) as usize {
                    let (la, lb) = (framed[i][y * w + x] as usize, framed[i + 1][y * w + x] as usize);
                    co[la * k + lb] += 1;
                    na[la] += 1;
                    nb[lb] += 1;
                }
            }
        }
        let iou = |p: usize, q: usize| {
            let inter = co[p * k + q] as f64;
            let union = (na[p] + nb[q]) as f64 - inter;
            if union > 0.0 { inter / union } else { 0.0 }
        };
        let cos = |p: usize, q: usize| f64::from(crate::track::cosine(a.slot(p), b.slot(q)));
        let weights = Matrix::from_fn(k, k, |(p, q)| ((0.5 * iou(p, q) + 0.5 * cos(p, q)) * 1e6).round() as i64);
        let (_, assign) = kuhn_munkres(&weights);
        for (p, &q) in assign.iter().enumerate() {
            let joined = iou(p, q) >= 0.25 || (na[p] == 0 && nb[q] == 0 && cos(p, q) >= 0.9);
            if joined {
                let (ra, rb) = (find(&mut parent, i * k + p), find(&mut parent, (i + 1) * k + q));
                if ra != rb {
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
    }
    // Merged ids in order of first (tile, slot).
    let mut id_of_root = vec![usize::MAX; t * k];
    let mut ids = vec![0usize; t * k];
    let mut n = 0;
    for node in 0..t * k {
        let r = find(&mut parent, node);
        if id_of_root[r] == usize::MAX {
            id_of_root[r] = n;
            n += 1;
        }
        ids[node] = id_of_root[r];
    }
    // Frame labels from the tile whose centre is nearest (along the long axis).
    let along_x = width >= height;
    let centre2 = |tile: &Decomposition| {
        let f = tile.placement.frame;
        if along_x { 2 * f.x + f.width } else { 2 * f.y + f.height }
    };
    let centres: Vec<u32> = tiles.iter().map(centre2).collect();
    let mut labels = vec![0u8; w * h];
    let mut areas = vec![0u64; t * k];
    for y in 0..h {
        for x in 0..w {
            let p2 = 2 * if along_x { x } else { y } as u32 + 1;
            let ti = (0..t).min_by_key(|&i| centres[i].abs_diff(p2)).expect("tiles");
            let l = framed[ti][y * w + x] as usize;
            let node = ti * k + l.min(k - 1);
            areas[node] += 1;
            labels[y * w + x] = ids[node] as u8;
        }
    }
    // Merged vectors: area-weighted mean (plain mean for objects no pixel shows).
    let mut slots = vec![0f32; n * d];
    let (mut weight, mut members) = (vec![0f64; n], vec![0f64; n]);
    for (node, &id) in ids.iter().enumerate() {
        weight[id] += areas[node] as f64;
        members[id] += 1.0;
    }
    for (node, &id) in ids.iter().enumerate() {
        let wgt = if weight[id] > 0.0 { areas[node] as f64 / weight[id] } else { 1.0 / members[id] };
        let src = tiles[node / k].slot(node % k);
        for (o, v) in slots[id * d..(id + 1) * d].iter_mut().zip(src) {
            *o += (wgt * f64::from(*v)) as f32;
        }
    }
    // A stretched view of the whole frame for `mask` and `attn`.
    let overview = Fit::Stretch.placements(width, height, tiles[0].placement.size).expect("non-empty frame")[0];
    let mut mask = vec![0u8; m * m];
    for (my, row) in mask.chunks_exact_mut(m).enumerate() {
        let y = ((2 * my + 1) * h / (2 * m)).min(h - 1);
        for (mx, o) in row.iter_mut().enumerate() {
            let x = ((2 * mx + 1) * w / (2 * m)).min(w - 1);
            *o = labels[y * w + x];
        }
    }
    let mut attn = vec![0f32; n * g * g];
    for gy in 0..g {
        for gx in 0..g {
            // Frame point at the cell's centre, then each tile's grid cell there.
            let (fx, fy) = ((2 * gx + 1) as f64 * w as f64 / (2 * g) as f64, (2 * gy + 1) as f64 * h as f64 / (2 * g) as f64);
            let seen: Vec<(usize, usize, usize)> = tiles
                .iter()
                .enumerate()
                .filter_map(|(i, tile)| {
                    let f = tile.placement.frame;
                    let (u, v) = (fx - f64::from(f.x), fy - f64::from(f.y));
                    (u >= 0.0 && v >= 0.0 && u < f64::from(f.width) && v < f64::from(f.height)).then(|| {
                        let cx = ((u / f64::from(f.width) * g as f64) as usize).min(g - 1);
                        let cy = ((v / f64::from(f.height) * g as f64) as usize).min(g - 1);
                        (i, cx, cy)
                    })
                })
                .collect();
            let share = 1.0 / seen.len().max(1) as f32;
            for &(i, cx, cy) in &seen {
                for s in 0..k {
                    attn[ids[i * k + s] * g * g + gy * g + gx] += share * tiles[i].attn[s * g * g + cy * g + cx];
                }
            }
        }
    }
    let first = &tiles[0];
    Decomposition {
        num_slots: n,
        slot_dim: d,
        grid: g,
        mask_size: m,
        slots,
        attn,
        mask,
        frame_width: first.frame_width,
        frame_height: first.frame_height,
        placement: overview,
        frame_labels: Some(labels),
    }
}

fn intersect(a: Rect, b: Rect) -> Option<Rect> {
    let (x0, y0) = (a.x.max(b.x), a.y.max(b.y));
    let (x1, y1) = ((a.x + a.width).min(b.x + b.width), (a.y + a.height).min(b.y + b.height));
    (x1 > x0 && y1 > y0).then(|| Rect { x: x0, y: y0, width: x1 - x0, height: y1 - y0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_long_side_with_overlap() {
        assert_eq!(tile_offsets(480, 480), vec![0]);
        assert_eq!(tile_offsets(640, 480), vec![0, 160]);
        assert_eq!(tile_offsets(854, 480), vec![0, 187, 374]);
        // 7 slots: at most 32 tiles by the byte of ids (255 / 7 = 36), 5 slots likewise; 200 slots: one.
        assert!(check_tiles(32, 7, 1, 1).is_ok() && check_tiles(33, 7, 1, 1).is_err());
        assert!(check_tiles(2, 200, 1, 1).unwrap_err().to_string().contains("stretch or pad"));
        assert!(check_tiles(1, 255, 1, 1).is_ok());
        for (long, side) in [(1000, 3), (17, 16), (4096, 100), (1921, 1080)] {
            let o = tile_offsets(long, side);
            assert_eq!(o[0], 0);
            assert_eq!(*o.last().unwrap() + side, long, "{long}/{side}");
            for p in o.windows(2) {
                assert!(f64::from(p[0] + side - p[1]) >= TILE_MIN_OVERLAP * f64::from(side) - 1.0, "{long}/{side}: {o:?}");
            }
        }
    }

    #[test]
    fn placements_of_each_fit() {
        let p = |f: Fit| f.placements(640, 480, 256).unwrap();
        assert_eq!(p(Fit::Crop)[0].frame, Rect { x: 80, y: 0, width: 480, height: 480 });
        assert_eq!(p(Fit::Stretch)[0].frame, Rect { x: 0, y: 0, width: 640, height: 480 });
        // 640×480 into 256: 256×192, centred.
        assert_eq!(p(Fit::Pad)[0].input, Rect { x: 0, y: 32, width: 256, height: 192 });
        assert_eq!(p(Fit::Tiles).len(), 2);
        assert!(Fit::Crop.placements(0, 5, 256).is_err());
        // An extreme aspect ratio still gets at least one input row.
        assert_eq!(Fit::Pad.placements(5000, 1, 16).unwrap()[0].input.height, 1);
    }

    fn tile(p: Placement, slots: Vec<f32>, attn: Vec<f32>, mask: Vec<u8>) -> Decomposition {
        Decomposition { num_slots: 2, slot_dim: 2, grid: 1, mask_size: 4, slots, attn, mask, frame_width: 6, frame_height: 4, placement: p, frame_labels: None }
    }

    #[test]
    fn tiles_join_slots_that_overlap_and_keep_the_others_apart() {
        // 6×4 frame, tiles at x 0 and 2 (side 4, one mask pixel per frame pixel).
        let ps = Fit::Tiles.placements(6, 4, 4).unwrap();
        assert_eq!(ps.iter().map(|p| p.frame.x).collect::<Vec<_>>(), vec![0, 2]);
        let row = |r: [u8; 4]| r.repeat(4);
        // Tile 0: slot 0 left, slot 1 on x 2..4. Tile 1 (slots swapped): slot 1 on x 2..4, slot 0 on x 4..6.
        let a = tile(ps[0], vec![1.0, 0.0, 0.0, 1.0], vec![0.6, 0.4], row([0, 0, 1, 1]));
        let b = tile(ps[1], vec![-1.0, 0.0, 0.0, 3.0], vec![0.3, 0.7], row([1, 1, 0, 0]));
        let m = merge_tiles(vec![a, b], 6, 4);
        // Tile 1's slot 1 is tile 0's slot 1 (IoU 1 on the overlap); its slot 0 is a new object.
        assert_eq!(m.num_slots, 3);
        assert_eq!(m.frame_labels.as_deref().unwrap(), &[0u8, 0, 1, 1, 2, 2].repeat(4)[..]);
        assert_eq!(m.mask_in_frame(), [0u8, 0, 1, 1, 2, 2].repeat(4));
        assert!(m.covers_frame());
        // Object 1: 4 pixels from each tile (x 2 from tile 0, x 3 from tile 1, 4 rows each).
        assert_eq!(m.slot(0), &[1.0, 0.0]);
        assert_eq!(m.slot(1), &[0.0, 2.0]);
        assert_eq!(m.slot(2), &[-1.0, 0.0]);
        // The one grid cell (centre x 3) is seen by both tiles: half of each tile's attention.
        assert_eq!(m.attn, vec![0.3, 0.5 * 0.4 + 0.5 * 0.7, 0.15]);
        assert!((m.attn.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Mask: a 4×4 stretched overview of the 6-wide frame.
        assert_eq!(&m.mask[..4], &[0, 1, 1, 2]);
        // Slots with no pixel in the overlap join when their vectors agree (cosine ≥ 0.9).
        let a = tile(ps[0], vec![1.0, 0.0, 0.0, 1.0], vec![0.5, 0.5], row([0, 0, 0, 0]));
        let b = tile(ps[1], vec![0.05, 1.0, 5.0, 0.0], vec![0.5, 0.5], row([1, 1, 1, 1]));
        let m = merge_tiles(vec![a.clone(), b], 6, 4);
        assert_eq!((m.num_slots, m.mask_in_frame()), (2, vec![0u8; 24]));
        let b = tile(ps[1], vec![1.0, 0.0, 5.0, 0.0], vec![0.5, 0.5], row([1, 1, 1, 1]));
        assert_eq!(merge_tiles(vec![a, b], 6, 4).num_slots, 3, "orthogonal empty slots stay apart");
    }

    #[test]
    fn paint_of_the_crop_is_nearest_at_pixel_centres() {
        // 6×4 frame, crop 4×4 at x 1, 2×2 mask: each mask pixel covers 2×2 frame pixels.
        let p = Fit::Crop.placements(6, 4, 8).unwrap()[0];
        let mut out = vec![255u8; 24];
        p.paint(&[1, 2, 3, 4], 2, &mut out, 6);
        assert_eq!(&out[..6], &[255, 1, 1, 2, 2, 255]);
        assert_eq!(&out[18..], &[255, 3, 3, 4, 4, 255]);
        // Pad: 8×4 into 8, input rows 2..6 of 8; mask 4×4: frame row 0 → input row 2.5 → mask row 1.
        let p = Fit::Pad.placements(8, 4, 8).unwrap()[0];
        let mask: Vec<u8> = (0..16).collect();
        let mut out = vec![255u8; 32];
        p.paint(&mask, 4, &mut out, 8);
        assert_eq!(&out[..8], &[4, 4, 5, 5, 6, 6, 7, 7]);
        assert_eq!(&out[24..], &[8, 8, 9, 9, 10, 10, 11, 11]);
    }
}
