//! The PyTorch zip checkpoint format (`torch.save` since torch 1.6): a zip, usually stored, with
//! `<archive>/data.pkl` (the pickled state_dict, see [`super::pickle`]), one entry
//! `<archive>/data/<storage key>` of raw little-endian bytes per storage, `<archive>/version`
//! and maybe `<archive>/byteorder`. The archive folder is `archive/` or the file's stem.

use super::{decode_f32, pickle, CheckpointError, DType, Limits, TensorInfo, TensorRef};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek};
use zip::result::ZipError;
use zip::ZipArchive;

/// Largest `data.pkl` accepted (torch's pickle for a 1,000-key state dict is ~100 KB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;

type Tensors = (BTreeMap<String, TensorInfo>, BTreeMap<String, Vec<f32>>);

/// Read every tensor's shape and dtype, and the f32 data of those `want` selects.
pub(crate) fn read<R: Read + Seek>(
    reader: R,
    limits: &Limits,
    want: &dyn Fn(&str) -> bool,
) -> Result<Tensors, CheckpointError> {
    let mut reader = reader;
    let file_bytes = reader.seek(std::io::SeekFrom::End(0)).map_err(|e| CheckpointError::Truncated { what: "zip archive", detail: e.to_string() })?;
    let mut zip = ZipArchive::new(reader).map_err(|e| match e {
        ZipError::Io(io) => CheckpointError::Truncated { what: "zip archive", detail: io.to_string() },
        other => CheckpointError::Truncated { what: "zip archive", detail: other.to_string() },
    })?;

    let root = find_root(&zip)?;
    if let Some(order) = read_small(&mut zip, &format!("{root}byteorder"))? {
        let order = String::from_utf8_lossy(&order).trim().to_string();
        if order != "little" {
            return Err(CheckpointError::UnsupportedByteOrder { found: order });
        }
    }
    let pkl_name = format!("{root}data.pkl");
    let pkl = read_entry(&mut zip, &pkl_name, MAX_PICKLE_BYTES)?;
    let tensors = pickle::state_dict(&pickle::run(&pkl)?)?;
    drop(pkl);
    if tensors.len() > limits.max_tensors {
        return Err(CheckpointError::TooManyTensors { count: tensors.len(), limit: limits.max_tensors });
    }

    // Shapes, limits and bounds of every tensor, against the storage entries' real sizes.
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut info = BTreeMap::new();
    let mut wanted: Vec<(String, TensorRef)> = Vec::new();
    for (key, t) in tensors {
        let elems = t.shape.iter().fold(1u128, |a, &d| a.saturating_mul(d as u128));
        if elems > limits.max_tensor_elems as u128 {
            return Err(CheckpointError::TensorTooLarge { key, elems, limit: limits.max_tensor_elems });
        }
        let entry = format!("{root}data/{}", t.storage.key);
        let available = match sizes.get(&t.storage.key) {
            Some(&s) => s,
            None => {
                let s = match zip.by_name(&entry) {
                    Ok(f) => f.size(),
                    Err(ZipError::FileNotFound) => {
                        return Err(CheckpointError::MissingStorage { key, storage: t.storage.key.clone(), entry })
                    }
                    Err(e) => return Err(zip_err(&entry, e)),
                };
                sizes.insert(t.storage.key.clone(), s);
                s
            }
        };
        // A wanted tensor of the wrong type is reported as such, before its storage size.
        let wanted_here = want(&key);
        if wanted_here && !t.storage.dtype.is_float() {
            return Err(CheckpointError::UnsupportedDtype { key, dtype: t.storage.dtype.to_string() });
        }
        let needed = needed_bytes(&t);
        if needed > available as u128 {
            return Err(CheckpointError::StorageTooSmall { key, storage: t.storage.key.clone(), needed, available });
        }
        if info.contains_key(&key) {
            return Err(CheckpointError::DuplicateKey { key });
        }
        info.insert(key.clone(), TensorInfo { shape: t.shape.clone(), dtype: t.storage.dtype });
        if wanted_here {
            wanted.push((key, t));
        }
    }

    // What reading the wanted tensors would allocate, bounded by the file before anything is read:
    // a deflated entry can claim gigabytes in a kilobyte file, and a view with stride 0 can make
    // 4 bytes of storage a tensor of 2³¹ elements. torch.save stores entries uncompressed and
    // never saves broadcast views, so a real checkpoint stays well inside both bounds.
    let mut storages: Vec<&str> = wanted.iter().map(|(_, t)| t.storage.key.as_str()).collect();
    storages.sort_unstable();
    storages.dedup();
    let inflated: u128 = storages.iter().map(|k| sizes[*k] as u128).sum();
    if inflated > inflate_budget(file_bytes) {
        return Err(CheckpointError::Expands { what: "storage entries inflate past 16 times the file", bytes: inflated, file_bytes });
    }
    let materialised: u128 = wanted.iter().map(|(_, t)| t.shape.iter().fold(4u128, |a, &d| a.saturating_mul(d as u128))).sum();
    if materialised > 4 * inflated + MATERIALISE_SLACK {
        return Err(CheckpointError::Expands { what: "tensor views reach far more elements than their storages hold", bytes: materialised, file_bytes });
    }

    // Data of the wanted tensors, reading each storage once.
    wanted.sort_by(|a, b| a.1.storage.key.cmp(&b.1.storage.key));
    let mut data = BTreeMap::new();
    let mut i = 0;
    while i < wanted.len() {
        let skey = wanted[i].1.storage.key.clone();
        let entry = format!("{root}data/{skey}");
        let bytes = read_entry(&mut zip, &entry, sizes[&skey])?;
        while i < wanted.len() && wanted[i].1.storage.key == skey {
            let (key, t) = &wanted[i];
            data.insert(key.clone(), gather(t, &bytes));
            i += 1;
        }
    }
    Ok((info, data))
}

/// Bytes the storage entries of a `file_bytes` file may inflate to.
fn inflate_budget(file_bytes: u64) -> u128 {
    16 * file_bytes as u128 + (64 << 20)
}

/// f32 bytes the wanted tensors may take beyond 4× their storages' bytes (f16 → f32 doubles,
/// transposed views and shared storages repeat).
const MATERIALISE_SLACK: u128 = 64 << 20;

/// The `<archive>/` prefix, from the single `<archive>/data.pkl` entry.
fn find_root<R: Read + Seek>(zip: &ZipArchive<R>) -> Result<String, CheckpointError> {
    let names: Vec<&str> = zip.file_names().collect();
    if names.iter().any(|n| n.ends_with("/constants.pkl") || n.contains("/code/__torch__")) {
        return Err(CheckpointError::NotACheckpoint {
            reason: "this is a TorchScript archive (torch.jit.save), not a state_dict; save one with `torch.save(model.state_dict(), path)`".into(),
        });
    }
    let mut roots: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .filter(|r| r.is_empty() || (r.ends_with('/') && r.matches('/').count() == 1))
        .collect();
    roots.sort_unstable();
    match roots.as_slice() {
        [root] => Ok(root.to_string()),
        [] => Err(CheckpointError::BadArchive {
            reason: format!(
                "a zip without a `<archive>/data.pkl` entry (not a torch.save file?); first entries: {}",
                names.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            ),
        }),
        several => Err(CheckpointError::BadArchive {
            reason: format!("several data.pkl entries: {}", several.join("data.pkl, ") + "data.pkl"),
        }),
    }
}

fn zip_err(entry: &str, e: ZipError) -> CheckpointError {
    CheckpointError::Truncated { what: "zip archive", detail: format!("entry {entry}: {e}") }
}

/// Read a whole entry of at most `limit` bytes. The buffer grows with the data actually read,
/// so a header that lies about the size cannot make us allocate it.
fn read_entry<R: Read + Seek>(zip: &mut ZipArchive<R>, name: &str, limit: u64) -> Result<Vec<u8>, CheckpointError> {
    let f = match zip.by_name(name) {
        Ok(f) => f,
        Err(ZipError::FileNotFound) => return Err(CheckpointError::BadArchive { reason: format!("no entry {name}") }),
        Err(e) => return Err(zip_err(name, e)),
    };
    let size = f.size();
    if size > limit {
        return Err(CheckpointError::BadArchive {
            reason: format!("entry {name} is {size} bytes, over the limit of {limit}"),
        });
    }
    // Read to the reader's own end (one byte past the claimed size at most) so that the zip
    // crate verifies the entry's CRC-32.
    let mut buf = Vec::new();
    f.take(size.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| CheckpointError::Truncated { what: "zip archive", detail: format!("entry {name}: {e}") })?;
    if buf.len() as u64 != size {
        return Err(CheckpointError::Truncated {
            what: "zip archive",
            detail: format!("entry {name} has {} of its {size} bytes", buf.len()),
        });
    }
    Ok(buf)
}

fn read_small<R: Read + Seek>(zip: &mut ZipArchive<R>, name: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
    if zip.index_for_name(name).is_none() {
        return Ok(None);
    }
    read_entry(zip, name, 64).map(Some)
}

/// Bytes of storage a tensor view reaches: (offset + Σ (size_i − 1)·stride_i + 1) · elem size,
/// or 0 for an empty tensor. Saturating: an overflowing view needs "more than exists".
pub(crate) fn needed_bytes(t: &TensorRef) -> u128 {
    if t.shape.contains(&0) {
        return 0;
    }
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .fold(t.offset as u128, |acc, (&n, &s)| acc.saturating_add((n as u128 - 1).saturating_mul(s as u128)));
    last.saturating_add(1).saturating_mul(t.storage.dtype.size() as u128)
}

/// Contiguous row-major f32 copy of a (possibly strided, offset) view of a float storage whose
/// bounds [`needed_bytes`] has checked.
pub(crate) fn gather(t: &TensorRef, bytes: &[u8]) -> Vec<f32> {
    let es = t.storage.dtype.size();
    let n: usize = t.shape.iter().product();
    if n == 0 {
        return Vec::new();
    }
    if is_contiguous(&t.shape, &t.stride) {
        return decode_f32(t.storage.dtype, &bytes[t.offset * es..(t.offset + n) * es]);
    }
    match t.storage.dtype {
        DType::F32 => strided::<4>(t, bytes, n, f32::from_le_bytes),
        DType::F16 => strided::<2>(t, bytes, n, |b| half::f16::from_le_bytes(b).to_f32()),
        DType::BF16 => strided::<2>(t, bytes, n, |b| half::bf16::from_le_bytes(b).to_f32()),
        DType::F64 => strided::<8>(t, bytes, n, |b| f64::from_le_bytes(b) as f32),
        other => unreachable!("gather on {other}"),
    }
}

fn strided<const ES: usize>(t: &TensorRef, bytes: &[u8], n: usize, f: impl Fn([u8; ES]) -> f32) -> Vec<f32> {
    let nd = t.shape.len();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; nd];
    let mut pos = t.offset;
    for _ in 0..n {
        out.push(f(bytes[pos * ES..pos * ES + ES].try_into().expect("ES bytes")));
        for d in (0..nd).rev() {
            // Wrapping: a size-1 dim may have any stride; the final positions are in bounds.
            idx[d] += 1;
            pos = pos.wrapping_add(t.stride[d]);
            if idx[d] < t.shape[d] {
                break;
            }
            pos = pos.wrapping_sub(t.stride[d].wrapping_mul(t.shape[d]));
            idx[d] = 0;
        }
    }
    out
}

fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expect = 1usize;
    for (&n, &s) in shape.iter().zip(stride).rev() {
        if n != 1 && s != expect {
            return false;
        }
        expect = expect.saturating_mul(n);
    }
    true
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // expected values are pasted as Python printed them
mod tests {
    use super::super::pickle::tests::P;
    use super::super::{load, load_bytes, Checkpoint, Format};
    use super::*;
    use std::io::{Cursor, Write};
    use std::path::PathBuf;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    fn fixtures() -> PathBuf {
        match std::env::var_os("MSF_FIXTURES") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures")),
        }
    }

    fn load_fixture(name: &str, want: &dyn Fn(&str) -> bool) -> Checkpoint {
        let p = fixtures().join(name);
        assert!(p.exists(), "fixture {} is missing (set MSF_FIXTURES to the shared/fixtures folder)", p.display());
        load(&p, &Limits::default(), want).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Key → rank from the full-size key dump next to the fixtures (`../spec/keys/*.tsv`).
    fn spec_ranks(tsv: &str) -> Option<HashMap<String, usize>> {
        let p = fixtures().join("../spec/keys").join(tsv);
        let text = std::fs::read_to_string(p).ok()?;
        Some(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let mut f = l.split('\t');
                    let key = f.next().unwrap().to_string();
                    let shape = f.next().unwrap();
                    (key, shape.matches(',').count() + usize::from(shape != "[]"))
                })
                .collect(),
        )
    }

    fn sum(v: &[f32]) -> f64 {
        v.iter().map(|&x| x as f64).sum()
    }

    // Expected values below were computed independently with Python's stdlib only: zipfile +
    // pickle.Unpickler whose persistent_load returns the storage key and find_class returns
    // stand-ins for _rebuild_tensor_v2 / OrderedDict / torch.*Storage, then struct.unpack('<f')
    // of `<archive>/data/<key>` honouring offset and strides, and math.fsum in f64.

    #[test]
    fn tiny_slate_fixture() {
        let want = |k: &str| {
            k == "m.initializ.mean" || k == "m.aggregat.proj_q.weight" || k == "m.encode_backbone.1.cls_token"
        };
        let ck = load_fixture("tiny-slate-msf.pth", &want);
        assert_eq!(ck.format, Format::TorchZip);
        assert_eq!(ck.info.len(), 161);
        assert_eq!(ck.total_params(), 3_015_296);
        assert_eq!(ck.sha256.len(), 64);
        assert_eq!(ck.file_bytes, std::fs::metadata(fixtures().join("tiny-slate-msf.pth")).unwrap().len());
        assert_eq!(ck.data.len(), 3, "only the wanted keys are converted");
        assert!(ck.info.values().all(|i| i.dtype == DType::F32));
        let shape = |k: &str| ck.info[k].shape.clone();
        assert_eq!(shape("m.encode_backbone.1.pos_embed"), vec![1, 257, 128]);
        assert_eq!(shape("m.encode_backbone.1.patch_embed.proj.weight"), vec![128, 3, 14, 14]);
        assert_eq!(shape("m.initializ.mean"), vec![1, 5, 64]);
        assert_eq!(shape("m.aggregat.rnn.weight_ih"), vec![192, 64]);
        assert_eq!(shape("m.encode_project.1.weight"), vec![256, 128]);
        let mean = &ck.data["m.initializ.mean"];
        assert_eq!(mean.len(), 320);
        assert_eq!(&mean[..3], &[-1.863077998161316f32, -1.1765004396438599, 0.7772974967956543]);
        assert!((sum(mean) - -42.885495257447474).abs() < 1e-9);
        let q = &ck.data["m.aggregat.proj_q.weight"];
        assert_eq!(&q[..3], &[0.022196054458618164f32, 0.029391765594482422, 0.49139517545700073]);
        assert!((sum(q) - 38.61636233329773).abs() < 1e-9);
        let cls = &ck.data["m.encode_backbone.1.cls_token"];
        assert_eq!(cls[0], 1.0420118314868887e-06f32);
        assert!((sum(cls) - -1.3606894304629691e-05).abs() < 1e-15);
        check_against_spec(&ck, "slate_r_vqvae-coco-msf.state_dict.tsv");
    }

    #[test]
    fn tiny_slotdiffusion_fixture() {
        let ck = load_fixture("tiny-slotdiffusion-msf.pth", &|k| {
            k == "m.initializ.mean" || k == "m.decode.backbone.conv_out.bias"
        });
        assert_eq!(ck.info.len(), 578);
        assert_eq!(ck.total_params(), 3_325_240);
        assert_eq!(ck.data.len(), 2);
        let mean = &ck.data["m.initializ.mean"];
        assert_eq!(&mean[..3], &[2.5606539249420166f32, -0.41863977909088135, 2.2635385990142822]);
        assert!((sum(mean) - 70.64703928306699).abs() < 1e-9);
        let b = &ck.data["m.decode.backbone.conv_out.bias"];
        assert_eq!(b, &[-0.04853319749236107f32, 0.025575030595064163, -0.010706929489970207, b[3]]);
        assert!((sum(b) - -0.0035835281014442444).abs() < 1e-12);
        check_against_spec(&ck, "slotdiffusion_r_vqvae-coco-msf.state_dict.tsv");
        // Loading everything works too, and agrees with the selective load.
        let all = load_fixture("tiny-slotdiffusion-msf.pth", &|_| true);
        assert_eq!(all.data.len(), 578);
        assert_eq!(all.data["m.initializ.mean"], *mean);
        assert_eq!(all.sha256, ck.sha256);
        for (k, i) in &all.info {
            assert_eq!(all.data[k].len(), i.numel(), "{k}");
        }
    }

    /// Every fixture key is an upstream key with the same rank (sizes are shrunk).
    fn check_against_spec(ck: &Checkpoint, tsv: &str) {
        let Some(ranks) = spec_ranks(tsv) else {
            eprintln!("spec/keys/{tsv} not found next to the fixtures; skipping the key cross-check");
            return;
        };
        for (k, i) in &ck.info {
            assert_eq!(ranks.get(k), Some(&i.shape.len()), "{k}");
        }
    }

    #[test]
    fn load_bytes_matches_load() {
        let p = fixtures().join("tiny-slate-msf.pth");
        let bytes = std::fs::read(&p).unwrap();
        let want = |k: &str| k.starts_with("m.aggregat.");
        let a = load_bytes(&bytes, &Limits::default(), &want).unwrap();
        let b = load(&p, &Limits::default(), &want).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.info, b.info);
        assert_eq!(a.data, b.data);
    }

    // ---- crafted archives ----

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A state dict pickle with the given tensors: (key, storage type, storage key, numel, offset, size, stride).
    type T<'a> = (&'a str, &'a str, &'a str, usize, usize, &'a [usize], &'a [usize]);
    fn sd_pickle(ts: &[T]) -> Vec<u8> {
        let mut p = P::new();
        p.op(b'}').op(b'q').op(0).op(b'(');
        for (key, st, skey, numel, off, size, stride) in ts {
            p.s(key).tensor(st, skey, *numel, *off, size, stride);
        }
        p.op(b'u');
        p.stop()
    }

    fn load_all(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        load_bytes(bytes, &Limits::default(), &|_| true)
    }

    #[test]
    fn strided_views_and_offsets() {
        let storage: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let pkl = sd_pickle(&[
            // plain 3×4
            ("full", "FloatStorage", "0", 12, 0, &[3, 4], &[4, 1]),
            // transpose: 4×3 view with strides (1, 4)
            ("t", "FloatStorage", "0", 12, 0, &[4, 3], &[1, 4]),
            // offset 5, contiguous 2×3 → 5..=10
            ("off", "FloatStorage", "0", 12, 5, &[2, 3], &[3, 1]),
            // every other column, from offset 1: rows of [1,3], [5,7], [9,11]
            ("cols", "FloatStorage", "0", 12, 1, &[3, 2], &[4, 2]),
            // broadcast (stride 0) of element 7 to 2×2
            ("bcast", "FloatStorage", "0", 12, 7, &[2, 2], &[0, 0]),
            // scalar at offset 11, and an empty tensor
            ("scalar", "FloatStorage", "0", 12, 11, &[], &[]),
            ("empty", "FloatStorage", "0", 12, 0, &[0, 5], &[5, 1]),
        ]);
        let bytes = zip_of(&[
            ("archive/data.pkl", &pkl),
            ("archive/byteorder", b"little"),
            ("archive/data/0", &f32s(&storage)),
            ("archive/version", b"3\n"),
        ]);
        let ck = load_all(&bytes).unwrap();
        assert_eq!(ck.data["full"], storage);
        assert_eq!(ck.data["t"], vec![0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        assert_eq!(ck.data["off"], vec![5., 6., 7., 8., 9., 10.]);
        assert_eq!(ck.data["cols"], vec![1., 3., 5., 7., 9., 11.]);
        assert_eq!(ck.data["bcast"], vec![7.; 4]);
        assert_eq!(ck.data["scalar"], vec![11.]);
        assert!(ck.info["scalar"].shape.is_empty());
        assert_eq!(ck.data["empty"], Vec::<f32>::new());
        assert_eq!(ck.info["t"].shape, vec![4, 3]);
        // Selective load: only the wanted key gets data.
        let ck = load_bytes(&bytes, &Limits::default(), &|k| k == "off").unwrap();
        assert_eq!(ck.info.len(), 7);
        assert_eq!(ck.data.keys().collect::<Vec<_>>(), vec!["off"]);
    }

    #[test]
    fn half_bfloat_double_storages() {
        // 1.5, -2.0, 0.25, 3.0 as half / bfloat16 bit patterns; a strided fp16 view too.
        let f16: Vec<u8> = [0x3E00u16, 0xC000, 0x3400, 0x4200].iter().flat_map(|b| b.to_le_bytes()).collect();
        let bf16: Vec<u8> = [0x3FC0u16, 0xC000, 0x3E80, 0x4040].iter().flat_map(|b| b.to_le_bytes()).collect();
        let f64b: Vec<u8> = [1.5f64, -2.0, 0.25, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let pkl = sd_pickle(&[
            ("h", "HalfStorage", "0", 4, 0, &[2, 2], &[2, 1]),
            ("ht", "HalfStorage", "0", 4, 0, &[2, 2], &[1, 2]),
            ("b", "BFloat16Storage", "1", 4, 1, &[3], &[1]),
            ("d", "DoubleStorage", "2", 4, 0, &[4], &[1]),
        ]);
        let bytes = zip_of(&[
            ("my-model/data.pkl", &pkl),
            ("my-model/data/0", &f16),
            ("my-model/data/1", &bf16),
            ("my-model/data/2", &f64b),
        ]);
        let ck = load_all(&bytes).unwrap();
        assert_eq!(ck.data["h"], vec![1.5, -2.0, 0.25, 3.0]);
        assert_eq!(ck.data["ht"], vec![1.5, 0.25, -2.0, 3.0]);
        assert_eq!(ck.data["b"], vec![-2.0, 0.25, 3.0]);
        assert_eq!(ck.data["d"], vec![1.5, -2.0, 0.25, 3.0]);
        assert_eq!(ck.info["h"].dtype, DType::F16);
        assert_eq!(ck.info["b"].dtype, DType::BF16);
        assert_eq!(ck.info["d"].dtype, DType::F64);
    }

    #[test]
    fn integer_tensors_are_recorded_but_not_loadable() {
        let pkl = sd_pickle(&[
            ("w", "FloatStorage", "0", 1, 0, &[1], &[1]),
            ("bn.num_batches_tracked", "LongStorage", "1", 1, 0, &[], &[]),
        ]);
        let bytes =
            zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[1.0])), ("archive/data/1", &[0u8; 8])]);
        let ck = load_bytes(&bytes, &Limits::default(), &|k| k == "w").unwrap();
        assert_eq!(ck.info["bn.num_batches_tracked"].dtype, DType::I64);
        let e = load_all(&bytes).unwrap_err();
        assert!(
            matches!(e, CheckpointError::UnsupportedDtype { ref key, .. } if key == "bn.num_batches_tracked"),
            "{e}"
        );
        assert!(e.to_string().contains("int64"), "{e}");
    }

    #[test]
    fn storage_shorter_than_its_tensor() {
        let pkl = sd_pickle(&[("w", "FloatStorage", "0", 12, 0, &[3, 4], &[4, 1])]);
        let bytes = zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[0.0; 11]))]);
        let e = load_all(&bytes).unwrap_err();
        match &e {
            CheckpointError::StorageTooSmall { key, storage, needed, available } => {
                assert_eq!((key.as_str(), storage.as_str(), *needed, *available), ("w", "0", 48, 44));
            }
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("needs 48 bytes"), "{e}");
        // Also when the data is not wanted (bounds are checked for every tensor).
        assert!(matches!(
            load_bytes(&bytes, &Limits::default(), &|_| false),
            Err(CheckpointError::StorageTooSmall { .. })
        ));
        // An offset / stride past the end, and an overflowing stride.
        let pkl = sd_pickle(&[("w", "FloatStorage", "0", 4, 3, &[2], &[1])]);
        let bytes = zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[0.0; 4]))]);
        assert!(matches!(load_all(&bytes), Err(CheckpointError::StorageTooSmall { needed: 20, .. })));
        let pkl = sd_pickle(&[("w", "FloatStorage", "0", 4, 0, &[2, 2], &[1, 1 << 30])]);
        let bytes = zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[0.0; 4]))]);
        assert!(matches!(load_all(&bytes), Err(CheckpointError::StorageTooSmall { .. })));
        // Sizes/strides near usize::MAX saturate instead of overflowing.
        let t = TensorRef {
            storage: super::super::StorageRef { key: "0".into(), dtype: DType::F64, numel: 1 },
            offset: usize::MAX,
            shape: vec![usize::MAX, usize::MAX],
            stride: vec![usize::MAX, usize::MAX],
        };
        assert!(needed_bytes(&t) > u64::MAX as u128, "saturates instead of overflowing");
    }

    #[test]
    fn missing_storage_entry() {
        let pkl =
            sd_pickle(&[("w", "FloatStorage", "0", 1, 0, &[1], &[1]), ("v", "FloatStorage", "7", 1, 0, &[1], &[1])]);
        let bytes = zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[1.0]))]);
        let e = load_all(&bytes).unwrap_err();
        assert!(
            matches!(&e, CheckpointError::MissingStorage { key, storage, entry } if key == "v" && storage == "7" && entry == "archive/data/7"),
            "{e}"
        );
        assert!(e.to_string().contains("archive/data/7"), "{e}");
    }

    #[test]
    fn truncated_zip() {
        let pkl = sd_pickle(&[("w", "FloatStorage", "0", 256, 0, &[256], &[1])]);
        let bytes = zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[1.0; 256]))]);
        assert!(load_all(&bytes).is_ok());
        for cut in [bytes.len() - 1, bytes.len() - 30, bytes.len() / 2, 10, 4] {
            let e = load_all(&bytes[..cut]).unwrap_err();
            assert!(matches!(e, CheckpointError::Truncated { .. }), "cut {cut}: {e}");
            assert!(e.to_string().contains("truncated or corrupt zip archive"), "{e}");
        }
        // A storage entry whose bytes were damaged: the CRC check fails on read.
        let mut bad = bytes.clone();
        let at = bad.windows(4).position(|w| w == 1.0f32.to_le_bytes()).unwrap();
        bad[at] ^= 0xff;
        let e = load_all(&bad).unwrap_err();
        assert!(matches!(e, CheckpointError::Truncated { .. }), "{e}");
    }

    #[test]
    fn forbidden_global_inside_an_archive() {
        let mut p = P::new();
        p.global("os", "system").s("rm -rf /").op(0x85).op(b'R');
        let bytes = zip_of(&[("archive/data.pkl", &p.stop())]);
        let e = load_all(&bytes).unwrap_err();
        assert!(
            matches!(&e, CheckpointError::ForbiddenGlobal { module, name } if module == "os" && name == "system"),
            "{e}"
        );
        assert!(e.to_string().contains("os.system"), "{e}");
    }

    #[test]
    fn archive_shape_problems() {
        // No data.pkl
        let e = load_all(&zip_of(&[("weights.npy", b"x")])).unwrap_err();
        assert!(matches!(e, CheckpointError::BadArchive { .. }) && e.to_string().contains("data.pkl"), "{e}");
        // Two archives
        let pkl = sd_pickle(&[]);
        let e = load_all(&zip_of(&[("a/data.pkl", &pkl), ("b/data.pkl", &pkl)])).unwrap_err();
        assert!(e.to_string().contains("several data.pkl"), "{e}");
        // Big-endian
        let pkl = sd_pickle(&[("w", "FloatStorage", "0", 1, 0, &[1], &[1])]);
        let e = load_all(&zip_of(&[
            ("archive/data.pkl", &pkl),
            ("archive/byteorder", b"big"),
            ("archive/data/0", &[0; 4]),
        ]))
        .unwrap_err();
        assert!(matches!(e, CheckpointError::UnsupportedByteOrder { ref found } if found == "big"), "{e}");
        // TorchScript
        let e = load_all(&zip_of(&[("m/data.pkl", &pkl), ("m/constants.pkl", b""), ("m/code/__torch__/m.py", b"")]))
            .unwrap_err();
        assert!(e.to_string().contains("TorchScript"), "{e}");
        // A pickle that is not a state dict
        let e = load_all(&zip_of(&[("archive/data.pkl", &[0x80, 2, b'K', 1, b'.'])])).unwrap_err();
        assert!(matches!(e, CheckpointError::NotAStateDict { .. }), "{e}");
        // An empty zip (only an end-of-central-directory record)
        let e = load_all(&zip_of(&[])).unwrap_err();
        assert!(matches!(e, CheckpointError::BadArchive { .. }), "{e}");
    }

    #[test]
    fn deflated_entries_and_nested_state_dict() {
        // {'epoch': 1, 'state_dict': {...}} in a deflated archive.
        let mut p = P::new();
        p.op(b'}').op(b'(').s("epoch").int(1).s("state_dict").op(b'}').op(b'(');
        p.s("m.w").tensor("FloatStorage", "0", 3, 0, &[3], &[1]).op(b'u').op(b'u');
        let pkl = p.stop();
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        w.start_file("ckpt/data.pkl", opts).unwrap();
        w.write_all(&pkl).unwrap();
        w.start_file("ckpt/data/0", opts).unwrap();
        w.write_all(&f32s(&[1.0, 2.0, 3.0])).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let ck = load_all(&bytes).unwrap();
        assert_eq!(ck.data["m.w"], vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn limits_are_enforced() {
        let pkl = sd_pickle(&[
            ("a", "FloatStorage", "0", 4, 0, &[4], &[1]),
            ("b", "FloatStorage", "0", 4, 0, &[2, 2], &[2, 1]),
        ]);
        let bytes = zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[0.0; 4]))]);
        let e = load_bytes(&bytes, &Limits { max_tensors: 1, ..Limits::default() }, &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::TooManyTensors { count: 2, limit: 1 }), "{e}");
        let e = load_bytes(&bytes, &Limits { max_tensor_elems: 3, ..Limits::default() }, &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::TensorTooLarge { elems: 4, limit: 3, .. }), "{e}");
        let e = load_bytes(&bytes, &Limits { max_file_bytes: 10, ..Limits::default() }, &|_| true).unwrap_err();
        assert!(matches!(e, CheckpointError::TooLarge { .. }), "{e}");
        // A shape whose element count overflows is "too large", not a panic.
        let huge = [1usize << 40, 1 << 40, 1 << 40];
        let pkl = sd_pickle(&[("x", "FloatStorage", "0", 4, 0, &huge, &[0, 0, 0])]);
        let bytes = zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[0.0; 4]))]);
        assert!(matches!(load_all(&bytes), Err(CheckpointError::TensorTooLarge { .. })));
        // Too many dims.
        let dims = [1usize; 65];
        let pkl = sd_pickle(&[("x", "FloatStorage", "0", 1, 0, &dims, &dims)]);
        let bytes = zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&[0.0]))]);
        assert!(matches!(load_all(&bytes), Err(CheckpointError::TooManyDims { dims: 65, .. })));
    }

    /// Deterministic mutation smoke test (a stand-in until a cargo-fuzz target exists):
    /// damaged archives and pickles must give errors, never panics or hangs.
    #[test]
    fn mutations_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let storage: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let pkl = sd_pickle(&[
            ("a", "FloatStorage", "0", 12, 1, &[3, 2], &[4, 2]),
            ("b", "HalfStorage", "1", 4, 0, &[2, 2], &[1, 2]),
        ]);
        let archive =
            zip_of(&[("archive/data.pkl", &pkl), ("archive/data/0", &f32s(&storage)), ("archive/data/1", &[0u8; 8])]);
        let fixture_pkl = {
            let mut z = ZipArchive::new(std::fs::File::open(fixtures().join("tiny-slate-msf.pth")).unwrap()).unwrap();
            read_entry(&mut z, "tiny-slate-msf/data.pkl", 1 << 20).unwrap()
        };
        assert_eq!(super::super::parse_pickle(&fixture_pkl).unwrap().len(), 161);
        for round in 0..3000 {
            let base: &[u8] = if round % 2 == 0 { &archive } else { &fixture_pkl };
            let mut m = base.to_vec();
            match rnd(3) {
                0 => {
                    for _ in 0..1 + rnd(4) {
                        let i = rnd(m.len());
                        m[i] = rnd(256) as u8;
                    }
                }
                1 => m.truncate(rnd(m.len())),
                _ => {
                    let i = rnd(m.len());
                    let b = [b'(', b']', b'}', b'X', b'h', b'q', b'R', b'e', b'u', 0x85, 0x8a][rnd(11)];
                    m.insert(i, b);
                }
            }
            if round % 2 == 0 {
                let _ = load_all(&m);
            } else {
                let _ = super::super::parse_pickle(&m);
            }
        }
    }

    #[test]
    fn legacy_pickle_file() {
        // The legacy format starts with a protocol-2 pickle of torch's magic number.
        let legacy = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.'];
        let e = load_all(&legacy).unwrap_err();
        assert!(matches!(e, CheckpointError::LegacyTorchFormat), "{e}");
        assert!(e.to_string().contains("re-save it with torch>=1.6"), "{e}");
    }
}
