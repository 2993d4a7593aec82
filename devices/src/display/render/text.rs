//! TEXT: raster glyphs (1, 4 or 8 bits of coverage per pixel, rows top
//! down, leftmost pixel in the most significant bits) drawn with a brush.
//! 1-bit glyphs combine the brush through the ROP descriptor where a bit is
//! set; deeper glyphs mix that result with the destination by coverage.

use super::{load, paint, store, Brush, Canvas, Pixel, Region, Ropd};
use crate::display::Rect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlyphDepth {
    A1,
    A4,
    A8,
}

/// One glyph placed on the destination.
pub struct GlyphBits<'a> {
    /// Destination of the glyph's top-left pixel.
    pub x: i32,
    pub y: i32,
    pub width: u16,
    pub height: u16,
    /// `height` rows of `ceil(width * depth / 8)` bytes.
    pub data: &'a [u8],
}

impl GlyphBits<'_> {
    /// Coverage 0..=255 of glyph pixel (gx, gy).
    fn coverage(&self, depth: GlyphDepth, gx: u32, gy: u32) -> u8 {
        let bits = match depth {
            GlyphDepth::A1 => 1,
            GlyphDepth::A4 => 4,
            GlyphDepth::A8 => 8,
        };
        let row = (u32::from(self.width) * bits).div_ceil(8) as usize;
        let bit = gx as usize * bits as usize;
        let Some(&byte) = self.data.get(gy as usize * row + bit / 8) else {
            return 0;
        };
        match depth {
            GlyphDepth::A1 => {
                if byte & (0x80 >> (bit % 8)) != 0 {
                    255
                } else {
                    0
                }
            }
            GlyphDepth::A4 => {
                let v = if bit.is_multiple_of(8) {
                    byte >> 4
                } else {
                    byte & 0xf
                };
                v * 17
            }
            GlyphDepth::A8 => byte,
        }
    }
}

/// Draws the glyphs' coverage with `brush` combined through `rop`.
pub fn text(
    canvas: &mut Canvas,
    region: &Region,
    glyphs: &[GlyphBits],
    depth: GlyphDepth,
    brush: &Brush,
    rop: Ropd,
) {
    let (mut brush_row, mut scratch) = (Vec::new(), Vec::new());
    for g in glyphs {
        let rect = Rect::new(
            g.x,
            g.y,
            g.x.saturating_add(i32::from(g.width)),
            g.y.saturating_add(i32::from(g.height)),
        );
        let glyph_region = region.intersect_rect(rect);
        paint(canvas, &glyph_region, None, |y, x0, x1, row, _| {
            brush.row(y, x0, x1, &mut brush_row, &mut scratch);
            for (i, &p) in brush_row.iter().enumerate().take((x1 - x0) as usize) {
                let (gx, gy) = ((x0 - g.x) as u32 + i as u32, (y - g.y) as u32);
                let c = u32::from(g.coverage(depth, gx, gy));
                if c == 0 {
                    continue;
                }
                let d = load(row, i);
                let r = rop.apply(p, d, Ropd::INVERS_BRUSH, Ropd::INVERS_DEST);
                store(row, i, if c == 255 { r } else { mix(d, r, c) });
            }
        });
    }
}

/// `a` mixed towards `b` by `t`/255, per channel.
fn mix(a: Pixel, b: Pixel, t: u32) -> Pixel {
    let mut out = 0;
    for shift in [0, 8, 16, 24] {
        let (ca, cb) = ((a >> shift) & 0xff, (b >> shift) & 0xff);
        out |= ((ca * (255 - t) + cb * t + 127) / 255) << shift;
    }
    out
}
