//! PyTorch's `F.interpolate` (`align_corners=False`, no antialias) as taps per axis, in f32 as
//! PyTorch computes them: bicubic (the image to the backbone's size) and bilinear (attention to
//! mask size). The numbers behind the runtime's own resizes and the exporter's in-graph ones, so
//! that both match upstream the same way.

/// The bicubic resize of one axis: for output `i`, source `x = scale·(i + 0.5) − 0.5` with
/// `scale = in/out`, taps `floor(x) − 1 ..= floor(x) + 2` clamped to the edge, Keys weights with
/// coefficient `a` (PyTorch: −0.75). Everything in f32 as PyTorch does for float tensors.
///
/// Not `fast_image_resize`'s `CatmullRom`: that is a = −0.5 and widens its support when
/// downscaling (antialias).
#[derive(Clone, Debug)]
pub struct CubicAxis {
    in_size: usize,
    taps: Vec<([usize; 4], [f32; 4])>,
}

impl CubicAxis {
    pub fn new(in_size: usize, out_size: usize, a: f32) -> Self {
        // area_pixel_compute_scale: input_size / output_size in opmath (f32).
        let scale = in_size as f32 / out_size as f32;
        let last = in_size as i64 - 1;
        let taps = (0..out_size)
            .map(|i| {
                // area_pixel_compute_source_index(cubic = true): no clamp at 0.
                let real = scale * (i as f32 + 0.5) - 0.5;
                // guard_index_and_lambda
                let idx = (real.floor() as i64).min(last);
                let t = (real - idx as f32).clamp(0.0, 1.0);
                let w = cubic_coefficients(t, a);
                let ix = [0i64, 1, 2, 3].map(|k| (idx + k - 1).clamp(0, last) as usize);
                (ix, w)
            })
            .collect();
        CubicAxis { in_size, taps }
    }

    pub fn in_size(&self) -> usize {
        self.in_size
    }

    pub fn out_size(&self) -> usize {
        self.taps.len()
    }

    /// Per output index: the four source indices (clamped, so possibly repeated) and weights.
    pub fn taps(&self) -> &[([usize; 4], [f32; 4])] {
        &self.taps
    }

    /// The resize as an (out, in) row-major matrix: `out = M · in` along this axis. Weights of
    /// taps clamped onto the same source index are summed.
    pub fn matrix(&self) -> Vec<f32> {
        dense(self.in_size, &self.taps)
    }
}

/// PyTorch's bilinear resize of one axis: source `x = max(scale·(i + 0.5) − 0.5, 0)` with
/// `scale = in/out`, taps `floor(x)` and the next one (the last index repeats at the edge),
/// weights `1 − λ`, `λ`.
#[derive(Clone, Debug)]
pub struct LinearAxis {
    in_size: usize,
    taps: Vec<([usize; 2], [f32; 2])>,
}

impl LinearAxis {
    pub fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f32 / out_size as f32;
        let taps = (0..out_size)
            .map(|i| {
                // area_pixel_compute_source_index(cubic = false): clamped at 0.
                let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (real as usize).min(in_size.saturating_sub(1));
                let i1 = if i0 + 1 < in_size { i0 + 1 } else { i0 };
                let l1 = real - i0 as f32;
                ([i0, i1], [1.0 - l1, l1])
            })
            .collect();
        LinearAxis { in_size, taps }
    }

    pub fn out_size(&self) -> usize {
        self.taps.len()
    }

    /// Per output index: the two source indices and weights.
    pub fn taps(&self) -> &[([usize; 2], [f32; 2])] {
        &self.taps
    }

    /// The resize as an (out, in) row-major matrix.
    pub fn matrix(&self) -> Vec<f32> {
        dense(self.in_size, &self.taps)
    }
}

/// Taps as an (out, in) row-major matrix; weights of taps on the same source index are summed.
fn dense<const N: usize>(in_size: usize, taps: &[([usize; N], [f32; N])]) -> Vec<f32> {
    let mut m = vec![0f32; taps.len() * in_size];
    for (row, (ix, w)) in m.chunks_exact_mut(in_size).zip(taps) {
        for (&i, &w) in ix.iter().zip(w) {
            row[i] += w;
        }
    }
    m
}

/// PyTorch `get_cubic_upsample_coefficients`.
fn cubic_coefficients(t: f32, a: f32) -> [f32; 4] {
    // cubic_convolution1: |x| <= 1; cubic_convolution2: 1 < |x| < 2.
    let c1 = |x: f32| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let c2 = |x: f32| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    [c2(t + 1.0), c1(t), c1(1.0 - t), c2(1.0 - t + 1.0)]
}

#[cfg(test)]
mod tests {
    use super::{CubicAxis, LinearAxis};

    /// Rows of the matrix sum to one (the Keys weights do), and clamped taps fold into the edge.
    #[test]
    fn matrix_rows_are_the_taps() {
        let a = CubicAxis::new(256, 224, -0.75);
        let m = a.matrix();
        for (r, row) in m.chunks_exact(256).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "row {r}");
            assert_eq!(row.iter().filter(|&&w| w != 0.0).count(), if r == 0 || r == 223 { 3 } else { 4 }, "row {r}");
        }
        // Output 0 reads x = 256/224·0.5 − 0.5 ≈ 0.0714: taps −1, 0, 1, 2; −1 clamps onto 0.
        let (ix, w) = a.taps()[0];
        assert_eq!(ix, [0, 0, 1, 2]);
        assert_eq!(m[0], w[0] + w[1]);
    }

    /// 16 → 256 as the masks use it: output 0 and 255 repeat the edges, output 8 (x = 0.03125)
    /// mixes sources 0 and 1.
    #[test]
    fn bilinear_taps_are_pytorchs() {
        let a = LinearAxis::new(16, 256);
        assert_eq!(a.taps()[0], ([0, 1], [1.0, 0.0]));
        assert_eq!(a.taps()[255].0, [15, 15]);
        assert_eq!(a.taps()[8], ([0, 1], [0.96875, 0.03125]));
        for row in a.matrix().chunks_exact(16) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
}
