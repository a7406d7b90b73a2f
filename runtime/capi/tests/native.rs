//! The C API as a C/C++ user meets it: install it with `scripts/install-capi` into a temporary
//! prefix, build the C++ example with CMake (`find_package(msf_runtime)`) and `tests/c/abuse.c` with
//! `cc` + pkg-config, run them, and compare the example's masks with `msf-runtime`'s Rust API (for
//! every `--fit`) and, when it is built, the `msf-run` CLI's.
//!
//! Needs `cmake`, a C and a C++ compiler (`scripts/deps` installs cmake). The library installed is
//! the one cargo built for this test run (`target/<profile>/deps/libmsf_runtime.so`).

mod common;

use common::{fixture_rgb, profile_dir, repo_root, require_fixtures, run, tiny_model};
use runtime::{Decomposer, Fit, ImageView};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The C API installed into a temporary prefix (once per test process).
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<tempfile::TempDir> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            let dir = tempfile::Builder::new().prefix("msf-capi-prefix").tempdir().expect("temp dir");
            // What this test run compiled: `cargo test` leaves the cdylib in target/<profile>/deps
            // (`cargo build` also copies it up to target/<profile>).
            let profile = profile_dir();
            let lib_dir = [profile.join("deps"), profile.clone()]
                .into_iter()
                .find(|d| d.join("libmsf_runtime.so").is_file())
                .unwrap_or_else(|| panic!("no libmsf_runtime.so in {}[/deps]: cargo builds it with this test (crate-type cdylib)", profile.display()));
            let name = profile.file_name().unwrap().to_str().unwrap().to_string();
            run(Command::new(repo_root().join("scripts/install-capi"))
                .args(["--no-build", "--no-static", "--profile", &name, "--lib-dir"])
                .arg(&lib_dir)
                .arg(dir.path())
                .env("CARGO_TARGET_DIR", profile.parent().unwrap()));
            dir
        })
        .path()
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn write_ppm(img: &image::RgbImage, path: &Path) {
    let mut bytes = format!("P6\n# {}\n{} {}\n255\n", path.display(), img.width(), img.height()).into_bytes();
    bytes.extend_from_slice(img.as_raw());
    std::fs::write(path, bytes).expect("write PPM");
}

/// (width, height, pixels) of a binary PGM as the example writes it.
fn read_pgm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text_end = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(2).expect("PGM header").0 + 1;
    let header = std::str::from_utf8(&bytes[..text_end]).expect("ASCII header");
    let f: Vec<&str> = header.split_whitespace().collect();
    assert_eq!((f[0], f[3]), ("P5", "255"), "{header}");
    let (w, h): (usize, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
    let data = bytes[text_end..].to_vec();
    assert_eq!(data.len(), w * h, "{}: pixel count", path.display());
    (w, h, data)
}

#[test]
fn cpp_example_builds_with_cmake_and_matches_the_rust_api() {
    let Some(fixtures) = require_fixtures("cpp_example") else { return };
    if !have("cmake") {
        if common::in_ci() {
            panic!("cmake is not installed (scripts/deps installs it)");
        }
        eprintln!("SKIPPED cpp_example: no cmake (scripts/deps installs it)");
        return;
    }
    let model = tiny_model(false);
    let prefix = prefix();
    let work = tempfile::tempdir().expect("temp dir");
    let build = work.path().join("build");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cpp");
    run(Command::new("cmake")
        .arg("-S")
        .arg(&src)
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .arg("-DCMAKE_BUILD_TYPE=Release"));
    run(Command::new("cmake").arg("--build").arg(&build));
    let exe = build.join("msf_example");

    // A non-square RGB photo with every fit (crop offsets, padding, two tiles), a grey one and an
    // RGBA logo with the library's default fit (no --fit: stretch), decoded by the `image` crate.
    let cases = [
        ("motorcycle_left.png", Some(Fit::Crop)),
        ("motorcycle_left.png", Some(Fit::Stretch)),
        ("motorcycle_left.png", Some(Fit::Pad)),
        ("motorcycle_left.png", Some(Fit::Tiles)),
        ("camera.png", None),
        ("logo.png", None),
    ];
    for (name, fit) in cases {
        let img = fixture_rgb(&fixtures, name);
        let ppm = work.path().join(name.replace(".png", ".ppm"));
        write_ppm(&img, &ppm);
        let (frame_pgm, model_pgm) = (work.path().join("frame.pgm"), work.path().join("model.pgm"));
        let mut cmd = Command::new(&exe);
        if let Some(f) = fit {
            cmd.args(["--fit", f.as_str()]);
        }
        let out = run(cmd.arg(&model).arg(&ppm).arg(&frame_pgm).arg(&model_pgm));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let fit = fit.unwrap_or_default();
        let label = format!("{name} (fit {fit})");
        let name = label.as_str();

        let dec = Decomposer::builder().threads(1).fit(fit).build(&model).expect("load with the Rust API");
        let want = dec.decompose(&ImageView::from_rgb_image(&img).unwrap()).unwrap();
        let (w, h, frame_mask) = read_pgm(&frame_pgm);
        assert_eq!((w, h), (img.width() as usize, img.height() as usize), "{name}: frame mask size");
        assert!(frame_mask == want.mask_in_frame(), "{name}: the C++ frame mask differs from the Rust API's");
        let (mw, mh, model_mask) = read_pgm(&model_pgm);
        assert_eq!((mw, mh), (want.mask_size, want.mask_size), "{name}: model mask size");
        assert!(model_mask == want.mask, "{name}: the C++ model mask differs from the Rust API's");

        // The per-slot summary agrees with the frame mask.
        for k in 0..want.num_slots {
            let area = frame_mask.iter().filter(|&&s| s as usize == k).count();
            let line = format!("slot {k}: area {area} px");
            assert!(stdout.contains(&line), "{name}: `{line}` missing from:\n{stdout}");
        }
        assert!(stdout.contains(&format!("msf_runtime {}", env!("CARGO_PKG_VERSION"))), "{stdout}");
        // The example prints the result's view; the crop only for crop results.
        assert!(stdout.contains(&format!(", fit {fit}: frame [")), "{name}: no view line in:\n{stdout}");
        assert_eq!(stdout.contains("\ncrop "), fit == Fit::Crop, "{name}: {stdout}");
        assert!(stdout.contains(&format!("\n{} slots of ", want.num_slots)), "{name}: object count in:\n{stdout}");
        let file = label.split(' ').next().unwrap();
        compare_with_cli(&model, &img, file, fit, &want.mask_in_frame(), work.path());
    }
}

/// When the `msf-run` CLI is built in the same profile (`cargo build --features cli`; CI builds it),
/// its mask PNG agrees too, given the same `--fit`: the CLI, the Rust API and the C++ program are
/// three front ends of one library.
fn compare_with_cli(model: &Path, img: &image::RgbImage, name: &str, fit: Fit, want: &[u8], work: &Path) {
    let cli = profile_dir().join("msf-run");
    if !cli.is_file() {
        eprintln!("note: {} is not built; CLI comparison skipped", cli.display());
        return;
    }
    let input = work.join(name);
    img.save(&input).expect("write the input PNG");
    // One folder per image and fit: a folder that holds an earlier run is refused.
    let out = work.join(format!("cli-out-{}-{fit}", name.replace('.', "_")));
    run(Command::new(&cli)
        .arg("--onnx")
        .arg(model)
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .args(["--fit", fit.as_str(), "--threads", "1", "--no-overlay", "--no-slots", "--quiet"]));
    let png_path = out.join("masks").join(name.replace(".jpg", ".png"));
    let mut dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap_or_else(|e| {
        panic!("{}: {e} (msf-run wrote: {:?})", png_path.display(), std::fs::read_dir(&out).map(|d| d.count()))
    })));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info().expect("mask PNG header");
    let mut ids = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut ids).expect("mask PNG data");
    assert_eq!(info.color_type, png::ColorType::Indexed, "{name}: msf-run mask is not indexed");
    assert_eq!((info.width, info.height), (img.width(), img.height()), "{name}: msf-run mask size");
    ids.truncate(info.buffer_size());
    assert!(ids == want, "{name}: the msf-run mask with --fit {fit} differs from the Rust API's");
}

#[test]
fn abuse_program_gets_errors_never_crashes() {
    if require_fixtures("abuse").is_none() {
        return;
    }
    let model = tiny_model(false);
    let prefix = prefix();
    let work = tempfile::tempdir().expect("temp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/abuse.c");
    let exe = work.path().join("abuse");

    // Flags from the installed pkg-config file when pkg-config is there, else the same by hand.
    let flags: Vec<String> = if have("pkg-config") {
        let pc = prefix.join("lib/pkgconfig");
        let out = run(Command::new("pkg-config").args(["--cflags", "--libs", "msf_runtime"]).env("PKG_CONFIG_PATH", &pc));
        String::from_utf8(out.stdout).unwrap().split_whitespace().map(String::from).collect()
    } else {
        vec![format!("-I{}", prefix.join("include").display()), format!("-L{}", prefix.join("lib").display()), "-lmsf_runtime".into()]
    };
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(&flags)
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display())));

    let out = Command::new(&exe).arg(&model).arg(&src).output().expect("run abuse");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "abuse.c failed ({}):\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("abuse: all ") && last.ends_with(" checks ok"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // Every error path ran: the status of each misuse is printed with its message.
    for needle in ["NULL", "already destroyed", "not a handle created by this library", "model file not found", "unknown fit 9", "use msf_result_view"] {
        assert!(stdout.contains(needle), "`{needle}` not in:\n{stdout}");
    }
    // Nothing was printed to stderr: no panic message, no warning.
    assert!(stderr.trim().is_empty(), "stderr:\n{stderr}");
}

#[test]
fn installed_layout() {
    let p: PathBuf = prefix().to_path_buf();
    let v = env!("CARGO_PKG_VERSION");
    for f in [
        format!("lib/libmsf_runtime.so.{v}"),
        "lib/libmsf_runtime.so".into(),
        "include/msf_runtime.h".into(),
        "include/msf_runtime.hpp".into(),
        "lib/cmake/msf_runtime/msf_runtimeConfig.cmake".into(),
        "lib/cmake/msf_runtime/msf_runtimeConfigVersion.cmake".into(),
        "lib/pkgconfig/msf_runtime.pc".into(),
    ] {
        assert!(p.join(&f).exists(), "{f} not installed");
    }
    let pc = std::fs::read_to_string(p.join("lib/pkgconfig/msf_runtime.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={}", p.display())) && pc.contains(&format!("Version: {v}")), "{pc}");
    // The SONAME symlink the programs record.
    let abi = if v.starts_with("0.") { v.rsplit_once('.').unwrap().0.to_string() } else { v.split('.').next().unwrap().to_string() };
    assert!(p.join(format!("lib/libmsf_runtime.so.{abi}")).exists(), "SONAME link libmsf_runtime.so.{abi}");
}
