//! STROKE: poly-lines (Bézier segments flattened) drawn with a square pen,
//! optionally dashed, through a ROP descriptor. Like spice's software canvas
//! this is a simple rasteriser (no joins or caps beyond the square pen).
//!
//! Work is bounded: segments are clipped to the canvas before they are
//! walked, and a stroke stops after a fixed number of pen stamps.

use super::{Brush, Canvas, Pixel, Region, Ropd};

/// A poly-line in pixel coordinates (16.16 fixed point).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    pub points: Vec<(i64, i64)>,
}

/// Builds lines from path segments in 28.4 fixed point.
impl Line {
    /// A point given in 28.4 fixed point.
    pub fn fixed_28_4(x: i32, y: i32) -> (i64, i64) {
        (i64::from(x) << 12, i64::from(y) << 12)
    }

    /// Appends a cubic Bézier from the last point through `c1`, `c2` to `end`.
    pub fn curve_to(&mut self, c1: (i64, i64), c2: (i64, i64), end: (i64, i64)) {
        let Some(&start) = self.points.last() else {
            self.points.push(end);
            return;
        };
        let length = [start, c1, c2, end]
            .windows(2)
            .map(|w| (w[1].0 - w[0].0).abs().max((w[1].1 - w[0].1).abs()) >> 16)
            .sum::<i64>();
        let steps = (length / 4).clamp(1, 64);
        for i in 1..=steps {
            let t = i as f64 / steps as f64;
            let u = 1.0 - t;
            let f = |a: i64, b: i64, c: i64, d: i64| {
                (u * u * u * a as f64
                    + 3.0 * u * u * t * b as f64
                    + 3.0 * u * t * t * c as f64
                    + t * t * t * d as f64) as i64
            };
            self.points
                .push((f(start.0, c1.0, c2.0, end.0), f(start.1, c1.1, c2.1, end.1)));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineStyle {
    /// Pen side in pixels (at least 1; at most 64 is used).
    pub width: u32,
    /// Alternating on/off lengths in pixels; empty for a solid line.
    pub dashes: Vec<u32>,
    pub start_with_gap: bool,
}

/// Most pen pixels one stroke may touch.
const MAX_STAMPED_PIXELS: u64 = 1 << 24;
const MAX_PEN: u32 = 64;

struct Plotter<'a, 'b> {
    canvas: &'a mut Canvas<'b>,
    region: &'a Region,
    brush: &'a Brush<'a>,
    rop: Ropd,
    pen: i32,
    budget: u64,
    scratch: Vec<Pixel>,
    brush_px: Vec<Pixel>,
}

impl Plotter<'_, '_> {
    fn stamp(&mut self, x: i32, y: i32) {
        let half = (self.pen - 1) / 2;
        let cost = (self.pen as u64) * (self.pen as u64);
        if self.budget < cost {
            self.budget = 0;
            return;
        }
        self.budget -= cost;
        for py in y - half..y - half + self.pen {
            for px in x - half..x - half + self.pen {
                if !self.canvas.contains(px, py) || !self.region.contains(px, py) {
                    continue;
                }
                self.brush
                    .row(py, px, px + 1, &mut self.brush_px, &mut self.scratch);
                let p = self.brush_px.first().copied().unwrap_or(0);
                let d = self.canvas.get(px, py);
                self.canvas.set(
                    px,
                    py,
                    self.rop.apply(p, d, Ropd::INVERS_BRUSH, Ropd::INVERS_DEST),
                );
            }
        }
    }
}

/// A point in pixels.
type Point = (f64, f64);

/// Clips the segment to `[lo, hi]` (Liang-Barsky); returns the clipped end
/// points and how far along the original (0..1) the start moved.
fn clip(a: Point, b: Point, lo: Point, hi: Point) -> Option<(Point, Point, f64)> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - lo.0),
        (dx, hi.0 - a.0),
        (-dy, a.1 - lo.1),
        (dy, hi.1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then_some((
        (a.0 + t0 * dx, a.1 + t0 * dy),
        (a.0 + t1 * dx, a.1 + t1 * dy),
        t0,
    ))
}

/// Draws `lines` with `style`, combining `brush` with the destination.
pub fn stroke(
    canvas: &mut Canvas,
    region: &Region,
    lines: &[Line],
    style: &LineStyle,
    brush: &Brush,
    rop: Ropd,
) {
    let pen = style.width.clamp(1, MAX_PEN) as i32;
    let area = canvas.area();
    let margin = f64::from(pen);
    let lo = (f64::from(area.left) - margin, f64::from(area.top) - margin);
    let hi = (
        f64::from(area.right) + margin,
        f64::from(area.bottom) + margin,
    );
    let dash_total: u64 = style.dashes.iter().map(|&d| u64::from(d)).sum();
    let mut plot = Plotter {
        canvas,
        region,
        brush,
        rop,
        pen,
        budget: MAX_STAMPED_PIXELS,
        scratch: Vec::new(),
        brush_px: Vec::new(),
    };
    for line in lines {
        // Distance along the line, for dashes.
        let mut travelled: u64 = 0;
        for (k, pair) in line.points.windows(2).enumerate() {
            if plot.budget == 0 {
                return;
            }
            let to_px = |p: (i64, i64)| (p.0 as f64 / 65536.0, p.1 as f64 / 65536.0);
            let (a, b) = (to_px(pair[0]), to_px(pair[1]));
            let full = (b.0 - a.0).abs().max((b.1 - a.1).abs()).round() as u64;
            let Some((ca, cb, t0)) = clip(a, b, lo, hi) else {
                travelled = travelled.saturating_add(full);
                continue;
            };
            let skipped = (t0 * full as f64) as u64;
            let (mut x, mut y) = (ca.0.round() as i64, ca.1.round() as i64);
            let (x1, y1) = (cb.0.round() as i64, cb.1.round() as i64);
            let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
            let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
            let mut err = dx + dy;
            let mut step = 0u64;
            loop {
                // The first pixel of a joined segment was the last of the previous one.
                let joint = k > 0 && step == 0 && skipped == 0;
                let along = travelled.saturating_add(skipped).saturating_add(step);
                let on = dash_total == 0
                    || dash_on(&style.dashes, dash_total, along, style.start_with_gap);
                if on && !joint {
                    plot.stamp(x as i32, y as i32);
                }
                if (x == x1 && y == y1) || plot.budget == 0 {
                    break;
                }
                let e2 = 2 * err;
                if e2 >= dy {
                    err += dy;
                    x += sx;
                }
                if e2 <= dx {
                    err += dx;
                    y += sy;
                }
                step += 1;
            }
            travelled = travelled.saturating_add(full);
        }
    }
}

fn dash_on(dashes: &[u32], total: u64, along: u64, start_with_gap: bool) -> bool {
    let mut at = along % total;
    for (i, &d) in dashes.iter().enumerate() {
        if at < u64::from(d) {
            return (i % 2 == 0) != start_with_gap;
        }
        at -= u64::from(d);
    }
    true
}
