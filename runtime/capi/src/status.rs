//! Status codes, the thread-local last-error message, and the guard every entry point runs in
//! (clears the last error, catches panics, turns a [`Failure`] into a status and a message).

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Outcome of an `msf_*` call. On anything but `MSF_STATUS_OK`, `msf_last_error()` says what went
/// wrong, on the calling thread, until that thread's next `msf_*` call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsfStatus {
    /// Success.
    Ok = 0,
    /// A pointer argument that must not be NULL was NULL.
    NullArgument = 1,
    /// An argument has a value that cannot work: zero image size, stride smaller than a row, unknown
    /// pixel format or option, slot index out of range, `struct_size` not set, ...
    InvalidArgument = 2,
    /// A handle that is not alive: already destroyed, of another type (a result passed as a
    /// decomposer), or never created by this library. Nothing was dereferenced.
    InvalidHandle = 3,
    /// A file could not be found or read (the model path).
    Io = 4,
    /// The file is not a usable MSF model: not ONNX, not an MSF decomposition graph, bad metadata,
    /// or it lacks the `slots_init` input that temporal tracking needs.
    Model = 5,
    /// Running the model failed.
    Inference = 6,
    /// The requested backend or execution provider is not in this build or cannot be loaded.
    Unsupported = 7,
    /// A bug: the library panicked. The panic was caught at the boundary, the call had no effect
    /// on its outputs, and the message says where. Please report it.
    Panic = 8,
    /// An error this version of the C API has no more specific code for.
    Internal = 9,
}

/// Why an entry point failed: the status it returns and the message [`msf_last_error`] gives.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: MsfStatus,
    pub message: String,
}

pub(crate) type FfiResult<T = ()> = Result<T, Failure>;

impl Failure {
    pub fn new(status: MsfStatus, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(MsfStatus::InvalidArgument, message)
    }
    pub fn null(arg: &str) -> Self {
        Failure::new(MsfStatus::NullArgument, format!("`{arg}` is NULL"))
    }
}

/// The status of each runtime error: what the caller should do differs (fix the arguments, fix
/// the file, pick another backend), so the grouping follows that.
pub(crate) fn status_of(e: &runtime::Error) -> MsfStatus {
    use runtime::Error as E;
    match e {
        E::ZeroSizeView { .. } | E::StrideTooSmall { .. } | E::BufferTooShort { .. } => MsfStatus::InvalidArgument,
        E::Io { .. } | E::ModelNotFound { .. } => MsfStatus::Io,
        E::ModelLoad { .. }
        | E::NotMsfGraph { .. }
        | E::Metadata { .. }
        | E::InvalidConfig(_)
        | E::NoSlotsInput
        | E::SlotsShape { .. } => MsfStatus::Model,
        E::BackendUnavailable { .. } | E::OrtLibraryNotFound { .. } | E::ProviderUnavailable { .. } => {
            MsfStatus::Unsupported
        }
        E::Inference { .. } | E::InBatch(_) => MsfStatus::Inference,
        _ => MsfStatus::Internal,
    }
}

impl From<runtime::Error> for Failure {
    fn from(e: runtime::Error) -> Self {
        // The whole chain: backend errors keep theirs as sources.
        Failure { status: status_of(&e), message: runtime::error::one_line(&e) }
    }
}

/// Null-check a pointer argument.
pub(crate) fn non_null<T>(p: *const T, arg: &str) -> FfiResult<*const T> {
    if p.is_null() {
        Err(Failure::null(arg))
    } else {
        Ok(p)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(func: &str, message: &str) {
    let text = format!("{func}: {message}").replace('\0', "\\0");
    // `try_with`: a call made while this thread's locals are being torn down just loses the message.
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            *e = CString::new(text).ok();
        }
    });
}

fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            *e = None;
        }
    });
}

/// Runs one entry point: clears the thread's last error, runs `body` under `catch_unwind`, and
/// turns its failure or panic into a status plus the last-error message `"<func>: <why>"`.
pub(crate) fn guard(func: &'static str, body: impl FnOnce() -> FfiResult) -> MsfStatus {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => MsfStatus::Ok,
        Ok(Err(f)) => {
            set_last_error(func, &f.message);
            f.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            // A payload whose destructor panics must not unwind out of here either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            set_last_error(func, &format!("internal panic, caught at the C boundary (a bug in msf-runtime): {what}"));
            MsfStatus::Panic
        }
    }
}

/// The message of the last failed `msf_*` call on this thread, or `""` when that thread's last call
/// succeeded (or it made none). Never NULL.
///
/// The string belongs to the library and stays valid until the next `msf_*` call on the same thread
/// (copy it if you need it longer). `msf_last_error`, `msf_status_string` and `msf_version` do not
/// count as calls: they never change it. Each thread has its own, so concurrent streams do not
/// overwrite each other's messages.
#[cfg_attr(any(doc, doctest), doc = r#"
# Examples
```
use msf_runtime::*;
use std::ffi::CStr;
let mut dec = std::ptr::null_mut();
let status = unsafe { msf_decomposer_create(c"/no/such/model.onnx".as_ptr(), std::ptr::null(), &mut dec) };
assert_eq!(status, MsfStatus::Io);
assert!(dec.is_null());
let msg = unsafe { CStr::from_ptr(msf_last_error()) }.to_str().unwrap();
assert!(msg.starts_with("msf_decomposer_create: /no/such/model.onnx: model file not found"), "{msg}");
```
"#)]
#[no_mangle]
pub extern "C" fn msf_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| match e.try_borrow() {
            Ok(e) => e.as_ref().map_or(c"".as_ptr(), |s| s.as_ptr()),
            Err(_) => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}

/// A short static description of a status code (`"null argument"`, ...); `"unknown status"` for a
/// value that is not an `MsfStatus`. Takes an `int` so that any value is safe to pass.
#[no_mangle]
pub extern "C" fn msf_status_string(status: c_int) -> *const c_char {
    let s = match status {
        0 => c"ok",
        1 => c"null argument",
        2 => c"invalid argument",
        3 => c"invalid handle",
        4 => c"I/O error",
        5 => c"model error",
        6 => c"inference error",
        7 => c"unsupported",
        8 => c"internal panic",
        9 => c"internal error",
        _ => c"unknown status",
    };
    s.as_ptr()
}

/// The library version, e.g. `"0.1.0"` (static storage).
#[no_mangle]
pub extern "C" fn msf_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        unsafe { CStr::from_ptr(msf_last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn panics_become_a_status_and_a_message() {
        let s = guard("msf_test", || panic!("boom {}", 42));
        assert_eq!(s, MsfStatus::Panic);
        assert!(last().starts_with("msf_test: internal panic"), "{}", last());
        assert!(last().ends_with("boom 42"), "{}", last());
        // A &'static str payload, and a payload that is neither.
        assert_eq!(guard("f", || panic!("static")), MsfStatus::Panic);
        assert!(last().ends_with("static"));
        assert_eq!(guard("f", || std::panic::panic_any(7u32)), MsfStatus::Panic);
        assert!(last().ends_with("(no message)"));
    }

    #[test]
    fn success_clears_the_message_and_nul_bytes_are_escaped() {
        assert_eq!(guard("f", || Err(Failure::invalid("a\0b"))), MsfStatus::InvalidArgument);
        assert_eq!(last(), "f: a\\0b");
        assert_eq!(guard("f", || Ok(())), MsfStatus::Ok);
        assert_eq!(last(), "");
    }

    #[test]
    fn the_message_is_per_thread() {
        assert_eq!(guard("main", || Err(Failure::null("x"))), MsfStatus::NullArgument);
        std::thread::spawn(|| {
            assert_eq!(last(), "");
            assert_eq!(guard("other", || Err(Failure::invalid("y"))), MsfStatus::InvalidArgument);
        })
        .join()
        .unwrap();
        assert_eq!(last(), "main: `x` is NULL");
    }

    #[test]
    fn status_strings() {
        assert_eq!(unsafe { CStr::from_ptr(msf_status_string(MsfStatus::Panic as c_int)) }, c"internal panic");
        assert_eq!(unsafe { CStr::from_ptr(msf_status_string(-1)) }, c"unknown status");
        assert_eq!(unsafe { CStr::from_ptr(msf_version()) }.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
