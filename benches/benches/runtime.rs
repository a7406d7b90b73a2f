//! Runtime benchmarks: preprocessing, load-to-first-result, one-frame decomposition per backend,
//! batches of 1/4/8, and a video end to end (decode → preprocess → infer → overlay → encode).
//!
//! `cargo bench -p msf-benches --bench runtime [--features ort,video] [-- FILTER]`
//! Models: the full-size SLATE-MSF (ViT-S/14, 7 slots; `MSF_FULLSIZE_DIR`, else generated with
//! `make_fullsize.py` when the test Python exists) and the tiny upstream fixture. Backends: tract, and
//! onnxruntime with feature `ort` (`ORT_DYLIB_PATH`, see `scripts/ort-lib`). Numbers are printed,
//! never asserted; compare groups from the same run only.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msf_benches::{fixture_checkpoint, fullsize_dir};
use msf_exporter::export::{export, ExportOptions};
use msf_runtime::{BackendKind, Decomposer, ImageView, PixelFormat, Preprocessor};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A 640×480 camera-like RGB frame (smooth gradients and edges, so resizes do real work).
fn frame(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let inside = (x / 40 + y / 40 + seed).is_multiple_of(3);
            v.extend_from_slice(&[(x * 255 / w) as u8, if inside { 220 } else { (y * 255 / h) as u8 }, ((x + y + seed) % 256) as u8]);
        }
    }
    v
}

fn backends() -> Vec<BackendKind> {
    let mut b = vec![BackendKind::Tract];
    if cfg!(feature = "ort") {
        b.push(BackendKind::Ort);
    }
    b
}

fn exported(ckpt: &Path, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.onnx"));
    export(ckpt, &out, &ExportOptions::default()).expect("export");
    out
}

fn bench_preprocess(c: &mut Criterion) {
    let mut g = c.benchmark_group("preprocess");
    for (w, h) in [(640u32, 480u32), (1920, 1080)] {
        let img = frame(w, h, 0);
        let view = ImageView::packed(&img, w, h, PixelFormat::Rgb8).unwrap();
        for in_graph in [true, false] {
            let p = msf_models::Preprocess::upstream(224, in_graph);
            let mut pre = Preprocessor::new(&p).unwrap();
            let mut out = vec![0.0; pre.output_len()];
            let id = format!("{w}x{h}/{}", if in_graph { "to256" } else { "to256+bicubic224" });
            g.throughput(Throughput::Elements(1));
            g.bench_function(id, |b| b.iter(|| pre.run(&view, &mut out).unwrap()));
        }
    }
    g.finish();
}

fn bench_model(c: &mut Criterion, name: &str, model: &Path, samples: usize) {
    let img = frame(640, 480, 1);
    let view = ImageView::packed(&img, 640, 480, PixelFormat::Rgb8).unwrap();
    for backend in backends() {
        let label = format!("{name}/{backend:?}").to_lowercase();
        // Load to first result, once (criterion would re-load per sample for minutes).
        let t = Instant::now();
        let dec = match Decomposer::builder().backend(backend).build(model) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("runtime bench: {label}: skipped ({e})");
                continue;
            }
        };
        let loaded = t.elapsed();
        dec.decompose(&view).unwrap();
        eprintln!("runtime bench: {label}: load {:.3} s, load to first result {:.3} s", loaded.as_secs_f64(), t.elapsed().as_secs_f64());

        let mut g = c.benchmark_group(format!("decompose/{label}"));
        g.sample_size(samples);
        for batch in [1usize, 4, 8] {
            let frames: Vec<Vec<u8>> = (0..batch as u32).map(|i| frame(640, 480, i)).collect();
            let views: Vec<ImageView> = frames.iter().map(|f| ImageView::packed(f, 640, 480, PixelFormat::Rgb8).unwrap()).collect();
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::new("batch", batch), &views, |b, v| b.iter(|| dec.decompose_batch(v).unwrap()));
        }
        g.finish();
    }
}

#[cfg(feature = "video")]
fn bench_video(c: &mut Criterion, model: &Path) {
    use msf_runtime::sink::{overlay, video::VideoWriter};
    use msf_runtime::source::{open, SourceOptions};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    let n = 24u32;
    let mut w = VideoWriter::create(&input, 640, 480, 24.0).unwrap();
    for i in 0..n {
        w.write_rgb(&frame(640, 480, i)).unwrap();
    }
    w.finish().unwrap();
    let dec = Decomposer::builder().build(model).unwrap();
    let mut g = c.benchmark_group("video");
    g.sample_size(10).throughput(Throughput::Elements(n as u64));
    g.bench_function("decode+decompose+overlay+encode", |b| {
        b.iter(|| {
            let out = dir.path().join("out.mp4");
            let mut vw = VideoWriter::create(&out, 640, 480, 24.0).unwrap();
            for f in open(&input, &SourceOptions::default()).unwrap() {
                let f = f.unwrap();
                let d = dec.decompose(&f.view().unwrap()).unwrap();
                vw.write_rgb(overlay::render(&f.data, f.width, f.height, &d.mask_in_frame()).as_raw()).unwrap();
            }
            vw.finish().unwrap()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_preprocess(c);
    let dir = tempfile::tempdir().unwrap();
    let mut video_model = None;
    if let Some(ck) = fixture_checkpoint("tiny-slate-msf") {
        let m = exported(&ck, dir.path(), "tiny");
        bench_model(c, "tiny", &m, 20);
        video_model = Some(m);
    }
    match fullsize_dir() {
        Ok(full) => {
            let m = exported(&full.checkpoint("full-slate-msf"), dir.path(), "full");
            bench_model(c, "full", &m, 10);
            video_model = Some(m);
        }
        Err(why) => eprintln!("runtime bench: full-size model skipped: {why}"),
    }
    #[cfg(feature = "video")]
    if let Some(m) = &video_model {
        bench_video(c, m);
    }
    let _ = video_model;
}

criterion_group!(runtime, benches);
criterion_main!(runtime);
