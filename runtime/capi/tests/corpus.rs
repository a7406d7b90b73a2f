//! The bad-input corpus (`tests/corpus/cases.tsv`) through the C ABI: every model file that `msf-run`
//! refuses, `msf_decomposer_create` refuses too — with a status, a message naming the cause, and no
//! handle — never with a crash or a caught panic. A model that loads but fails on the pixels
//! (`@infer` cases) makes `msf_decompose` return an inference status, not a panic.

use msf_runtime::*;
use msf_tests::{corpus, note, require_fixtures, require_python, temp_dir, FixtureModel};
use std::ffi::{CStr, CString};

#[test]
fn every_bad_model_in_the_corpus_is_refused_with_a_status_and_message() {
    let test = "every_bad_model_in_the_corpus_is_refused_with_a_status_and_message";
    let Some(fx) = require_fixtures(test) else { return };
    let Some(py) = require_python(test) else { return };
    let work = temp_dir(test);
    let model = FixtureModel::slate(false);
    let dir = work.path().join("corpus");
    corpus::generate(py, &fx, model.path(), None, &dir);

    let mut failures = Vec::new();
    let mut checked = 0;
    let at_inference = |c: &corpus::Case| c.args.iter().any(|a| a == "@infer");
    for c in corpus::cases().iter().filter(|c| c.tool == "run-model" && c.exit != 0 && (c.args.is_empty() || at_inference(c))) {
        checked += 1;
        let path = CString::new(dir.join(&c.input).into_os_string().into_encoded_bytes()).unwrap();
        let mut dec = std::ptr::null_mut();
        // SAFETY: a valid C string, NULL options (the defaults) and a valid out pointer.
        let mut st = unsafe { msf_decomposer_create(path.as_ptr(), std::ptr::null(), &mut dec) };
        // SAFETY: the library returns a valid thread-local C string.
        let last_error = || unsafe { CStr::from_ptr(msf_last_error()) }.to_string_lossy().into_owned();
        let mut msg = last_error();
        if at_inference(c) && st == MsfStatus::Ok {
            let pixels = vec![200u8; 64 * 48 * 3];
            let mut res = std::ptr::null_mut();
            // SAFETY: a live handle, a packed 64×48 RGB buffer and a valid out pointer.
            st = unsafe { msf_decompose(dec, pixels.as_ptr(), 64, 48, 0, MSF_PIXEL_FORMAT_RGB8, &mut res) };
            msg = last_error();
            if st == MsfStatus::Ok {
                msf_result_destroy(res);
            }
            msf_decomposer_destroy(dec);
            dec = std::ptr::null_mut();
        }
        let problem = if st == MsfStatus::Ok {
            msf_decomposer_destroy(dec);
            Some("loaded".to_string())
        } else if !dec.is_null() {
            Some(format!("status {st:?} with a non-NULL handle"))
        } else if matches!(st, MsfStatus::Panic | MsfStatus::Internal) {
            Some(format!("status {st:?}"))
        } else if !msg.to_lowercase().contains(&c.message.to_lowercase()) {
            Some(format!("message does not contain {:?}", c.message))
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("{} ({}): {p} [{st:?}: {msg}]", c.id, c.input));
        }
    }
    note(format!("msf-capi: corpus: {checked} bad models refused through msf_decomposer_create, {} failed", failures.len()));
    assert!(checked >= 10, "only {checked} model cases in the corpus");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
