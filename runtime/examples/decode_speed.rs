//! Decode speed of JPEG files and videos, and how far the pure-Rust JPEG decoder is from libjpeg-turbo:
//!
//! ```text
//! cargo run --release -p msf-runtime --features turbojpeg,video --example decode_speed -- FILE...
//! ```
//!
//! For each JPEG: milliseconds per decode through [`msf_runtime::load_image`] (libjpeg-turbo with the
//! `turbojpeg` feature) and through the `image` crate (zune-jpeg, what a build without the feature
//! uses), and the largest per-sample difference between the two. For each video (feature `video`):
//! frames per second through the video source (decode + conversion to RGB), and the cost of the
//! conversion alone with swscale set up as OpenCV does (the source's setting) and as before
//! (`ACCURATE_RND | FULL_CHR_H_INT` to RGB24).

use std::path::Path;
use std::time::{Duration, Instant};

/// Median of `runs` timings of `f`, after one warm-up call.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2].as_secs_f64() * 1e3
}

fn jpeg(path: &Path) {
    let limits = Default::default();
    let ours = msf_runtime::load_image(path, &limits).unwrap_or_else(|e| panic!("{e}"));
    // As a build without the feature decodes: the `image` crate's JPEG decoder, EXIF orientation applied.
    let decode_image_crate = || {
        use image::ImageDecoder;
        let mut dec = image::ImageReader::open(path).unwrap().with_guessed_format().unwrap().into_decoder().unwrap();
        let orientation = dec.orientation().unwrap();
        let mut img = image::DynamicImage::from_decoder(dec).unwrap();
        img.apply_orientation(orientation);
        img.into_rgb8()
    };
    let zune = decode_image_crate();
    let (max, n) = ours.as_raw().iter().zip(zune.as_raw()).fold((0u8, 0usize), |(m, n), (&a, &b)| (m.max(a.abs_diff(b)), n + usize::from(a != b)));
    let runs = 31;
    let t_ours = median_ms(runs, || drop(std::hint::black_box(msf_runtime::load_image(path, &limits).unwrap())));
    let t_zune = median_ms(runs, || drop(std::hint::black_box(decode_image_crate())));
    println!(
        "{:28} {:>5}x{:<5} load_image {t_ours:7.2} ms   image crate (zune-jpeg) {t_zune:7.2} ms   ratio {:.2}x   zune vs load_image: max |Δ| {max}, {:.2} % of samples differ",
        path.file_name().unwrap().to_string_lossy(),
        ours.width(),
        ours.height(),
        t_zune / t_ours,
        100.0 * n as f64 / ours.as_raw().len() as f64
    );
}

#[cfg(feature = "video")]
fn video(path: &Path) {
    use ffmpeg_next as ffmpeg;
    use ffmpeg::format::Pixel;
    use ffmpeg::software::scaling::{Context, Flags};
    use msf_runtime::source::{video::VideoSource, SourceOptions};

    // Whole source: demux, decode, convert, copy out as RGB.
    let mut best = f64::MAX;
    let mut frames = 0;
    for _ in 0..3 {
        let t = Instant::now();
        frames = VideoSource::open(path, &SourceOptions::default()).unwrap().map(|f| drop(f.unwrap())).count();
        best = best.min(t.elapsed().as_secs_f64());
    }
    // The conversion alone, on the decoded frames.
    ffmpeg::init().unwrap();
    let mut ictx = ffmpeg::format::input(&path).unwrap();
    let stream = ictx.streams().best(ffmpeg::media::Type::Video).unwrap();
    let index = stream.index();
    let mut dec = ffmpeg::codec::context::Context::from_parameters(stream.parameters()).unwrap().decoder().video().unwrap();
    let mut decoded = Vec::new();
    let mut take = |dec: &mut ffmpeg::decoder::Video| {
        let mut f = ffmpeg::frame::Video::empty();
        while dec.receive_frame(&mut f).is_ok() {
            decoded.push(f.clone());
        }
    };
    for (s, p) in ictx.packets() {
        if s.index() == index {
            dec.send_packet(&p).unwrap();
            take(&mut dec);
        }
    }
    dec.send_eof().unwrap();
    take(&mut dec);
    let (w, h, fmt) = (dec.width(), dec.height(), dec.format());
    let convert = |dst: Pixel, flags: Flags, swap: bool| {
        let mut ctx = Context::get(fmt, w, h, dst, w, h, flags).unwrap();
        let mut out = ffmpeg::frame::Video::empty();
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        median_ms(5, || {
            for f in &decoded {
                ctx.run(f, &mut out).unwrap();
                let (stride, plane) = (out.stride(0), out.data(0));
                let row = w as usize * 3;
                for (y, o) in rgb.chunks_exact_mut(row).enumerate() {
                    let src = &plane[y * stride..y * stride + row];
                    if swap {
                        for (o, i) in o.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                            o.copy_from_slice(&[i[2], i[1], i[0]]);
                        }
                    } else {
                        o.copy_from_slice(src);
                    }
                }
                std::hint::black_box(&rgb);
            }
        }) / decoded.len() as f64
    };
    let cv = convert(Pixel::BGR24, Flags::BICUBIC, true);
    let old = convert(Pixel::RGB24, Flags::BICUBIC | Flags::ACCURATE_RND | Flags::FULL_CHR_H_INT, false);
    println!(
        "{:28} {w}x{h} {fmt:?}: {frames} frames, {:.0} frames/s through VideoSource; conversion per frame: OpenCV's setting (BGR24 + swap) {cv:.3} ms, before (RGB24, ACCURATE_RND|FULL_CHR_H_INT) {old:.3} ms",
        path.file_name().unwrap().to_string_lossy(),
        frames as f64 / best
    );
}

fn main() {
    for a in std::env::args_os().skip(1) {
        let p = Path::new(&a);
        let is_jpeg = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"));
        if is_jpeg {
            jpeg(p);
        } else {
            #[cfg(feature = "video")]
            video(p);
            #[cfg(not(feature = "video"))]
            eprintln!("{}: videos need --features video", p.display());
        }
    }
}
