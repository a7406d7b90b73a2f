//! Masks as indexed PNGs in the DAVIS convention: pixel value = slot id, the DAVIS/PASCAL VOC
//! palette (0 black, 1 (128,0,0), 2 (0,128,0), …, 255 (224,224,192) = void). Evaluation tools read
//! the indices; image viewers show the colours.

use std::io::{BufRead, Seek, Write};
use std::path::Path;

use super::{write_atomic, LabelMap};
use crate::error::Result;

/// The DAVIS palette: colour `i` spreads the bits of `i` over R, G, B from the top bit down
/// (bit 0 → R bit 7, bit 1 → G bit 7, bit 2 → B bit 7, bit 3 → R bit 6, …), as DAVIS and VOC do.
pub fn davis_palette() -> [[u8; 3]; 256] {
    let mut pal = [[0u8; 3]; 256];
    for (i, rgb) in pal.iter_mut().enumerate() {
        let mut c = i;
        for j in 0..8 {
            for (ch, v) in rgb.iter_mut().enumerate() {
                *v |= (((c >> ch) & 1) as u8) << (7 - j);
            }
            c >>= 3;
        }
    }
    pal
}

/// Encode `map` as an 8-bit indexed PNG with the DAVIS palette.
pub fn encode(map: &LabelMap, out: &mut dyn Write) -> std::io::Result<()> {
    let mut enc = ::png::Encoder::new(out, map.width, map.height);
    enc.set_color(::png::ColorType::Indexed);
    enc.set_depth(::png::BitDepth::Eight);
    enc.set_palette(davis_palette().concat());
    // Label maps are long runs of equal bytes: the fast deflate already packs them tightly.
    enc.set_compression(::png::Compression::Fast);
    let mut w = enc.write_header().map_err(std::io::Error::other)?;
    w.write_image_data(&map.labels).map_err(std::io::Error::other)?;
    w.finish().map_err(std::io::Error::other)
}

/// Write `map` to `path` atomically as an indexed PNG.
pub fn write_mask(path: &Path, map: &LabelMap) -> Result<()> {
    write_atomic(path, |w| encode(map, w))
}

/// Read an 8-bit indexed (or greyscale) PNG's raw indices, as DAVIS tools do (no palette expansion).
pub fn decode(input: impl BufRead + Seek) -> std::io::Result<LabelMap> {
    let mut dec = ::png::Decoder::new(input);
    dec.set_transformations(::png::Transformations::IDENTITY);
    let mut reader = dec.read_info().map_err(std::io::Error::other)?;
    let size = reader.output_buffer_size().ok_or_else(|| std::io::Error::other("PNG too large"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(std::io::Error::other)?;
    if info.bit_depth != ::png::BitDepth::Eight || !matches!(info.color_type, ::png::ColorType::Indexed | ::png::ColorType::Grayscale) {
        return Err(std::io::Error::other(format!("not an 8-bit indexed PNG ({:?}, {:?})", info.color_type, info.bit_depth)));
    }
    buf.truncate(info.buffer_size());
    Ok(LabelMap { width: info.width, height: info.height, labels: buf })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn palette_matches_davis() {
        let p = davis_palette();
        assert_eq!(p[0], [0, 0, 0]);
        assert_eq!(p[1], [128, 0, 0]);
        assert_eq!(p[2], [0, 128, 0]);
        assert_eq!(p[3], [128, 128, 0]);
        assert_eq!(p[4], [0, 0, 128]);
        assert_eq!(p[7], [128, 128, 128]);
        assert_eq!(p[8], [64, 0, 0]);
        assert_eq!(p[255], [224, 224, 192]);
    }

    #[test]
    fn indices_round_trip_and_viewers_see_the_palette() {
        let map = LabelMap { width: 5, height: 2, labels: vec![0, 1, 2, 3, 255, 4, 4, 0, 1, 6] };
        let mut bytes = Vec::new();
        encode(&map, &mut bytes).unwrap();
        assert_eq!(decode(Cursor::new(&bytes)).unwrap(), map);
        let rgb = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(rgb.get_pixel(1, 0).0, [128, 0, 0]);
        assert_eq!(rgb.get_pixel(4, 0).0, [224, 224, 192]);
    }
}
