//! `QXLDrawable` (native, 191 bytes) and every draw operation: clips,
//! paths, line attributes, glyph strings, composite parameters (docs/qxl.md §7.5).

use super::image::Use;
use super::{check_rect, invalid, Le, ParseError, Parser, MAX_CLIP_RECTS, MAX_SHAPE_BYTES};
use crate::qxl::commands::{
    Blit, Clip, Composite, DrawOp, Drawable, Glyph, GlyphDepth, GlyphString, Image, LineAttr, Path,
    PathSegment, Rect, Ropd, ScaleMode, SurfaceDependency, Transform, LINE_STYLED,
};

pub const DRAWABLE_SIZE: usize = 191;
/// Offset of the op-specific union.
const U: usize = 123;

const DRAW_NOP: u8 = 0;
const DRAW_FILL: u8 = 1;
const DRAW_OPAQUE: u8 = 2;
const DRAW_COPY: u8 = 3;
const DRAW_COPY_BITS: u8 = 4;
const DRAW_BLEND: u8 = 5;
const DRAW_BLACKNESS: u8 = 6;
const DRAW_WHITENESS: u8 = 7;
const DRAW_INVERS: u8 = 8;
const DRAW_ROP3: u8 = 9;
const DRAW_STROKE: u8 = 10;
const DRAW_TEXT: u8 = 11;
const DRAW_TRANSPARENT: u8 = 12;
const DRAW_ALPHA_BLEND: u8 = 13;
const DRAW_COMPOSITE: u8 = 14;

const CLIP_NONE: u32 = 0;
const CLIP_RECTS: u32 = 1;

const STRING_A1: u16 = 1;
const STRING_A4: u16 = 2;
const STRING_A8: u16 = 4;

/// Offsets of the rop descriptor, scale mode and mask in a blit union.
#[derive(Clone, Copy)]
struct BlitLayout {
    rop: usize,
    scale: usize,
    mask: usize,
}

/// `QXLCopy` / `QXLBlend`.
const COPY_LAYOUT: BlitLayout = BlitLayout {
    rop: 24,
    scale: 26,
    mask: 27,
};
/// `QXLOpaque` (a brush sits between the area and the rop).
const OPAQUE_LAYOUT: BlitLayout = BlitLayout {
    rop: 44,
    scale: 46,
    mask: 47,
};

/// `addr + offset` within the same slot and generation.
fn field_address(addr: u64, offset: u64, what: &'static str) -> Result<u64, ParseError> {
    const HIGH: u64 = 0xffff << 48;
    addr.checked_add(offset)
        .filter(|a| a & HIGH == addr & HIGH)
        .ok_or_else(|| invalid(what, "address overflows its slot"))
}

fn scale_mode(value: u8) -> ScaleMode {
    if value == 1 {
        ScaleMode::Nearest
    } else {
        ScaleMode::Interpolate
    }
}

impl Parser<'_> {
    /// Parses the drawable whose body is at guest address `addr`.
    pub fn drawable(&self, addr: u64) -> Result<Drawable, ParseError> {
        let raw = self.fetch::<DRAWABLE_SIZE>(addr, "drawable")?;
        let d = Le(&raw);
        let surface_id = self.check_surface_id(d.u32(8), "drawable")?;
        let kind = d.u8(13);
        // spice ignores self_bitmap for COPY and BLEND (buggy drivers set it).
        let self_bitmap = d.u8(14) != 0 && !matches!(kind, DRAW_COPY | DRAW_BLEND);
        let bbox = check_rect(d.rect(31), "drawable bbox")?;
        let clip = match d.u32(47) {
            CLIP_NONE => Clip::None,
            CLIP_RECTS => Clip::Rects(self.clip_rects(d.u64(51))?),
            other => return Err(invalid("drawable clip", format!("clip type {other}"))),
        };
        let mut dependencies = [None; 3];
        for (i, dep) in dependencies.iter_mut().enumerate() {
            let id = d.i32(63 + 4 * i);
            if id == -1 {
                continue;
            }
            let id = u32::try_from(id)
                .map_err(|_| invalid("drawable", format!("dependency surface id {id}")))?;
            *dep = Some(SurfaceDependency {
                surface_id: self.check_surface_id(id, "drawable dependency")?,
                rect: check_rect(d.rect(75 + 16 * i), "drawable dependency")?,
            });
        }
        let op = self.draw_op(kind, &raw[U..], self_bitmap)?;
        Ok(Drawable {
            surface_id,
            effect: d.u8(12),
            bbox,
            clip,
            self_bitmap: if self_bitmap {
                Some(check_rect(d.rect(15), "drawable self bitmap")?)
            } else {
                None
            },
            mm_time: d.u32(59),
            dependencies,
            op,
        })
    }

    fn clip_rects(&self, addr: u64) -> Result<Vec<Rect>, ParseError> {
        const WHAT: &str = "clip rects";
        let head = self.fetch::<4>(addr, WHAT)?;
        let count = Le(&head).u32(0);
        if count > MAX_CLIP_RECTS {
            return Err(invalid(
                WHAT,
                format!("{count} rectangles (at most {MAX_CLIP_RECTS})"),
            ));
        }
        let expected = u64::from(count) * 16;
        let data = self.chunks(field_address(addr, 4, WHAT)?, expected, WHAT)?;
        if data.len() != expected {
            return Err(invalid(
                WHAT,
                format!("{} bytes of rectangles for {count} rectangles", data.len()),
            ));
        }
        let bytes = self.copy_stream(&data, WHAT)?;
        bytes
            .chunks_exact(16)
            .map(|r| check_rect(Le(r).rect(0), WHAT))
            .collect()
    }

    /// A COPY/BLEND/OPAQUE source: image at 0, area at 8, then the rop,
    /// scale mode and mask at the given offsets of the union.
    fn blit(
        &self,
        u: &Le,
        at: BlitLayout,
        self_bitmap: bool,
        what: &'static str,
    ) -> Result<Blit, ParseError> {
        let src = self.image(u.u64(0), self_bitmap, Use::Source, what)?;
        let src_area = self.source_area(&src, u.rect(8), what)?;
        Ok(Blit {
            src,
            src_area,
            rop: Ropd(u.u16(at.rop)),
            scale: scale_mode(u.u8(at.scale)),
            mask: self.mask(&u.0[at.mask..at.mask + 17], what)?,
        })
    }

    /// A source rectangle: not inverted, and inside a bitmap source.
    fn source_area(&self, src: &Image, area: Rect, what: &'static str) -> Result<Rect, ParseError> {
        let area = check_rect(area, what)?;
        if area.left > area.right || area.top > area.bottom {
            return Err(invalid(what, format!("source area {area:?} is inverted")));
        }
        if let Image::Bitmap(b) = src {
            if area.left < 0
                || area.top < 0
                || area.right as u32 > b.width
                || area.bottom as u32 > b.height
            {
                return Err(invalid(
                    what,
                    format!(
                        "source area {area:?} outside a {}x{} bitmap",
                        b.width, b.height
                    ),
                ));
            }
        }
        Ok(area)
    }

    fn draw_op(&self, kind: u8, union: &[u8], self_bitmap: bool) -> Result<DrawOp, ParseError> {
        let u = Le(union);
        Ok(match kind {
            DRAW_NOP => DrawOp::Nop,
            DRAW_FILL => DrawOp::Fill {
                brush: self.brush(&union[0..20], self_bitmap, "fill brush")?,
                rop: Ropd(u.u16(20)),
                mask: self.mask(&union[22..39], "fill mask")?,
            },
            DRAW_OPAQUE => DrawOp::Opaque {
                blit: self.blit(&u, OPAQUE_LAYOUT, self_bitmap, "opaque")?,
                brush: self.brush(&union[24..44], self_bitmap, "opaque brush")?,
            },
            DRAW_COPY => DrawOp::Copy(self.blit(&u, COPY_LAYOUT, false, "copy")?),
            DRAW_BLEND => DrawOp::Blend(self.blit(&u, COPY_LAYOUT, false, "blend")?),
            DRAW_BLACKNESS => DrawOp::Blackness {
                mask: self.mask(&union[0..17], "blackness mask")?,
            },
            DRAW_WHITENESS => DrawOp::Whiteness {
                mask: self.mask(&union[0..17], "whiteness mask")?,
            },
            DRAW_INVERS => DrawOp::Invers {
                mask: self.mask(&union[0..17], "invers mask")?,
            },
            DRAW_ROP3 => {
                let src = self.image(u.u64(0), self_bitmap, Use::Source, "rop3")?;
                DrawOp::Rop3 {
                    src_area: self.source_area(&src, u.rect(8), "rop3")?,
                    src,
                    brush: self.brush(&union[24..44], self_bitmap, "rop3 brush")?,
                    rop3: u.u8(44),
                    scale: scale_mode(u.u8(45)),
                    mask: self.mask(&union[46..63], "rop3 mask")?,
                }
            }
            DRAW_STROKE => DrawOp::Stroke {
                path: self.path(u.u64(0))?,
                attr: self.line_attr(&union[8..28])?,
                brush: self.brush(&union[28..48], self_bitmap, "stroke brush")?,
                fore_mode: Ropd(u.u16(48)),
                back_mode: Ropd(u.u16(50)),
            },
            DRAW_TEXT => DrawOp::Text {
                text: self.glyph_string(u.u64(0))?,
                back_area: check_rect(u.rect(8), "text back area")?,
                fore_brush: self.brush(&union[24..44], self_bitmap, "text fore brush")?,
                back_brush: self.brush(&union[44..64], self_bitmap, "text back brush")?,
                fore_mode: Ropd(u.u16(64)),
                back_mode: Ropd(u.u16(66)),
            },
            DRAW_TRANSPARENT => {
                let src = self.image(u.u64(0), self_bitmap, Use::Source, "transparent")?;
                DrawOp::Transparent {
                    src_area: self.source_area(&src, u.rect(8), "transparent")?,
                    src,
                    src_color: u.u32(24),
                    true_color: u.u32(28),
                }
            }
            DRAW_ALPHA_BLEND => {
                let src = self.image(u.u64(3), self_bitmap, Use::Source, "alpha blend")?;
                DrawOp::AlphaBlend {
                    flags: u.u16(0),
                    alpha: u.u8(2),
                    src_area: self.source_area(&src, u.rect(11), "alpha blend")?,
                    src,
                }
            }
            DRAW_COPY_BITS => DrawOp::CopyBits {
                src_pos: u.point(0),
            },
            DRAW_COMPOSITE => DrawOp::Composite(Box::new(self.composite(&u, self_bitmap)?)),
            other => return Err(invalid("drawable", format!("draw type {other}"))),
        })
    }

    fn path(&self, addr: u64) -> Result<Path, ParseError> {
        const WHAT: &str = "stroke path";
        let data = self.chunks(field_address(addr, 4, WHAT)?, MAX_SHAPE_BYTES, WHAT)?;
        // The header must be readable too.
        self.fetch::<4>(addr, WHAT)?;
        let bytes = self.copy_stream(&data, WHAT)?;
        let mut segments = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let head = bytes
                .get(at..at + 8)
                .ok_or_else(|| invalid(WHAT, "truncated segment"))?;
            let (flags, count) = (Le(head).u32(0), Le(head).u32(4) as usize);
            at += 8;
            let len = count
                .checked_mul(8)
                .filter(|&n| n <= bytes.len() - at)
                .ok_or_else(|| {
                    invalid(WHAT, format!("segment of {count} points overruns the path"))
                })?;
            let points = bytes[at..at + len]
                .chunks_exact(8)
                .map(|p| Le(p).point(0))
                .collect();
            at += len;
            segments.push(PathSegment { flags, points });
        }
        Ok(Path { segments })
    }

    fn line_attr(&self, raw: &[u8]) -> Result<LineAttr, ParseError> {
        const WHAT: &str = "line style";
        let a = Le(raw);
        let flags = a.u8(0);
        let mut style = Vec::new();
        if flags & LINE_STYLED != 0 {
            let count = u64::from(a.u8(3));
            let range = self.translate(a.u64(12), count * 4, WHAT)?;
            let mut bytes = vec![0u8; (count * 4) as usize];
            if !self.memory.read(range, 0, &mut bytes) {
                return Err(invalid(WHAT, "unreadable"));
            }
            style = bytes.chunks_exact(4).map(|c| Le(c).i32(0)).collect();
        }
        Ok(LineAttr {
            flags,
            join_style: a.u8(1),
            end_style: a.u8(2),
            width: a.i32(4),
            miter_limit: a.i32(8),
            style,
        })
    }

    fn glyph_string(&self, addr: u64) -> Result<GlyphString, ParseError> {
        const WHAT: &str = "text string";
        let head = self.fetch::<8>(addr, WHAT)?;
        let h = Le(&head);
        let (count, flags) = (usize::from(h.u16(4)), h.u16(6));
        let depth = match flags & (STRING_A1 | STRING_A4 | STRING_A8) {
            STRING_A1 => GlyphDepth::A1,
            STRING_A4 => GlyphDepth::A4,
            STRING_A8 => GlyphDepth::A8,
            _ => return Err(invalid(WHAT, format!("glyph flags {flags:#x}"))),
        };
        let data = self.chunks(field_address(addr, 8, WHAT)?, MAX_SHAPE_BYTES, WHAT)?;
        let bytes = self.copy_stream(&data, WHAT)?;
        let mut glyphs = Vec::with_capacity(count.min(bytes.len() / 20));
        let mut at = 0usize;
        for _ in 0..count {
            let head = bytes
                .get(at..at + 20)
                .ok_or_else(|| invalid(WHAT, "fewer glyphs than its length says"))?;
            let g = Le(head);
            let (width, height) = (g.u16(16), g.u16(18));
            let row = (u64::from(width) * u64::from(depth.bits())).div_ceil(8);
            let size = (row * u64::from(height)) as usize;
            at += 20;
            let data = bytes
                .get(at..at + size)
                .ok_or_else(|| invalid(WHAT, "glyph data overruns the string"))?
                .to_vec();
            at += size;
            glyphs.push(Glyph {
                render_pos: g.point(0),
                origin: g.point(8),
                width,
                height,
                data,
            });
        }
        Ok(GlyphString { depth, glyphs })
    }

    fn transform(&self, addr: u64) -> Result<Option<Transform>, ParseError> {
        if addr == 0 {
            return Ok(None);
        }
        let raw = self.fetch::<24>(addr, "composite transform")?;
        let t = Le(&raw);
        Ok(Some(Transform(std::array::from_fn(|i| t.i32(4 * i)))))
    }

    fn composite(&self, u: &Le, self_bitmap: bool) -> Result<Composite, ParseError> {
        let flags = u.u32(0);
        let mask = match u.u64(20) {
            0 => None,
            addr => Some(self.image(addr, self_bitmap, Use::Source, "composite mask")?),
        };
        let composite = Composite {
            op: flags as u8,
            src_filter: ((flags >> 8) & 7) as u8,
            mask_filter: ((flags >> 11) & 7) as u8,
            src_repeat: ((flags >> 14) & 3) as u8,
            mask_repeat: ((flags >> 16) & 3) as u8,
            component_alpha: (flags >> 18) & 1 != 0,
            src: self.image(u.u64(4), self_bitmap, Use::Source, "composite source")?,
            src_transform: self.transform(u.u64(12))?,
            mask,
            mask_transform: self.transform(u.u64(28))?,
            src_origin: u.point16(36),
            mask_origin: u.point16(40),
        };
        Ok(composite)
    }
}
