//! A software 2D renderer for 32-bit surfaces: the QXL draw operations
//! (fill, copy, blend, opaque, blackness/whiteness/invers, ROP3,
//! transparent, alpha blend, copy bits, stroke, text, composite) with clip
//! regions and 1-bit masks.
//!
//! It knows nothing of QXL or guest memory: it draws into a [`Canvas`]
//! (rows of B, G, R, X/A bytes in host memory) and reads pixels through the
//! [`PixelSource`] and [`BitSource`] traits, which the device implements on
//! top of whatever holds the pixels. Pixels are `u32` values 0xAARRGGBB.
//! Every operation writes only inside `region ∩ canvas` and never panics on
//! any input: coordinates are clipped, sources are read in bounds only.

mod blit;
mod composite;
mod fill;
pub mod region;
pub mod rop;
mod sample;
mod stroke;
mod text;

pub use blit::{alpha_blend, blit, copy_bits, opaque, rop3_blit, transparent};
pub use composite::{composite, CompositeParams, Refused, Repeat, Sampling};
pub use fill::{fill, special};
pub use region::Region;
pub use rop::Ropd;
pub use sample::{Filter, Scaled};
pub use stroke::{stroke, Line, LineStyle};
pub use text::{text, GlyphBits, GlyphDepth};

use super::{Rect, Surface};

/// 0xAARRGGBB.
pub type Pixel = u32;

/// Pixels drawn into (B, G, R, X/A bytes per pixel, rows `stride` apart).
pub struct Canvas<'a> {
    bytes: &'a mut [u8],
    stride: usize,
    /// The part of the surface these bytes hold (surface coordinates).
    area: Rect,
    /// The fourth byte is alpha (ARGB surfaces), not padding.
    alpha: bool,
}

impl<'a> Canvas<'a> {
    /// `bytes` holds `area` of a surface, rows `stride` bytes apart; `None`
    /// if it is too short or the area is empty.
    pub fn new(bytes: &'a mut [u8], stride: usize, area: Rect, alpha: bool) -> Option<Self> {
        if area.is_empty() {
            return None;
        }
        let row = area.width() as usize * 4;
        let needed = stride
            .checked_mul(area.height() as usize - 1)?
            .checked_add(row)?;
        (stride >= row && bytes.len() >= needed).then_some(Canvas {
            bytes,
            stride,
            area,
            alpha,
        })
    }

    /// A display head's whole surface.
    pub fn for_surface(surface: &'a mut Surface) -> Self {
        let area = surface.bounds();
        Canvas {
            stride: surface.stride,
            bytes: &mut surface.pixels,
            area,
            alpha: false,
        }
    }

    pub fn area(&self) -> Rect {
        self.area
    }

    pub fn has_alpha(&self) -> bool {
        self.alpha
    }

    fn offset(&self, x: i32, y: i32) -> usize {
        (y - self.area.top) as usize * self.stride + (x - self.area.left) as usize * 4
    }

    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.area.left && x < self.area.right && y >= self.area.top && y < self.area.bottom
    }

    /// The pixel at (x, y); 0 outside the canvas.
    pub fn get(&self, x: i32, y: i32) -> Pixel {
        if !self.contains(x, y) {
            return 0;
        }
        let at = self.offset(x, y);
        u32::from_le_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }

    /// Sets the pixel at (x, y); nothing outside the canvas.
    pub fn set(&mut self, x: i32, y: i32, value: Pixel) {
        if self.contains(x, y) {
            let at = self.offset(x, y);
            self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
    }

    /// The bytes of row `y`, columns `[x0, x1)` (which must be inside).
    fn span_mut(&mut self, y: i32, x0: i32, x1: i32) -> &mut [u8] {
        let at = self.offset(x0, y);
        &mut self.bytes[at..at + (x1 - x0) as usize * 4]
    }

    /// Copies pixels inside the canvas: the row span `[x0, x1)` of row `y`
    /// from `(x0 + dx, y + dy)` (both inside), overlap-safe.
    fn move_span(&mut self, y: i32, x0: i32, x1: i32, dx: i32, dy: i32) {
        let from = self.offset(x0 + dx, y + dy);
        let to = self.offset(x0, y);
        let len = (x1 - x0) as usize * 4;
        self.bytes.copy_within(from..from + len, to);
    }
}

/// Where pixels are read from.
pub trait PixelSource {
    fn width(&self) -> u32;
    fn height(&self) -> u32;
    /// Whether the alpha byte means something (else reads give 0xff).
    fn has_alpha(&self) -> bool;
    /// Reads `out.len()` pixels of row `y` starting at column `x`; the caller
    /// keeps `x + out.len() <= width` and `y < height`.
    fn read_row(&self, x: u32, y: u32, out: &mut [Pixel]);
    /// Copies the same pixels as raw B, G, R, X/A bytes when the source
    /// stores them that way; false otherwise (then `read_row` is used).
    fn copy_row(&self, _x: u32, _y: u32, _out: &mut [u8]) -> bool {
        false
    }
}

/// 1-bit images (masks).
pub trait BitSource {
    fn width(&self) -> u32;
    fn height(&self) -> u32;
    /// Writes 0 or 1 for `out.len()` pixels of row `y` from column `x` (in bounds).
    fn read_bits(&self, x: u32, y: u32, out: &mut [u8]);
}

/// A copy of part of a surface in host memory (self-bitmaps, overlapping copies).
#[derive(Debug, Clone)]
pub struct Snapshot {
    width: u32,
    height: u32,
    pixels: Vec<Pixel>,
    alpha: bool,
}

impl Snapshot {
    /// Copies `rect` of the canvas (clipped to it; outside reads as 0).
    pub fn of_canvas(canvas: &Canvas, rect: Rect) -> Snapshot {
        let width = rect.width().max(0) as u32;
        let height = rect.height().max(0) as u32;
        let mut pixels = Vec::with_capacity(width as usize * height as usize);
        for y in rect.top..rect.bottom {
            for x in rect.left..rect.right {
                pixels.push(canvas.get(x, y));
            }
        }
        Snapshot {
            width,
            height,
            pixels,
            alpha: canvas.alpha,
        }
    }

    /// Pixels from another source (all of it).
    pub fn of_source(source: &dyn PixelSource, rect: Rect) -> Snapshot {
        let bounds = Rect::new(0, 0, source.width() as i32, source.height() as i32);
        let r = rect.intersect(&bounds);
        let width = rect.width().max(0) as u32;
        let height = rect.height().max(0) as u32;
        let mut pixels = vec![0; width as usize * height as usize];
        let mut row = vec![0; r.width() as usize];
        for y in r.top..r.bottom {
            source.read_row(r.left as u32, y as u32, &mut row);
            let at = (y - rect.top) as usize * width as usize + (r.left - rect.left) as usize;
            pixels[at..at + row.len()].copy_from_slice(&row);
        }
        Snapshot {
            width,
            height,
            pixels,
            alpha: source.has_alpha(),
        }
    }
}

impl PixelSource for Snapshot {
    fn width(&self) -> u32 {
        self.width
    }
    fn height(&self) -> u32 {
        self.height
    }
    fn has_alpha(&self) -> bool {
        self.alpha
    }
    fn read_row(&self, x: u32, y: u32, out: &mut [Pixel]) {
        let at = y as usize * self.width as usize + x as usize;
        if let Some(src) = self.pixels.get(at..at + out.len()) {
            out.copy_from_slice(src);
            if !self.alpha {
                out.iter_mut().for_each(|p| *p |= 0xff00_0000);
            }
        }
    }
}

/// A brush: nothing, a colour, or a tiled image.
pub enum Brush<'a> {
    None,
    Solid(Pixel),
    Pattern {
        source: &'a dyn PixelSource,
        /// Surface position of the pattern's top-left pixel.
        origin: (i32, i32),
    },
}

impl Brush<'_> {
    /// The brush's pixels for row `y`, columns `[x0, x1)`.
    fn row(&self, y: i32, x0: i32, x1: i32, out: &mut Vec<Pixel>, scratch: &mut Vec<Pixel>) {
        out.clear();
        match self {
            Brush::None => out.resize((x1 - x0) as usize, 0),
            Brush::Solid(c) => out.resize((x1 - x0) as usize, *c),
            Brush::Pattern { source, origin } => {
                let (w, h) = (source.width() as i64, source.height() as i64);
                if w == 0 || h == 0 {
                    out.resize((x1 - x0) as usize, 0);
                    return;
                }
                let py = (i64::from(y) - i64::from(origin.1)).rem_euclid(h) as u32;
                scratch.clear();
                scratch.resize(w as usize, 0);
                source.read_row(0, py, scratch);
                for x in x0..x1 {
                    let px = (i64::from(x) - i64::from(origin.0)).rem_euclid(w) as usize;
                    out.push(scratch[px]);
                }
            }
        }
    }
}

/// A 1-bit mask placed on the destination.
pub struct Mask<'a> {
    pub bits: &'a dyn BitSource,
    /// Draw where the bit is 0 instead of 1.
    pub invert: bool,
    /// The mask pixel that lies at `anchor` on the destination.
    pub origin: (i32, i32),
    pub anchor: (i32, i32),
}

impl Mask<'_> {
    /// 1 where drawing is allowed, for row `y`, columns `[x0, x1)`.
    fn row(&self, y: i32, x0: i32, x1: i32, out: &mut Vec<u8>) {
        let n = (x1 - x0) as usize;
        let outside = u8::from(self.invert);
        out.clear();
        out.resize(n, outside);
        let my = i64::from(self.origin.1) + i64::from(y) - i64::from(self.anchor.1);
        if my < 0 || my >= i64::from(self.bits.height()) {
            return;
        }
        let mx0 = i64::from(self.origin.0) + i64::from(x0) - i64::from(self.anchor.0);
        let from = mx0.max(0);
        let to = (mx0 + n as i64).min(i64::from(self.bits.width()));
        if from >= to {
            return;
        }
        let start = (from - mx0) as usize;
        let len = (to - from) as usize;
        self.bits
            .read_bits(from as u32, my as u32, &mut out[start..start + len]);
        if self.invert {
            out[start..start + len].iter_mut().for_each(|b| *b ^= 1);
        }
    }
}

/// Reads the pixel at byte offset `i` of a row.
#[inline]
fn load(row: &[u8], i: usize) -> Pixel {
    u32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]])
}

#[inline]
fn store(row: &mut [u8], i: usize, value: Pixel) {
    row[4 * i..4 * i + 4].copy_from_slice(&value.to_le_bytes());
}

/// Calls `f` for every span of `region` inside the canvas, with the span's
/// destination bytes and (when masked) which of its pixels may be drawn.
fn paint(
    canvas: &mut Canvas,
    region: &Region,
    mask: Option<&Mask>,
    mut f: impl FnMut(i32, i32, i32, &mut [u8], Option<&[u8]>),
) {
    let region = region.intersect_rect(canvas.area());
    let mut allow = Vec::new();
    region.for_each_span(false, false, |y, x0, x1| {
        if let Some(m) = mask {
            m.row(y, x0, x1, &mut allow);
            if allow.iter().all(|&a| a == 0) {
                return;
            }
        }
        let row = canvas.span_mut(y, x0, x1);
        f(y, x0, x1, row, mask.map(|_| allow.as_slice()));
    });
}

#[cfg(test)]
mod tests;
