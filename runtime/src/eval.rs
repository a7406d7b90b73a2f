//! Measuring temporal consistency, apart from the tracker it measures: a deterministic synthetic
//! video with per-pixel ground truth ([`synthetic`]) and the identity switches of a predicted mask
//! sequence against it ([`identity_switches`]). Used by `examples/identity_switches.rs`, the tests
//! and the C ABI's multi-stream example.

/// For each ground-truth object `1..=num_objects` of `gt` (0 = background, ignored), the predicted
/// slot id covering most of its pixels, or `None` when the object is not visible.
pub fn best_slots(gt: &[u8], pred: &[u8], num_objects: usize) -> Vec<Option<u8>> {
    let mut counts = vec![[0u32; 256]; num_objects + 1];
    for (&g, &p) in gt.iter().zip(pred) {
        if (1..=num_objects).contains(&(g as usize)) {
            counts[g as usize][p as usize] += 1;
        }
    }
    (1..=num_objects)
        .map(|o| {
            let c = &counts[o];
            // First maximum: deterministic on ties.
            let (best, &n) = c.iter().enumerate().fold((0, &0), |acc, (i, n)| if n > acc.1 { (i, n) } else { acc });
            (n > 0).then_some(best as u8)
        })
        .collect()
}

/// Identity switches over a sequence of `(ground truth, predicted mask)` frames: the number of times
/// the slot best overlapping a ground-truth object changes id between consecutive frames in which
/// the object is visible, summed over objects. 0 means every object kept one slot id throughout.
pub fn identity_switches<'a>(frames: impl IntoIterator<Item = (&'a [u8], &'a [u8])>, num_objects: usize) -> usize {
    let mut last: Vec<Option<u8>> = vec![None; num_objects];
    let mut switches = 0;
    for (gt, pred) in frames {
        for (l, b) in last.iter_mut().zip(best_slots(gt, pred, num_objects)) {
            if let (Some(x), Some(y)) = (*l, b) {
                switches += usize::from(x != y);
            }
            if b.is_some() {
                *l = b;
            }
        }
    }
    switches
}

/// A deterministic synthetic video with per-pixel ground truth, for measuring temporal consistency.
pub mod synthetic {
    /// Number of objects in [`moving_shapes`] (ids 1..=3; 0 is the background).
    pub const NUM_OBJECTS: usize = 3;

    /// Frames (RGB8, packed, `size × size`) and instance ids (`0` background, `1` disc, `2` square,
    /// `3` triangle) of the same size.
    #[derive(Clone, Debug)]
    pub struct MovingShapes {
        pub size: u32,
        pub frames: Vec<Vec<u8>>,
        pub ids: Vec<Vec<u8>>,
    }

    fn hash(x: u32, y: u32) -> u32 {
        let mut h = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77);
        h ^= h >> 15;
        h = h.wrapping_mul(0xC2B2_AE3D);
        h ^ (h >> 13)
    }

    /// `frames` frames of a red disc, a green square and a blue triangle moving smoothly (different
    /// Lissajous paths, passing over one another: triangle over square over disc) on a static
    /// textured background (low-frequency colour waves plus fine noise). Deterministic.
    pub fn moving_shapes(frames: usize, size: u32) -> MovingShapes {
        let s = size as f32;
        let n = size as usize;
        // Static background.
        let mut bg = vec![0u8; n * n * 3];
        for y in 0..n {
            for x in 0..n {
                let (fx, fy) = (x as f32 / s, y as f32 / s);
                let wave = (fx * 9.0).sin() * (fy * 7.0).cos();
                let noise = (hash(x as u32, y as u32) % 25) as f32 - 12.0;
                let base = [150.0 + 30.0 * wave, 140.0 + 25.0 * (fx * 5.0 + fy * 4.0).sin(), 120.0 - 30.0 * wave];
                for c in 0..3 {
                    bg[(y * n + x) * 3 + c] = (base[c] + noise).clamp(0.0, 255.0) as u8;
                }
            }
        }
        let colours = [[220.0f32, 40.0, 40.0], [40.0, 190.0, 60.0], [50.0, 70.0, 230.0]];
        let (r_disc, half_sq, tri) = (0.12 * s, 0.11 * s, 0.15 * s);
        let mut out = MovingShapes { size, frames: Vec::with_capacity(frames), ids: Vec::with_capacity(frames) };
        for t in 0..frames {
            let ph = t as f32 / frames.max(1) as f32 * std::f32::consts::TAU;
            let centres = [
                (0.50 + 0.28 * ph.cos(), 0.50 + 0.25 * (2.0 * ph).sin()),
                (0.35 + 0.18 * (ph + 1.0).sin(), 0.65 + 0.15 * (ph * 1.5).cos()),
                (0.62 + 0.20 * (ph * 1.2 + 2.0).cos(), 0.35 + 0.20 * (ph + 0.5).sin()),
            ];
            let mut img = bg.clone();
            let mut ids = vec![0u8; n * n];
            for y in 0..n {
                for x in 0..n {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    for (o, &(cx, cy)) in centres.iter().enumerate() {
                        let (dx, dy) = (px - cx * s, py - cy * s);
                        let inside = match o {
                            0 => dx * dx + dy * dy <= r_disc * r_disc,
                            1 => dx.abs() <= half_sq && dy.abs() <= half_sq,
                            // Upward isosceles triangle with apex at (0, -tri) and base at y = +tri/2.
                            _ => dy <= 0.5 * tri && dy >= -tri && dx.abs() <= (dy + tri) * 0.6,
                        };
                        if inside {
                            ids[y * n + x] = o as u8 + 1;
                            // Mild shading so the shapes are not perfectly flat.
                            let shade = 1.0 - 0.15 * (dx + dy) / s;
                            let noise = (hash(x as u32 + 7919 * t as u32, y as u32) % 11) as f32 - 5.0;
                            for c in 0..3 {
                                img[(y * n + x) * 3 + c] = (colours[o][c] * shade + noise).clamp(0.0, 255.0) as u8;
                            }
                        }
                    }
                }
            }
            out.frames.push(img);
            out.ids.push(ids);
        }
        out
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_switches() {
        let gt: Vec<u8> = vec![0, 1, 1, 2, 2, 0];
        let p1: Vec<u8> = vec![5, 3, 3, 4, 4, 5];
        let p2: Vec<u8> = vec![5, 4, 4, 3, 3, 5]; // both objects swap ids
        let p3: Vec<u8> = vec![5, 4, 3, 3, 3, 5]; // object 1 tie (4 vs 3): first maximum (3)
        assert_eq!(best_slots(&gt, &p1, 2), vec![Some(3), Some(4)]);
        assert_eq!(best_slots(&gt, &p3, 2), vec![Some(3), Some(3)]);
        let frames = [(&gt[..], &p1[..]), (&gt[..], &p1[..]), (&gt[..], &p2[..]), (&gt[..], &p1[..])];
        assert_eq!(identity_switches(frames, 2), 4);
        // An object that disappears is compared with its last visible frame.
        let gone: Vec<u8> = vec![0, 0, 0, 2, 2, 0];
        let frames = [(&gt[..], &p1[..]), (&gone[..], &p2[..]), (&gt[..], &p1[..])];
        assert_eq!(identity_switches(frames, 2), 2);
    }

    #[test]
    fn synthetic_video_is_deterministic_and_moves() {
        let a = synthetic::moving_shapes(8, 64);
        let b = synthetic::moving_shapes(8, 64);
        assert_eq!(a.frames, b.frames);
        assert_eq!(a.ids, b.ids);
        assert_eq!(a.frames[0].len(), 64 * 64 * 3);
        for ids in &a.ids {
            for o in 1..=synthetic::NUM_OBJECTS as u8 {
                assert!(ids.iter().filter(|&&v| v == o).count() > 30, "object {o} visible");
            }
        }
        assert_ne!(a.ids[0], a.ids[4]);
    }
}
