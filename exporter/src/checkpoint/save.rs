//! Write a state dict the way `torch.save(state_dict)` does: a zip of stored entries holding a
//! protocol-2 pickle (`<archive>/data.pkl`) and one raw little-endian storage per tensor
//! (`<archive>/data/<n>`). Models trained here then load with `torch.load(weights_only=True)`,
//! with upstream's code, and with [`super::load`] (so `msf-export` reads them unchanged).

use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// One named f32 tensor, row-major.
#[derive(Clone, Copy, Debug)]
pub struct TensorOut<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("`{name}`: shape {shape:?} holds {expected} values, the data has {found}")]
    Shape { name: String, shape: Vec<usize>, expected: usize, found: usize },
    #[error("`{0}` appears twice")]
    Duplicate(String),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Protocol-2 pickle opcodes used by `torch.save` for a state dict.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const REDUCE: u8 = b'R';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const SETITEMS: u8 = b'u';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINPERSID: u8 = b'Q';
    pub const NEWFALSE: u8 = 0x89;
    pub const STOP: u8 = b'.';
}

struct Pickler(Vec<u8>);

impl Pickler {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(op::GLOBAL);
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn str(&mut self, s: &str) {
        self.0.push(op::BINUNICODE);
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: u64) {
        if v < 0x100 {
            self.0.extend_from_slice(&[op::BININT1, v as u8]);
        } else if v < 0x1_0000 {
            self.0.push(op::BININT2);
            self.0.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v < 0x8000_0000 {
            self.0.push(op::BININT);
            self.0.extend_from_slice(&(v as u32).to_le_bytes());
        } else {
            // LONG1: little-endian two's complement, one byte more than needed so it stays positive.
            let bytes = v.to_le_bytes();
            let n = 8 - (v.leading_zeros() as usize / 8) + 1;
            self.0.extend_from_slice(&[op::LONG1, n as u8]);
            self.0.extend_from_slice(&bytes[..n.min(8)]);
            self.0.extend(std::iter::repeat_n(0, n.saturating_sub(8)));
        }
    }
    fn tuple_of_ints(&mut self, v: &[usize]) {
        if v.is_empty() {
            self.0.push(op::EMPTY_TUPLE);
            return;
        }
        self.0.push(op::MARK);
        v.iter().for_each(|&x| self.int(x as u64));
        self.0.push(op::TUPLE);
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
    }
}

/// The bytes of the checkpoint file; `archive` names the zip's top folder (torch uses the file stem).
pub fn to_bytes(tensors: &[TensorOut], archive: &str) -> Result<Vec<u8>, SaveError> {
    let mut seen = std::collections::HashSet::new();
    for t in tensors {
        let expected = t.shape.iter().product::<usize>();
        if expected != t.data.len() {
            return Err(SaveError::Shape { name: t.name.into(), shape: t.shape.to_vec(), expected, found: t.data.len() });
        }
        if !seen.insert(t.name) {
            return Err(SaveError::Duplicate(t.name.into()));
        }
    }
    let mut p = Pickler(vec![op::PROTO, 2]);
    p.empty_ordered_dict();
    p.0.push(op::MARK);
    for (i, t) in tensors.iter().enumerate() {
        p.str(t.name);
        // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks)
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(op::MARK);
        p.0.push(op::MARK);
        p.str("storage");
        p.global("torch", "FloatStorage");
        p.str(&i.to_string());
        p.str("cpu");
        p.int(t.data.len() as u64);
        p.0.extend_from_slice(&[op::TUPLE, op::BINPERSID]);
        p.int(0);
        p.tuple_of_ints(t.shape);
        let mut stride = vec![1usize; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * t.shape[d + 1];
        }
        p.tuple_of_ints(&stride);
        p.0.push(op::NEWFALSE);
        p.empty_ordered_dict();
        p.0.extend_from_slice(&[op::TUPLE, op::REDUCE]);
    }
    p.0.extend_from_slice(&[op::SETITEMS, op::STOP]);

    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    // Stored, 64-byte aligned like torch's writer (lets torch.load(mmap=True) map the storages).
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored).with_alignment(64);
    zip.start_file(format!("{archive}/data.pkl"), opts)?;
    zip.write_all(&p.0)?;
    zip.start_file(format!("{archive}/byteorder"), opts)?;
    zip.write_all(b"little")?;
    for (i, t) in tensors.iter().enumerate() {
        zip.start_file(format!("{archive}/data/{i}"), opts)?;
        let mut raw = Vec::with_capacity(t.data.len() * 4);
        t.data.iter().for_each(|v| raw.extend_from_slice(&v.to_le_bytes()));
        zip.write_all(&raw)?;
    }
    zip.start_file(format!("{archive}/version"), opts)?;
    zip.write_all(b"3\n")?;
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::super::{load_bytes, Limits};
    use super::*;

    #[test]
    fn round_trips_through_the_reader() {
        let big: Vec<f32> = (0..70_000).map(|i| i as f32 * 0.5).collect();
        let tensors = [
            TensorOut { name: "m.a.weight", shape: &[2, 3], data: &[1.0, -2.0, 3.5, 4.0, 5.0, f32::MIN_POSITIVE] },
            TensorOut { name: "m.scalar", shape: &[], data: &[7.0] },
            TensorOut { name: "m.big", shape: &[70, 1000], data: &big },
            TensorOut { name: "m.empty", shape: &[0, 4], data: &[] },
        ];
        let bytes = to_bytes(&tensors, "best").unwrap();
        let ck = load_bytes(&bytes, &Limits::default(), &|_| true).unwrap();
        assert_eq!(ck.info.len(), 4);
        for t in &tensors {
            assert_eq!(ck.info[t.name].shape, t.shape, "{}", t.name);
            assert_eq!(ck.data[t.name], t.data, "{}", t.name);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let e = to_bytes(&[TensorOut { name: "x", shape: &[2, 2], data: &[1.0] }], "a").unwrap_err();
        assert!(e.to_string().contains("holds 4 values, the data has 1"), "{e}");
        let t = TensorOut { name: "x", shape: &[1], data: &[1.0] };
        assert!(matches!(to_bytes(&[t, t], "a"), Err(SaveError::Duplicate(_))));
    }

    #[test]
    fn large_ints_use_long1() {
        let mut p = Pickler(vec![]);
        p.int(0x1_0000_0000);
        assert_eq!(p.0, vec![op::LONG1, 6, 0, 0, 0, 0, 1, 0]);
        let mut p = Pickler(vec![]);
        p.int(u64::MAX);
        assert_eq!(p.0, vec![op::LONG1, 9, 255, 255, 255, 255, 255, 255, 255, 255, 0]);
    }
}
