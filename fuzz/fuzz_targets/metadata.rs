//! ONNX metadata parsing (protobuf bytes → MSF metadata), as the runtime does on every model load.
#![no_main]
use libfuzzer_sys::fuzz_target;
use msf_models::interface::{decode_props, ModelMetadata};

fuzz_target!(|data: &[u8]| {
    let _ = ModelMetadata::from_onnx_bytes(data);
    // Also the JSON/value layer directly, with the bytes split into key/value pairs.
    if let Ok(text) = std::str::from_utf8(data) {
        let pairs: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let _ = ModelMetadata::from_props(pairs);
    }
    let _ = decode_props(data);
});
