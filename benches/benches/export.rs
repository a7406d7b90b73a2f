//! Export benchmark: checkpoint load + spec + graph + write, end to end (`export/<model>`) and per
//! stage (`stage/<model>/{load,spec,graph,write}`), for the tiny upstream fixtures and, when available,
//! the full-size SLATE-MSF checkpoint (`MSF_FULLSIZE_DIR`, else generated with `make_fullsize.py`
//! when the test Python exists; skipped with a note otherwise).
//!
//! `cargo bench -p msf-benches --bench export` (add `-- full` to run only the full-size cases).
//! Criterion measures time only: before each model's group, one export is run alone and its wall time
//! and peak RSS (`VmHWM`, reset first) are printed; `export_stats` does the same for any checkpoint.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use msf_benches::{fixture_checkpoint, fullsize_dir, mib, peak_rss_kib, reset_peak_rss};
use msf_exporter::checkpoint;
use msf_exporter::export::{export, metadata_for, ExportOptions};
use msf_exporter::graph::build_graph;
use msf_exporter::spec::{build_spec, wants_data};
use msf_exporter::write::{model_proto, write_model};
use std::path::Path;
use std::time::{Duration, Instant};

fn bench_model(c: &mut Criterion, name: &str, ckpt: &Path, samples: usize, stages: bool) {
    let opts = ExportOptions::default();
    let out_dir = tempfile::tempdir().expect("temporary folder");
    let out = out_dir.path().join("model.onnx");
    let bytes = std::fs::metadata(ckpt).map(|m| m.len()).unwrap_or(0);

    // One export on its own, for its wall time and peak memory (criterion measures time only).
    let reset = reset_peak_rss();
    let t = Instant::now();
    let r = export(ckpt, &out, &opts).expect("export");
    eprintln!(
        "export bench: {name}: {:.1} MB checkpoint → {:.1} MB ONNX in {:.3} s; peak RSS {}{}",
        bytes as f64 / 1e6,
        r.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        peak_rss_kib().map_or("unavailable".into(), mib),
        if reset { "" } else { " (process peak so far: could not reset VmHWM)" }
    );

    let mut g = c.benchmark_group("export");
    g.sample_size(samples).throughput(Throughput::Bytes(bytes));
    g.bench_function(name, |b| b.iter(|| export(ckpt, &out, &opts).expect("export")));
    g.finish();

    if !stages {
        return;
    }
    let load = || checkpoint::load(ckpt, &opts.limits, &wants_data).expect("load");
    let spec = build_spec(load(), &opts.spec).expect("spec");
    let meta = metadata_for(&spec, &opts.graph);
    let graph = build_graph(&spec, &meta.preprocess, &opts.graph).expect("graph");

    let mut g = c.benchmark_group(format!("stage/{name}"));
    g.sample_size(samples);
    g.bench_function("load", |b| b.iter(load));
    g.bench_function("spec", |b| b.iter_batched(load, |ck| build_spec(ck, &opts.spec).expect("spec"), BatchSize::LargeInput));
    g.bench_function("graph", |b| b.iter(|| build_graph(&spec, &meta.preprocess, &opts.graph).expect("graph")));
    g.bench_function("write", |b| {
        b.iter_batched(|| graph.clone(), |gr| write_model(model_proto(gr, opts.graph.opset, &meta), &out, false).expect("write"), BatchSize::LargeInput)
    });
    g.finish();
}

fn tiny(c: &mut Criterion) {
    for name in ["tiny-slate-msf", "tiny-slotdiffusion-msf"] {
        match fixture_checkpoint(name) {
            Some(ckpt) => bench_model(c, name, &ckpt, 30, true),
            None => eprintln!("export bench: no fixture {name}.pth (set MSF_FIXTURES): skipped"),
        }
    }
}

fn full(c: &mut Criterion) {
    // Only make the 0.8 GB of checkpoints when a full-size case is selected by the filter.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let id = "export/full-slate-msf stage/full-slate-msf";
    if !filters.is_empty() && !filters.iter().any(|f| id.contains(f.as_str()) || f.contains("full")) {
        return;
    }
    let dir = match fullsize_dir() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("export bench: full-size SLATE-MSF skipped: {why}");
            return;
        }
    };
    let ckpt = dir.checkpoint("full-slate-msf");
    bench_model(c, "full-slate-msf", &ckpt, 10, true);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = tiny, full
}
criterion_main!(benches);
