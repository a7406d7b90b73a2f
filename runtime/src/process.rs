//! What every command-line tool of the workspace sets up first, so that a failure is one line
//! and an exit code, never a panic text or a signal death.
//!
//! - A panic (a dependency's bug, caught or not) prints nothing itself: the guard that catches
//!   it, or [`main_guard`] at the top, turns it into one error line. `RUST_BACKTRACE` set brings
//!   the default report back, for debugging.
//! - `SIGXFSZ` (a write past `ulimit -f`) is ignored, so the write fails with `EFBIG` like a full
//!   disk and the tool removes its temporary files instead of being killed with them on disk.

/// Install the quiet panic hook and ignore `SIGXFSZ`. Call first in `main`.
pub fn init_tool() {
    if std::env::var_os("RUST_BACKTRACE").is_none_or(|v| v == "0") {
        std::panic::set_hook(Box::new(|_| {}));
    }
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Run a tool's `main` body; a panic that escapes every inner guard becomes
/// `<tool>: internal error: <message>` and exit code 1.
pub fn main_guard(tool: &str, body: impl FnOnce() -> std::process::ExitCode) -> std::process::ExitCode {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|p| {
        eprintln!("{tool}: internal error: {}", crate::error::panic_message(&*p));
        std::process::ExitCode::FAILURE
    })
}

/// A temporary file name for `name` in the same folder: `.<name>.<tag>.tmp`, with `name` cut
/// (at a character boundary) so the whole stays within the 255 bytes file systems allow.
pub fn temp_name(name: &std::ffi::OsStr, tag: &str) -> String {
    let name = name.to_string_lossy();
    let room = 255usize.saturating_sub(tag.len() + 6);
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}.{tag}{}", &name[..cut], crate::sink::TEMP_SUFFIX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn temp_names_fit_any_legal_name() {
        let long = "é".repeat(127) + "x"; // 255 bytes
        let t = super::temp_name(std::ffi::OsStr::new(&long), "12345.0");
        assert!(t.len() <= 255 && t.starts_with(".é") && t.ends_with(".12345.0.tmp"), "{t}");
        assert_eq!(super::temp_name(std::ffi::OsStr::new("a.png"), "7.1"), ".a.png.7.1.tmp");
    }
}
