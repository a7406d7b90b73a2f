//! The restricted pickle interpreter alone (a `data.pkl` body): must return, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = msf_exporter::checkpoint::parse_pickle(data);
});
