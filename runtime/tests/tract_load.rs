//! tract loads a model file without decoding its weights (they are read from the file as
//! external data, `msf_models::contract::without_inline_data`): the results must be those of the
//! same model given as bytes (decoded whole), and a file the rewrite cannot follow faithfully
//! (an initializer whose `raw_data` is given twice, where the last one counts) must load whole.

use msf_exporter::export::{export, ExportOptions};
use msf_models::onnx::{GraphProto, ModelProto, TensorProto};
use msf_runtime::{BackendKind, Decomposer, Decomposition, ImageView};
use msf_tests::require_fixtures;
use prost::Message;
use std::path::Path;

fn decompose(dec: &Decomposer, fx: &Path) -> Vec<Decomposition> {
    ["motorcycle_left.png", "hubble_deep_field.jpg"]
        .iter()
        .map(|img| {
            let rgb = msf_runtime::load_image(&fx.join("images").join(img), &Default::default()).unwrap();
            dec.decompose(&ImageView::from_rgb_image(&rgb).unwrap()).unwrap()
        })
        .collect()
}

/// `model` with its largest initializer's `raw_data` written twice: zeros first, then the real
/// bytes (protobuf keeps the last), the initializer moved to the end of the list.
fn raw_data_twice(model: &[u8]) -> Vec<u8> {
    let mut m = ModelProto::decode(model).unwrap();
    let mut graph = m.graph.take().unwrap();
    let big = (0..graph.initializer.len()).max_by_key(|&i| graph.initializer[i].raw_data.as_ref().map_or(0, |r| r.len())).unwrap();
    let tensor = graph.initializer.remove(big);
    let raw = tensor.raw_data.clone().unwrap();
    let mut tensor_bytes = TensorProto { raw_data: Some(vec![0u8; raw.len()].into()), ..tensor }.encode_to_vec();
    prost::encoding::bytes::encode(9, &raw, &mut tensor_bytes);
    let mut graph_bytes = GraphProto::encode_to_vec(&graph);
    prost::encoding::bytes::encode(5, &tensor_bytes, &mut graph_bytes);
    let mut out = m.encode_to_vec();
    prost::encoding::bytes::encode(7, &graph_bytes, &mut out);
    out
}

#[test]
fn a_file_loads_as_its_bytes_do_and_a_twice_given_raw_data_loads_whole() {
    let Some(fx) = require_fixtures("a_file_loads_as_its_bytes_do_and_a_twice_given_raw_data_loads_whole") else { return };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tract_load");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tiny-slate-msf.onnx");
    export(&fx.join("tiny-slate-msf.pth"), &file, &ExportOptions::default()).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let builder = || Decomposer::builder().backend(BackendKind::Tract).threads(1);
    let whole = decompose(&builder().build_from_bytes(&bytes).unwrap(), &fx);
    let same = |other: &[Decomposition], what: &str| {
        for (a, b) in whole.iter().zip(other) {
            assert_eq!(a.slots, b.slots, "{what}: slots");
            assert_eq!(a.attn, b.attn, "{what}: attn");
            assert_eq!(a.mask, b.mask, "{what}: masks");
        }
    };
    same(&decompose(&builder().build(&file).unwrap(), &fx), "file");

    let twice = dir.join("tiny-slate-msf.raw-twice.onnx");
    std::fs::write(&twice, raw_data_twice(&bytes)).unwrap();
    assert!(msf_models::contract::without_inline_data(&std::fs::read(&twice).unwrap(), 4096, "tiny-slate-msf.raw-twice.onnx").is_none());
    same(&decompose(&builder().build(&twice).unwrap(), &fx), "raw_data twice");
}
