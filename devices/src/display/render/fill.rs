//! FILL (a brush combined with the destination through a ROP descriptor)
//! and BLACKNESS / WHITENESS / INVERS.

use super::{load, paint, store, Brush, Canvas, Mask, Pixel, Region, Ropd};

/// `dest = rop(brush, dest)` over `region` (where the mask allows).
pub fn fill(canvas: &mut Canvas, region: &Region, brush: &Brush, rop: Ropd, mask: Option<&Mask>) {
    if let (Brush::Solid(color), None, true) = (brush, mask, rop.is_plain_put()) {
        let bytes = color.to_le_bytes();
        paint(canvas, region, None, |_, _, _, row, _| {
            row.chunks_exact_mut(4)
                .for_each(|px| px.copy_from_slice(&bytes));
        });
        return;
    }
    let (mut brush_row, mut scratch) = (Vec::new(), Vec::new());
    paint(canvas, region, mask, |y, x0, x1, row, allow| {
        brush.row(y, x0, x1, &mut brush_row, &mut scratch);
        for i in 0..(x1 - x0) as usize {
            if allow.is_none_or(|a| a[i] != 0) {
                let d = load(row, i);
                store(
                    row,
                    i,
                    rop.apply(brush_row[i], d, Ropd::INVERS_BRUSH, Ropd::INVERS_DEST),
                );
            }
        }
    });
}

/// BLACKNESS (`Ropd::OP_BLACKNESS`), WHITENESS, INVERS: operations that
/// need no input.
pub fn special(canvas: &mut Canvas, region: &Region, op: u16, mask: Option<&Mask>) {
    let rop = Ropd(op);
    paint(canvas, region, mask, |_, x0, x1, row, allow| {
        for i in 0..(x1 - x0) as usize {
            if allow.is_none_or(|a| a[i] != 0) {
                let d: Pixel = load(row, i);
                store(row, i, rop.apply(0, d, 0, 0));
            }
        }
    });
}
