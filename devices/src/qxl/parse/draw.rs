//! `QXLDrawable` and every draw operation: clips, paths, line attributes,
//! glyph strings, composite parameters (docs/qxl.md §7.5; the structures
//! are [`crate::qxl::abi`]'s).

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::image::Use;
use super::{check_rect, invalid, ParseError, Parser, MAX_CLIP_RECTS, MAX_SHAPE_BYTES};
use crate::qxl::abi::{
    QxlAlphaBlend, QxlComposite, QxlCopy, QxlCopyBits, QxlDrawable, QxlFill, QxlLineAttr,
    QxlMaskOnly, QxlOpaque, QxlPath, QxlPathSeg, QxlPoint, QxlRasterGlyph, QxlRect, QxlRop3,
    QxlString, QxlStroke, QxlText, QxlTransform, QxlTransparent,
};
use crate::qxl::commands::{
    Blit, Clip, Composite, DrawOp, Drawable, Glyph, GlyphDepth, GlyphString, Image, LineAttr, Path,
    PathSegment, Point, Rect, Ropd, ScaleMode, SurfaceDependency, Transform, LINE_STYLED,
};

pub const DRAWABLE_SIZE: usize = size_of::<QxlDrawable>();

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
        let d: QxlDrawable = self.read(addr, "drawable")?;
        let surface_id = self.check_surface_id(d.surface_id.get(), "drawable")?;
        // spice ignores self_bitmap for COPY and BLEND (buggy drivers set it).
        let self_bitmap = d.self_bitmap != 0 && !matches!(d.kind, DRAW_COPY | DRAW_BLEND);
        let bbox = rect(d.bbox, "drawable bbox")?;
        let clip = match d.clip.kind.get() {
            CLIP_NONE => Clip::None,
            CLIP_RECTS => Clip::Rects(self.clip_rects(d.clip.data.get())?),
            other => return Err(invalid("drawable clip", format!("clip type {other}"))),
        };
        let mut dependencies = [None; 3];
        for (i, dep) in dependencies.iter_mut().enumerate() {
            let id = d.surfaces_dest[i].get();
            if id == -1 {
                continue;
            }
            let id = u32::try_from(id)
                .map_err(|_| invalid("drawable", format!("dependency surface id {id}")))?;
            *dep = Some(SurfaceDependency {
                surface_id: self.check_surface_id(id, "drawable dependency")?,
                rect: rect(d.surfaces_rects[i], "drawable dependency")?,
            });
        }
        let op = self.draw_op(d.kind, &d.u, self_bitmap)?;
        Ok(Drawable {
            surface_id,
            effect: d.effect,
            bbox,
            clip,
            self_bitmap: if self_bitmap {
                Some(rect(d.self_bitmap_area, "drawable self bitmap")?)
            } else {
                None
            },
            mm_time: d.mm_time.get(),
            dependencies,
            op,
        })
    }

    fn clip_rects(&self, addr: u64) -> Result<Vec<Rect>, ParseError> {
        const WHAT: &str = "clip rects";
        let count = self.read::<zerocopy::little_endian::U32>(addr, WHAT)?.get();
        if count > MAX_CLIP_RECTS {
            return Err(invalid(
                WHAT,
                format!("{count} rectangles (at most {MAX_CLIP_RECTS})"),
            ));
        }
        let expected = u64::from(count) * size_of::<QxlRect>() as u64;
        let data = self.chunks(field_address(addr, 4, WHAT)?, expected, WHAT)?;
        if data.len() != expected {
            return Err(invalid(
                WHAT,
                format!("{} bytes of rectangles for {count} rectangles", data.len()),
            ));
        }
        let bytes = self.copy_stream(&data, WHAT)?;
        <[QxlRect]>::ref_from_bytes(&bytes)
            .map_err(|_| invalid(WHAT, "misshapen rectangles"))?
            .iter()
            .map(|r| rect(*r, WHAT))
            .collect()
    }

    /// A COPY or BLEND: its source, area, rop, scale mode and mask.
    fn blit(&self, c: &QxlCopy, what: &'static str) -> Result<Blit, ParseError> {
        let src = self.image(c.src_bitmap.get(), false, Use::Source, what)?;
        let src_area = self.source_area(&src, c.src_area, what)?;
        Ok(Blit {
            src,
            src_area,
            rop: Ropd(c.rop_descriptor.get()),
            scale: scale_mode(c.scale_mode),
            mask: self.mask(&c.mask, what)?,
        })
    }

    /// A source rectangle: not inverted, and inside a bitmap source.
    fn source_area(
        &self,
        src: &Image,
        area: QxlRect,
        what: &'static str,
    ) -> Result<Rect, ParseError> {
        let area = rect(area, what)?;
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

    fn draw_op(&self, kind: u8, u: &[u8; 68], self_bitmap: bool) -> Result<DrawOp, ParseError> {
        let sb = self_bitmap;
        Ok(match kind {
            DRAW_NOP => DrawOp::Nop,
            DRAW_FILL => {
                let f: QxlFill = union(u);
                DrawOp::Fill {
                    brush: self.brush(&f.brush, sb, "fill brush")?,
                    rop: Ropd(f.rop_descriptor.get()),
                    mask: self.mask(&f.mask, "fill mask")?,
                }
            }
            DRAW_OPAQUE => {
                let o: QxlOpaque = union(u);
                let src = self.image(o.src_bitmap.get(), sb, Use::Source, "opaque")?;
                DrawOp::Opaque {
                    blit: Blit {
                        src_area: self.source_area(&src, o.src_area, "opaque")?,
                        src,
                        rop: Ropd(o.rop_descriptor.get()),
                        scale: scale_mode(o.scale_mode),
                        mask: self.mask(&o.mask, "opaque")?,
                    },
                    brush: self.brush(&o.brush, sb, "opaque brush")?,
                }
            }
            DRAW_COPY => DrawOp::Copy(self.blit(&union(u), "copy")?),
            DRAW_BLEND => DrawOp::Blend(self.blit(&union(u), "blend")?),
            DRAW_BLACKNESS => DrawOp::Blackness {
                mask: self.mask(&union::<QxlMaskOnly>(u).mask, "blackness mask")?,
            },
            DRAW_WHITENESS => DrawOp::Whiteness {
                mask: self.mask(&union::<QxlMaskOnly>(u).mask, "whiteness mask")?,
            },
            DRAW_INVERS => DrawOp::Invers {
                mask: self.mask(&union::<QxlMaskOnly>(u).mask, "invers mask")?,
            },
            DRAW_ROP3 => {
                let r: QxlRop3 = union(u);
                let src = self.image(r.src_bitmap.get(), sb, Use::Source, "rop3")?;
                DrawOp::Rop3 {
                    src_area: self.source_area(&src, r.src_area, "rop3")?,
                    src,
                    brush: self.brush(&r.brush, sb, "rop3 brush")?,
                    rop3: r.rop3,
                    scale: scale_mode(r.scale_mode),
                    mask: self.mask(&r.mask, "rop3 mask")?,
                }
            }
            DRAW_STROKE => {
                let s: QxlStroke = union(u);
                DrawOp::Stroke {
                    path: self.path(s.path.get())?,
                    attr: self.line_attr(&s.attr)?,
                    brush: self.brush(&s.brush, sb, "stroke brush")?,
                    fore_mode: Ropd(s.fore_mode.get()),
                    back_mode: Ropd(s.back_mode.get()),
                }
            }
            DRAW_TEXT => {
                let t: QxlText = union(u);
                DrawOp::Text {
                    text: self.glyph_string(t.string.get())?,
                    back_area: rect(t.back_area, "text back area")?,
                    fore_brush: self.brush(&t.fore_brush, sb, "text fore brush")?,
                    back_brush: self.brush(&t.back_brush, sb, "text back brush")?,
                    fore_mode: Ropd(t.fore_mode.get()),
                    back_mode: Ropd(t.back_mode.get()),
                }
            }
            DRAW_TRANSPARENT => {
                let t: QxlTransparent = union(u);
                let src = self.image(t.src_bitmap.get(), sb, Use::Source, "transparent")?;
                DrawOp::Transparent {
                    src_area: self.source_area(&src, t.src_area, "transparent")?,
                    src,
                    src_color: t.src_color.get(),
                    true_color: t.true_color.get(),
                }
            }
            DRAW_ALPHA_BLEND => {
                let a: QxlAlphaBlend = union(u);
                let src = self.image(a.src_bitmap.get(), sb, Use::Source, "alpha blend")?;
                DrawOp::AlphaBlend {
                    flags: a.alpha_flags.get(),
                    alpha: a.alpha,
                    src_area: self.source_area(&src, a.src_area, "alpha blend")?,
                    src,
                }
            }
            DRAW_COPY_BITS => DrawOp::CopyBits {
                src_pos: point(union::<QxlCopyBits>(u).src_pos),
            },
            DRAW_COMPOSITE => DrawOp::Composite(Box::new(self.composite(&union(u), sb)?)),
            other => return Err(invalid("drawable", format!("draw type {other}"))),
        })
    }

    fn path(&self, addr: u64) -> Result<Path, ParseError> {
        const WHAT: &str = "stroke path";
        let chunk = field_address(addr, offset_of!(QxlPath, chunk) as u64, WHAT)?;
        let data = self.chunks(chunk, MAX_SHAPE_BYTES, WHAT)?;
        // The header must be readable too.
        self.read::<QxlPath>(addr, WHAT)?;
        let bytes = self.copy_stream(&data, WHAT)?;
        let mut segments = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let (seg, _) = QxlPathSeg::read_from_prefix(&bytes[at..])
                .map_err(|_| invalid(WHAT, "truncated segment"))?;
            let (flags, count) = (seg.flags.get(), seg.count.get() as usize);
            at += size_of::<QxlPathSeg>();
            let len = count
                .checked_mul(size_of::<QxlPoint>())
                .filter(|&n| n <= bytes.len() - at)
                .ok_or_else(|| {
                    invalid(WHAT, format!("segment of {count} points overruns the path"))
                })?;
            let points = <[QxlPoint]>::ref_from_bytes(&bytes[at..at + len])
                .map_err(|_| invalid(WHAT, "misshapen points"))?
                .iter()
                .map(|p| point(*p))
                .collect();
            at += len;
            segments.push(PathSegment { flags, points });
        }
        Ok(Path { segments })
    }

    fn line_attr(&self, a: &QxlLineAttr) -> Result<LineAttr, ParseError> {
        const WHAT: &str = "line style";
        let mut style = Vec::new();
        if a.flags & LINE_STYLED != 0 {
            let count = u64::from(a.style_nseg);
            let range = self.translate(a.style.get(), count * 4, WHAT)?;
            let mut bytes = vec![0u8; (count * 4) as usize];
            if !self.memory.read(range, 0, &mut bytes) {
                return Err(invalid(WHAT, "unreadable"));
            }
            style = bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
        }
        Ok(LineAttr {
            flags: a.flags,
            join_style: a.join_style,
            end_style: a.end_style,
            width: a.width.get(),
            miter_limit: a.miter_limit.get(),
            style,
        })
    }

    fn glyph_string(&self, addr: u64) -> Result<GlyphString, ParseError> {
        const WHAT: &str = "text string";
        let head: QxlString = self.read(addr, WHAT)?;
        let (count, flags) = (usize::from(head.length.get()), head.flags.get());
        let depth = match flags & (STRING_A1 | STRING_A4 | STRING_A8) {
            STRING_A1 => GlyphDepth::A1,
            STRING_A4 => GlyphDepth::A4,
            STRING_A8 => GlyphDepth::A8,
            _ => return Err(invalid(WHAT, format!("glyph flags {flags:#x}"))),
        };
        let chunk = field_address(addr, offset_of!(QxlString, chunk) as u64, WHAT)?;
        let data = self.chunks(chunk, MAX_SHAPE_BYTES, WHAT)?;
        let bytes = self.copy_stream(&data, WHAT)?;
        const GLYPH: usize = size_of::<QxlRasterGlyph>();
        let mut glyphs = Vec::with_capacity(count.min(bytes.len() / GLYPH));
        let mut at = 0usize;
        for _ in 0..count {
            let (g, _) = QxlRasterGlyph::read_from_prefix(&bytes[at..])
                .map_err(|_| invalid(WHAT, "fewer glyphs than its length says"))?;
            let (width, height) = (g.width.get(), g.height.get());
            let row = (u64::from(width) * u64::from(depth.bits())).div_ceil(8);
            let size = (row * u64::from(height)) as usize;
            at += GLYPH;
            let data = bytes
                .get(at..at + size)
                .ok_or_else(|| invalid(WHAT, "glyph data overruns the string"))?
                .to_vec();
            at += size;
            glyphs.push(Glyph {
                render_pos: point(g.render_pos),
                origin: point(g.glyph_origin),
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
        let t: QxlTransform = self.read(addr, "composite transform")?;
        Ok(Some(Transform(t.t.map(|v| v.get()))))
    }

    fn composite(&self, c: &QxlComposite, self_bitmap: bool) -> Result<Composite, ParseError> {
        let flags = c.flags.get();
        let mask = match c.mask.get() {
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
            src: self.image(c.src.get(), self_bitmap, Use::Source, "composite source")?,
            src_transform: self.transform(c.src_transform.get())?,
            mask,
            mask_transform: self.transform(c.mask_transform.get())?,
            src_origin: point16(c.src_origin),
            mask_origin: point16(c.mask_origin),
        };
        Ok(composite)
    }
}

/// The operation structure `T` laid over a drawable's union.
fn union<T: FromBytes + KnownLayout + Immutable>(u: &[u8; 68]) -> T {
    match T::read_from_prefix(u) {
        Ok((value, _)) => value,
        // (Every operation fits the union: abi's tests check it.)
        Err(_) => T::new_zeroed(),
    }
}

/// A rectangle from the guest, checked.
fn rect(r: QxlRect, what: &'static str) -> Result<Rect, ParseError> {
    check_rect(r.into(), what)
}

fn point(p: QxlPoint) -> Point {
    Point {
        x: p.x.get(),
        y: p.y.get(),
    }
}

fn point16(p: crate::qxl::abi::QxlPoint16) -> Point {
    Point {
        x: i32::from(p.x.get()),
        y: i32::from(p.y.get()),
    }
}
