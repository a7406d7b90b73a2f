//! `export_stats CKPT [OUT.onnx] [--external-data] [--repeat N] [--json]`: export a checkpoint with
//! the library (`msf_exporter::export::export`) and print the wall time, peak memory (`VmHWM` from
//! `/proc/self/status`) and output size. Measures, never asserts. Without OUT, the model goes to a
//! temporary folder that is removed afterwards. Build optimised for meaningful numbers:
//!
//! ```text
//! cargo run --release -p msf-benches --bin export_stats -- best.pth
//! ```

use msf_benches::{mib, peak_rss_kib, reset_peak_rss, rss_kib};
use msf_exporter::export::{export, ExportOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: export_stats CKPT [OUT.onnx] [--external-data] [--repeat N] [--json]";

fn main() -> ExitCode {
    let mut paths = Vec::new();
    let (mut external, mut json, mut repeat) = (false, false, 1usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--external-data" => external = true,
            "--json" => json = true,
            "--repeat" => match args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0) {
                Some(n) => repeat = n,
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if a.starts_with('-') => {
                eprintln!("export_stats: unknown option {a}\n{USAGE}");
                return ExitCode::from(2);
            }
            _ => paths.push(PathBuf::from(a)),
        }
    }
    let (ckpt, out) = match paths.as_slice() {
        [c] => (c.clone(), None),
        [c, o] => (c.clone(), Some(o.clone())),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let temp = match out {
        Some(_) => None,
        None => match tempfile::tempdir() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("export_stats: no temporary folder: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let out = out.unwrap_or_else(|| temp.as_ref().expect("temp dir").path().join("model.onnx"));
    let opts = ExportOptions { external_data: external, ..ExportOptions::default() };

    let rss_before = rss_kib();
    let reset = reset_peak_rss();
    let mut walls = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat {
        let t = Instant::now();
        match export(&ckpt, &out, &opts) {
            Ok(r) => last = Some(r),
            Err(e) => {
                eprintln!("export_stats: export of {} failed: {e}", ckpt.display());
                return ExitCode::FAILURE;
            }
        }
        walls.push(t.elapsed().as_secs_f64());
    }
    let peak = peak_rss_kib();
    let report = last.expect("at least one export");
    walls.sort_by(f64::total_cmp);
    let (min, median) = (walls[0], walls[walls.len() / 2]);
    let ckpt_bytes = std::fs::metadata(&ckpt).map(|m| m.len()).unwrap_or(0);
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };

    if json {
        println!(
            "{{\"checkpoint\":{:?},\"checkpoint_bytes\":{ckpt_bytes},\"kind\":\"{}\",\"file_params\":{},\"inference_params\":{},\"output_bytes\":{},\"repeat\":{repeat},\"wall_s_min\":{min:.4},\"wall_s_median\":{median:.4},\"rss_before_kib\":{},\"peak_rss_kib\":{},\"profile\":\"{profile}\"}}",
            ckpt.display().to_string(),
            report.config.kind,
            report.file_params,
            report.inference_params,
            report.bytes,
            rss_before.map_or("null".into(), |v| v.to_string()),
            peak.map_or("null".into(), |v| v.to_string()),
        );
        return ExitCode::SUCCESS;
    }
    println!("checkpoint  {} ({:.1} MB; {}, {} params, {} exported)", ckpt.display(), ckpt_bytes as f64 / 1e6, report.config.kind, report.file_params, report.inference_params);
    println!("output      {} ({:.1} MB{})", out.display(), report.bytes as f64 / 1e6, if external { ", external data" } else { "" });
    if repeat == 1 {
        println!("wall time   {min:.3} s  ({profile} build)");
    } else {
        println!("wall time   min {min:.3} s, median {median:.3} s over {repeat} exports  ({profile} build)");
    }
    match (peak, rss_before) {
        (Some(p), Some(b)) => println!(
            "peak RSS    {}  (VmHWM during the export{}; {} resident before it)",
            mib(p),
            if reset { "" } else { " or before it: the peak could not be reset" },
            mib(b)
        ),
        _ => println!("peak RSS    unavailable (no /proc/self/status)"),
    }
    ExitCode::SUCCESS
}
