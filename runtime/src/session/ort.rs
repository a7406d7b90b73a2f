//! onnxruntime backend (feature `ort`): CPU, CUDA or TensorRT through the `ort` crate.
//!
//! # The library
//! `ort` is built with `load-dynamic` only: nothing is linked or downloaded at build time, and
//! `libonnxruntime.so` is opened when the first model is loaded. It is looked for, in order:
//! 1. `ORT_DYLIB_PATH` (the variable `ort` itself uses): the library file, or a folder holding it;
//! 2. `MSF_ORT_LIB`: the same;
//! 3. the `onnxruntime` pip wheel in a `.venv` next to the program: for each of the executable's
//!    folder and its ancestors (up to 4 levels: `target/<profile>/deps` → the repository),
//!    `.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`.
//!
//! `scripts/ort-lib` prints the path in the repository's venv (`export ORT_DYLIB_PATH=$(scripts/ort-lib)`).
//! For CUDA/TensorRT the library must be a GPU build (`pip install onnxruntime-gpu`), whose provider
//! libraries sit next to it. The first library loaded serves the whole process (onnxruntime allows a
//! single environment per process).
//!
//! # Providers
//! The requested provider is registered with `error_on_failure`, and the session is committed with
//! it. If registration or commit fails, the load fails with onnxruntime's reason — unless
//! `allow_fallback`, in which case the model is loaded on the CPU and [`Backend::provider`] says `cpu`.
//! A commit failure is only blamed on the provider when the same model then loads on the CPU.
//! TensorRT is registered with CUDA behind it (fail-silently) for the nodes TensorRT lacks (cubic
//! Resize); onnxruntime itself assigns any node no GPU provider supports to the CPU.

use super::{Backend, Provider, RawOutputs, SessionOptions};
use crate::error::{Error, Result};
use crate::model::{metadata_from_props, ModelInfo};
use msf_models::interface::{INPUT_IMAGE, INPUT_SLOTS, OUTPUT_ATTN, OUTPUT_MASKS, OUTPUT_SLOTS};
use ort::environment::Environment;
use ort::ep::{self, ExecutionProviderDispatch};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Environment variables naming the library (file or folder), in the order they are read.
pub const LIBRARY_VARS: [&str; 2] = ["ORT_DYLIB_PATH", "MSF_ORT_LIB"];

pub struct OrtBackend {
    info: ModelInfo,
    /// `Session::run` takes `&mut self` (onnxruntime's EP allocators are not thread safe), so calls
    /// on one loaded model are serialised; onnxruntime parallelises inside each call.
    /// One session per concurrent call (`SessionOptions::concurrency`): `Session::run` needs
    /// `&mut`, so a single session would serialise the callers.
    sessions: Vec<Mutex<Session>>,
    provider: Provider,
    slots_default: Option<Vec<f32>>,
}

// ---------------------------------------------------------------------------------------------
// Finding and loading libonnxruntime
// ---------------------------------------------------------------------------------------------

fn is_ort_library(name: &str) -> bool {
    // libonnxruntime.so, libonnxruntime.so.1.32.0, libonnxruntime.1.32.0.dylib, onnxruntime.dll;
    // not libonnxruntime_providers_*.
    let rest = match name.strip_prefix("libonnxruntime.").or_else(|| name.strip_prefix("onnxruntime.")) {
        Some(r) => r,
        None => return false,
    };
    rest == "so" || rest.starts_with("so.") || rest.ends_with("dylib") || rest == "dll"
}

/// The onnxruntime library in `dir`, newest version first.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_ort_library))
        .map(|e| e.path())
        .collect();
    // Version-aware enough for `so.1.9.0` vs `so.1.32.0`: compare the numeric components.
    let key = |p: &PathBuf| -> Vec<u64> {
        p.file_name().and_then(|n| n.to_str()).unwrap_or("").split('.').filter_map(|s| s.parse().ok()).collect()
    };
    found.sort_by_key(|p| std::cmp::Reverse(key(p)));
    found.into_iter().next()
}

/// `<dir>/.venv/lib/python3*/site-packages/onnxruntime/capi/`.
fn venv_library(root: &Path) -> Option<PathBuf> {
    let lib = root.join(".venv").join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("python3")))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons.iter().rev().find_map(|p| library_in(&p.join("site-packages").join("onnxruntime").join("capi")))
}

/// Where the onnxruntime library is, by the rules in the module docs; the error lists what was tried.
pub fn find_library() -> Result<PathBuf> {
    let mut tried = Vec::new();
    for var in LIBRARY_VARS {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(v);
            if p.is_file() {
                return Ok(p);
            }
            if p.is_dir() {
                if let Some(f) = library_in(&p) {
                    return Ok(f);
                }
            }
            // An explicit setting that does not work is an error, not a reason to guess further.
            return Err(Error::OrtLibraryNotFound {
                reason: format!("{var}={} is neither the onnxruntime library nor a folder holding it", p.display()),
            });
        }
        tried.push(format!("${var} (unset)"));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(5) {
            if let Some(f) = venv_library(dir) {
                return Ok(f);
            }
            tried.push(format!("{}/.venv/lib/python3*/site-packages/onnxruntime/capi/", dir.display()));
        }
    }
    Err(Error::OrtLibraryNotFound { reason: format!("not found (tried {})", tried.join(", ")) })
}

struct Loaded {
    env: Environment,
    library: PathBuf,
}

static ENV: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// Load the library and create the process-wide onnxruntime environment, once.
fn environment() -> Result<&'static Loaded> {
    let loaded = ENV.get_or_init(|| {
        let library = find_library().map_err(|e| match e {
            Error::OrtLibraryNotFound { reason } => reason,
            other => other.to_string(),
        })?;
        let builder = ort::init_from(&library).map_err(|e| format!("cannot load {}: {e}", library.display()))?;
        let env = builder
            .with_name("msf")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot create the onnxruntime environment ({}): {e}", library.display()))?;
        Ok(Loaded { env, library })
    });
    loaded.as_ref().map_err(|reason| Error::OrtLibraryNotFound { reason: reason.clone() })
}

/// The onnxruntime library this process loaded (None before the first model load or if it failed).
pub fn loaded_library() -> Option<&'static Path> {
    ENV.get().and_then(|r| r.as_ref().ok()).map(|l| l.library.as_path())
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::Cpu => "CPU",
        Provider::Cuda => "CUDA",
        Provider::Tensorrt => "TensorRT",
    }
}

fn execution_providers(p: Provider) -> Vec<ExecutionProviderDispatch> {
    match p {
        Provider::Cpu => vec![],
        Provider::Cuda => vec![ep::CUDA::default().build().error_on_failure()],
        Provider::Tensorrt => vec![ep::TensorRT::default().build().error_on_failure(), ep::CUDA::default().build().fail_silently()],
    }
}

enum Failure {
    /// Registering the provider failed: onnxruntime cannot use it at all.
    Register(String),
    /// Creating the session failed (model or provider).
    Commit(String),
}

fn commit(env: &Environment, path: &Path, threads: Option<usize>, provider: Provider) -> std::result::Result<Session, Failure> {
    let setup = |e: ort::Error<ort::session::builder::SessionBuilder>| Failure::Commit(format!("session options: {e}"));
    let mut b = Session::builder(env)
        .map_err(|e| Failure::Commit(format!("session options: {e}")))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(setup)?;
    if let Some(n) = threads {
        b = b.with_intra_threads(n).map_err(setup)?;
    }
    let eps = execution_providers(provider);
    if !eps.is_empty() {
        b = b.with_execution_providers(eps).map_err(|e| Failure::Register(e.to_string()))?;
    }
    b.commit_from_file(path).map_err(|e| Failure::Commit(e.to_string()))
}

fn unavailable(provider: Provider, reason: &str, library: &Path) -> Error {
    Error::ProviderUnavailable {
        provider: provider_name(provider),
        reason: format!(
            "{reason} (onnxruntime: {}; {} needs a GPU build such as `pip install onnxruntime-gpu` with its CUDA libraries, \
             and a visible GPU; allow the CPU fallback to run anyway)",
            library.display(),
            provider_name(provider)
        ),
    }
}

impl OrtBackend {
    pub fn load(path: &Path, opts: &SessionOptions) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::ModelNotFound { path: path.to_path_buf() });
        }
        let loaded = environment()?;
        let load_err = |reason: String| Error::ModelLoad { path: path.to_path_buf(), reason };
        let (session, provider) = match commit(&loaded.env, path, opts.threads, opts.provider) {
            Ok(s) => (s, opts.provider),
            Err(Failure::Commit(reason)) if opts.provider == Provider::Cpu => return Err(load_err(reason)),
            Err(Failure::Register(reason)) => {
                if !opts.allow_fallback {
                    return Err(unavailable(opts.provider, &reason, &loaded.library));
                }
                let cpu = commit(&loaded.env, path, opts.threads, Provider::Cpu).map_err(|f| match f {
                    Failure::Register(r) | Failure::Commit(r) => load_err(r),
                })?;
                (cpu, Provider::Cpu)
            }
            Err(Failure::Commit(gpu_reason)) => {
                // Whose fault: the model's if the CPU cannot load it either, else the provider's.
                let cpu = commit(&loaded.env, path, opts.threads, Provider::Cpu).map_err(|f| match f {
                    Failure::Register(r) | Failure::Commit(r) => load_err(r),
                })?;
                if !opts.allow_fallback {
                    return Err(unavailable(opts.provider, &gpu_reason, &loaded.library));
                }
                (cpu, Provider::Cpu)
            }
        };
        Self::from_session(path, session, provider, opts)
    }

    fn from_session(path: &Path, session: Session, provider: Provider, opts: &SessionOptions) -> Result<Self> {
        let load_err = |reason: String| Error::ModelLoad { path: path.to_path_buf(), reason };
        let props: Vec<(String, String)> = {
            let meta = session.metadata().map_err(|e| load_err(format!("metadata: {e}")))?;
            let keys = meta.custom_keys().map_err(|e| load_err(format!("metadata: {e}")))?;
            keys.into_iter().filter_map(|k| meta.custom(&k).map(|v| (k, v))).collect()
        };
        let meta = metadata_from_props(path, &props, opts.preprocess_override.as_ref())?;

        let in_names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let out_names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let not_msf = |reason: String| Error::NotMsfGraph { path: path.to_path_buf(), reason };
        if in_names.first() != Some(&INPUT_IMAGE) {
            return Err(not_msf(format!("first input is not `{INPUT_IMAGE}` (inputs: {})", in_names.join(", "))));
        }
        for want in [OUTPUT_SLOTS, OUTPUT_ATTN, OUTPUT_MASKS] {
            if !out_names.contains(&want) {
                return Err(not_msf(format!("no output `{want}` (outputs: {})", out_names.join(", "))));
            }
        }
        // An input with an initializer default is listed by onnxruntime as an overridable
        // initializer, not as an input.
        let graph_slots_input =
            in_names.contains(&INPUT_SLOTS) || session.overridable_initializers().iter().any(|i| i.name() == INPUT_SLOTS);
        let info = match meta {
            Some(m) => {
                if m.slots_input && !graph_slots_input {
                    return Err(not_msf(format!("the metadata promises a `{INPUT_SLOTS}` input the graph lacks")));
                }
                ModelInfo::from_metadata(m)
            }
            None => {
                let pre = opts.preprocess_override.clone().expect("checked by metadata_from_props");
                info_from_session(path, &session, pre, graph_slots_input)?
            }
        };
        // onnxruntime feeds the initializer default itself when `slots_init` is left out; the value is
        // still read for `default_slots` (callers seed temporal mode with it).
        let slots_default = if graph_slots_input { read_slots_default(path)? } else { None };
        if let Some(s) = &slots_default {
            if s.len() != info.num_slots * info.slot_dim {
                return Err(not_msf(format!(
                    "`{INPUT_SLOTS}` default has {} values, expected {}x{}",
                    s.len(),
                    info.num_slots,
                    info.slot_dim
                )));
            }
        }
        let mut sessions = vec![Mutex::new(session)];
        if opts.concurrency > 1 {
            let env = &environment()?.env;
            for _ in 1..opts.concurrency {
                let more = commit(env, path, opts.threads, provider).map_err(|f| match f {
                    Failure::Register(r) | Failure::Commit(r) => Error::ModelLoad { path: path.to_path_buf(), reason: r },
                })?;
                sessions.push(Mutex::new(more));
            }
        }
        Ok(OrtBackend { info, sessions, provider, slots_default })
    }
}

/// Shapes from a foreign graph's declared outputs (for models without MSF metadata).
fn info_from_session(path: &Path, session: &Session, pre: msf_models::Preprocess, slots_input: bool) -> Result<ModelInfo> {
    let shape = |name: &str| -> Option<Vec<usize>> {
        let o = session.outputs().iter().find(|o| o.name() == name)?;
        let s = o.dtype().tensor_shape()?;
        // The batch dimension may be symbolic (-1); the others must be known.
        s.iter().skip(1).map(|&d| usize::try_from(d).ok().filter(|&d| d > 0)).collect::<Option<Vec<_>>>().map(|mut v| {
            v.insert(0, 1);
            v
        })
    };
    let bad = |what: &str| Error::NotMsfGraph { path: path.to_path_buf(), reason: format!("cannot read the {what} shape from the graph") };
    let slots = shape(OUTPUT_SLOTS).filter(|s| s.len() == 3).ok_or_else(|| bad("slots"))?;
    let attn = shape(OUTPUT_ATTN).filter(|s| s.len() == 4).ok_or_else(|| bad("attn"))?;
    let masks = shape(OUTPUT_MASKS).filter(|s| s.len() == 3).ok_or_else(|| bad("masks"))?;
    Ok(ModelInfo {
        kind: None,
        metadata: None,
        preprocess: pre,
        num_slots: slots[1],
        slot_dim: slots[2],
        grid: attn[2],
        mask_size: masks[1],
        slots_input,
    })
}

/// The `slots_init` initializer (the learned mean), read from the ONNX file with the prost types:
/// `raw_data` (little-endian f32) or `float_data`, or external data (`location`, `offset`, `length`
/// next to the model). `None` when the input has no default.
pub(crate) fn read_slots_default(path: &Path) -> Result<Option<Vec<f32>>> {
    use msf_models::onnx::{tensor_proto::DataLocation, tensor_proto::DataType, ModelProto};
    use prost::Message;
    let err = |reason: String| Error::ModelLoad { path: path.to_path_buf(), reason: format!("`{INPUT_SLOTS}` default: {reason}") };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read the file: {e}")))?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| err(format!("not a readable ONNX protobuf ({e})")))?;
    drop(bytes);
    let Some(t) = model.graph.and_then(|g| g.initializer.into_iter().find(|t| t.name.as_deref() == Some(INPUT_SLOTS))) else {
        return Ok(None);
    };
    if t.data_type != Some(DataType::Float as i32) {
        return Err(err(format!("data type {:?} is not float32", t.data_type)));
    }
    let n: usize = t.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).product();
    let raw: Vec<u8> = if t.data_location == Some(DataLocation::External as i32) {
        let get = |k: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone());
        let location = get("location").ok_or_else(|| err("external data without `location`".into()))?;
        let rel = Path::new(&location);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(err(format!("external data location `{location}` leaves the model's folder")));
        }
        let file = path.parent().unwrap_or(Path::new(".")).join(rel);
        let offset: u64 = get("offset").map(|s| s.parse()).transpose().map_err(|e| err(format!("bad offset: {e}")))?.unwrap_or(0);
        let length: u64 = get("length").map(|s| s.parse()).transpose().map_err(|e| err(format!("bad length: {e}")))?.unwrap_or(4 * n as u64);
        read_range(&file, offset, length).map_err(|e| err(format!("{}: {e}", file.display())))?
    } else if let Some(raw) = t.raw_data {
        raw
    } else {
        return if t.float_data.len() == n { Ok(Some(t.float_data)) } else { Err(err(format!("{} float_data values for {n} elements", t.float_data.len()))) };
    };
    if raw.len() != 4 * n {
        return Err(err(format!("{} bytes for {n} float32 values", raw.len())));
    }
    Ok(Some(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

fn read_range(file: &Path, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(length).read_to_end(&mut buf)?;
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

fn run_err(reason: impl std::fmt::Display) -> Error {
    Error::Inference { backend: "onnxruntime", reason: reason.to_string() }
}

fn extract_f32(v: &DynValue, name: &str) -> Result<Vec<f32>> {
    v.try_extract_tensor::<f32>().map(|(_, d)| d.to_vec()).map_err(|e| run_err(format!("output `{name}`: {e}")))
}

fn extract_masks(v: &DynValue) -> Result<Vec<i64>> {
    let ty = v.dtype().tensor_type();
    let r = match ty {
        Some(TensorElementType::Int64) => v.try_extract_tensor::<i64>().map(|(_, d)| d.to_vec()),
        Some(TensorElementType::Int32) => v.try_extract_tensor::<i32>().map(|(_, d)| d.iter().map(|&x| x as i64).collect()),
        Some(TensorElementType::Uint8) => v.try_extract_tensor::<u8>().map(|(_, d)| d.iter().map(|&x| x as i64).collect()),
        other => return Err(run_err(format!("output `{OUTPUT_MASKS}` has element type {other:?}, expected an integer"))),
    };
    r.map_err(|e| run_err(format!("output `{OUTPUT_MASKS}`: {e}")))
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }
    fn provider(&self) -> &str {
        self.provider.as_str()
    }
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn default_slots(&self) -> Option<&[f32]> {
        self.slots_default.as_deref()
    }

    fn run(&self, image: &[f32], batch: usize, slots_init: Option<&[f32]>) -> Result<RawOutputs> {
        let s = self.info.preprocess.graph_input_size();
        let (k, d) = (self.info.num_slots, self.info.slot_dim);
        if image.len() != batch * 3 * s * s {
            return Err(run_err(format!("input has {} values, expected {batch}x3x{s}x{s}", image.len())));
        }
        let image = TensorRef::from_array_view(([batch, 3, s, s], image)).map_err(run_err)?;
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![(INPUT_IMAGE.into(), image.into())];
        if let Some(init) = slots_init {
            if !self.info.slots_input {
                return Err(Error::NoSlotsInput);
            }
            if init.len() != batch * k * d {
                return Err(Error::SlotsShape { got: init.len(), expected: batch * k * d });
            }
            inputs.push((INPUT_SLOTS.into(), TensorRef::from_array_view(([batch, k, d], init)).map_err(run_err)?.into()));
        }
        // A free session if there is one, else wait for the first.
        let mut session = self
            .sessions
            .iter()
            .find_map(|m| m.try_lock().ok())
            .unwrap_or_else(|| self.sessions[0].lock().unwrap_or_else(|p| p.into_inner()));
        let out = session.run(inputs).map_err(run_err)?;
        let get = |name: &str| out.get(name).ok_or_else(|| run_err(format!("no output `{name}`")));
        Ok(RawOutputs {
            batch,
            slots: extract_f32(get(OUTPUT_SLOTS)?, OUTPUT_SLOTS)?,
            attn: extract_f32(get(OUTPUT_ATTN)?, OUTPUT_ATTN)?,
            masks: extract_masks(get(OUTPUT_MASKS)?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names() {
        for ok in ["libonnxruntime.so", "libonnxruntime.so.1.32.0", "libonnxruntime.1.32.0.dylib", "onnxruntime.dll"] {
            assert!(is_ort_library(ok), "{ok}");
        }
        for no in ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so", "onnxruntime_pybind11_state.so", "libonnxruntime.a"] {
            assert!(!is_ort_library(no), "{no}");
        }
    }

    #[test]
    fn newest_library_first() {
        let dir = std::env::temp_dir().join(format!("msf-ort-lib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["libonnxruntime.so.1.9.0", "libonnxruntime.so.1.32.0", "libonnxruntime_providers_shared.so"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        assert_eq!(library_in(&dir).unwrap().file_name().unwrap(), "libonnxruntime.so.1.32.0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
