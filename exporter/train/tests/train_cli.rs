//! msf-train used as a user would: both stages on generated data with a small config, resume,
//! export, and the exported model scored by msf-eval exactly as the trainer's own validation
//! (same held-out images: tch and the ONNX model through msf-runtime give the same masks).
#![cfg(feature = "tch")]

use msf_tests::{run, temp_dir, Run};
use serde_json::Value;
use std::path::Path;

fn msf_train(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    run(Path::new(env!("CARGO_BIN_EXE_msf-train")), args.iter().map(|a| a.as_ref()))
}

fn msf_eval(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    run(Path::new(env!("CARGO_BIN_EXE_msf-eval")), args.iter().map(|a| a.as_ref()))
}

/// The validation in a run log with the given FG-ARI (the one `best.pth` was saved at).
fn validation_with_fg_ari(log: &Path, fg_ari: f64) -> Value {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["val"].clone())
        .find(|v| v["fg_ari"].as_f64() == Some(fg_ari))
        .expect("the best validation in the log")
}

#[test]
fn two_stages_resume_export_and_score_like_msf_eval() {
    let dir = temp_dir("train-cli");
    let out = dir.path().join("run");
    // The small preset, with 8 validation images to keep the test short.
    let preset = msf_train(&[&"config", &"small"]);
    preset.assert_ok();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, preset.stdout.replace("val = 64", "val = 8")).unwrap();

    let o = msf_train(&[&"stage2", &"--config", &config, &"--out", &out, &"--steps", &"2"]);
    o.assert_code(1);
    assert!(o.stderr.contains("no stage-1 checkpoint") && o.stderr.contains("msf-train stage1"), "{}", o.transcript());

    msf_train(&[&"stage1", &"--config", &config, &"--out", &out, &"--steps", &"4", &"--batch", &"2", &"-q"]).assert_ok();
    assert!(out.join("stage1/last.pth").is_file());
    assert_eq!(std::fs::read_to_string(out.join("stage1/log.jsonl")).unwrap().lines().count(), 4);

    // Stage 2 in two parts: 3 steps, then --resume to 6.
    msf_train(&[&"stage2", &"--config", &config, &"--out", &out, &"--steps", &"3", &"--batch", &"2", &"-q"]).assert_ok();
    let state: Value = serde_json::from_slice(&std::fs::read(out.join("stage2/state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 3);
    assert!(out.join("stage2/last.adam.pth").is_file(), "Adam's moments are kept for --resume");
    let onnx = dir.path().join("slate.onnx");
    let o = msf_train(&[&"stage2", &"--config", &config, &"--out", &out, &"--steps", &"6", &"--batch", &"2", &"--resume", &"-q", &"--export", &onnx]);
    o.assert_ok();
    assert!(o.stderr.contains("validation FG-ARI"), "{}", o.transcript());
    let state: Value = serde_json::from_slice(&std::fs::read(out.join("stage2/state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 6);
    let log = std::fs::read_to_string(out.join("stage2/log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 7, "the untrained model's validation, 6 steps (the resumed run appends)");
    assert!(log.lines().next().unwrap().contains("\"step\":0"), "{log}");
    assert!(out.join("stage2/best.pth").is_file() && onnx.is_file());
    // The small preset trains its backbone (no pretrained one here) and keeps the VQ-VAE frozen.
    let load = |name: &str| msf_exporter::checkpoint::load(&out.join("stage2").join(name), &Default::default(), &|_| true).unwrap();
    let (before, after) = (load("untrained.pth"), load("last.pth"));
    assert_eq!(before.data.keys().collect::<Vec<_>>(), after.data.keys().collect::<Vec<_>>());
    for key in ["m.encode_backbone.1.pos_embed", "m.encode_backbone.1.blocks.0.attn.qkv.weight", "m.aggregat.proj_q.weight"] {
        assert_ne!(before.data[key], after.data[key], "{key} was not trained");
    }
    for (key, v) in &before.data {
        if key.starts_with("m.mediat.") {
            assert_eq!(v, &after.data[key], "{key} is frozen in stage 2");
        }
    }

    // The trainer validates on generated images of seed + 1000003: msf-eval on the exported
    // model over those images gives the same numbers.
    let json = dir.path().join("eval.json");
    msf_eval(&[&"--onnx", &onnx, &"--generated", &"8", &"--seed", &"1000003", &"--json", &json, &"-q"]).assert_ok();
    let eval: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // best.pth (exported) is the checkpoint of the best validation: compare with that one.
    let best = state["best_fg_ari"].as_f64().unwrap();
    let fg = eval["summary"]["fg_ari"].as_f64().unwrap();
    // Near-tie pixels may flip between libtorch and tract: a few pixels of 8×65536 move a metric by < 1e-3.
    assert!((fg - best).abs() < 1e-3, "msf-eval FG-ARI {fg} vs the trainer's best {best}");
    let val = validation_with_fg_ari(&out.join("stage2/log.jsonl"), best);
    for m in ["ari", "mbo", "miou"] {
        let (a, b) = (eval["summary"][m].as_f64().unwrap(), val[m].as_f64().unwrap());
        assert!((a - b).abs() < 1e-3, "{m}: msf-eval {a} vs trainer {b}");
    }
    // The checkpoint itself, scored through the tch forward, agrees with its export.
    let ckpt_json = dir.path().join("eval-ckpt.json");
    msf_eval(&[&"--ckpt", &out.join("stage2/best.pth"), &"--generated", &"8", &"--seed", &"1000003", &"--json", &ckpt_json, &"-q"]).assert_ok();
    let by_ckpt: Value = serde_json::from_slice(&std::fs::read(&ckpt_json).unwrap()).unwrap();
    assert_eq!(by_ckpt["backend"], "tch");
    for m in ["fg_ari", "ari", "mbo", "miou"] {
        let (a, b) = (by_ckpt["summary"][m].as_f64().unwrap(), eval["summary"][m].as_f64().unwrap());
        assert!((a - b).abs() < 1e-3, "{m}: checkpoint (tch) {a} vs export (tract) {b}");
    }
    msf_tests::note(format!("msf-train: 4 + 6 steps, resumed; exported best FG-ARI {best:.4} = msf-eval {fg:.4} (ONNX) = {:.4} (checkpoint, tch)", by_ckpt["summary"]["fg_ari"].as_f64().unwrap()));
}

/// SlotDiffusion-MSF through the same CLI: both stages on its preset, export, and the exported
/// model (the inference path only: the UNet is training-only) scored like the trainer's validation.
#[test]
fn slotdiffusion_trains_and_exports() {
    let dir = temp_dir("train-cli-sd");
    let out = dir.path().join("run");
    let preset = msf_train(&[&"config", &"small-slotdiffusion"]);
    preset.assert_ok();
    assert!(preset.stdout.contains("decoder = \"slotdiffusion\"") && preset.stdout.contains("code_dim = 4"), "{}", preset.stdout);
    let config = dir.path().join("sd.toml");
    std::fs::write(&config, preset.stdout.replace("val = 64", "val = 8")).unwrap();
    msf_train(&[&"stage1", &"--config", &config, &"--out", &out, &"--steps", &"3", &"--batch", &"2", &"-q"]).assert_ok();
    let onnx = dir.path().join("sd.onnx");
    let o = msf_train(&[&"stage2", &"--config", &config, &"--out", &out, &"--steps", &"3", &"--batch", &"2", &"-q", &"--export", &onnx]);
    o.assert_ok();
    let log = std::fs::read_to_string(out.join("stage2/log.jsonl")).unwrap();
    let losses: Vec<f64> = log.lines().filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["loss"].as_f64()).collect();
    assert_eq!(losses.len(), 3, "{log}");
    // ε-prediction of unit Gaussian noise: an untrained UNet's mean squared error is about 1.
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.1 && *l < 10.0), "{losses:?}");
    let ck = msf_exporter::checkpoint::load(&out.join("stage2/best.pth"), &Default::default(), &|_| true).unwrap();
    assert!(ck.info.contains_key("m.decode.backbone.conv_in.weight") && ck.info.contains_key("m.mediat.quant.0.codebook.weight"), "upstream's SlotDiffusion-MSF layout");
    assert_eq!(ck.info["m.decode.backbone.conv_in.weight"].shape[1], 4, "the UNet denoises the C = 4 encoding");

    let state: Value = serde_json::from_slice(&std::fs::read(out.join("stage2/state.json")).unwrap()).unwrap();
    let best = state["best_fg_ari"].as_f64().unwrap();
    let json = dir.path().join("eval.json");
    msf_eval(&[&"--onnx", &onnx, &"--generated", &"8", &"--seed", &"1000003", &"--json", &json, &"-q"]).assert_ok();
    let eval: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let fg = eval["summary"]["fg_ari"].as_f64().unwrap();
    assert!((fg - best).abs() < 1e-3, "msf-eval FG-ARI {fg} vs the trainer's best {best}");
    msf_tests::note(format!("msf-train SlotDiffusion-MSF: 3 + 3 steps, diffusion loss {losses:.3?}; exported best FG-ARI {best:.4} = msf-eval {fg:.4}"));
}

#[test]
fn bad_configs_are_refused_with_the_reason() {
    let dir = temp_dir("train-bad");
    let config = dir.path().join("bad.toml");
    let preset = msf_train(&[&"config", &"small"]);
    std::fs::write(&config, preset.stdout.replace("embed_dim = 64", "embed_dim = 100").replace("[stage1]", "[stage1]\nstepz = 1")).unwrap();
    let o = msf_train(&[&"stage1", &"--config", &config, &"--out", &dir.path().join("o")]);
    o.assert_code(1);
    assert!(o.stderr.contains("stepz"), "{}", o.transcript());
    std::fs::write(&config, preset.stdout.replace("embed_dim = 64", "embed_dim = 100")).unwrap();
    let o = msf_train(&[&"stage1", &"--config", &config, &"--out", &dir.path().join("o")]);
    o.assert_code(1);
    assert!(o.stderr.contains("embed_dim 100"), "{}", o.transcript());
    assert!(!dir.path().join("o").exists(), "nothing written for a refused config");
}
