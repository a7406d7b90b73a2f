//! Whole-file checkpoint reader (zip or safetensors) on arbitrary bytes: must return, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use msf_exporter::checkpoint::{load_bytes, Limits};

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast and check that limits are enforced before allocation.
    let limits = Limits { max_file_bytes: 1 << 24, max_tensors: 4096, max_tensor_elems: 1 << 22 };
    let _ = load_bytes(data, &limits, &|_| true);
});
