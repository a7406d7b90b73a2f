//! Float arrays as `.npy` (little-endian float32, C order): `numpy.load` reads slots (K,D) and
//! attention (K,G,G) without any extra tooling.

use std::path::Path;

use ndarray::{ArrayViewD, IxDyn};
use ndarray_npy::WriteNpyExt;

use super::write_atomic;
use crate::error::{Error, Result};

/// Write `data` (row-major, `shape`) to `path` atomically.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let view = ArrayViewD::from_shape(IxDyn(shape), data).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{} values do not fill shape {shape:?}: {e}", data.len())),
    })?;
    write_atomic(path, |w| view.write_npy(w).map_err(std::io::Error::other))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;
    use ndarray_npy::ReadNpyExt;

    #[test]
    fn round_trip_keeps_shape_and_values() {
        let d = std::env::temp_dir().join(format!("msf-npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32(&p, &[2, 3, 4], &data).unwrap();
        let back = ArrayD::<f32>::read_npy(std::fs::File::open(&p).unwrap()).unwrap();
        assert_eq!(back.shape(), &[2, 3, 4]);
        assert_eq!(back.iter().copied().collect::<Vec<_>>(), data);
        assert!(write_f32(&d.join("bad.npy"), &[5, 5], &data).is_err());
        assert!(!d.join("bad.npy").exists());
    }
}
