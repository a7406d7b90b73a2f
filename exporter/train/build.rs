//! With the `tch` feature, msf-train's binaries and tests get an rpath to the libtorch they were
//! linked against (the torch wheel's `torch/lib`), so they run without `LD_LIBRARY_PATH`.

fn main() {
    // Set by torch-sys (`links = "tch"`, `cargo:libtorch_lib=…`) for its direct dependents.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
