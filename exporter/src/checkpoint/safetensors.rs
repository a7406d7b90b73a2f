//! safetensors files, through the `safetensors` crate (which validates the header, offsets and
//! sizes); only the dtype mapping, limits and `want` filtering are ours.

use super::{decode_f32, CheckpointError, DType, Limits, TensorInfo};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;

type Tensors = (BTreeMap<String, TensorInfo>, BTreeMap<String, Vec<f32>>);

pub(crate) fn read(bytes: &[u8], limits: &Limits, want: &dyn Fn(&str) -> bool) -> Result<Tensors, CheckpointError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Safetensors { reason: e.to_string() })?;
    if st.len() > limits.max_tensors {
        return Err(CheckpointError::TooManyTensors { count: st.len(), limit: limits.max_tensors });
    }
    let mut info = BTreeMap::new();
    let mut data = BTreeMap::new();
    for (key, view) in st.iter() {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::I16 => DType::I16,
            Dtype::I8 => DType::I8,
            Dtype::U8 => DType::U8,
            Dtype::BOOL => DType::Bool,
            other => {
                return Err(CheckpointError::UnsupportedDtype { key: key.to_string(), dtype: format!("{other:?}") })
            }
        };
        let shape = view.shape().to_vec();
        let elems = shape.iter().fold(1u128, |a, &d| a.saturating_mul(d as u128));
        if elems > limits.max_tensor_elems as u128 {
            return Err(CheckpointError::TensorTooLarge {
                key: key.to_string(),
                elems,
                limit: limits.max_tensor_elems,
            });
        }
        if shape.len() > super::MAX_DIMS {
            return Err(CheckpointError::TooManyDims {
                key: key.to_string(),
                dims: shape.len(),
                limit: super::MAX_DIMS,
            });
        }
        if want(key) {
            if !dtype.is_float() {
                return Err(CheckpointError::UnsupportedDtype { key: key.to_string(), dtype: dtype.to_string() });
            }
            data.insert(key.to_string(), decode_f32(dtype, view.data()));
        }
        info.insert(key.to_string(), TensorInfo { shape, dtype });
    }
    Ok((info, data))
}

#[cfg(test)]
mod tests {
    use super::super::{load, load_bytes, Format, Limits};
    use super::*;
    use safetensors::tensor::TensorView;

    fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, TensorView)> =
            tensors.iter().map(|(k, d, s, b)| (k.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn reads_float_dtypes_and_filters() {
        let f32b: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        // 1.5, -2.0 as half and bfloat16 bit patterns
        let f16b: Vec<u8> = [0x3E00u16, 0xC000].iter().flat_map(|b| b.to_le_bytes()).collect();
        let bf16b: Vec<u8> = [0x3FC0u16, 0xC000].iter().flat_map(|b| b.to_le_bytes()).collect();
        let f64b: Vec<u8> = [0.5f64].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = file(&[
            ("m.w", Dtype::F32, vec![2, 3], f32b),
            ("m.h", Dtype::F16, vec![2], f16b),
            ("m.b", Dtype::BF16, vec![2], bf16b),
            ("m.d", Dtype::F64, vec![], f64b),
            ("m.n", Dtype::I64, vec![1], vec![0; 8]),
        ]);
        let ck = load_bytes(&bytes, &Limits::default(), &|k| k != "m.n").unwrap();
        assert_eq!(ck.format, Format::Safetensors);
        assert_eq!(ck.info.len(), 5);
        assert_eq!(ck.info["m.w"].shape, vec![2, 3]);
        assert_eq!(ck.info["m.n"].dtype, DType::I64);
        assert_eq!(ck.data["m.w"], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(ck.data["m.h"], vec![1.5, -2.0]);
        assert_eq!(ck.data["m.b"], vec![1.5, -2.0]);
        assert_eq!(ck.data["m.d"], vec![0.5]);
        let ck = load_bytes(&bytes, &Limits::default(), &|k| k == "m.h").unwrap();
        assert_eq!(ck.data.len(), 1);
        let e = load_bytes(&bytes, &Limits::default(), &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::UnsupportedDtype { ref key, .. } if key == "m.n"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let ck2 = load(&p, &Limits::default(), &|k| k == "m.h").unwrap();
        assert_eq!(ck2.data, ck.data);
        assert_eq!(ck2.path, p);
    }

    #[test]
    fn bad_safetensors() {
        let bytes = file(&[("w", Dtype::F32, vec![4], vec![0; 16])]);
        // Data shorter than the header says.
        let e = load_bytes(&bytes[..bytes.len() - 1], &Limits::default(), &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::Safetensors { .. }), "{e}");
        // Header length past the end of the file.
        let mut b = bytes.clone();
        b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let e = load_bytes(&b, &Limits::default(), &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::Truncated { .. }), "{e}");
        // Broken JSON
        let mut b = 5u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{oops");
        let e = load_bytes(&b, &Limits::default(), &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::Safetensors { .. }), "{e}");
        // Unsupported dtype, and limits.
        let e = load_bytes(&file(&[("q", Dtype::F8_E4M3, vec![2], vec![0; 2])]), &Limits::default(), &|_| false)
            .unwrap_err();
        assert!(matches!(e, CheckpointError::UnsupportedDtype { .. }), "{e}");
        let e = load_bytes(&bytes, &Limits { max_tensor_elems: 3, ..Limits::default() }, &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::TensorTooLarge { .. }), "{e}");
        let e = load_bytes(&bytes, &Limits { max_tensors: 0, ..Limits::default() }, &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::TooManyTensors { .. }), "{e}");
    }
}
