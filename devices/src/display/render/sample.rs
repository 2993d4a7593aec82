//! Reading a source rectangle stretched onto a destination rectangle:
//! identity, nearest-neighbour or bilinear.

use super::{Pixel, PixelSource, Rect};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
}

/// `src_area` of `source`, shown at `dest`.
pub struct Scaled<'a> {
    pub source: &'a dyn PixelSource,
    pub src_area: Rect,
    pub dest: Rect,
    pub filter: Filter,
}

impl Scaled<'_> {
    pub fn is_identity(&self) -> bool {
        self.src_area.width() == self.dest.width() && self.src_area.height() == self.dest.height()
    }

    fn bounds(&self) -> Rect {
        Rect::new(
            0,
            0,
            self.source.width() as i32,
            self.source.height() as i32,
        )
    }

    /// The destination pixels that have a source pixel.
    pub fn valid_dest(&self) -> Rect {
        let src = self.src_area.intersect(&self.bounds());
        if src.is_empty() || self.dest.is_empty() {
            return Rect::default();
        }
        if self.is_identity() {
            let dx = self.dest.left - self.src_area.left;
            let dy = self.dest.top - self.src_area.top;
            src.translate(dx, dy).intersect(&self.dest)
        } else {
            // Scaled reads clamp to the source area, which overlaps the image.
            self.dest
        }
    }

    /// The source pixels for destination row `y`, columns `[x0, x1)` (inside
    /// [`Scaled::valid_dest`]).
    pub fn row(&self, y: i32, x0: i32, x1: i32, out: &mut Vec<Pixel>, scratch: &mut Vec<Pixel>) {
        let n = (x1 - x0).max(0) as usize;
        out.clear();
        out.resize(n, 0);
        let src = self.src_area.intersect(&self.bounds());
        if n == 0 || src.is_empty() {
            return;
        }
        if self.is_identity() {
            let sx = x0 - self.dest.left + self.src_area.left;
            let sy = y - self.dest.top + self.src_area.top;
            if sx >= 0
                && sy >= 0
                && sx + n as i32 <= self.source.width() as i32
                && (sy as u32) < self.source.height()
            {
                self.source.read_row(sx as u32, sy as u32, out);
            }
            return;
        }
        let (dw, dh) = (self.dest.width(), self.dest.height());
        let (sw, sh) = (self.src_area.width(), self.src_area.height());
        match self.filter {
            Filter::Nearest => {
                let sy = nearest(
                    y,
                    (self.dest.top, dh),
                    (self.src_area.top, sh),
                    src.top,
                    src.bottom,
                );
                scratch.clear();
                scratch.resize(src.width() as usize, 0);
                self.source.read_row(src.left as u32, sy as u32, scratch);
                for (i, x) in (x0..x1).enumerate() {
                    let sx = nearest(
                        x,
                        (self.dest.left, dw),
                        (self.src_area.left, sw),
                        src.left,
                        src.right,
                    );
                    out[i] = scratch[(sx - src.left) as usize];
                }
            }
            Filter::Bilinear => {
                // Sample positions in 16.16 fixed point, pixel centres aligned.
                let pos = |v: i32, d0: i32, dl: i32, s0: i32, sl: i32| -> i64 {
                    let rel = (i64::from(v - d0) * 2 + 1) * i64::from(sl) * 65536
                        / (2 * i64::from(dl.max(1)));
                    i64::from(s0) * 65536 + rel - 32768
                };
                let fy = pos(y, self.dest.top, dh, self.src_area.top, sh);
                let clamp_y =
                    |v: i64| v.clamp(i64::from(src.top), i64::from(src.bottom) - 1) as u32;
                let (y0, y1) = (clamp_y(fy >> 16), clamp_y((fy >> 16) + 1));
                let wy = (fy & 0xffff) as u32 >> 8;
                let width = src.width() as usize;
                scratch.clear();
                scratch.resize(2 * width, 0);
                let (top, bottom) = scratch.split_at_mut(width);
                self.source.read_row(src.left as u32, y0, top);
                self.source.read_row(src.left as u32, y1, bottom);
                let clamp_x = |v: i64| {
                    (v.clamp(i64::from(src.left), i64::from(src.right) - 1) - i64::from(src.left))
                        as usize
                };
                for (i, x) in (x0..x1).enumerate() {
                    let fx = pos(x, self.dest.left, dw, self.src_area.left, sw);
                    let (a, b) = (clamp_x(fx >> 16), clamp_x((fx >> 16) + 1));
                    let wx = (fx & 0xffff) as u32 >> 8;
                    out[i] = bilinear(top[a], top[b], bottom[a], bottom[b], wx, wy);
                }
            }
        }
    }
}

/// Nearest source coordinate for destination coordinate `v`: the
/// destination span `(start, len)` maps onto the source span `(start, len)`;
/// the result is clamped into `[lo, hi)`.
fn nearest(v: i32, dest: (i32, i32), src: (i32, i32), lo: i32, hi: i32) -> i32 {
    let rel = i64::from(v - dest.0) * 2 + 1;
    let s = i64::from(src.0) + rel * i64::from(src.1) / (2 * i64::from(dest.1.max(1)));
    (s.clamp(i64::from(lo), i64::from(hi) - 1)) as i32
}

/// Weighted mix of four pixels; weights in 1/256.
pub(crate) fn bilinear(tl: Pixel, tr: Pixel, bl: Pixel, br: Pixel, wx: u32, wy: u32) -> Pixel {
    let mut out = 0;
    for shift in [0, 8, 16, 24] {
        let c = |p: Pixel| (p >> shift) & 0xff;
        let top = c(tl) * (256 - wx) + c(tr) * wx;
        let bottom = c(bl) * (256 - wx) + c(br) * wx;
        let v = (top * (256 - wy) + bottom * wy + (1 << 15)) >> 16;
        out |= v.min(255) << shift;
    }
    out
}
