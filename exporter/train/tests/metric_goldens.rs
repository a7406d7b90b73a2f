//! The metrics against independent goldens: scikit-learn's `adjusted_rand_score` and a scipy
//! Hungarian mIoU on 35 label-map pairs (11 degenerate, 24 random), made by
//! `tests/python/metric_goldens.py` in the test venv.

use msf_train::metrics::score;
use serde_json::Value;

#[test]
fn metrics_match_scikit_learn_and_scipy() {
    let Some(python) = msf_tests::require_python("metrics_match_scikit_learn_and_scipy") else { return };
    let dir = msf_tests::temp_dir("metric-goldens");
    let json = dir.path().join("goldens.json");
    msf_tests::run_py_tool(python, "metric_goldens.py", [&json]).assert_ok();
    let goldens: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let cases = goldens["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let labels = |v: &Value| -> Vec<u8> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect() };
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let s = score(&labels(&case["pred"]), &labels(&case["gt"]));
        for (metric, got) in [("ari", s.ari), ("fg_ari", s.fg_ari), ("mbo", s.mbo), ("miou", s.miou)] {
            let want = case[metric].as_f64();
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{name}: {metric} {g} but the golden is {w}"),
                (None, None) => {}
                _ => panic!("{name}: {metric} {got:?} but the golden is {want:?}"),
            }
        }
    }
    msf_tests::note(format!("metrics: {} cases equal to scikit-learn / scipy within 1e-9", cases.len()));
}
