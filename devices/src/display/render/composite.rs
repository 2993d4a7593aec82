//! COMPOSITE: XRender/pixman-style `composite(op, src, mask, dest)` on
//! premultiplied ARGB, with affine transforms (16.16, destination to
//! source), nearest/bilinear filtering, the four repeat modes, component
//! alpha, the Porter-Duff operators, and the PDF blend modes.

use super::sample::bilinear;
use super::{load, paint, store, Canvas, Filter, Pixel, PixelSource, Region};
use crate::display::Rect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    None,
    Normal,
    Pad,
    Reflect,
}

impl Repeat {
    pub fn from_qxl(v: u8) -> Repeat {
        match v {
            1 => Repeat::Normal,
            2 => Repeat::Pad,
            3 => Repeat::Reflect,
            _ => Repeat::None,
        }
    }

    /// Maps coordinate `v` into `[0, len)`, or `None` (transparent).
    fn apply(self, v: i64, len: i64) -> Option<i64> {
        if len <= 0 {
            return None;
        }
        match self {
            Repeat::None => (0..len).contains(&v).then_some(v),
            Repeat::Normal => Some(v.rem_euclid(len)),
            Repeat::Pad => Some(v.clamp(0, len - 1)),
            Repeat::Reflect => {
                let m = v.rem_euclid(2 * len);
                Some(if m < len { m } else { 2 * len - 1 - m })
            }
        }
    }
}

/// How one image (source or mask) is read.
pub struct Sampling<'a> {
    pub source: &'a dyn PixelSource,
    /// 16.16 fixed point `[m0 m1 m2; m3 m4 m5]`, destination to source.
    pub transform: Option<[i32; 6]>,
    pub filter: Filter,
    pub repeat: Repeat,
    /// Image position at the bounding box's top-left.
    pub origin: (i32, i32),
}

pub struct CompositeParams<'a> {
    /// Operator (`QXL_OP_*`, pixman numbering).
    pub op: u8,
    pub src: Sampling<'a>,
    pub mask: Option<Sampling<'a>>,
    pub component_alpha: bool,
    /// The destination rectangle (bounding box).
    pub dest: Rect,
}

/// Source pixels one image may have read per destination pixel, beyond
/// [`BASE_READS`] (spans of 16: at most four per destination pixel).
pub const READS_PER_PIXEL: u64 = 64;
/// Source pixels any composite may read.
pub const BASE_READS: u64 = 1 << 24;

/// Why a composite was not (fully) drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// An operator this renderer does not know (nothing drawn).
    UnknownOperator,
    /// It would read more source pixels than its budget; drawing stops.
    OverBudget,
}

/// Pixels read from a source at a time: a short span, so that a transform
/// that visits a new row for every destination pixel (a rotation) costs
/// the same whatever the source's width.
const SPAN: i64 = 16;
/// Spans kept (bilinear sampling reads 2x2 texels, which may straddle two
/// spans on each of two rows).
const SPANS: usize = 4;

/// A cached span: (row, first column) and its pixels.
type Span = (Option<(i64, i64)>, [Pixel; SPAN as usize]);

/// Reads one image's texels through a small cache of spans, most recently
/// used first, within a budget of pixels read.
struct Reader<'a> {
    s: &'a Sampling<'a>,
    spans: [Span; SPANS],
    budget: u64,
    over: bool,
}

impl<'a> Reader<'a> {
    fn new(s: &'a Sampling<'a>, budget: u64) -> Self {
        Reader {
            s,
            spans: [(None, [0; SPAN as usize]); SPANS],
            budget,
            over: false,
        }
    }

    fn texel(&mut self, x: i64, y: i64) -> Pixel {
        let (w, h) = (
            i64::from(self.s.source.width()),
            i64::from(self.s.source.height()),
        );
        let (Some(x), Some(y)) = (self.s.repeat.apply(x, w), self.s.repeat.apply(y, h)) else {
            return 0;
        };
        let key = Some((y, x - x % SPAN));
        match self.spans.iter().position(|(k, _)| *k == key) {
            Some(i) => self.spans[..=i].rotate_right(1),
            None => {
                let first = x - x % SPAN;
                let n = SPAN.min(w - first) as usize;
                if self.budget < n as u64 {
                    self.over = true;
                    self.budget = 0;
                    return 0;
                }
                self.budget -= n as u64;
                self.spans.rotate_right(1);
                let (k, pixels) = &mut self.spans[0];
                self.s
                    .source
                    .read_row(first as u32, y as u32, &mut pixels[..n]);
                *k = key;
            }
        }
        self.spans[0].1[(x % SPAN) as usize]
    }

    /// The sample for image coordinates (x, y) (integers: pixel (x, y)).
    fn sample(&mut self, x: i64, y: i64) -> Pixel {
        let Some(m) = self.s.transform else {
            return self.texel(x, y);
        };
        // The pixel centre, transformed (16.16).
        let (cx, cy) = ((x << 16) + 0x8000, (y << 16) + 0x8000);
        let m = m.map(i128::from);
        let (cx, cy) = (i128::from(cx), i128::from(cy));
        let clamp = |v: i128| v.clamp(-(1i128 << 60), 1i128 << 60) as i64;
        let u = clamp((m[0] * cx + m[1] * cy) / 65536 + m[2]);
        let v = clamp((m[3] * cx + m[4] * cy) / 65536 + m[5]);
        match self.s.filter {
            Filter::Nearest => self.texel((u - 1) >> 16, (v - 1) >> 16),
            Filter::Bilinear => {
                let (u, v) = (u - 0x8000, v - 0x8000);
                let (x0, y0) = (u >> 16, v >> 16);
                let (wx, wy) = (((u & 0xffff) >> 8) as u32, ((v & 0xffff) >> 8) as u32);
                let tl = self.texel(x0, y0);
                let tr = self.texel(x0 + 1, y0);
                let bl = self.texel(x0, y0 + 1);
                let br = self.texel(x0 + 1, y0 + 1);
                bilinear(tl, tr, bl, br, wx, wy)
            }
        }
    }
}

fn channels(p: Pixel) -> [f32; 4] {
    // a, r, g, b in 0..1
    [
        ((p >> 24) & 0xff) as f32 / 255.0,
        ((p >> 16) & 0xff) as f32 / 255.0,
        ((p >> 8) & 0xff) as f32 / 255.0,
        (p & 0xff) as f32 / 255.0,
    ]
}

fn pack(c: [f32; 4]) -> Pixel {
    let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u32;
    (q(c[0]) << 24) | (q(c[1]) << 16) | (q(c[2]) << 8) | q(c[3])
}

/// Porter-Duff factors (Fa, Fb) for source/destination alphas.
fn porter_duff(op: u8, sa: f32, da: f32) -> Option<(f32, f32)> {
    Some(match op {
        0x00 => (0.0, 0.0),
        0x01 => (1.0, 0.0),
        0x02 => (0.0, 1.0),
        0x03 => (1.0, 1.0 - sa),
        0x04 => (1.0 - da, 1.0),
        0x05 => (da, 0.0),
        0x06 => (0.0, sa),
        0x07 => (1.0 - da, 0.0),
        0x08 => (0.0, 1.0 - sa),
        0x09 => (da, 1.0 - sa),
        0x0a => (1.0 - da, sa),
        0x0b => (1.0 - da, 1.0 - sa),
        0x0c => (1.0, 1.0),
        0x0d => (
            if sa > 0.0 {
                ((1.0 - da) / sa).min(1.0)
            } else {
                1.0
            },
            1.0,
        ),
        _ => return None,
    })
}

/// A separable blend function on unpremultiplied colours.
fn blend_channel(op: u8, cs: f32, cb: f32) -> f32 {
    let hard_light = |cb: f32, cs: f32| {
        if cs <= 0.5 {
            cb * 2.0 * cs
        } else {
            let s = 2.0 * cs - 1.0;
            cb + s - cb * s
        }
    };
    match op {
        0x30 => cs * cb,
        0x31 => cs + cb - cs * cb,
        0x32 => hard_light(cs, cb),
        0x33 => cs.min(cb),
        0x34 => cs.max(cb),
        0x35 => {
            if cb == 0.0 {
                0.0
            } else if cs >= 1.0 {
                1.0
            } else {
                (cb / (1.0 - cs)).min(1.0)
            }
        }
        0x36 => {
            if cb >= 1.0 {
                1.0
            } else if cs <= 0.0 {
                0.0
            } else {
                1.0 - ((1.0 - cb) / cs).min(1.0)
            }
        }
        0x37 => hard_light(cb, cs),
        0x38 => {
            if cs <= 0.5 {
                cb - (1.0 - 2.0 * cs) * cb * (1.0 - cb)
            } else {
                let d = if cb <= 0.25 {
                    ((16.0 * cb - 12.0) * cb + 4.0) * cb
                } else {
                    cb.sqrt()
                };
                cb + (2.0 * cs - 1.0) * (d - cb)
            }
        }
        0x39 => (cs - cb).abs(),
        _ => cs + cb - 2.0 * cs * cb,
    }
}

fn lum(c: [f32; 3]) -> f32 {
    0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]
}

fn clip_color(c: [f32; 3]) -> [f32; 3] {
    let l = lum(c);
    let n = c[0].min(c[1]).min(c[2]);
    let x = c[0].max(c[1]).max(c[2]);
    c.map(|v| {
        let mut v = v;
        if n < 0.0 && l - n != 0.0 {
            v = l + (v - l) * l / (l - n);
        }
        if x > 1.0 && x - l != 0.0 {
            v = l + (v - l) * (1.0 - l) / (x - l);
        }
        v
    })
}

fn set_lum(c: [f32; 3], l: f32) -> [f32; 3] {
    let d = l - lum(c);
    clip_color(c.map(|v| v + d))
}

fn sat(c: [f32; 3]) -> f32 {
    c[0].max(c[1]).max(c[2]) - c[0].min(c[1]).min(c[2])
}

fn set_sat(c: [f32; 3], s: f32) -> [f32; 3] {
    let (mx, mn) = (c[0].max(c[1]).max(c[2]), c[0].min(c[1]).min(c[2]));
    if mx - mn <= 0.0 {
        return [0.0; 3];
    }
    c.map(|v| (v - mn) * s / (mx - mn))
}

/// The blend modes (0x30..=0x3e) on premultiplied colours.
fn blend(op: u8, s: [f32; 4], d: [f32; 4]) -> [f32; 4] {
    let (sa, da) = (s[0], d[0]);
    let un = |c: [f32; 4]| -> [f32; 3] {
        if c[0] > 0.0 {
            [c[1] / c[0], c[2] / c[0], c[3] / c[0]]
        } else {
            [0.0; 3]
        }
    };
    let (cs, cb) = (un(s), un(d));
    let mixed: [f32; 3] = match op {
        0x3b => set_lum(set_sat(cs, sat(cb)), lum(cb)),
        0x3c => set_lum(set_sat(cb, sat(cs)), lum(cb)),
        0x3d => set_lum(cs, lum(cb)),
        0x3e => set_lum(cb, lum(cs)),
        _ => [0, 1, 2].map(|i| blend_channel(op, cs[i], cb[i])),
    };
    let mut out = [sa + da - sa * da, 0.0, 0.0, 0.0];
    for i in 0..3 {
        out[i + 1] = s[i + 1] * (1.0 - da) + d[i + 1] * (1.0 - sa) + sa * da * mixed[i];
    }
    out
}

/// Whether `op` is an operator this renderer knows.
pub fn known_operator(op: u8) -> bool {
    op <= 0x0d || (0x30..=0x3e).contains(&op)
}

/// Composites over `region ∩ dest`. Refused for an unknown operator
/// (nothing drawn) or when an image would be read beyond its budget
/// ([`BASE_READS`] plus [`READS_PER_PIXEL`] per destination pixel; the
/// pixels drawn until then stay).
pub fn composite(
    canvas: &mut Canvas,
    region: &Region,
    params: &CompositeParams,
) -> Result<(), Refused> {
    if !known_operator(params.op) {
        return Err(Refused::UnknownOperator);
    }
    let dest_alpha = canvas.has_alpha();
    let region = region.intersect_rect(params.dest);
    let budget = BASE_READS.saturating_add(region.area().saturating_mul(READS_PER_PIXEL));
    let mut src = Reader::new(&params.src, budget);
    let mut mask = params.mask.as_ref().map(|m| Reader::new(m, budget));
    let (bx, by) = (i64::from(params.dest.left), i64::from(params.dest.top));
    paint(canvas, &region, None, |y, x0, x1, row, _| {
        for (i, x) in (x0..x1).enumerate() {
            if src.over || mask.as_ref().is_some_and(|m| m.over) {
                return;
            }
            let (rx, ry) = (i64::from(x) - bx, i64::from(y) - by);
            // Sources without alpha read as opaque (outside a non-repeating
            // image they are transparent).
            let s = src.sample(
                rx + i64::from(params.src.origin.0),
                ry + i64::from(params.src.origin.1),
            );
            let mut sc = channels(s);
            if let (Some(m), Some(ms)) = (mask.as_mut(), params.mask.as_ref()) {
                let mp = m.sample(rx + i64::from(ms.origin.0), ry + i64::from(ms.origin.1));
                let mc = channels(mp);
                if params.component_alpha {
                    let sa = sc[0];
                    for c in 1..4 {
                        sc[c] *= mc[c];
                    }
                    sc[0] = sa * mc[0];
                } else {
                    sc = sc.map(|v| v * mc[0]);
                }
            }
            if src.over || mask.as_ref().is_some_and(|m| m.over) {
                return; // (nothing stored from a texel read over budget)
            }
            let d = load(row, i);
            let dc = channels(if dest_alpha { d } else { d | 0xff00_0000 });
            let out = if let Some((fa, fb)) = porter_duff(params.op, sc[0], dc[0]) {
                let mut o = [0.0f32; 4];
                for c in 0..4 {
                    o[c] = sc[c] * fa + dc[c] * fb;
                }
                o
            } else {
                blend(params.op, sc, dc)
            };
            store(row, i, pack(out));
        }
    });
    if src.over || mask.is_some_and(|m| m.over) {
        return Err(Refused::OverBudget);
    }
    Ok(())
}
