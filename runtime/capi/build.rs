//! Gives the shared library an ELF SONAME (`libmsf_runtime.so.<major>.<minor>` while the version is
//! 0.x, `libmsf_runtime.so.<major>` from 1.0), so that programs record that name rather than the
//! path they were linked against and `scripts/install-capi` can install the usual symlinks.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
        let abi = if major == "0" { format!("0.{minor}") } else { major };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmsf_runtime.so.{abi}");
    }
}
