//! The QXL command model after parsing and validation: plain Rust types,
//! free of SPICE. Small fields are copied out of guest memory once; pixel
//! data stays in place in guest memory, as [`PixelData`] (validated ranges of
//! the device's BARs), until the command is released.
//!
//! Rectangles are [`Rect`]s (left/top inclusive, right/bottom exclusive), in
//! the coordinates of the surface named by the command. Colours are raw pixel
//! values of the destination format (0x00RRGGBB for 32-bit surfaces).

pub use crate::display::render::rop::Ropd;
pub use crate::display::Rect;

use super::memory::{BarMemory, GuestRange};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

/// Where a drawable may draw, in addition to its bounding box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clip {
    None,
    Rects(Vec<Rect>),
}

/// A surface a drawable reads, and the part of it (spice's dependency hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurfaceDependency {
    pub surface_id: u32,
    pub rect: Rect,
}

/// `QXL_CMD_DRAW`.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawable {
    pub surface_id: u32,
    /// spice's tree-optimisation hint (`QXLEffectType`); not used for drawing.
    pub effect: u8,
    pub bbox: Rect,
    pub clip: Clip,
    /// The area of the destination to snapshot before drawing; image
    /// references of address 0 mean that snapshot ([`Image::SelfBitmap`]).
    pub self_bitmap: Option<Rect>,
    pub mm_time: u32,
    pub dependencies: [Option<SurfaceDependency>; 3],
    pub op: DrawOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleMode {
    Interpolate,
    Nearest,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Brush {
    None,
    Solid(u32),
    /// An image tiled with its top-left at `origin`.
    Pattern {
        image: Image,
        origin: Point,
    },
}

/// A 1-bit mask: draw where its bit is 1 (0 when `invert`); `origin` is the
/// mask pixel at the bounding box's top-left.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub invert: bool,
    pub origin: Point,
    pub image: Image,
}

/// A source image copied (scaled) to the bounding box.
#[derive(Debug, Clone, PartialEq)]
pub struct Blit {
    pub src: Image,
    pub src_area: Rect,
    pub rop: Ropd,
    pub scale: ScaleMode,
    pub mask: Option<Mask>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DrawOp {
    Nop,
    Fill {
        brush: Brush,
        rop: Ropd,
        mask: Option<Mask>,
    },
    /// Copy the source, then combine the brush with it.
    Opaque {
        blit: Blit,
        brush: Brush,
    },
    Copy(Blit),
    Blend(Blit),
    Blackness {
        mask: Option<Mask>,
    },
    Whiteness {
        mask: Option<Mask>,
    },
    Invers {
        mask: Option<Mask>,
    },
    /// A ternary raster operation of brush, source and destination.
    Rop3 {
        src: Image,
        src_area: Rect,
        brush: Brush,
        rop3: u8,
        scale: ScaleMode,
        mask: Option<Mask>,
    },
    Stroke {
        path: Path,
        attr: LineAttr,
        brush: Brush,
        fore_mode: Ropd,
        back_mode: Ropd,
    },
    Text {
        text: GlyphString,
        back_area: Rect,
        fore_brush: Brush,
        back_brush: Brush,
        fore_mode: Ropd,
        back_mode: Ropd,
    },
    /// Copy, except source pixels equal to `src_color`.
    Transparent {
        src: Image,
        src_area: Rect,
        src_color: u32,
        true_color: u32,
    },
    AlphaBlend {
        /// `DEST_HAS_ALPHA` 1, `SRC_SURFACE_HAS_ALPHA` 2.
        flags: u16,
        alpha: u8,
        src: Image,
        src_area: Rect,
    },
    /// Copy inside the destination surface from the box whose top-left is `src_pos`.
    CopyBits {
        src_pos: Point,
    },
    Composite(Box<Composite>),
}

impl DrawOp {
    pub fn name(&self) -> &'static str {
        match self {
            DrawOp::Nop => "nop",
            DrawOp::Fill { .. } => "fill",
            DrawOp::Opaque { .. } => "opaque",
            DrawOp::Copy(_) => "copy",
            DrawOp::Blend(_) => "blend",
            DrawOp::Blackness { .. } => "blackness",
            DrawOp::Whiteness { .. } => "whiteness",
            DrawOp::Invers { .. } => "invers",
            DrawOp::Rop3 { .. } => "rop3",
            DrawOp::Stroke { .. } => "stroke",
            DrawOp::Text { .. } => "text",
            DrawOp::Transparent { .. } => "transparent",
            DrawOp::AlphaBlend { .. } => "alpha blend",
            DrawOp::CopyBits { .. } => "copy bits",
            DrawOp::Composite(_) => "composite",
        }
    }
}

/// An image a command reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    Bitmap(Bitmap),
    /// The current contents of a surface.
    Surface(u32),
    /// The drawable's self-bitmap snapshot.
    SelfBitmap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitmapFormat {
    /// 1 bpp palette index, leftmost pixel in the least significant bit.
    OneBitLe,
    /// 1 bpp palette index, leftmost pixel in the most significant bit.
    OneBitBe,
    FourBitLe,
    FourBitBe,
    EightBit,
    /// x1r5g5b5.
    Rgb16,
    /// B, G, R bytes.
    Rgb24,
    /// B, G, R, X bytes.
    Rgb32,
    /// B, G, R, A bytes (premultiplied alpha).
    Rgba,
    /// Alpha only.
    A8,
}

impl BitmapFormat {
    pub fn from_spice(value: u8) -> Option<Self> {
        Some(match value {
            1 => BitmapFormat::OneBitLe,
            2 => BitmapFormat::OneBitBe,
            3 => BitmapFormat::FourBitLe,
            4 => BitmapFormat::FourBitBe,
            5 => BitmapFormat::EightBit,
            6 => BitmapFormat::Rgb16,
            7 => BitmapFormat::Rgb24,
            8 => BitmapFormat::Rgb32,
            9 => BitmapFormat::Rgba,
            10 => BitmapFormat::A8,
            _ => return None,
        })
    }

    pub fn bits_per_pixel(self) -> u32 {
        match self {
            BitmapFormat::OneBitLe | BitmapFormat::OneBitBe => 1,
            BitmapFormat::FourBitLe | BitmapFormat::FourBitBe => 4,
            BitmapFormat::EightBit | BitmapFormat::A8 => 8,
            BitmapFormat::Rgb16 => 16,
            BitmapFormat::Rgb24 => 24,
            BitmapFormat::Rgb32 | BitmapFormat::Rgba => 32,
        }
    }

    pub fn has_palette(self) -> bool {
        matches!(
            self,
            BitmapFormat::OneBitLe
                | BitmapFormat::OneBitBe
                | BitmapFormat::FourBitLe
                | BitmapFormat::FourBitBe
                | BitmapFormat::EightBit
        )
    }
}

/// A bitmap whose pixels stay in guest memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Bitmap {
    /// The image descriptor's cache id (0 from Linux).
    pub id: u64,
    pub format: BitmapFormat,
    /// Rows are stored top row first (else bottom row first).
    pub top_down: bool,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    /// Up to 256 entries, 0x00RRGGBB; indices past the end are black.
    pub palette: Option<Vec<u32>>,
    /// Exactly `height * stride` bytes.
    pub data: PixelData,
}

impl Bitmap {
    /// Bytes of one row that hold pixels.
    pub fn row_bytes(&self) -> u64 {
        (u64::from(self.width) * u64::from(self.format.bits_per_pixel())).div_ceil(8)
    }
}

/// Bytes in guest memory, in one or more pieces (a QXLDataChunk list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PixelData {
    /// Each piece with its offset in the logical byte stream.
    pieces: Vec<(u64, GuestRange)>,
    len: u64,
}

impl PixelData {
    pub fn push(&mut self, range: GuestRange) {
        if range.len > 0 {
            self.pieces.push((self.len, range));
            self.len += range.len;
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn ranges(&self) -> impl Iterator<Item = &GuestRange> {
        self.pieces.iter().map(|(_, r)| r)
    }

    /// The piece holding byte `at` of the stream, and the offset inside it.
    fn locate(&self, at: u64) -> Option<(usize, u64)> {
        let index = self
            .pieces
            .partition_point(|(start, _)| *start <= at)
            .checked_sub(1)?;
        let (start, range) = self.pieces[index];
        (at - start < range.len).then_some((index, at - start))
    }

    /// The whole of `[at, at+len)` when it lies in one piece.
    pub fn contiguous(&self, at: u64, len: u64) -> Option<GuestRange> {
        let (index, offset) = self.locate(at)?;
        self.pieces[index].1.sub(offset, len)
    }

    /// Copies stream bytes `[at, at + out.len())`, across pieces; false if
    /// the stream is shorter.
    pub fn read(&self, memory: &BarMemory, at: u64, out: &mut [u8]) -> bool {
        if out.is_empty() {
            return true;
        }
        let Some((mut index, mut offset)) = self.locate(at) else {
            return false;
        };
        let mut done = 0;
        while done < out.len() {
            let Some((_, range)) = self.pieces.get(index) else {
                return false;
            };
            let n = ((range.len - offset) as usize).min(out.len() - done);
            if !memory.read(*range, offset, &mut out[done..done + n]) {
                return false;
            }
            done += n;
            index += 1;
            offset = 0;
        }
        true
    }
}

/// A path: segments of 28.4 fixed-point points.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path {
    pub segments: Vec<PathSegment>,
}

pub const PATH_BEGIN: u32 = 1;
pub const PATH_END: u32 = 2;
pub const PATH_CLOSE: u32 = 8;
pub const PATH_BEZIER: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSegment {
    /// `PATH_*` bits.
    pub flags: u32,
    /// Points in 28.4 fixed point.
    pub points: Vec<Point>,
}

pub const LINE_START_WITH_GAP: u8 = 4;
pub const LINE_STYLED: u8 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineAttr {
    pub flags: u8,
    pub join_style: u8,
    pub end_style: u8,
    /// 28.4 fixed point.
    pub width: i32,
    pub miter_limit: i32,
    /// Dash lengths in 28.4 fixed point (only with `LINE_STYLED`).
    pub style: Vec<i32>,
}

/// Glyph coverage depth of a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlyphDepth {
    A1,
    A4,
    A8,
}

impl GlyphDepth {
    pub fn bits(self) -> u32 {
        match self {
            GlyphDepth::A1 => 1,
            GlyphDepth::A4 => 4,
            GlyphDepth::A8 => 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlyphString {
    pub depth: GlyphDepth,
    pub glyphs: Vec<Glyph>,
}

/// A raster glyph, copied out of guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glyph {
    pub render_pos: Point,
    pub origin: Point,
    pub width: u16,
    pub height: u16,
    /// `height` rows of `ceil(width * bits / 8)` bytes, most significant bits first.
    pub data: Vec<u8>,
}

/// An affine transform in 16.16 fixed point, rows `[m0 m1 m2; m3 m4 m5]`,
/// mapping destination to source (pixman's convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform(pub [i32; 6]);

#[derive(Debug, Clone, PartialEq)]
pub struct Composite {
    /// `flags` bits 0-7: the operator (pixman/XRender numbering).
    pub op: u8,
    /// 0 nearest, 1 bilinear.
    pub src_filter: u8,
    pub mask_filter: u8,
    /// 0 none, 1 normal, 2 pad, 3 reflect.
    pub src_repeat: u8,
    pub mask_repeat: u8,
    pub component_alpha: bool,
    pub src: Image,
    pub src_transform: Option<Transform>,
    pub mask: Option<Image>,
    pub mask_transform: Option<Transform>,
    pub src_origin: Point,
    pub mask_origin: Point,
}

/// `QXL_CMD_SURFACE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurfaceCmd {
    Create {
        surface_id: u32,
        format: u32,
        width: u32,
        height: u32,
        /// Negative: bottom-up (row 0 at the highest address).
        stride: i32,
        /// QXLPHYSICAL of the lowest byte of the pixels.
        data: u64,
        keep_data: bool,
    },
    Destroy {
        surface_id: u32,
    },
}

/// A cursor image in guest terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorImage {
    pub unique: u64,
    /// `SpiceCursorType`: 0 ALPHA, 1 MONO, 2 COLOR4, 3 COLOR8, 4 COLOR16, 5 COLOR24, 6 COLOR32.
    pub kind: u16,
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    /// Exactly the bytes the type needs (copied; at most 512x512).
    pub data: Vec<u8>,
}

/// `QXL_CMD_CURSOR`. Positions are of the hot spot, on the primary surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorCmd {
    Set {
        x: i16,
        y: i16,
        visible: bool,
        image: CursorImage,
    },
    Move {
        x: i16,
        y: i16,
    },
    Hide,
    Trail {
        length: u16,
        frequency: u16,
    },
}

/// `QXL_CMD_UPDATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateCmd {
    pub area: Rect,
    pub update_id: u32,
    pub surface_id: u32,
}
