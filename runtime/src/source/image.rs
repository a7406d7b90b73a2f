//! Image files → RGB8, as close to upstream's decode as a user would want.
//!
//! Upstream reads with OpenCV `imread(IMREAD_UNCHANGED)` then converts BGR→RGB: grey is replicated to
//! three channels and alpha is dropped (no compositing onto a background). We do the same for every
//! 8-bit colour type. Deliberate differences, documented because they change pixels:
//! - **EXIF orientation is applied** (`IMREAD_UNCHANGED` ignores it). A phone photo shown upright in
//!   every viewer should be segmented upright; upstream's datasets (COCO) have no rotated files.
//! - **16-bit images** are reduced with the `image` crate's rounding, `v8 = (v16 + 128) / 257`
//!   (= round(v16·255/65535)). OpenCV `IMREAD_UNCHANGED` would hand upstream a 16-bit array that its
//!   uint8 pipeline cannot take, so there is no upstream behaviour to copy; OpenCV's `IMREAD_COLOR`
//!   would use `v16 >> 8`, which differs by at most 1 grey level.
//! - Palette images are expanded through their palette. Float images (TIFF) are clamped to 0..1 and
//!   scaled to 0..255.
//! - JPEG: with the `turbojpeg` feature, through the system libjpeg-turbo with OpenCV's settings
//!   (accurate integer IDCT, fancy upsampling; CMYK converted as OpenCV does): the pixels of
//!   `cv2.imread` exactly (`tests/decode_parity.rs`), and faster. Without it, through the `image`
//!   crate's pure-Rust zune-jpeg, whose chroma upsampling and IDCT round differently: up to 4 grey
//!   levels apart on 4:2:0 files (on a quarter of the samples), 1–2 on 4:4:4 and greyscale.
//! - Multi-frame files (GIF, TIFF) give their first frame.
//!
//! Decompression bombs are refused from the header, before the pixel buffer is allocated.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::{Error, Result};

/// Caps checked against the image header before decoding.
///
/// Defaults: 16384 px per side, 268,435,456 (16384²) pixels, 2 GiB of decoded samples (a 16k² RGBA
/// 16-bit image). Raise them for gigapixel scans; lower them for a service that takes uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    /// Bytes of the decoder's output buffer (before conversion to RGB8), and the allocation cap
    /// handed to the decoder for its own buffers.
    pub max_decoded_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 16384,
            max_height: 16384,
            max_pixels: 16384 * 16384,
            max_decoded_bytes: 2 << 30,
        }
    }
}

impl DecodeLimits {
    /// No caps at all (trusted input only).
    pub fn none() -> Self {
        DecodeLimits {
            max_width: u32::MAX,
            max_height: u32::MAX,
            max_pixels: u64::MAX,
            max_decoded_bytes: u64::MAX,
        }
    }

    /// `Err(description of the violated limit)` when `width`×`height` (decoding to `bytes`) is over.
    fn check(&self, width: u32, height: u32, bytes: u64) -> std::result::Result<(), String> {
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_width || height > self.max_height {
            Err(format!("max {}x{}", self.max_width, self.max_height))
        } else if pixels > self.max_pixels {
            Err(format!("max {} pixels, got {}", self.max_pixels, pixels))
        } else if bytes > self.max_decoded_bytes {
            Err(format!(
                "max {} decoded bytes, needs {}",
                self.max_decoded_bytes, bytes
            ))
        } else {
            Ok(())
        }
    }
}

/// Decode an image file to RGB8 with its EXIF orientation applied (see the module doc for the
/// colour conversions). The format is sniffed from the content, falling back to the extension.
///
/// Errors name the file: [`Error::Io`], [`Error::ImageTooLarge`] (checked from the header, before
/// allocating), [`Error::EmptyImage`], [`Error::Decode`] (unknown format, corrupt or truncated data).
///
/// ```
/// use msf_runtime::{load_image, DecodeLimits, Error};
/// # let photo = msf_tests::fixture_image("logo.png");
/// let img = load_image(&photo, &DecodeLimits::default())?; // RGBA → RGB, alpha dropped
/// assert!(img.width() > 0);
/// // A tight pixel budget refuses the file from its header, before decoding it.
/// let tiny = DecodeLimits { max_pixels: 16, ..DecodeLimits::default() };
/// assert!(matches!(load_image(&photo, &tiny), Err(Error::ImageTooLarge { .. })));
/// # Ok::<(), msf_runtime::Error>(())
/// ```
pub fn load_image(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dec_err = |source| Error::Decode {
        path: path.to_path_buf(),
        source,
    };

    // A FIFO or device would block the open or never end: only regular files are images.
    if !std::fs::metadata(path).map_err(io_err)?.is_file() {
        return Err(io_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    let mut reader = ImageReader::open(path)
        .map_err(io_err)?
        .with_guessed_format()
        .map_err(io_err)?;
    #[cfg(feature = "turbojpeg")]
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        // libjpeg-turbo, as cv2.imread; a header it cannot read (an exotic sampling layout) falls
        // through to the `image` crate below, which also words the error for a broken file.
        if let Some(decoded) = turbo::load_jpeg(path, limits) {
            return decoded;
        }
    }
    // Build the decoder with only an allocation cap for the header and its metadata (a PNG's
    // compressed ICC profile can inflate to gigabytes): the width/height check is ours, so that
    // the error can say how big the image claims to be; the pixels get the full cap below.
    let mut header_limits = alloc_limits(limits);
    header_limits.max_alloc = Some(limits.max_decoded_bytes.min(MAX_HEADER_BYTES));
    reader.limits(header_limits);
    let mut decoder = reader.into_decoder().map_err(dec_err)?;

    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(Error::EmptyImage {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    if let Err(limit) = limits.check(width, height, decoder.total_bytes()) {
        return Err(Error::ImageTooLarge {
            path: path.to_path_buf(),
            width,
            height,
            limit,
        });
    }
    let mut image_limits = alloc_limits(limits);
    image_limits.max_image_width = Some(limits.max_width);
    image_limits.max_image_height = Some(limits.max_height);
    decoder.set_limits(image_limits).map_err(dec_err)?;

    // A malformed EXIF block should not make an otherwise good image unreadable: treat it as upright.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let decoded = DynamicImage::from_decoder(decoder).map_err(dec_err)?;

    // Convert before rotating: rotation then moves 3 bytes per pixel, not up to 16.
    let mut rgb = DynamicImage::ImageRgb8(decoded.into_rgb8());
    rgb.apply_orientation(orientation);
    Ok(rgb.into_rgb8())
}

/// JPEG through the system libjpeg-turbo's TurboJPEG API (feature `turbojpeg`): the decoder and the
/// settings `cv2.imread` uses (accurate integer IDCT, fancy upsampling), so the pixels are the same.
#[cfg(feature = "turbojpeg")]
mod turbo {
    use std::ffi::{c_int, c_ulong, CStr};
    use std::path::Path;

    use image::error::{DecodingError, ImageFormatHint};
    use image::metadata::Orientation;
    use image::{DynamicImage, ImageError, ImageFormat, RgbImage};
    use turbojpeg_sys as tj;

    use super::DecodeLimits;
    use crate::error::{Error, Result};

    /// A TurboJPEG decompressor, destroyed on drop.
    struct Decompressor(tj::tjhandle);

    impl Drop for Decompressor {
        fn drop(&mut self) {
            // SAFETY: a live handle from tjInitDecompress, destroyed once.
            unsafe { tj::tjDestroy(self.0) };
        }
    }

    /// What the header says: size and whether the samples are CMYK (or YCCK, decoded to CMYK).
    struct Header {
        width: u32,
        height: u32,
        cmyk: bool,
    }

    impl Decompressor {
        fn new() -> std::result::Result<Self, String> {
            // SAFETY: no arguments; a null handle is checked.
            let h = unsafe { tj::tjInitDecompress() };
            if h.is_null() {
                Err("cannot create a libjpeg-turbo decompressor".into())
            } else {
                Ok(Decompressor(h))
            }
        }

        fn message(&self) -> String {
            // SAFETY: the handle is live; the library returns a NUL-terminated string it owns.
            unsafe { CStr::from_ptr(tj::tjGetErrorStr2(self.0)) }.to_string_lossy().into_owned()
        }

        fn header(&mut self, jpeg: &[u8]) -> std::result::Result<Header, String> {
            let len = c_ulong::try_from(jpeg.len()).map_err(|_| "file too large".to_string())?;
            let (mut w, mut h, mut subsamp, mut space): (c_int, c_int, c_int, c_int) = (0, 0, 0, 0);
            // SAFETY: `jpeg` is valid for `len` bytes; the out-pointers are live locals.
            let r = unsafe { tj::tjDecompressHeader3(self.0, jpeg.as_ptr(), len, &mut w, &mut h, &mut subsamp, &mut space) };
            if r != 0 {
                return Err(self.message());
            }
            let space = u32::try_from(space).unwrap_or(u32::MAX);
            Ok(Header {
                width: u32::try_from(w).unwrap_or(0),
                height: u32::try_from(h).unwrap_or(0),
                cmyk: space == tj::TJCS_TJCS_CMYK || space == tj::TJCS_TJCS_YCCK,
            })
        }

        /// Decode into `out` (exactly width × height × channels of `format`). `Ok(Some(warning))`
        /// when libjpeg-turbo decoded the whole image but warned (corrupt or missing data).
        fn decode(&mut self, jpeg: &[u8], hd: &Header, format: tj::TJPF, out: &mut [u8]) -> std::result::Result<Option<String>, String> {
            let len = c_ulong::try_from(jpeg.len()).map_err(|_| "file too large".to_string())?;
            let (w, h) = (c_int::try_from(hd.width), c_int::try_from(hd.height));
            let (Ok(w), Ok(h)) = (w, h) else { return Err("image too large for libjpeg-turbo".into()) };
            let channels = if format == tj::TJPF_TJPF_CMYK { 4 } else { 3 };
            assert_eq!(out.len(), hd.width as usize * hd.height as usize * channels, "output buffer size");
            // Default flags (accurate IDCT, fancy upsampling, as cv2.imread and Pillow) plus a cap on
            // progressive scans, against files made of thousands of tiny scans.
            let flags = tj::TJFLAG_LIMITSCANS as c_int;
            // SAFETY: `jpeg` is valid for `len` bytes; `out` holds `h` rows of `w` pixels of `format`
            // (pitch 0 = tightly packed), checked above.
            let r = unsafe { tj::tjDecompress2(self.0, jpeg.as_ptr(), len, out.as_mut_ptr(), w, 0, h, format as c_int, flags) };
            if r == 0 {
                Ok(None)
            } else if unsafe { tj::tjGetErrorCode(self.0) } == tj::TJERR_TJERR_WARNING as c_int {
                Ok(Some(self.message()))
            } else {
                Err(self.message())
            }
        }
    }

    /// `None` when libjpeg-turbo cannot read the header (the caller falls back to the `image`
    /// crate); otherwise the decoded image or the typed error, as [`super::load_image`].
    pub(super) fn load_jpeg(path: &Path, limits: &DecodeLimits) -> Option<Result<RgbImage>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(source) => return Some(Err(Error::Io { path: path.to_path_buf(), source })),
        };
        let mut dec = match Decompressor::new() {
            Ok(d) => d,
            Err(why) => return Some(Err(decode_error(path, why))),
        };
        // A zero size is what TurboJPEG reports for a file cut inside its header: the `image` crate
        // words that error.
        let header = dec.header(&bytes).ok().filter(|h| h.width > 0 && h.height > 0)?;
        Some(decode(path, &bytes, &mut dec, &header, limits))
    }

    fn decode_error(path: &Path, why: String) -> Error {
        Error::Decode {
            path: path.to_path_buf(),
            source: ImageError::Decoding(DecodingError::new(ImageFormatHint::Exact(ImageFormat::Jpeg), why)),
        }
    }

    fn decode(path: &Path, bytes: &[u8], dec: &mut Decompressor, hd: &Header, limits: &DecodeLimits) -> Result<RgbImage> {
        let (width, height) = (hd.width, hd.height);
        let (format, channels) = if hd.cmyk { (tj::TJPF_TJPF_CMYK, 4u64) } else { (tj::TJPF_TJPF_RGB, 3) };
        let bytes_out = u64::from(width) * u64::from(height) * channels;
        // Checked from the header, before the pixel buffer is allocated.
        if let Err(limit) = limits.check(width, height, bytes_out) {
            return Err(Error::ImageTooLarge { path: path.to_path_buf(), width, height, limit });
        }
        // Every scan of a progressive file walks the whole image: thousands of empty scans in a few
        // KB would keep libjpeg-turbo busy for minutes on a large image (its own cap, 500 scans, still
        // allows ~10 s at 16000×16000).
        let scans = count_scans(bytes);
        if scans > 1 && scans.saturating_mul(u64::from(width) * u64::from(height)) > MAX_SCAN_PIXELS {
            return Err(decode_error(
                path,
                format!("{scans} scans over {width}x{height} pixels: more decoding work than a JPEG may ask for"),
            ));
        }
        let mut out = vec![0u8; bytes_out as usize];
        match dec.decode(bytes, hd, format, &mut out) {
            Ok(None) => {}
            // A file cut short (libjpeg-turbo would fill the rest with grey) is refused, like a
            // truncated PNG; other warnings (stray bytes between markers…) pass, as in cv2.imread.
            Ok(Some(w)) if w.to_ascii_lowercase().contains("premature end") => {
                return Err(decode_error(path, format!("truncated JPEG data ({w})")));
            }
            Ok(Some(_)) => {}
            Err(why) => return Err(decode_error(path, why)),
        }
        if hd.cmyk {
            out = cmyk_to_rgb(&out);
        }
        let rgb = RgbImage::from_raw(width, height, out).expect("buffer sized from the header");
        match exif_orientation(bytes) {
            None | Some(Orientation::NoTransforms) => Ok(rgb),
            Some(o) => {
                let mut img = DynamicImage::ImageRgb8(rgb);
                img.apply_orientation(o);
                Ok(img.into_rgb8())
            }
        }
    }

    /// Pixels × scans a JPEG may make the decoder walk: 64 full scans of the largest image the default
    /// [`DecodeLimits`] allow (real progressive files have about 10 scans; ~1 s at 16384×16384).
    const MAX_SCAN_PIXELS: u64 = 64 * 16384 * 16384;

    /// Start-of-scan markers in `jpeg`: the segments before the first scan are skipped by their
    /// lengths (their payload may hold any bytes); after it, FF DA can only be a marker, since
    /// entropy-coded data stuffs every FF with 00. An over-count only errs towards refusing.
    pub(super) fn count_scans(jpeg: &[u8]) -> u64 {
        let mut i = 2;
        while i + 4 <= jpeg.len() && jpeg[i] == 0xff {
            match jpeg[i + 1] {
                0xff => i += 1,
                0x01 | 0xd0..=0xd8 => i += 2,
                0xda => break,
                0xd9 => return 0,
                _ => i += 2 + usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]])),
            }
        }
        jpeg.get(i..).unwrap_or_default().windows(2).filter(|w| *w == [0xff, 0xda]).count() as u64
    }

    /// OpenCV's CMYK → RGB for JPEG (`icvCvt_CMYK2BGR_8u_C4C3R`): samples as Adobe stores them
    /// (inverted), `x' = k − ((255 − x)·k >> 8)`.
    fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
        for px in cmyk.chunks_exact(4) {
            let k = u32::from(px[3]);
            for &x in &px[..3] {
                rgb.push((k - (((255 - u32::from(x)) * k) >> 8)) as u8);
            }
        }
        rgb
    }

    /// The orientation in the first APP1 `Exif` segment before the image data, if there is one
    /// that reads. Malformed segments count as upright, as in the `image` crate path.
    pub(super) fn exif_orientation(jpeg: &[u8]) -> Option<Orientation> {
        if !jpeg.starts_with(&[0xff, 0xd8]) {
            return None;
        }
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            if jpeg[i] != 0xff {
                return None;
            }
            let marker = jpeg[i + 1];
            match marker {
                0xff => i += 1,                                  // fill byte
                0x01 | 0xd0..=0xd8 => i += 2,                    // no length
                0xd9 | 0xda => return None,                      // EOI, start of scan: no more metadata
                _ => {
                    let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
                    let segment = jpeg.get(i + 4..(i + 2 + len).max(i + 4))?;
                    if marker == 0xe1 {
                        if let Some(exif) = segment.strip_prefix(b"Exif\0\0") {
                            return Orientation::from_exif_chunk(exif);
                        }
                    }
                    if len < 2 {
                        return None;
                    }
                    i += 2 + len;
                }
            }
        }
        None
    }
}

/// What a decoder may allocate for an image's header and metadata (ICC profile, EXIF, text).
const MAX_HEADER_BYTES: u64 = 64 << 20;

fn alloc_limits(limits: &DecodeLimits) -> image::Limits {
    let mut l = image::Limits::no_limits();
    l.max_alloc = Some(limits.max_decoded_bytes);
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageBuffer, ImageEncoder, Luma, LumaA, Rgb, Rgba};
    use std::path::PathBuf;

    /// A per-test scratch directory under the target dir (no tempfile dependency needed).
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("msf-runtime-image-tests-{}", std::process::id()))
            .join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn png_bytes(data: &[u8], w: u32, h: u32, ct: ExtendedColorType) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(data, w, h, ct)
            .unwrap();
        out
    }

    fn load(p: &Path) -> Result<RgbImage> {
        load_image(p, &DecodeLimits::default())
    }

    #[test]
    fn grey_is_replicated() {
        let d = scratch("grey");
        let img = ImageBuffer::<Luma<u8>, _>::from_fn(5, 3, |x, y| Luma([(x * 40 + y) as u8]));
        let p = write(
            &d,
            "g.png",
            &png_bytes(img.as_raw(), 5, 3, ExtendedColorType::L8),
        );
        let rgb = load(&p).unwrap();
        assert_eq!(rgb.dimensions(), (5, 3));
        for (x, y, px) in rgb.enumerate_pixels() {
            let v = (x * 40 + y) as u8;
            assert_eq!(px.0, [v, v, v]);
        }
    }

    #[test]
    fn grey_alpha_and_rgba_drop_alpha_without_compositing() {
        let d = scratch("alpha");
        let la = ImageBuffer::<LumaA<u8>, _>::from_fn(4, 4, |x, y| {
            LumaA([(x * 50 + y) as u8, (x * 60) as u8])
        });
        let p = write(
            &d,
            "la.png",
            &png_bytes(la.as_raw(), 4, 4, ExtendedColorType::La8),
        );
        for (x, y, px) in load(&p).unwrap().enumerate_pixels() {
            let v = (x * 50 + y) as u8;
            assert_eq!(px.0, [v, v, v]);
        }
        let rgba = ImageBuffer::<Rgba<u8>, _>::from_fn(4, 4, |x, y| {
            Rgba([x as u8 * 9, y as u8 * 7, 200, 0])
        });
        let p = write(
            &d,
            "rgba.png",
            &png_bytes(rgba.as_raw(), 4, 4, ExtendedColorType::Rgba8),
        );
        for (x, y, px) in load(&p).unwrap().enumerate_pixels() {
            assert_eq!(
                px.0,
                [x as u8 * 9, y as u8 * 7, 200],
                "alpha 0 must not blank the pixel"
            );
        }
    }

    #[test]
    fn sixteen_bit_rounds_like_image_crate() {
        let d = scratch("16bit");
        // 129 and 65406 are where rounding and OpenCV-style `>> 8` disagree.
        let vals: [u16; 6] = [0, 128, 129, 385, 65406, 65535];
        // PNG stores 16-bit samples big-endian; the encoder takes native-endian u16 bytes.
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let p = write(
            &d,
            "g16.png",
            &png_bytes(&bytes, 6, 1, ExtendedColorType::L16),
        );
        let rgb = load(&p).unwrap();
        let got: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        let want: Vec<u8> = vals
            .iter()
            .map(|&v| ((u32::from(v) + 128) / 257) as u8)
            .collect();
        assert_eq!(got, want);
        assert_eq!(want, vec![0, 0, 1, 1, 254, 255]);
        assert_ne!(
            want,
            vals.iter().map(|&v| (v >> 8) as u8).collect::<Vec<_>>()
        );
        // RGB 16
        let rgb16: Vec<u8> = [1000u16, 30000, 65535]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let p = write(
            &d,
            "rgb16.png",
            &png_bytes(&rgb16, 1, 1, ExtendedColorType::Rgb16),
        );
        assert_eq!(load(&p).unwrap().get_pixel(0, 0).0, [4, 117, 255]);
    }

    /// A 2×1 palette PNG (bit depth 8), built by hand: the `image` encoder cannot write palettes.
    #[test]
    fn palette_png_is_expanded() {
        let d = scratch("palette");
        let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(2u32.to_be_bytes());
        ihdr.extend(1u32.to_be_bytes());
        ihdr.extend([8, 3, 0, 0, 0]); // depth 8, colour type 3 (palette)
        push_chunk(&mut f, b"IHDR", &ihdr);
        push_chunk(&mut f, b"PLTE", &[10, 20, 30, 200, 150, 100]);
        // Scanline: filter 0, indices 1, 0.
        push_chunk(&mut f, b"IDAT", &zlib_stored(&[0u8, 1, 0]));
        push_chunk(&mut f, b"IEND", &[]);
        let p = write(&d, "pal.png", &f);
        let rgb = load(&p).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [200, 150, 100]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
    }

    /// A CMYK (Adobe, inverted) JPEG made once with Pillow 13 (`Image.new("CMYK", (16, 8))`, left half
    /// C=0 M=255 Y=255 K=0, right half K=128, quality 95); the decoder must hand back RGB.
    #[test]
    fn cmyk_jpeg_is_converted_to_rgb() {
        let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cmyk.jpg"));
        let rgb = load(&p).unwrap();
        assert_eq!(rgb.dimensions(), (16, 8));
        let left = rgb.get_pixel(3, 4).0;
        let right = rgb.get_pixel(12, 4).0;
        // Pure red (M+Y) on the left; mid grey (K 50 %) on the right. JPEG loss: a few levels.
        assert!(
            left[0] > 240 && left[1] < 15 && left[2] < 15,
            "left {left:?}"
        );
        for c in right {
            assert!((120..=135).contains(&c), "right {right:?}");
        }
    }

    fn push_chunk(f: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        f.extend((data.len() as u32).to_be_bytes());
        f.extend(kind);
        f.extend(data);
        let mut c = kind.to_vec();
        c.extend(data);
        f.extend(crc32(&c).to_be_bytes());
    }

    /// A zlib stream of one final stored (uncompressed) block.
    fn zlib_stored(raw: &[u8]) -> Vec<u8> {
        let n = raw.len() as u16;
        let mut z = vec![0x78, 0x01, 0x01];
        z.extend(n.to_le_bytes());
        z.extend((!n).to_le_bytes());
        z.extend(raw);
        z.extend(adler32(raw).to_be_bytes());
        z
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in bytes {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    /// JPEG with an APP1 Exif segment (little-endian TIFF, one IFD entry: Orientation) spliced in
    /// right after SOI.
    fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
        let mut jpg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpg, 100)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        let mut tiff = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
        tiff.extend(1u16.to_le_bytes()); // one entry
        tiff.extend(0x0112u16.to_le_bytes()); // Orientation
        tiff.extend(3u16.to_le_bytes()); // SHORT
        tiff.extend(1u32.to_le_bytes()); // count
        tiff.extend(orientation.to_le_bytes());
        tiff.extend([0, 0]);
        tiff.extend(0u32.to_le_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff);
        let mut out = jpg[..2].to_vec(); // SOI
        out.extend([0xff, 0xe1]);
        out.extend(((app1.len() + 2) as u16).to_be_bytes());
        out.extend(app1);
        out.extend(&jpg[2..]);
        out
    }

    #[test]
    fn exif_orientation_6_rotates_clockwise() {
        let d = scratch("exif");
        // 32×16 stored: left half black, right half white. Orientation 6 = rotate 90° clockwise
        // for display, so the upright image is 16×32 with the white half at the bottom.
        let stored = RgbImage::from_fn(32, 16, |x, _| {
            if x < 16 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let p = write(&d, "rot6.jpg", &jpeg_with_orientation(&stored, 6));
        let up = load(&p).unwrap();
        assert_eq!(up.dimensions(), (16, 32));
        assert!(up.get_pixel(8, 4).0[0] < 30, "top must be black");
        assert!(up.get_pixel(8, 28).0[0] > 225, "bottom must be white");
        // Orientation 1 leaves it alone.
        let p = write(&d, "rot1.jpg", &jpeg_with_orientation(&stored, 1));
        assert_eq!(load(&p).unwrap().dimensions(), (32, 16));
    }

    fn photo_jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7 + y) as u8, (y * 5) as u8, (x * y % 251) as u8]));
        let mut jpg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpg, 90).write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8).unwrap();
        jpg
    }

    #[test]
    fn truncated_and_corrupt_jpegs_are_decode_errors_naming_the_file() {
        let d = scratch("jpeg-broken");
        let jpg = photo_jpeg(64, 48);
        let mut cases = vec![
            ("header-only.jpg", jpg[..jpg.len().min(200)].to_vec()),
            ("soi-only.jpg", b"\xff\xd8".to_vec()),
            ("garbage-after-soi.jpg", [&b"\xff\xd8\xff"[..], &[0x5a; 300][..]].concat()),
        ];
        // Cut inside the image data: libjpeg-turbo says so; zune-jpeg decodes what is there.
        if cfg!(feature = "turbojpeg") {
            cases.push(("cut.jpg", jpg[..jpg.len() * 6 / 10].to_vec()));
        }
        for (name, bytes) in cases {
            let p = write(&d, name, &bytes);
            let e = load(&p).unwrap_err();
            assert!(matches!(e, Error::Decode { .. }), "{name}: {e:?}");
            assert!(e.to_string().contains(name), "{e}");
        }
        // The intact file decodes.
        assert_eq!(load(&write(&d, "whole.jpg", &jpg)).unwrap().dimensions(), (64, 48));
    }

    #[test]
    fn huge_jpeg_header_is_refused_before_allocating() {
        let d = scratch("jpeg-bomb");
        let mut jpg = photo_jpeg(16, 16);
        // SOF0: FF C0, length (2), precision (1), height (2), width (2).
        let sof = jpg.windows(2).position(|w| w == [0xff, 0xc0]).expect("baseline JPEG");
        jpg[sof + 5..sof + 7].copy_from_slice(&60000u16.to_be_bytes());
        jpg[sof + 7..sof + 9].copy_from_slice(&60000u16.to_be_bytes());
        let p = write(&d, "bomb.jpg", &jpg);
        match load(&p) {
            Err(Error::ImageTooLarge { width: 60000, height: 60000, .. }) => {}
            other => panic!("expected ImageTooLarge, got {other:?}"),
        }
    }

    #[cfg(feature = "turbojpeg")]
    #[test]
    fn jpeg_with_thousands_of_scans_is_refused_before_decoding() {
        let d = scratch("jpeg-scans");
        let jpg = photo_jpeg(16, 16);
        let sos = jpg.windows(2).position(|w| w == [0xff, 0xda]).expect("a scan");
        let header_len = usize::from(u16::from_be_bytes([jpg[sos + 2], jpg[sos + 3]]));
        let empty_scan = &jpg[sos..sos + 2 + header_len];
        // 16000×16000 and 100 more (empty) scans: 101 walks over 256 M pixels.
        let mut bomb = jpg[..jpg.len() - 2].to_vec();
        for _ in 0..100 {
            bomb.extend_from_slice(empty_scan);
        }
        bomb.extend_from_slice(b"\xff\xd9");
        let sof = bomb.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        bomb[sof + 5..sof + 9].copy_from_slice(&[0x3e, 0x80, 0x3e, 0x80]);
        assert_eq!(super::turbo::count_scans(&jpg), 1);
        assert_eq!(super::turbo::count_scans(&bomb), 101);
        let t = std::time::Instant::now();
        let e = load(&write(&d, "scans.jpg", &bomb)).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{e:?}");
        assert!(e.to_string().contains("101 scans"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "{:?}", t.elapsed());
    }

    #[test]
    fn malformed_exif_counts_as_upright() {
        let d = scratch("jpeg-exif-bad");
        let img = RgbImage::from_fn(8, 4, |x, _| Rgb([x as u8 * 30, 0, 0]));
        let mut jpg = jpeg_with_orientation(&img, 6);
        // Break the TIFF header's byte-order mark inside the APP1 segment.
        let at = jpg.windows(4).position(|w| w == b"II\x2a\x00").unwrap();
        jpg[at] = b'X';
        assert_eq!(load(&write(&d, "bad-exif.jpg", &jpg)).unwrap().dimensions(), (8, 4));
        // An APP1 length running past the end of the file: no orientation, and a decode error or
        // an upright image, never a panic.
        let mut cut = jpeg_with_orientation(&img, 6);
        cut.truncate(30);
        let _ = load(&write(&d, "cut-exif.jpg", &cut));
    }

    #[test]
    fn huge_header_is_refused_before_allocating() {
        let d = scratch("bomb");
        let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(60000u32.to_be_bytes());
        ihdr.extend(60000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // RGB8
        push_chunk(&mut f, b"IHDR", &ihdr);
        // A token IDAT (one stored zlib block): decoders read up to the first data chunk.
        push_chunk(&mut f, b"IDAT", &zlib_stored(&[0u8; 4]));
        push_chunk(&mut f, b"IEND", &[]);
        assert!(f.len() < 100);
        let p = write(&d, "bomb.png", &f);
        match load(&p) {
            Err(
                e @ Error::ImageTooLarge {
                    width: 60000,
                    height: 60000,
                    ..
                },
            ) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("60000x60000") && msg.contains("bomb.png"),
                    "{msg}"
                );
            }
            other => panic!("expected ImageTooLarge, got {other:?}"),
        }
        // With the pixel cap raised but the byte cap kept, the byte cap refuses it.
        let lim = DecodeLimits {
            max_width: 100_000,
            max_height: 100_000,
            max_pixels: u64::MAX,
            ..Default::default()
        };
        assert!(matches!(
            load_image(&p, &lim),
            Err(Error::ImageTooLarge { .. })
        ));
    }

    #[test]
    fn empty_truncated_and_missing_files_are_errors_naming_the_file() {
        let d = scratch("broken");
        let p = write(&d, "empty.png", b"");
        let e = load(&p).unwrap_err();
        assert!(e.to_string().contains("empty.png"), "{e}");

        let img = RgbImage::from_fn(64, 64, |x, y| {
            Rgb([(x * 3) as u8, (y * 3) as u8, (x * y % 256) as u8])
        });
        let full = png_bytes(img.as_raw(), 64, 64, ExtendedColorType::Rgb8);
        let p = write(&d, "trunc.png", &full[..full.len() / 2]);
        let e = load(&p).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{e:?}");
        assert!(e.to_string().contains("trunc.png"), "{e}");

        let p = write(&d, "junk.png", b"this is not an image at all");
        assert!(matches!(load(&p).unwrap_err(), Error::Decode { .. }));

        let e = load(&d.join("does-not-exist.png")).unwrap_err();
        assert!(
            matches!(e, Error::Io { .. }) && e.to_string().contains("does-not-exist.png"),
            "{e}"
        );
    }

    #[test]
    fn zero_width_header_is_an_error() {
        let d = scratch("zero");
        let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(0u32.to_be_bytes());
        ihdr.extend(10u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        push_chunk(&mut f, b"IHDR", &ihdr);
        push_chunk(&mut f, b"IEND", &[]);
        let p = write(&d, "zero.png", &f);
        // The png crate already rejects a zero dimension in IHDR; either way it is a typed error.
        let e = load(&p).unwrap_err();
        assert!(
            matches!(e, Error::EmptyImage { .. } | Error::Decode { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("zero.png"), "{e}");
    }

    #[test]
    fn other_formats_decode() {
        let d = scratch("formats");
        let img = RgbImage::from_fn(7, 5, |x, y| Rgb([x as u8 * 30, y as u8 * 50, 77]));
        for (name, fmt) in [
            ("a.bmp", image::ImageFormat::Bmp),
            ("a.tiff", image::ImageFormat::Tiff),
            ("a.webp", image::ImageFormat::WebP), // lossless
            ("a.gif", image::ImageFormat::Gif),
        ] {
            let p = d.join(name);
            img.save_with_format(&p, fmt).unwrap();
            let got = load(&p).unwrap();
            assert_eq!(got.dimensions(), (7, 5), "{name}");
            if fmt != image::ImageFormat::Gif {
                assert_eq!(got.as_raw(), img.as_raw(), "{name} must be lossless");
            }
        }
    }
}
