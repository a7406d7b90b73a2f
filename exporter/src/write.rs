//! Assemble the ONNX model and write it atomically, weights inside the file or as external data.

use msf_models::interface::ModelMetadata;
use msf_models::onnx::{
    tensor_proto::DataLocation, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Protobuf messages cannot exceed 2 GiB; past this, weights must go to external data.
pub const PROTOBUF_LIMIT: usize = (2 << 30) - 1;
/// Tensors smaller than this stay inside the model even with external data.
pub const EXTERNAL_MIN_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the model is {0} bytes, over protobuf's 2 GiB limit: use --external-data")]
    TooLarge(usize),
    #[error("output path {0} has no file name")]
    BadPath(PathBuf),
}

/// IR version that goes with an opset (onnx's own table).
pub fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

pub fn model_proto(graph: GraphProto, opset: i64, meta: &ModelMetadata) -> ModelProto {
    ModelProto {
        ir_version: Some(ir_version_for(opset)),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("msf-export".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: Some("org.msf".into()),
        model_version: Some(meta.spec_version as i64),
        doc_string: Some(format!("MSF {} object decomposition (slots, attention, masks)", meta.config.kind)),
        graph: Some(graph),
        metadata_props: meta
            .to_props()
            .into_iter()
            .map(|(k, v)| StringStringEntryProto { key: Some(k), value: Some(v) })
            .collect(),
        ..Default::default()
    }
}

/// Paths written by [`write_model`].
#[derive(Debug)]
pub struct Written {
    pub model: PathBuf,
    pub data: Option<PathBuf>,
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io { path: path.to_path_buf(), source }
}

/// Move large initializers' bytes into one external blob, recording location/offset/length.
fn externalise(model: &mut ModelProto, data_name: &str) -> Vec<u8> {
    let mut blob = Vec::new();
    let Some(graph) = model.graph.as_mut() else { return blob };
    for t in &mut graph.initializer {
        let Some(raw) = t.raw_data.as_ref() else { continue };
        if raw.len() < EXTERNAL_MIN_BYTES {
            continue;
        }
        // 64-byte alignment lets runtimes map tensors in place.
        blob.resize(blob.len().next_multiple_of(64), 0);
        let offset = blob.len();
        blob.extend_from_slice(raw);
        let entry = |k: &str, v: String| StringStringEntryProto { key: Some(k.into()), value: Some(v) };
        t.external_data = vec![
            entry("location", data_name.to_string()),
            entry("offset", offset.to_string()),
            entry("length", raw.len().to_string()),
        ];
        t.data_location = Some(DataLocation::External as i32);
        t.raw_data = None;
    }
    blob
}

/// Write `bytes` to `path` via a temporary file in the same folder, then rename: never a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    path.file_name().ok_or_else(|| WriteError::BadPath(path.to_path_buf()))?;
    // A short name of its own: `.<name>.tmp-<pid>` overflows the 255-byte limit for a long but legal `name`.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".msf-export.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

/// Serialise and write the model; with `external`, weights go to `<model file name>.data` beside it.
pub fn write_model(mut model: ModelProto, path: &Path, external: bool) -> Result<Written, WriteError> {
    let mut data_path = None;
    let mut total = 0u64;
    if external {
        let name = path.file_name().ok_or_else(|| WriteError::BadPath(path.to_path_buf()))?;
        let data_name = format!("{}.data", name.to_string_lossy());
        let blob = externalise(&mut model, &data_name);
        let dp = path.with_file_name(&data_name);
        write_atomic(&dp, &blob)?;
        total += blob.len() as u64;
        data_path = Some(dp);
    }
    let len = model.encoded_len();
    if len > PROTOBUF_LIMIT {
        if let Some(dp) = &data_path {
            let _ = std::fs::remove_file(dp);
        }
        return Err(WriteError::TooLarge(len));
    }
    let bytes = model.encode_to_vec();
    if let Err(e) = write_atomic(path, &bytes) {
        if let Some(dp) = &data_path {
            let _ = std::fs::remove_file(dp);
        }
        return Err(e);
    }
    total += bytes.len() as u64;
    Ok(Written { model: path.to_path_buf(), data: data_path, bytes: total })
}
