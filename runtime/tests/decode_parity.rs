//! Same pixels as the Python path: JPEG files decoded by [`msf_runtime::load_image`] and video frames
//! decoded by the video source must equal what OpenCV gives (`cv2.imread`, `cv2.VideoCapture`,
//! opencv-python-headless from `tests/python/requirements.txt`, with its own bundled libjpeg-turbo and
//! FFmpeg), pixel for pixel. `tests/python/cv2_decode.py` is the reference side.
//!
//! - JPEG: every `*.jpg` of the shared fixtures, `tests/data/cmyk.jpg`, and generated variants
//!   (4:4:4, 4:2:2, 4:2:0, odd and tiny sizes, greyscale, progressive, EXIF orientation 6). With the
//!   `turbojpeg` feature (libjpeg-turbo) they must be bit-identical; the pure-Rust fallback (zune-jpeg)
//!   is only held to its documented bound, 4 grey levels.
//! - Video (feature `video`): files made by the ffmpeg CLI (H.264 yuv420p at an odd-ish size, limited
//!   range, untagged, tagged BT.709 and BT.601; full-range yuvj420p; yuv444p; FFV1 at an odd size):
//!   every frame bit-identical. High-bit-depth video (yuv422p10) is only held to a mean bound: see
//!   the test.
//!
//! Needs `MSF_PYTHON` (or the repo's `.venv`) with opencv-python-headless; skipped (failed under CI)
//! without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{Array3, ArrayD};
use ndarray_npy::ReadNpyExt;

/// A fresh scratch folder for one test, under cargo's target tmp folder.
fn scratch(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("decode-parity-{}", std::process::id())).join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The test venv's python, if it has OpenCV; else skip (fail under CI).
fn python_with_cv2(test: &str) -> Option<&'static Path> {
    let py = msf_tests::require_python(test)?;
    let ok = Command::new(py).args(["-c", "import cv2"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        msf_tests::skip_or_fail(test, &format!("{} cannot import cv2 (run scripts/py-env)", py.display()));
        return None;
    }
    Some(py)
}

/// Run `tests/python/cv2_decode.py ARGS`, panicking with its output on failure.
fn cv2_decode(py: &Path, args: &[&str]) {
    let script = msf_tests::repo_root().join("tests/python/cv2_decode.py");
    let out = Command::new(py).arg(&script).args(args).output().expect("run python");
    assert!(
        out.status.success(),
        "cv2_decode.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_npy(p: &Path) -> ArrayD<u8> {
    ArrayD::<u8>::read_npy(std::fs::File::open(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (max |Δ|, number of differing samples) between two equally long sample buffers.
fn diff(a: &[u8], b: &[u8]) -> (u8, usize) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0, 0), |(m, n), (&x, &y)| (m.max(x.abs_diff(y)), n + usize::from(x != y)))
}

#[test]
fn jpeg_pixels_equal_cv2_imread() {
    let Some(py) = python_with_cv2("jpeg_pixels_equal_cv2_imread") else { return };
    let dir = scratch("jpeg");
    let gen = dir.join("generated");
    cv2_decode(py, &["make-jpegs", gen.to_str().unwrap()]);

    let mut files: Vec<PathBuf> = Vec::new();
    let fixture_images = msf_tests::fixtures_dir().join("images");
    for d in [fixture_images.as_path(), gen.as_path()] {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg")))
            .collect();
        v.sort();
        files.extend(v);
    }
    assert!(files.iter().any(|p| p.starts_with(&fixture_images)), "no JPEG in {}", fixture_images.display());
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cmyk.jpg"));

    let out = dir.join("cv2");
    let mut args = vec!["images".to_string(), out.display().to_string()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    cv2_decode(py, &args.iter().map(String::as_str).collect::<Vec<_>>());

    let mut worst = 0u8;
    for (i, f) in files.iter().enumerate() {
        let want = read_npy(&out.join(format!("{i}.npy")));
        let got = msf_runtime::load_image(f, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
        let (h, w) = (want.shape()[0], want.shape()[1]);
        assert_eq!((got.width() as usize, got.height() as usize), (w, h), "{}: size", f.display());
        let (max, n) = diff(got.as_raw(), want.as_slice().unwrap());
        let name = f.file_name().unwrap().to_string_lossy();
        msf_tests::note(format!("decode_parity: {name:24} {w}x{h}: max |Δ| {max}, {n} of {} samples differ from cv2.imread", w * h * 3));
        worst = worst.max(max);
        if cfg!(feature = "turbojpeg") {
            assert_eq!(max, 0, "{name}: {n} samples differ from cv2.imread (max |Δ| {max})");
        }
    }
    if !cfg!(feature = "turbojpeg") {
        // zune-jpeg (the pure-Rust fallback): its documented bound (`source::image`), 4 grey levels.
        assert!(worst <= 4, "zune-jpeg differs from libjpeg-turbo by {worst} grey levels");
    }
}

#[cfg(feature = "video")]
#[test]
fn video_frames_equal_cv2_videocapture() {
    use msf_runtime::source::{video::VideoSource, SourceOptions};

    let Some(py) = python_with_cv2("video_frames_equal_cv2_videocapture") else { return };
    let dir = scratch("video");
    // (file, ffmpeg output options, bit-identical?). 8-bit planar YUV takes swscale's unscaled
    // YUV→RGB path, which is the same code in the system FFmpeg and in the wheel's: identical pixels.
    // High bit depth goes through swscale's generic scaler, whose chroma filtering changed between
    // FFmpeg 5.1 (Debian 12) and the FFmpeg 8.0 that opencv-python-headless 4.13 bundles: only close.
    let cases: [(&str, &[&str], bool); 7] = [
        ("untagged.mp4", &["-pix_fmt", "yuv420p"], true),
        ("bt709.mp4", &["-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"], true),
        ("bt601.mp4", &["-pix_fmt", "yuv420p", "-colorspace", "smpte170m", "-color_range", "tv"], true),
        ("full_range.mp4", &["-pix_fmt", "yuvj420p"], true),
        ("yuv444.mp4", &["-pix_fmt", "yuv444p"], true),
        ("odd_size_ffv1.mkv", &["-pix_fmt", "yuv420p", "-c:v", "ffv1", "-s", "317x237"], true),
        ("yuv422_10bit.mp4", &["-pix_fmt", "yuv422p10le"], false),
    ];
    for (name, extra, exact) in cases {
        let p = dir.join(name);
        let mut args: Vec<&str> = vec!["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=318x238:rate=25", "-frames:v", "8"];
        args.extend_from_slice(&["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18"]);
        args.extend_from_slice(extra);
        args.push(p.to_str().unwrap());
        let st = Command::new("ffmpeg").args(&args).status().expect("ffmpeg CLI");
        assert!(st.success(), "ffmpeg {args:?}");

        let npy = dir.join(format!("{name}.npy"));
        cv2_decode(py, &["video", npy.to_str().unwrap(), p.to_str().unwrap()]);
        let want = read_npy(&npy);
        let frames: Vec<_> = VideoSource::open(&p, &SourceOptions::default()).unwrap().map(|f| f.unwrap()).collect();
        assert_eq!(frames.len(), want.shape()[0], "{name}: frame count");
        let (mut max, mut n, mut sum) = (0u8, 0usize, 0u64);
        for (k, f) in frames.iter().enumerate() {
            let w: Array3<u8> = want.index_axis(ndarray::Axis(0), k).to_owned().into_dimensionality().unwrap();
            assert_eq!((f.height as usize, f.width as usize), (w.shape()[0], w.shape()[1]), "{name}: frame {k} size");
            let w = w.as_slice().unwrap();
            let (m, c) = diff(&f.data, w);
            max = max.max(m);
            n += c;
            sum += f.data.iter().zip(w).map(|(&a, &b)| u64::from(a.abs_diff(b))).sum::<u64>();
        }
        let mean = sum as f64 / want.len() as f64;
        msf_tests::note(format!(
            "decode_parity: {name:18} {} frames: max |Δ| {max}, mean |Δ| {mean:.4}, {n} of {} samples differ from cv2.VideoCapture",
            frames.len(),
            want.len()
        ));
        if exact {
            assert_eq!(max, 0, "{name}: {n} samples differ from cv2.VideoCapture (max |Δ| {max})");
        } else {
            assert!(mean < 4.0, "{name}: mean |Δ| {mean} from cv2.VideoCapture");
        }
    }
}
