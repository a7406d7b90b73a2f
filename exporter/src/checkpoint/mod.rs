//! Read upstream PyTorch checkpoints (zip + pickle) and safetensors files, in pure Rust.
//!
//! Pickle code is never executed: a restricted interpreter understands only the opcodes and the
//! allow-listed globals that `torch.save(state_dict)` emits, and anything else is an error that
//! names what it found.
//!
//! Why a small reader of our own rather than a dependency:
//! - libtorch / `tch` cannot read `torch.save` pickles (only TorchScript archives), and would
//!   drag a 2 GB native library into an exporter that must stay pure Rust;
//! - `serde-pickle` stops at torch's persistent-id opcode (`BINPERSID`), which is how every
//!   tensor refers to its storage;
//! - candle-core's `PthTensors` reads these files but pulls ~300 crates and does not honour
//!   storage offsets / strides (tensors that are views of a shared storage);
//! - a restricted interpreter over the `zip` crate is a few hundred lines that can be audited,
//!   bounds every allocation by the input, and refuses every global outside a short allow-list
//!   *before* anything could be called (nothing is ever called: `REDUCE` on an allow-listed
//!   callable only builds a value).
//!
//! Entry points: [`load`] (a file), [`load_bytes`] (an in-memory file, for fuzzing) and
//! [`parse_pickle`] (a bare `data.pkl`, for fuzzing the interpreter alone); [`save`] writes the
//! same format (for the training crate).

mod pickle;
mod safetensors;
pub mod save;
mod torch_zip;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Element type a tensor had in the file (data is always handed out as f32).
///
/// Only the float types can be loaded as data; the integer/bool types are recorded in
/// [`Checkpoint::info`] (e.g. a BatchNorm `num_batches_tracked` buffer) and asking for their
/// data is an [`CheckpointError::UnsupportedDtype`] error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether the data can be converted to f32 by this reader.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    /// PyTorch's name of the dtype.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Shape and source dtype of one tensor, known for every key even when its data is not loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorInfo {
    /// Number of elements (product of the shape; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Container format of a checkpoint file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    TorchZip,
    Safetensors,
}

/// Limits checked before allocating, so a hostile file cannot exhaust memory.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_tensors: usize,
    pub max_tensor_elems: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: 8 << 30, max_tensors: 100_000, max_tensor_elems: 1 << 31 }
    }
}

/// Most dimensions a tensor may have (PyTorch's own limit is 64 too).
pub const MAX_DIMS: usize = 64;

/// A loaded checkpoint: every key's shape, and the data of the keys that were asked for.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file read (empty for [`load_bytes`]).
    pub path: PathBuf,
    pub format: Format,
    /// Hex SHA-256 of the file bytes (recorded in the ONNX metadata).
    pub sha256: String,
    pub file_bytes: u64,
    /// Every tensor in the file, by key, in key order.
    pub info: BTreeMap<String, TensorInfo>,
    /// Contiguous row-major f32 data of the selected keys.
    pub data: BTreeMap<String, Vec<f32>>,
}

impl Checkpoint {
    /// Total number of elements over every tensor of the file.
    pub fn total_params(&self) -> usize {
        self.info.values().map(TensorInfo::numel).sum()
    }
}

/// A storage as a tensor's pickle names it: the persistent id
/// `('storage', torch.<Type>Storage, key, location, numel)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageRef {
    /// Storage key: the zip entry is `<archive>/data/<key>`.
    pub key: String,
    pub dtype: DType,
    /// Element count the pickle claims (the zip entry's real size is what bounds reads).
    pub numel: u64,
}

/// One tensor of a state_dict pickle: `_rebuild_tensor_v2(storage, offset, size, stride, …)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// Offset into the storage, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    /// Strides in elements, one per dimension.
    pub stride: Vec<usize>,
}

/// Why a checkpoint could not be read; every variant names the problem (and the key, entry or
/// pickle offset involved) so the message is actionable on its own.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is {size} bytes, over the limit of {limit} bytes (raise it with --max-checkpoint-bytes)")]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("not a checkpoint: {reason}")]
    NotACheckpoint { reason: String },
    #[error("legacy torch.save format (before torch 1.6) is not supported: the file is a bare pickle, not a zip archive; re-save it with torch>=1.6, e.g. `torch.save(torch.load(old), new)`")]
    LegacyTorchFormat,
    #[error("truncated or corrupt {what}: {detail}")]
    Truncated { what: &'static str, detail: String },
    #[error("not a readable PyTorch checkpoint archive: {reason}")]
    BadArchive { reason: String },
    #[error("the checkpoint's byte order is {found:?}; only little-endian checkpoints are supported")]
    UnsupportedByteOrder { found: String },
    #[error("the checkpoint's pickle refers to `{module}.{name}`, which a plain state_dict never contains; refusing to load it (only tensors, storages and OrderedDict are allowed; pickle code is never run)")]
    ForbiddenGlobal { module: String, name: String },
    #[error("malformed pickle at byte {offset}: {reason}")]
    Pickle { offset: usize, reason: String },
    #[error("no state_dict in the checkpoint: {reason}")]
    NotAStateDict { reason: String },
    #[error("tensor key {key:?} appears twice in the checkpoint")]
    DuplicateKey { key: String },
    #[error("tensor {key:?} uses storage {storage:?}, but the archive has no entry {entry:?}")]
    MissingStorage { key: String, storage: String, entry: String },
    #[error("tensor {key:?} needs {needed} bytes of storage {storage:?}, which holds only {available} bytes")]
    StorageTooSmall { key: String, storage: String, needed: u128, available: u64 },
    #[error("tensor {key:?} has dtype {dtype}; only float32, float16, bfloat16 and float64 tensors can be loaded")]
    UnsupportedDtype { key: String, dtype: String },
    #[error("the checkpoint holds {count} tensors, over the limit of {limit}")]
    TooManyTensors { count: usize, limit: usize },
    #[error("the checkpoint would expand to {bytes} bytes in memory from a {file_bytes}-byte file ({what}); a real checkpoint holds its data")]
    Expands { what: &'static str, bytes: u128, file_bytes: u64 },
    #[error("tensor {key:?} has {elems} elements, over the limit of {limit}")]
    TensorTooLarge { key: String, elems: u128, limit: usize },
    #[error("tensor {key:?} has {dims} dimensions, over the limit of {limit}")]
    TooManyDims { key: String, dims: usize, limit: usize },
    #[error("invalid safetensors file: {reason}")]
    Safetensors { reason: String },
}

/// Read a checkpoint file, detecting its format from its content.
///
/// `info` gets every tensor's shape and dtype; `data` gets f32 data only for the keys where
/// `want(key)` is true (other storages are never converted).
pub fn load(path: &Path, limits: &Limits, want: &dyn Fn(&str) -> bool) -> Result<Checkpoint, CheckpointError> {
    let io = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > limits.max_file_bytes {
        return Err(CheckpointError::TooLarge { path: path.to_path_buf(), size, limit: limits.max_file_bytes });
    }
    let mut file = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let mut head = [0u8; 64];
    let head_len = read_head(&mut file, &mut head).map_err(io)?;
    let format = detect(&head[..head_len], size)?;

    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let sha256 = sha256_reader(&mut file).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;

    let (info, data) = match format {
        Format::TorchZip => torch_zip::read(file, limits, want)?,
        Format::Safetensors => {
            let mut bytes = Vec::new();
            file.take(limits.max_file_bytes).read_to_end(&mut bytes).map_err(io)?;
            safetensors::read(&bytes, limits, want)?
        }
    };
    Ok(Checkpoint { path: path.to_path_buf(), format, sha256, file_bytes: size, info, data })
}

/// [`load`] on the bytes of a file (for fuzzing and tests); `path` is left empty.
pub fn load_bytes(bytes: &[u8], limits: &Limits, want: &dyn Fn(&str) -> bool) -> Result<Checkpoint, CheckpointError> {
    let size = bytes.len() as u64;
    if size > limits.max_file_bytes {
        return Err(CheckpointError::TooLarge { path: PathBuf::from("<bytes>"), size, limit: limits.max_file_bytes });
    }
    let format = detect(&bytes[..bytes.len().min(64)], size)?;
    let sha256 = hex(&Sha256::digest(bytes));
    let (info, data) = match format {
        Format::TorchZip => torch_zip::read(Cursor::new(bytes), limits, want)?,
        Format::Safetensors => safetensors::read(bytes, limits, want)?,
    };
    Ok(Checkpoint { path: PathBuf::new(), format, sha256, file_bytes: size, info, data })
}

/// Run the restricted pickle interpreter on a `data.pkl` and return its state_dict's tensors
/// in file order (no storage is read). Accepts a dict of tensors, or a dict whose
/// `state_dict` / `model` entry is one; non-tensor entries are ignored.
pub fn parse_pickle(bytes: &[u8]) -> Result<Vec<(String, TensorRef)>, CheckpointError> {
    pickle::state_dict(&pickle::run(bytes)?)
}

fn read_head(r: &mut impl Read, head: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Decide the format from the first bytes of the file and its total size.
fn detect(head: &[u8], size: u64) -> Result<Format, CheckpointError> {
    let not = |reason: &str| Err(CheckpointError::NotACheckpoint { reason: reason.to_string() });
    if head.is_empty() {
        return not("the file is empty");
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(Format::TorchZip);
    }
    // Pickle PROTO opcode: what the legacy (pre-1.6) torch.save wrote, a bare pickle stream.
    if head.len() >= 2 && head[0] == 0x80 && (1..=5).contains(&head[1]) {
        return Err(CheckpointError::LegacyTorchFormat);
    }
    if head.len() >= 9 && head[8] == b'{' {
        let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if n.checked_add(8).is_none_or(|end| end > size) {
            return Err(CheckpointError::Truncated {
                what: "safetensors file",
                detail: format!("its header claims {n} bytes but the file has {size} in all"),
            });
        }
        return Ok(Format::Safetensors);
    }
    if head.starts_with(b"version https://git-lfs") {
        return not("this is a Git LFS pointer, not the checkpoint itself (run `git lfs pull`)");
    }
    if head.starts_with(b"PK") {
        return not("a zip file that does not start with a local file header");
    }
    if head.trim_ascii_start().starts_with(b"<") {
        return not("this is an HTML/XML document (a failed download?)");
    }
    let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(CheckpointError::NotACheckpoint {
        reason: format!(
            "unrecognised content (first bytes {}); expected a PyTorch zip checkpoint (torch.save) or a safetensors file",
            shown.join(" ")
        ),
    })
}

fn sha256_reader(r: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Convert little-endian elements of a float dtype to f32 (`bytes.len()` a multiple of the
/// element size).
pub(crate) fn decode_f32(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        DType::F16 => {
            bytes.chunks_exact(2).map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
        }
        DType::BF16 => {
            bytes.chunks_exact(2).map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
        }
        DType::F64 => {
            bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()
        }
        _ => unreachable!("decode_f32 called on {dtype}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_formats() {
        assert!(matches!(detect(b"", 0), Err(CheckpointError::NotACheckpoint { .. })));
        assert_eq!(detect(b"PK\x03\x04rest", 100).unwrap(), Format::TorchZip);
        assert!(matches!(detect(b"\x80\x02\x8a\x0a", 100), Err(CheckpointError::LegacyTorchFormat)));
        let mut st = 2u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{}");
        assert_eq!(detect(&st, 10).unwrap(), Format::Safetensors);
        assert!(matches!(detect(&st, 9), Err(CheckpointError::Truncated { .. })));
        let e = detect(b"version https://git-lfs.github.com/spec/v1\n", 100).unwrap_err();
        assert!(e.to_string().contains("Git LFS"), "{e}");
        let e = detect(b"hello world, not a model", 100).unwrap_err();
        assert!(e.to_string().contains("unrecognised content (first bytes 68 65"), "{e}");
    }

    #[test]
    fn zero_byte_and_random_bytes() {
        let limits = Limits::default();
        let e = load_bytes(b"", &limits, &|_| true).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        // A deterministic pseudo-random buffer (xorshift), not starting with any magic.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let e = load_bytes(&bytes, &limits, &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::NotACheckpoint { .. }), "{e}");
    }

    #[test]
    fn file_limits_and_io() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pth");
        std::fs::write(&p, vec![0u8; 100]).unwrap();
        let limits = Limits { max_file_bytes: 99, ..Limits::default() };
        let e = load(&p, &limits, &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::TooLarge { size: 100, limit: 99, .. }), "{e}");
        let e = load(&dir.path().join("missing.pth"), &limits, &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::Io { .. }), "{e}");
        let empty = dir.path().join("empty.pth");
        std::fs::write(&empty, b"").unwrap();
        let e = load(&empty, &Limits::default(), &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::NotACheckpoint { .. }), "{e}");
    }

    #[test]
    fn decode_half_types() {
        // 1.5, -2.0, 0.25 as IEEE half and as bfloat16 bit patterns.
        let f16: Vec<u8> = [0x3E00u16, 0xC000, 0x3400].iter().flat_map(|b| b.to_le_bytes()).collect();
        assert_eq!(decode_f32(DType::F16, &f16), vec![1.5, -2.0, 0.25]);
        let bf16: Vec<u8> = [0x3FC0u16, 0xC000, 0x3E80].iter().flat_map(|b| b.to_le_bytes()).collect();
        assert_eq!(decode_f32(DType::BF16, &bf16), vec![1.5, -2.0, 0.25]);
        let f64b: Vec<u8> = [0.1f64, -3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode_f32(DType::F64, &f64b), vec![0.1f32, -3.0]);
    }
}
