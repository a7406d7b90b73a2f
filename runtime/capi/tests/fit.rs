//! `MsfOptions.fit` through the C ABI: for each fit, the results of `msf_decompose` equal the Rust
//! API's (`Decomposer::builder().fit(..)`) on a non-square fixture image, `msf_result_view`
//! describes them and every per-object accessor follows the result's own object count; programs
//! built against the version-2 header (no `fit`) get the centre crop; unknown fits are refused.

mod common;

use common::{fixture_rgb, require_fixtures, tiny_model};
use msf_runtime::*;
use runtime::{Decomposer, Decomposition, Fit, ImageView};
use std::ffi::{CStr, CString};
use std::path::Path;

const FITS: [(MsfFit, Fit); 4] =
    [(MSF_FIT_CROP, Fit::Crop), (MSF_FIT_STRETCH, Fit::Stretch), (MSF_FIT_PAD, Fit::Pad), (MSF_FIT_TILES, Fit::Tiles)];

fn last_error() -> String {
    // SAFETY: the library returns a valid thread-local C string.
    unsafe { CStr::from_ptr(msf_last_error()) }.to_string_lossy().into_owned()
}

/// `msf_decomposer_create` with `options` (a pointer to any options layout); the handle or the
/// failing status and message.
fn create(model: &Path, options: *const MsfOptions) -> Result<*mut MsfDecomposer, (MsfStatus, String)> {
    let path = CString::new(model.to_str().unwrap()).unwrap();
    let mut dec = std::ptr::null_mut();
    // SAFETY: a valid C string, options valid for their struct_size, a valid out pointer.
    let st = unsafe { msf_decomposer_create(path.as_ptr(), options, &mut dec) };
    if st == MsfStatus::Ok {
        Ok(dec)
    } else {
        assert!(dec.is_null());
        Err((st, last_error()))
    }
}

fn options(fit: MsfFit) -> MsfOptions {
    MsfOptions { threads: 1, fit, ..msf_options_default() }
}

fn decompose(dec: *const MsfDecomposer, img: &image::RgbImage) -> *mut MsfResult {
    let mut res = std::ptr::null_mut();
    // SAFETY: a packed RGB buffer of the size passed, a valid out pointer.
    let st = unsafe { msf_decompose(dec, img.as_raw().as_ptr(), img.width(), img.height(), 0, MSF_PIXEL_FORMAT_RGB8, &mut res) };
    assert_eq!(st, MsfStatus::Ok, "{}", last_error());
    res
}

fn view(res: *const MsfResult) -> MsfView {
    let mut v = MsfView { struct_size: std::mem::size_of::<MsfView>() as u32, ..Default::default() };
    // SAFETY: a valid out pointer of struct_size bytes.
    assert_eq!(unsafe { msf_result_view(res, &mut v) }, MsfStatus::Ok, "{}", last_error());
    assert_eq!(v.struct_size as usize, std::mem::size_of::<MsfView>());
    v
}

/// Everything the C ABI says about a result, to compare with the Rust API's decomposition.
struct CResult {
    num_slots: usize,
    slots: Vec<u32>,
    attn: Vec<u32>,
    mask: Vec<u8>,
    mask_size: u32,
    frame_mask: Vec<u8>,
    frame_size: (u32, u32),
    areas_frame: Vec<u64>,
    bboxes_frame: Vec<MsfBBox>,
}

fn read(res: *const MsfResult) -> CResult {
    let (mut n, mut d) = (0usize, 0usize);
    let (mut slots, mut count) = (std::ptr::null(), 0usize);
    let (mut attn, mut grid) = (std::ptr::null(), 0u32);
    let (mut mask, mut mw, mut mh) = (std::ptr::null(), 0u32, 0u32);
    let (mut fmask, mut fw, mut fh) = (std::ptr::null(), 0u32, 0u32);
    // SAFETY: valid out pointers; the buffers live as long as `res`, which outlives this function's
    // copies.
    unsafe {
        assert_eq!(msf_result_num_slots(res, &mut n), MsfStatus::Ok);
        assert_eq!(msf_result_slot_dim(res, &mut d), MsfStatus::Ok);
        assert_eq!(msf_result_slots(res, &mut slots, &mut count), MsfStatus::Ok);
        assert_eq!(msf_result_attn(res, &mut attn, &mut grid), MsfStatus::Ok);
        assert_eq!(msf_result_mask(res, &mut mask, &mut mw, &mut mh), MsfStatus::Ok);
        assert_eq!(msf_result_mask_frame(res, &mut fmask, &mut fw, &mut fh), MsfStatus::Ok);
        assert_eq!(count, n * d, "slots: N x D values, N from the result");
        let g2 = (grid * grid) as usize;
        let mut areas_frame = Vec::new();
        let mut bboxes_frame = Vec::new();
        for k in 0..n as u32 {
            let (mut a, mut b) = (0u64, MsfBBox::default());
            assert_eq!(msf_result_area_frame(res, k, &mut a), MsfStatus::Ok, "slot {k} of {n}: {}", last_error());
            assert_eq!(msf_result_bbox_frame(res, k, &mut b), MsfStatus::Ok, "slot {k} of {n}: {}", last_error());
            let (mut model_area, mut model_box) = (0u64, MsfBBox::default());
            assert_eq!(msf_result_area(res, k, &mut model_area), MsfStatus::Ok, "slot {k} of {n}");
            assert_eq!(msf_result_bbox(res, k, &mut model_box), MsfStatus::Ok, "slot {k} of {n}");
            areas_frame.push(a);
            bboxes_frame.push(b);
        }
        // One past the result's count is out of range, with the count in the message.
        let mut a = 0u64;
        assert_eq!(msf_result_area_frame(res, n as u32, &mut a), MsfStatus::InvalidArgument);
        assert!(last_error().contains(&format!("has {n} objects")), "{}", last_error());
        CResult {
            num_slots: n,
            slots: std::slice::from_raw_parts(slots, count).iter().map(|x| x.to_bits()).collect(),
            attn: std::slice::from_raw_parts(attn, n * g2).iter().map(|x| x.to_bits()).collect(),
            mask: std::slice::from_raw_parts(mask, (mw * mh) as usize).to_vec(),
            mask_size: mw,
            frame_mask: std::slice::from_raw_parts(fmask, (fw * fh) as usize).to_vec(),
            frame_size: (fw, fh),
            areas_frame,
            bboxes_frame,
        }
    }
}

fn assert_same(name: &str, c: &CResult, want: &Decomposition) {
    assert_eq!(c.num_slots, want.num_slots, "{name}: number of objects");
    assert!(c.slots == want.slots.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{name}: slots differ");
    assert!(c.attn == want.attn.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{name}: attention differs");
    assert_eq!(c.mask_size as usize, want.mask_size, "{name}: mask size");
    assert!(c.mask == want.mask, "{name}: the model-resolution mask differs from the Rust API's");
    assert_eq!(c.frame_size, (want.frame_width, want.frame_height), "{name}: frame mask size");
    let frame = want.mask_in_frame();
    assert!(c.frame_mask == frame, "{name}: the frame-resolution mask differs from the Rust API's");
    for k in 0..want.num_slots {
        let area = frame.iter().filter(|&&s| s as usize == k).count() as u64;
        assert_eq!(c.areas_frame[k], area, "{name}: frame area of object {k}");
        let b = &c.bboxes_frame[k];
        assert_eq!(area == 0, *b == MsfBBox::default(), "{name}: box of object {k}");
    }
}

#[test]
fn each_fit_through_the_c_abi_equals_the_rust_api() {
    let Some(fixtures) = require_fixtures("each_fit_c_abi") else { return };
    let model = tiny_model(false);
    let img = fixture_rgb(&fixtures, "motorcycle_left.png");
    let (w, h) = img.dimensions();
    assert!(w > h, "the fixture is not square: {w}x{h}");
    let frame = ImageView::from_rgb_image(&img).unwrap();
    for (cfit, fit) in FITS {
        let name = fit.as_str();
        let rust = Decomposer::builder().threads(1).fit(fit).build(&model).expect("load with the Rust API");
        let want = rust.decompose(&frame).unwrap();
        let k = rust.info().num_slots;

        let dec = create(&model, &options(cfit)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let res = decompose(dec, &img);
        let got = read(res);
        assert_same(name, &got, &want);

        let v = view(res);
        let p = want.placement;
        assert_eq!(v.fit, cfit, "{name}");
        assert_eq!((v.frame_width, v.frame_height), (w, h), "{name}");
        assert_eq!(v.frame, MsfRect { x: p.frame.x, y: p.frame.y, width: p.frame.width, height: p.frame.height }, "{name}");
        assert_eq!(v.input, MsfRect { x: p.input.x, y: p.input.y, width: p.input.width, height: p.input.height }, "{name}");
        assert_eq!((v.input_size, v.mask_size as usize), (p.size, want.mask_size), "{name}");
        assert_eq!(v.covers_frame != 0, want.covers_frame(), "{name}");
        assert_eq!(v.covers_frame != 0, fit != Fit::Crop, "{name}: only the crop leaves part of a wide frame out");
        assert_eq!(got.frame_mask.contains(&MSF_MASK_VOID), fit == Fit::Crop, "{name}: void pixels");
        let tiles = Fit::Tiles.placements(w, h, p.size).unwrap().len() as u32;
        assert!(tiles > 1, "a {w}x{h} frame gives several tiles");
        assert_eq!((v.tiles, v.tiled != 0), if fit == Fit::Tiles { (tiles, true) } else { (1, false) }, "{name}");
        match fit {
            Fit::Crop => assert_eq!((v.frame.x, v.frame.width, v.frame.height), ((w - h) / 2, h, h), "{name}"),
            Fit::Pad => assert!(v.input.height < v.input_size && v.input.width == v.input_size, "{name}: {v:?}"),
            _ => assert_eq!((v.frame.width, v.frame.height, v.input.width), (w, h, v.input_size), "{name}"),
        }

        // msf_result_crop: the crop for crop results, a pointer to msf_result_view for the others.
        let mut c = MsfCrop::default();
        // SAFETY: a valid out pointer.
        let st = unsafe { msf_result_crop(res, &mut c) };
        if fit == Fit::Crop {
            assert_eq!(st, MsfStatus::Ok, "{}", last_error());
            assert_eq!((c.frame_width, c.frame_height, c.left, c.top, c.size, c.mask_size as usize), (w, h, (w - h) / 2, 0, h, want.mask_size));
        } else {
            assert_eq!(st, MsfStatus::InvalidArgument, "{name}: msf_result_crop of a result that is no crop");
            let msg = last_error();
            assert!(msg.starts_with("msf_result_crop: ") && msg.contains("use msf_result_view"), "{msg}");
            assert_eq!(c, MsfCrop::default(), "{name}: nothing written on failure");
        }

        // Trackers follow one model view per frame: tiles are refused with a reason.
        let mut tr = std::ptr::null_mut();
        // SAFETY: a live handle, NULL options, a valid out pointer.
        let st = unsafe { msf_tracker_create(dec, std::ptr::null(), &mut tr) };
        if fit == Fit::Tiles {
            assert_eq!(st, MsfStatus::InvalidArgument);
            assert!(tr.is_null() && last_error().contains("MSF_FIT_TILES"), "{}", last_error());
        } else {
            assert_eq!(st, MsfStatus::Ok, "{name}: {}", last_error());
            let mut r2 = std::ptr::null_mut();
            // SAFETY: as for msf_decompose.
            let st = unsafe { msf_tracker_step(tr, img.as_raw().as_ptr(), w, h, 0, MSF_PIXEL_FORMAT_RGB8, &mut r2) };
            assert_eq!(st, MsfStatus::Ok, "{}", last_error());
            assert_eq!(view(r2), v, "{name}: a tracker's result has its decomposer's view");
            assert!(read(r2).frame_mask == got.frame_mask, "{name}: the first tracked frame is the plain decomposition");
            assert_eq!(msf_result_destroy(r2), MsfStatus::Ok);
            assert_eq!(msf_tracker_destroy(tr), MsfStatus::Ok);
        }
        if fit == Fit::Tiles {
            // Merged objects: at least K, each slot index up to the result's count readable (checked
            // in `read`), and every frame pixel has one.
            assert!(got.num_slots >= k, "tiles: {} objects for a model of {k} slots", got.num_slots);
            assert_eq!(got.areas_frame.iter().sum::<u64>(), u64::from(w) * u64::from(h));
            eprintln!("tiles: {} objects from {} tiles of a {k}-slot model", got.num_slots, v.tiles);
        }
        assert_eq!(msf_result_destroy(res), MsfStatus::Ok);
        assert_eq!(msf_decomposer_destroy(dec), MsfStatus::Ok);
    }
}

#[test]
fn default_options_and_null_options_give_the_librarys_default_fit() {
    let Some(fixtures) = require_fixtures("default_fit_c_abi") else { return };
    let model = tiny_model(false);
    let img = fixture_rgb(&fixtures, "motorcycle_left.png");
    assert_eq!(msf_options_default().fit, MSF_FIT_STRETCH);
    let want = Decomposer::builder().threads(1).build(&model).unwrap().decompose(&ImageView::from_rgb_image(&img).unwrap()).unwrap();
    let default = options(msf_options_default().fit);
    for (what, opts) in [("msf_options_default()", &default as *const MsfOptions), ("NULL", std::ptr::null())] {
        let dec = create(&model, opts).unwrap();
        let res = decompose(dec, &img);
        assert_eq!(view(res).fit, MSF_FIT_STRETCH, "{what}");
        assert_same(what, &read(res), &want);
        assert_eq!(msf_result_destroy(res), MsfStatus::Ok);
        assert_eq!(msf_decomposer_destroy(dec), MsfStatus::Ok);
    }
}

/// `MsfOptions` as the version-2 header declared it (before `fit`).
#[repr(C)]
struct OptionsV2 {
    struct_size: u32,
    backend: MsfBackend,
    provider: MsfProvider,
    threads: u32,
    allow_fallback: u32,
    concurrency: u32,
}

#[test]
fn options_of_the_version_2_header_keep_the_centre_crop() {
    let Some(fixtures) = require_fixtures("v2_options_crop") else { return };
    let model = tiny_model(false);
    let img = fixture_rgb(&fixtures, "motorcycle_left.png");
    let want = Decomposer::builder().threads(1).fit(Fit::Crop).build(&model).unwrap();
    let want = want.decompose(&ImageView::from_rgb_image(&img).unwrap()).unwrap();
    // What follows the old struct in the caller's memory is not read as a fit (here an invalid one).
    #[repr(C)]
    struct Followed {
        old: OptionsV2,
        next: u32,
    }
    let old = Followed {
        old: OptionsV2 {
            struct_size: std::mem::size_of::<OptionsV2>() as u32,
            backend: MSF_BACKEND_TRACT,
            provider: MSF_PROVIDER_CPU,
            threads: 1,
            allow_fallback: 0,
            concurrency: 1,
        },
        next: 0xdead,
    };
    assert_eq!(old.old.struct_size, 24);
    let dec = create(&model, (&old as *const Followed).cast()).expect("a version-2 MsfOptions is accepted");
    let res = decompose(dec, &img);
    let v = view(res);
    assert_eq!((v.fit, v.covers_frame), (MSF_FIT_CROP, 0));
    assert_same("version-2 options", &read(res), &want);
    let mut c = MsfCrop::default();
    // SAFETY: a valid out pointer.
    assert_eq!(unsafe { msf_result_crop(res, &mut c) }, MsfStatus::Ok, "the old accessor keeps working for old programs");
    assert_eq!((c.left, c.size), ((img.width() - img.height()) / 2, img.height()));
    assert_eq!(msf_result_destroy(res), MsfStatus::Ok);
    assert_eq!(msf_decomposer_destroy(dec), MsfStatus::Ok);
}

#[test]
fn unknown_fits_are_refused() {
    if require_fixtures("unknown_fit").is_none() {
        return;
    }
    let model = tiny_model(false);
    for bad in [4, 77, u32::MAX] {
        let (st, msg) = create(&model, &options(bad)).expect_err("an unknown fit loads");
        assert_eq!(st, MsfStatus::InvalidArgument, "{msg}");
        assert!(msg.starts_with("msf_decomposer_create: ") && msg.contains(&format!("unknown fit {bad}")), "{msg}");
    }
    // A struct_size between versions is refused too (not read as a version 2 struct).
    let mut o = options(MSF_FIT_CROP);
    o.struct_size = 26;
    let (st, msg) = create(&model, &o).expect_err("struct_size 26 loads");
    assert_eq!(st, MsfStatus::InvalidArgument);
    assert!(msg.contains("struct_size is 26"), "{msg}");
}
