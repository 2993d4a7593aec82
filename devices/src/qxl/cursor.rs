//! Converts guest cursor images (QXLCursor types ALPHA, MONO, COLOR4..32)
//! into the display's ARGB cursor shapes (docs/qxl.md §7.11). Pixels the ARGB
//! format cannot express ("invert the screen") become opaque black.

use super::commands::CursorImage;
use crate::display::CursorShape;

const ALPHA: u16 = 0;
const MONO: u16 = 1;
const COLOR4: u16 = 2;
const COLOR8: u16 = 3;
const COLOR16: u16 = 4;
const COLOR24: u16 = 5;
const COLOR32: u16 = 6;

const BLACK: [u8; 4] = [0, 0, 0, 0xff];
const WHITE: [u8; 4] = [0xff, 0xff, 0xff, 0xff];
const CLEAR: [u8; 4] = [0, 0, 0, 0];

/// Bit (x, y) of a 1-bit plane with rows of `(w + 7) / 8` bytes, MSB first.
fn bit(plane: &[u8], w: usize, x: usize, y: usize) -> bool {
    let row = w.div_ceil(8);
    plane
        .get(y * row + x / 8)
        .is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
}

fn le(bytes: &[u8]) -> u32 {
    bytes.iter().rev().fold(0, |v, &b| (v << 8) | u32::from(b))
}

fn bgra(rgb: u32) -> [u8; 4] {
    [rgb as u8, (rgb >> 8) as u8, (rgb >> 16) as u8, 0xff]
}

/// The ARGB shape of a (validated) cursor image.
pub fn to_shape(image: &CursorImage) -> CursorShape {
    let (w, h) = (usize::from(image.width), usize::from(image.height));
    let d = &image.data;
    let mut argb = Vec::with_capacity(w * h * 4);
    let mask_size = h * w.div_ceil(8);
    // Colour types: pixels (and palette), then the AND mask.
    let color = |pixel_bytes: usize, palette: usize| {
        let pixels = d.get(..pixel_bytes).unwrap_or(&[]);
        let pal = d.get(pixel_bytes..pixel_bytes + palette * 4).unwrap_or(&[]);
        let and = d.get(pixel_bytes + palette * 4..).unwrap_or(&[]);
        (pixels, pal, and)
    };
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let px = match image.kind {
                ALPHA => d
                    .get(4 * i..4 * i + 4)
                    .map_or(CLEAR, |p| [p[0], p[1], p[2], p[3]]),
                MONO => {
                    let and = bit(d, w, x, y);
                    let xor = bit(&d[mask_size.min(d.len())..], w, x, y);
                    match (and, xor) {
                        (false, false) => BLACK,
                        (false, true) => WHITE,
                        (true, false) => CLEAR,
                        (true, true) => BLACK,
                    }
                }
                kind => {
                    let (rgb, and) = match kind {
                        COLOR4 => {
                            let (p, pal, and) = color(h * w.div_ceil(2), 16);
                            let byte = p.get(y * w.div_ceil(2) + x / 2).copied().unwrap_or(0);
                            let idx = if x % 2 == 0 { byte >> 4 } else { byte & 0xf };
                            let at = usize::from(idx) * 4;
                            (pal.get(at..at + 4).map_or(0, le), and)
                        }
                        COLOR8 => {
                            let (p, pal, and) = color(w * h, 256);
                            let at = usize::from(p.get(i).copied().unwrap_or(0)) * 4;
                            (pal.get(at..at + 4).map_or(0, le), and)
                        }
                        COLOR16 => {
                            let (p, _, and) = color(w * h * 2, 0);
                            let v = p.get(2 * i..2 * i + 2).map_or(0, le);
                            let c = |s: u32| ((v >> s) & 0x1f) << 3 | ((v >> s) & 0x1f) >> 2;
                            ((c(10) << 16) | (c(5) << 8) | c(0), and)
                        }
                        COLOR24 => {
                            let (p, _, and) = color(w * h * 3, 0);
                            (p.get(3 * i..3 * i + 3).map_or(0, le), and)
                        }
                        COLOR32 => {
                            let (p, _, and) = color(w * h * 4, 0);
                            (p.get(4 * i..4 * i + 4).map_or(0, le), and)
                        }
                        _ => (0, &[][..]),
                    };
                    let rgb = rgb & 0x00ff_ffff;
                    match (bit(and, w, x, y), rgb == 0x00ff_ffff) {
                        (false, _) => bgra(rgb),
                        (true, true) => BLACK,
                        (true, false) => CLEAR,
                    }
                }
            };
            argb.extend_from_slice(&px);
        }
    }
    CursorShape {
        width: image.width,
        height: image.height,
        hot_x: image.hot_x.min(image.width.saturating_sub(1)),
        hot_y: image.hot_y.min(image.height.saturating_sub(1)),
        argb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(kind: u16, w: u16, h: u16, data: Vec<u8>) -> CursorImage {
        CursorImage {
            unique: 0,
            kind,
            width: w,
            height: h,
            hot_x: 1,
            hot_y: 9,
            data,
        }
    }

    #[test]
    fn alpha_is_copied() {
        let data: Vec<u8> = (0..16).collect();
        let s = to_shape(&image(ALPHA, 2, 2, data.clone()));
        assert_eq!(s.argb, data);
        assert_eq!(
            (s.hot_x, s.hot_y),
            (1, 1),
            "hot spot clamped into the image"
        );
    }

    #[test]
    fn mono_and_xor_planes() {
        // 2x1: AND = 01, XOR = 11 (MSB first): pixel 0 white, pixel 1 invert.
        let s = to_shape(&image(MONO, 2, 1, vec![0b0100_0000, 0b1100_0000]));
        assert_eq!(&s.argb[0..4], &WHITE);
        assert_eq!(&s.argb[4..8], &BLACK);
        let s = to_shape(&image(MONO, 2, 1, vec![0b1000_0000, 0b0000_0000]));
        assert_eq!(&s.argb[0..4], &CLEAR);
        assert_eq!(&s.argb[4..8], &BLACK);
    }

    #[test]
    fn color32_with_mask() {
        let mut data = vec![0x11, 0x22, 0x33, 0, 0xff, 0xff, 0xff, 0];
        data.push(0b0100_0000);
        let s = to_shape(&image(COLOR32, 2, 1, data));
        assert_eq!(&s.argb[0..4], &[0x11, 0x22, 0x33, 0xff]);
        assert_eq!(&s.argb[4..8], &BLACK, "AND set on white: invert");
    }
}
