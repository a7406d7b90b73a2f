//! FFmpeg set-up shared by the video source and the video sink (feature `video`): initialise the
//! libraries once per process, and capture FFmpeg's log lines so that its error messages end up in
//! the errors this crate returns instead of on stderr (`MSF_FFMPEG_LOG=1` lets them through).

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Once;

use ffmpeg_next as ffmpeg;

use ffmpeg::ffi;

static INIT: Once = Once::new();

/// Initialise FFmpeg once per process and route its log (see the module doc).
pub(crate) fn init_ffmpeg() {
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        if std::env::var_os("MSF_FFMPEG_LOG").is_some_and(|v| !v.is_empty() && v != "0") {
            ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Info);
        } else {
            ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
            // SAFETY: `log_callback` has the signature FFmpeg calls (its va_list type is inferred
            // from the binding) and never unwinds.
            unsafe { ffi::av_log_set_callback(Some(log_callback)) };
        }
    });
}

thread_local! {
    /// Error-level FFmpeg messages logged on this thread while a capture is active.
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Most messages kept per capture (a broken stream can log thousands).
const MAX_CAPTURED: usize = 4;

/// FFmpeg's log callback: drops everything except error-level messages logged on a thread that is
/// inside [`capture`], which are kept for the error this module is about to return.
///
/// Generic over the va_list type so that it matches the binding on every architecture; the same
/// type is handed on to `av_log_format_line2`, whose binding takes the identical type.
unsafe extern "C" fn log_callback<V>(avcl: *mut c_void, level: c_int, fmt: *const c_char, vl: V) {
    if level > ffi::AV_LOG_ERROR as c_int || fmt.is_null() {
        return;
    }
    let active = CAPTURED
        .try_with(|c| c.try_borrow().map(|c| c.as_ref().is_some_and(|v| v.len() < MAX_CAPTURED)).unwrap_or(false))
        .unwrap_or(false);
    if !active {
        return;
    }
    type FormatLine<V> =
        unsafe extern "C" fn(*mut c_void, c_int, *const c_char, V, *mut c_char, c_int, *mut c_int) -> c_int;
    // SAFETY: `av_log_format_line2`'s `vl` parameter has the binding's va_list type, which is the
    // `V` FFmpeg calls this callback with (both come from the same `va_list` in C); only the Rust
    // type is restated, the function and its ABI are unchanged.
    let format_line: FormatLine<V> =
        unsafe { std::mem::transmute_copy(&(ffi::av_log_format_line2 as *const ())) };
    let mut buf = [0 as c_char; 1024];
    let mut print_prefix: c_int = 0;
    unsafe { format_line(avcl, level, fmt, vl, buf.as_mut_ptr(), buf.len() as c_int, &mut print_prefix) };
    // SAFETY: av_log_format_line2 always NUL-terminates within `line_size`.
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().trim().trim_end_matches('.').to_string();
    if msg.is_empty() {
        return;
    }
    let _ = CAPTURED.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if let Some(v) = c.as_mut() {
                if v.len() < MAX_CAPTURED && !v.contains(&msg) {
                    v.push(msg);
                }
            }
        }
    });
}

/// Run `f` with FFmpeg's error messages on this thread captured; returns them with `f`'s result.
pub(crate) fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let prev = CAPTURED.with(|c| c.borrow_mut().replace(Vec::new()));
    let out = f();
    let msgs = CAPTURED.with(|c| std::mem::replace(&mut *c.borrow_mut(), prev)).unwrap_or_default();
    (out, msgs)
}

/// `err` (FFmpeg's return code) with the messages FFmpeg logged about it.
pub(crate) fn describe_error(err: impl std::fmt::Display, logged: &[String]) -> String {
    let err = err.to_string();
    if logged.is_empty() {
        err
    } else {
        format!("{err} ({})", logged.join("; "))
    }
}


/// Helpers shared by the video source's and sink's tests.
#[cfg(all(test, feature = "video"))]
pub(crate) mod test_util {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    pub fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("msf-video-tests-{}", std::process::id())).join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Run the `ffmpeg` CLI (quietly) with `args`, panicking with its stderr on failure.
    pub fn ffmpeg(args: &[&str]) {
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .output()
            .expect("the ffmpeg CLI is needed for the video tests");
        assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `testsrc` video of `frames` frames at 25 fps, encoded with `extra` options.
    pub fn testsrc(dir: &Path, name: &str, size: &str, frames: u32, extra: &[&str]) -> PathBuf {
        let p = dir.join(name);
        let src = format!("testsrc=size={size}:rate=25");
        let n = frames.to_string();
        let mut args = vec!["-f", "lavfi", "-i", &src, "-frames:v", &n];
        args.extend_from_slice(extra);
        args.push(p.to_str().unwrap());
        ffmpeg(&args);
        p
    }
}

