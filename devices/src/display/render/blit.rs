//! Operations that read a source image onto the destination: COPY / BLEND,
//! OPAQUE, ROP3, TRANSPARENT, ALPHA_BLEND, and COPY_BITS (inside the canvas).

use super::{load, paint, rop::rop3, store, Brush, Canvas, Mask, Pixel, Region, Ropd, Scaled};

/// Reads the source for each span and calls `f(dest, src, brush, i)` per
/// allowed pixel.
fn combine(
    canvas: &mut Canvas,
    region: &Region,
    src: &Scaled,
    brush: Option<&Brush>,
    mask: Option<&Mask>,
    f: impl Fn(Pixel, Pixel, Pixel) -> Pixel,
) {
    let region = region.intersect_rect(src.valid_dest());
    let (mut src_row, mut brush_row, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    paint(canvas, &region, mask, |y, x0, x1, row, allow| {
        src.row(y, x0, x1, &mut src_row, &mut scratch);
        match brush {
            Some(b) => b.row(y, x0, x1, &mut brush_row, &mut scratch),
            None => {
                brush_row.clear();
                brush_row.resize(src_row.len(), 0);
            }
        }
        for i in 0..(x1 - x0) as usize {
            if allow.is_none_or(|a| a[i] != 0) {
                store(row, i, f(load(row, i), src_row[i], brush_row[i]));
            }
        }
    });
}

/// COPY and BLEND: `dest = rop(src, dest)`.
pub fn blit(canvas: &mut Canvas, region: &Region, src: &Scaled, rop: Ropd, mask: Option<&Mask>) {
    if rop.is_plain_put() && mask.is_none() && src.is_identity() {
        // The common case (every Linux draw): straight row copies.
        let region = region.intersect_rect(src.valid_dest());
        let (dx, dy) = (
            src.src_area.left - src.dest.left,
            src.src_area.top - src.dest.top,
        );
        let mut pixels = Vec::new();
        let alpha = canvas.has_alpha();
        paint(canvas, &region, None, |y, x0, x1, row, _| {
            let (sx, sy) = ((x0 + dx) as u32, (y + dy) as u32);
            if src.source.copy_row(sx, sy, row) {
                if alpha && !src.source.has_alpha() {
                    // An xRGB source on an ARGB canvas: opaque.
                    row.chunks_exact_mut(4).for_each(|p| p[3] = 0xff);
                }
                return;
            }
            pixels.clear();
            pixels.resize((x1 - x0) as usize, 0);
            src.source.read_row(sx, sy, &mut pixels);
            for (i, p) in pixels.iter().enumerate() {
                store(row, i, *p);
            }
        });
        return;
    }
    combine(canvas, region, src, None, mask, |d, s, _| {
        rop.apply(s, d, Ropd::INVERS_SRC, Ropd::INVERS_DEST)
    });
}

/// OPAQUE: the source is copied, then the brush combined with it (the
/// descriptor's destination role is played by the source).
pub fn opaque(
    canvas: &mut Canvas,
    region: &Region,
    src: &Scaled,
    brush: &Brush,
    rop: Ropd,
    mask: Option<&Mask>,
) {
    let has_brush = !matches!(brush, Brush::None);
    combine(canvas, region, src, Some(brush), mask, |_, s, p| {
        if has_brush {
            rop.apply(p, s, Ropd::INVERS_BRUSH, Ropd::INVERS_SRC)
        } else {
            s
        }
    });
}

/// ROP3: a ternary raster operation of brush, source and destination.
pub fn rop3_blit(
    canvas: &mut Canvas,
    region: &Region,
    src: &Scaled,
    brush: &Brush,
    code: u8,
    mask: Option<&Mask>,
) {
    combine(canvas, region, src, Some(brush), mask, |d, s, p| {
        rop3(code, p, s, d)
    });
}

/// TRANSPARENT: copies source pixels whose colour (low 24 bits) is not `key`.
pub fn transparent(canvas: &mut Canvas, region: &Region, src: &Scaled, key: Pixel) {
    combine(canvas, region, src, None, None, |d, s, _| {
        if (s ^ key) & 0x00ff_ffff == 0 {
            d
        } else {
            s
        }
    });
}

/// ALPHA_BLEND: `src` (premultiplied; per-pixel alpha only if
/// `src_alpha`) scaled by `alpha`/255, composited OVER the destination.
pub fn alpha_blend(canvas: &mut Canvas, region: &Region, src: &Scaled, alpha: u8, src_alpha: bool) {
    let a = u32::from(alpha);
    let dest_alpha = canvas.has_alpha();
    combine(canvas, region, src, None, None, |d, s, _| {
        let s = if src_alpha { s } else { s | 0xff00_0000 };
        let sa = mul(s >> 24, a);
        let mut out = 0;
        for shift in [0, 8, 16] {
            let sc = mul((s >> shift) & 0xff, a);
            let dc = (d >> shift) & 0xff;
            out |= (sc + mul(dc, 255 - sa)).min(255) << shift;
        }
        let da = if dest_alpha { (d >> 24) & 0xff } else { 0xff };
        out | ((sa + mul(da, 255 - sa)).min(255) << 24)
    });
}

/// `a * b / 255`, rounded.
#[inline]
pub(crate) fn mul(a: u32, b: u32) -> u32 {
    let t = a * b + 128;
    (t + (t >> 8)) >> 8
}

/// COPY_BITS: every pixel (x, y) of the region gets the pixel at
/// (x + dx, y + dy), as if the source were copied first (memmove order).
/// Pixels whose source lies outside the canvas are left alone.
pub fn copy_bits(canvas: &mut Canvas, region: &Region, dx: i32, dy: i32) {
    let area = canvas.area();
    let region = region
        .intersect_rect(area)
        .intersect_rect(area.translate(dx.saturating_neg(), dy.saturating_neg()));
    // Rows whose source is below are done top-down, and vice versa; within a
    // row, spans whose source is to the left go right-to-left.
    let upwards = dy < 0;
    let leftwards = dy == 0 && dx < 0;
    region.for_each_span(upwards, leftwards, |y, x0, x1| {
        canvas.move_span(y, x0, x1, dx, dy);
    });
}
