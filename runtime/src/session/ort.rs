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
use crate::model::{ModelFile, ModelInfo, WeightsInFile};
use msf_models::interface::{INPUT_IMAGE, INPUT_SLOTS, OUTPUT_ATTN, OUTPUT_MASKS, OUTPUT_SLOTS};
use ort::environment::Environment;
use ort::ep::{self, ExecutionProviderDispatch};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

/// Environment variables naming the library (file or folder), in the order they are read.
pub const LIBRARY_VARS: [&str; 2] = ["ORT_DYLIB_PATH", "MSF_ORT_LIB"];

pub struct OrtBackend {
    info: ModelInfo,
    /// `Session::run` takes `&mut self` (onnxruntime's EP allocators are not thread safe), so each
    /// concurrent call needs its own session: one per `SessionOptions::concurrency`.
    pool: SessionPool,
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

impl Failure {
    fn reason(self) -> String {
        match self {
            Failure::Register(r) | Failure::Commit(r) => r,
        }
    }
}

/// What a session is made from.
enum Source<'a> {
    /// A file with inline weights: its graph without them, which point into the file as external
    /// data (`session.model_external_initializers_file_folder_path`). A session from the whole
    /// file holds ~45 MiB more (full-size SLATE-MSF: 151 against 106 MiB), and one from the bytes
    /// already read peaks at the file's size more while onnxruntime decodes its copy.
    WeightsInFile(&'a WeightsInFile),
    /// A file whose initializers live in files beside it, which onnxruntime finds from its path.
    Path(&'a Path),
    /// A model given as bytes.
    Bytes(&'a [u8]),
}

fn commit(env: &Environment, source: &Source, threads: Option<usize>, provider: Provider) -> std::result::Result<Session, Failure> {
    let setup = |e: ort::Error<ort::session::builder::SessionBuilder>| Failure::Commit(format!("session options: {e}"));
    let mut b = Session::builder(env)
        .map_err(|e| Failure::Commit(format!("session options: {e}")))?
        // `All` (ORT_ENABLE_ALL, onnxruntime-python's default), not `Level3` (ORT_ENABLE_LAYOUT):
        // the full-size model at batch 1, one thread, 239 → 186 ms a frame.
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(setup)?;
    if let Some(n) = threads {
        b = b.with_intra_threads(n).map_err(setup)?;
    }
    let eps = execution_providers(provider);
    if !eps.is_empty() {
        b = b.with_execution_providers(eps).map_err(|e| Failure::Register(e.to_string()))?;
    }
    let session = match source {
        Source::WeightsInFile(f) => {
            let folder = f.folder().to_str().ok_or_else(|| Failure::Commit("the model's folder is not valid UTF-8".into()))?;
            b = b.with_config_entry("session.model_external_initializers_file_folder_path", folder).map_err(setup)?;
            b.commit_from_memory(&f.graph)
        }
        Source::Path(path) => b.commit_from_file(path),
        Source::Bytes(bytes) => b.commit_from_memory(bytes),
    };
    session.map_err(|e| Failure::Commit(e.to_string()))
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
    pub(crate) fn load(file: ModelFile, opts: &SessionOptions) -> Result<Self> {
        let loaded = environment()?;
        let in_file = file.weights_in_file();
        let external_path = file.path().filter(|_| file.contract.external_data).map(Path::to_path_buf);
        let (info, slots_default) = (file.info(), file.contract.slots_default.clone());
        let ModelFile { bytes, origin, .. } = file;
        // Only a model given as bytes (or one the rewrite cannot follow) is made from them.
        let bytes = if in_file.is_some() || external_path.is_some() {
            drop(bytes);
            prost::bytes::Bytes::new()
        } else {
            bytes
        };
        let path = origin.label();
        let load_err = |reason: String| Error::model_load(path, reason);
        let source = match (&in_file, &external_path) {
            (Some(f), _) => Source::WeightsInFile(f),
            (None, Some(p)) => Source::Path(p),
            _ => Source::Bytes(&bytes),
        };
        let cpu = || {
            commit(&loaded.env, &source, opts.threads, Provider::Cpu).map_err(|f| load_err(f.reason()))
        };
        let (session, provider) = match commit(&loaded.env, &source, opts.threads, opts.provider) {
            Ok(s) => (s, opts.provider),
            Err(Failure::Commit(reason)) if opts.provider == Provider::Cpu => return Err(load_err(reason)),
            Err(Failure::Register(reason)) => {
                if !opts.allow_fallback {
                    return Err(unavailable(opts.provider, &reason, &loaded.library));
                }
                (cpu()?, Provider::Cpu)
            }
            Err(Failure::Commit(gpu_reason)) => {
                // Whose fault: the model's if the CPU cannot load it either, else the provider's.
                let cpu = cpu()?;
                if !opts.allow_fallback {
                    return Err(unavailable(opts.provider, &gpu_reason, &loaded.library));
                }
                (cpu, Provider::Cpu)
            }
        };
        // One session per concurrent caller: `Session::run` needs `&mut`.
        let mut sessions = vec![session];
        for _ in 1..opts.concurrency.max(1) {
            sessions.push(commit(&loaded.env, &source, opts.threads, provider).map_err(|f| load_err(f.reason()))?);
        }
        if in_file.as_ref().is_some_and(|f| !f.unchanged()) {
            return Err(load_err("the file changed while it was being loaded".into()));
        }
        Ok(OrtBackend {
            info,
            pool: SessionPool { free: Mutex::new(sessions), returned: Condvar::new() },
            provider,
            // Fed when the caller gives no slots (`slots_init` is a required input).
            slots_default,
        })
    }
}

/// Sessions lent to one call at a time; a caller waits for whichever is returned first.
struct SessionPool {
    free: Mutex<Vec<Session>>,
    returned: Condvar,
}

impl SessionPool {
    fn with<T>(&self, f: impl FnOnce(&mut Session) -> T) -> T {
        let session = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(s) = free.pop() {
                    break s;
                }
                free = self.returned.wait(free).unwrap_or_else(|p| p.into_inner());
            }
        };
        // Given back even if `f` panics, so that no caller waits forever.
        struct GiveBack<'a>(&'a SessionPool, Option<Session>);
        impl Drop for GiveBack<'_> {
            fn drop(&mut self) {
                if let Some(s) = self.1.take() {
                    self.0.free.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                    self.0.returned.notify_one();
                }
            }
        }
        let mut lent = GiveBack(self, Some(session));
        f(lent.1.as_mut().expect("lent above"))
    }
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

fn run_err(reason: impl std::fmt::Display) -> Error {
    Error::inference("onnxruntime", reason.to_string())
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
        if slots_init.is_some() && !self.info.slots_input {
            return Err(Error::NoSlotsInput);
        }
        let init = if self.info.slots_input { Some(super::initial_slots(slots_init, self.default_slots(), batch, &self.info, "onnxruntime")?) } else { None };
        let image = TensorRef::from_array_view(([batch, 3, s, s], image)).map_err(run_err)?;
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![(INPUT_IMAGE.into(), image.into())];
        if let Some(init) = &init {
            inputs.push((INPUT_SLOTS.into(), TensorRef::from_array_view(([batch, k, d], &init[..])).map_err(run_err)?.into()));
        }
        self.pool.with(|session| {
            let out = session.run(inputs).map_err(|e| Error::backend_run("onnxruntime", e))?;
            let get = |name: &str| out.get(name).ok_or_else(|| run_err(format!("no output `{name}`")));
            Ok(RawOutputs {
                batch,
                slots: extract_f32(get(OUTPUT_SLOTS)?, OUTPUT_SLOTS)?,
                attn: extract_f32(get(OUTPUT_ATTN)?, OUTPUT_ATTN)?,
                masks: extract_masks(get(OUTPUT_MASKS)?)?,
            })
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
