//! ONNX graphs with MSF metadata through the whole load (contract check, limits, tract's parse,
//! typing and optimisation) and one inference: whatever the graph, the result is `Ok` or `Err`,
//! never a panic out of the library, an abort, a hang or runaway memory (libFuzzer's -timeout and
//! -rss_limit_mb catch the last two).
#![no_main]
use libfuzzer_sys::fuzz_target;
use msf_runtime::session::{load_bytes, SessionOptions};

fuzz_target!(
    init: {
        // The library catches tract's panics; only an escaped one must count as a crash
        // (libfuzzer-sys's own hook would abort on the caught ones too).
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        let opts = SessionOptions { threads: Some(1), ..Default::default() };
        let Ok(backend) = load_bytes(data, &opts) else { return };
        let s = backend.info().preprocess.graph_input_size();
        let image: Vec<f32> = (0..3 * s * s).map(|i| (i % 251) as f32 / 64.0 - 2.0).collect();
        let _ = backend.run(&image, 1, None);
    }
);
