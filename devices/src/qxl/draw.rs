//! Executes a parsed drawable with the software renderer.
//!
//! The primary surface is drawn into the display's head 0 (host memory that
//! the display consumers read): that is the authoritative picture, and guest
//! memory of the primary is brought up to date only when the guest asks for
//! it (UPDATE_AREA, destroy), so an ordinary frame copies nothing. Off-screen
//! surfaces are drawn in guest memory, through a host buffer for the drawn
//! box (loaded, drawn, written back).
//!
//! Images are resolved before drawing starts: bitmaps and off-screen surfaces
//! are read in place; the primary (and a self-bitmap) is snapshotted, since
//! the drawing may overwrite it.

use super::commands::{
    Brush, Clip, DrawOp, Drawable, Image, Mask, ScaleMode, PATH_BEGIN, PATH_BEZIER, PATH_CLOSE,
    PATH_END,
};
use super::commands::{LineAttr, Path, Point, Transform, LINE_START_WITH_GAP};
use super::memory::BarMemory;
use super::sources::{BitmapSource, SurfaceSource};
use super::stats::QxlStats;
use super::surfaces::{SurfaceInfo, SurfaceTable};
use crate::display::render::{
    self, Canvas, CompositeParams, Filter, GlyphBits, Line, LineStyle, PixelSource, Region, Repeat,
    Ropd, Sampling, Scaled, Snapshot,
};
use crate::display::{Display, Rect};

/// Largest box drawn into an off-screen surface at once (pixels).
pub const MAX_OFFSCREEN_PIXELS: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrawError {
    #[error("surface {0} does not exist")]
    NoSurface(u32),
    #[error("bounding box {bbox:?} is not inside the {width}x{height} surface")]
    BadBbox { bbox: Rect, width: u32, height: u32 },
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("drawing box of {0} pixels on an off-screen surface is too large")]
    TooLarge(u64),
    #[error("the display head does not match the primary surface")]
    HeadMismatch,
    #[error("composite refused: {0:?}")]
    Composite(render::Refused),
}

/// What a drawable may read and write.
pub struct DrawContext<'a> {
    pub memory: &'a BarMemory,
    pub surfaces: &'a SurfaceTable,
    pub primary: Option<&'a SurfaceInfo>,
    pub display: &'a Display,
    pub stats: &'a QxlStats,
}

/// A resolved image: pixels, and the position of its (0, 0) in the image
/// the guest named (snapshots hold only part of a surface).
enum Pixels<'a> {
    Bitmap(BitmapSource<'a>),
    Surface(SurfaceSource<'a>),
    Snapshot(Snapshot),
}

struct Resolved<'a> {
    pixels: Pixels<'a>,
    offset: (i32, i32),
}

impl Resolved<'_> {
    fn source(&self) -> &dyn PixelSource {
        match &self.pixels {
            Pixels::Bitmap(b) => b,
            Pixels::Surface(s) => s,
            Pixels::Snapshot(s) => s,
        }
    }

    fn area(&self, r: Rect) -> Rect {
        r.translate(-self.offset.0, -self.offset.1)
    }
}

/// Everything a drawable reads, resolved.
#[derive(Default)]
struct Inputs<'a> {
    src: Option<Resolved<'a>>,
    brush: Option<Resolved<'a>>,
    back_brush: Option<Resolved<'a>>,
    mask: Option<BitmapSource<'a>>,
    composite_mask: Option<Resolved<'a>>,
}

fn filter(scale: ScaleMode) -> Filter {
    match scale {
        ScaleMode::Nearest => Filter::Nearest,
        ScaleMode::Interpolate => Filter::Bilinear,
    }
}

impl<'a> DrawContext<'a> {
    fn surface(&self, id: u32) -> Result<SurfaceInfo, DrawError> {
        if id == 0 {
            self.primary.copied().ok_or(DrawError::NoSurface(0))
        } else {
            self.surfaces
                .get(id)
                .map(|s| s.info)
                .ok_or(DrawError::NoSurface(id))
        }
    }

    /// Draws `d`; returns the number of destination pixels in its region.
    pub fn draw(&self, d: &'a Drawable) -> Result<u64, DrawError> {
        let info = self.surface(d.surface_id)?;
        let b = d.bbox;
        if b.left < 0 || b.top < 0 || b.right > info.width as i32 || b.bottom > info.height as i32 {
            return Err(DrawError::BadBbox {
                bbox: b,
                width: info.width,
                height: info.height,
            });
        }
        for dep in d.dependencies.iter().flatten() {
            self.surface(dep.surface_id)?;
        }
        let region = match &d.clip {
            Clip::None => Region::from_rect(b),
            Clip::Rects(rects) => Region::from_rects(rects, b),
        };
        if region.is_empty() || matches!(d.op, DrawOp::Nop) {
            return Ok(0);
        }
        if !info.is_32bit() {
            return Err(DrawError::Unsupported(
                "drawing into a surface that is not 32-bit",
            ));
        }
        let pixels = region.area();
        if d.surface_id == 0 {
            let mut result = Ok(pixels);
            self.display.draw(0, |surface| {
                if (surface.width, surface.height) != (info.width, info.height) {
                    result = Err(DrawError::HeadMismatch);
                    return None;
                }
                let mut canvas = Canvas::for_surface(surface);
                let inputs = {
                    let view = &canvas;
                    self.resolve(d, &info, &|r| Snapshot::of_canvas(view, r))
                };
                match inputs {
                    Ok(inputs) => {
                        // Refused part-way: what was drawn stays, and is damage.
                        if let Err(e) = self.render(&mut canvas, d, &region, &inputs, None) {
                            result = Err(e);
                        }
                        Some(region.extents())
                    }
                    Err(e) => {
                        result = Err(e);
                        None
                    }
                }
            });
            result
        } else {
            self.draw_offscreen(d, info, &region)?;
            Ok(pixels)
        }
    }

    fn draw_offscreen(
        &self,
        d: &'a Drawable,
        info: SurfaceInfo,
        region: &Region,
    ) -> Result<(), DrawError> {
        let area = region.extents();
        if area.area() > MAX_OFFSCREEN_PIXELS {
            return Err(DrawError::TooLarge(area.area()));
        }
        let primary_snapshot = |r: Rect| match self.display.head(0) {
            Some(head) => Snapshot::of_source(&HeadSource(Some(&head)), r),
            None => Snapshot::of_source(&HeadSource(None), r),
        };
        let inputs = self.resolve(d, &info, &primary_snapshot)?;
        let stride = area.width() as usize * 4;
        let mut buffer = vec![0u8; stride * area.height() as usize];
        for (i, y) in (area.top..area.bottom).enumerate() {
            self.memory.read(
                info.mem,
                info.row_offset(y as u32) + 4 * area.left as u64,
                &mut buffer[i * stride..(i + 1) * stride],
            );
        }
        let Some(mut canvas) = Canvas::new(&mut buffer, stride, area, info.has_alpha()) else {
            return Ok(());
        };
        let self_source = SurfaceSource::new(self.memory, info);
        let rendered = self.render(&mut canvas, d, region, &inputs, Some(&self_source));
        for (i, y) in (area.top..area.bottom).enumerate() {
            self.memory.write(
                info.mem,
                info.row_offset(y as u32) + 4 * area.left as u64,
                &buffer[i * stride..(i + 1) * stride],
            );
        }
        QxlStats::add(&self.stats.surface_copy_bytes, 2 * buffer.len() as u64);
        rendered
    }

    /// Resolves an image; `want` is the part of it that will be read (in
    /// the image's coordinates), used to bound snapshots of the primary.
    fn image(
        &self,
        image: &'a Image,
        want: Option<Rect>,
        self_bitmap: Option<&Snapshot>,
        primary: &dyn Fn(Rect) -> Snapshot,
    ) -> Result<Resolved<'a>, DrawError> {
        let whole = (0, 0);
        Ok(match image {
            Image::Bitmap(b) => Resolved {
                pixels: Pixels::Bitmap(BitmapSource::new(self.memory, b)),
                offset: whole,
            },
            Image::SelfBitmap => Resolved {
                pixels: Pixels::Snapshot(
                    self_bitmap
                        .cloned()
                        .ok_or(DrawError::Unsupported("a null image without a self bitmap"))?,
                ),
                offset: whole,
            },
            Image::Surface(0) => {
                let info = self.surface(0)?;
                let rect = want.unwrap_or(info.bounds()).intersect(&info.bounds());
                Resolved {
                    pixels: Pixels::Snapshot(primary(rect)),
                    offset: (rect.left, rect.top),
                }
            }
            Image::Surface(id) => Resolved {
                pixels: Pixels::Surface(SurfaceSource::new(self.memory, self.surface(*id)?)),
                offset: whole,
            },
        })
    }

    fn brush(
        &self,
        brush: &'a Brush,
        self_bitmap: Option<&Snapshot>,
        primary: &dyn Fn(Rect) -> Snapshot,
    ) -> Result<Option<Resolved<'a>>, DrawError> {
        match brush {
            Brush::Pattern { image, .. } => {
                Ok(Some(self.image(image, None, self_bitmap, primary)?))
            }
            _ => Ok(None),
        }
    }

    fn mask(&self, mask: &'a Option<Mask>) -> Option<BitmapSource<'a>> {
        match mask {
            Some(Mask {
                image: Image::Bitmap(b),
                ..
            }) => Some(BitmapSource::new(self.memory, b)),
            _ => None,
        }
    }

    fn resolve(
        &self,
        d: &'a Drawable,
        info: &SurfaceInfo,
        primary: &dyn Fn(Rect) -> Snapshot,
    ) -> Result<Inputs<'a>, DrawError> {
        let self_bitmap = d.self_bitmap.map(|area| {
            let area = area.intersect(&info.bounds());
            if d.surface_id == 0 {
                primary(area)
            } else {
                Snapshot::of_source(&SurfaceSource::new(self.memory, *info), area)
            }
        });
        let sb = self_bitmap.as_ref();
        let mut inputs = Inputs::default();
        match &d.op {
            DrawOp::Fill { brush, mask, .. } => {
                inputs.brush = self.brush(brush, sb, primary)?;
                inputs.mask = self.mask(mask);
            }
            DrawOp::Opaque { blit, brush } => {
                inputs.src = Some(self.image(&blit.src, Some(blit.src_area), sb, primary)?);
                inputs.brush = self.brush(brush, sb, primary)?;
                inputs.mask = self.mask(&blit.mask);
            }
            DrawOp::Copy(blit) | DrawOp::Blend(blit) => {
                inputs.src = Some(self.image(&blit.src, Some(blit.src_area), sb, primary)?);
                inputs.mask = self.mask(&blit.mask);
            }
            DrawOp::Blackness { mask } | DrawOp::Whiteness { mask } | DrawOp::Invers { mask } => {
                inputs.mask = self.mask(mask);
            }
            DrawOp::Rop3 {
                src,
                src_area,
                brush,
                mask,
                ..
            } => {
                inputs.src = Some(self.image(src, Some(*src_area), sb, primary)?);
                inputs.brush = self.brush(brush, sb, primary)?;
                inputs.mask = self.mask(mask);
            }
            DrawOp::Stroke { brush, .. } => inputs.brush = self.brush(brush, sb, primary)?,
            DrawOp::Text {
                fore_brush,
                back_brush,
                ..
            } => {
                inputs.brush = self.brush(fore_brush, sb, primary)?;
                inputs.back_brush = self.brush(back_brush, sb, primary)?;
            }
            DrawOp::Transparent { src, src_area, .. }
            | DrawOp::AlphaBlend { src, src_area, .. } => {
                inputs.src = Some(self.image(src, Some(*src_area), sb, primary)?);
            }
            DrawOp::Composite(c) => {
                inputs.src = Some(self.image(&c.src, None, sb, primary)?);
                if let Some(m) = &c.mask {
                    inputs.composite_mask = Some(self.image(m, None, sb, primary)?);
                }
            }
            DrawOp::CopyBits { .. } | DrawOp::Nop => {}
        }
        Ok(inputs)
    }

    fn render(
        &self,
        canvas: &mut Canvas,
        d: &Drawable,
        region: &Region,
        inputs: &Inputs,
        self_surface: Option<&SurfaceSource>,
    ) -> Result<(), DrawError> {
        let bbox = d.bbox;
        let anchor = (bbox.left, bbox.top);
        let mask_of = |mask: &Option<Mask>| -> Option<render::Mask<'_>> {
            let (m, bits) = (mask.as_ref()?, inputs.mask.as_ref()?);
            Some(render::Mask {
                bits,
                invert: m.invert,
                origin: (m.origin.x, m.origin.y),
                anchor,
            })
        };
        let scaled = |src_area: Rect, scale: ScaleMode| -> Option<Scaled<'_>> {
            let r = inputs.src.as_ref()?;
            Some(Scaled {
                source: r.source(),
                src_area: r.area(src_area),
                dest: bbox,
                filter: filter(scale),
            })
        };
        match &d.op {
            DrawOp::Nop => {}
            DrawOp::Fill { brush, rop, mask } => {
                render::fill(
                    canvas,
                    region,
                    &brush_of(brush, &inputs.brush),
                    *rop,
                    mask_of(mask).as_ref(),
                );
            }
            DrawOp::Opaque { blit, brush } => {
                if let Some(s) = scaled(blit.src_area, blit.scale) {
                    render::opaque(
                        canvas,
                        region,
                        &s,
                        &brush_of(brush, &inputs.brush),
                        blit.rop,
                        mask_of(&blit.mask).as_ref(),
                    );
                }
            }
            DrawOp::Copy(blit) | DrawOp::Blend(blit) => {
                if let Some(s) = scaled(blit.src_area, blit.scale) {
                    render::blit(canvas, region, &s, blit.rop, mask_of(&blit.mask).as_ref());
                }
            }
            DrawOp::Blackness { mask } => {
                render::special(canvas, region, Ropd::OP_BLACKNESS, mask_of(mask).as_ref())
            }
            DrawOp::Whiteness { mask } => {
                render::special(canvas, region, Ropd::OP_WHITENESS, mask_of(mask).as_ref())
            }
            DrawOp::Invers { mask } => {
                render::special(canvas, region, Ropd::OP_INVERS, mask_of(mask).as_ref())
            }
            DrawOp::Rop3 {
                src_area,
                brush,
                rop3,
                scale,
                mask,
                ..
            } => {
                if let Some(s) = scaled(*src_area, *scale) {
                    render::rop3_blit(
                        canvas,
                        region,
                        &s,
                        &brush_of(brush, &inputs.brush),
                        *rop3,
                        mask_of(mask).as_ref(),
                    );
                }
            }
            DrawOp::Stroke {
                path,
                attr,
                brush,
                fore_mode,
                ..
            } => {
                let (lines, style) = (path_lines(path), line_style(attr));
                render::stroke(
                    canvas,
                    region,
                    &lines,
                    &style,
                    &brush_of(brush, &inputs.brush),
                    *fore_mode,
                );
            }
            DrawOp::Text {
                text,
                back_area,
                fore_brush,
                back_brush,
                fore_mode,
                back_mode,
            } => {
                if !matches!(back_brush, Brush::None) {
                    let back = region.intersect_rect(*back_area);
                    render::fill(
                        canvas,
                        &back,
                        &brush_of(back_brush, &inputs.back_brush),
                        *back_mode,
                        None,
                    );
                }
                let glyphs: Vec<GlyphBits> = text
                    .glyphs
                    .iter()
                    .map(|g| GlyphBits {
                        x: g.render_pos.x.saturating_add(g.origin.x),
                        y: g.render_pos.y.saturating_add(g.origin.y),
                        width: g.width,
                        height: g.height,
                        data: &g.data,
                    })
                    .collect();
                let depth = match text.depth {
                    super::commands::GlyphDepth::A1 => render::GlyphDepth::A1,
                    super::commands::GlyphDepth::A4 => render::GlyphDepth::A4,
                    super::commands::GlyphDepth::A8 => render::GlyphDepth::A8,
                };
                render::text(
                    canvas,
                    region,
                    &glyphs,
                    depth,
                    &brush_of(fore_brush, &inputs.brush),
                    *fore_mode,
                );
            }
            DrawOp::Transparent {
                src_area,
                src_color,
                ..
            } => {
                if let Some(s) = scaled(*src_area, ScaleMode::Nearest) {
                    render::transparent(canvas, region, &s, *src_color);
                }
            }
            DrawOp::AlphaBlend {
                flags,
                alpha,
                src_area,
                ..
            } => {
                if let Some(s) = scaled(*src_area, ScaleMode::Interpolate) {
                    render::alpha_blend(canvas, region, &s, *alpha, flags & 2 != 0);
                }
            }
            DrawOp::CopyBits { src_pos } => {
                let (dx, dy) = (
                    src_pos.x.saturating_sub(bbox.left),
                    src_pos.y.saturating_sub(bbox.top),
                );
                match self_surface {
                    // Off-screen: guest memory still holds the source unchanged.
                    Some(surface) => {
                        let s = Scaled {
                            source: surface,
                            src_area: bbox.translate(dx, dy),
                            dest: bbox,
                            filter: Filter::Nearest,
                        };
                        render::blit(canvas, region, &s, Ropd::PUT, None);
                    }
                    None => render::copy_bits(canvas, region, dx, dy),
                }
            }
            DrawOp::Composite(c) => {
                let Some(src) = inputs.src.as_ref() else {
                    return Ok(());
                };
                let params = CompositeParams {
                    op: c.op,
                    src: sampling(
                        src,
                        c.src_transform,
                        c.src_filter,
                        c.src_repeat,
                        c.src_origin,
                    ),
                    mask: inputs.composite_mask.as_ref().map(|m| {
                        sampling(
                            m,
                            c.mask_transform,
                            c.mask_filter,
                            c.mask_repeat,
                            c.mask_origin,
                        )
                    }),
                    component_alpha: c.component_alpha,
                    dest: bbox,
                };
                return render::composite(canvas, region, &params).map_err(DrawError::Composite);
            }
        }
        Ok(())
    }
}

fn brush_of<'r>(brush: &Brush, resolved: &'r Option<Resolved>) -> render::Brush<'r> {
    match (brush, resolved) {
        (Brush::Solid(c), _) => render::Brush::Solid(*c),
        (Brush::Pattern { origin, .. }, Some(r)) => render::Brush::Pattern {
            source: r.source(),
            origin: (origin.x, origin.y),
        },
        _ => render::Brush::None,
    }
}

fn sampling<'r>(
    r: &'r Resolved,
    transform: Option<Transform>,
    filter: u8,
    repeat: u8,
    origin: Point,
) -> Sampling<'r> {
    Sampling {
        source: r.source(),
        transform: transform.map(|t| t.0),
        filter: if filter == 0 {
            Filter::Nearest
        } else {
            Filter::Bilinear
        },
        repeat: Repeat::from_qxl(repeat),
        origin: (origin.x - r.offset.0, origin.y - r.offset.1),
    }
}

/// Turns a QXL path (28.4 fixed point, Bézier triples) into poly-lines.
pub fn path_lines(path: &Path) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut current = Line::default();
    let mut first = None;
    for seg in &path.segments {
        let pts: Vec<(i64, i64)> = seg
            .points
            .iter()
            .map(|p| Line::fixed_28_4(p.x, p.y))
            .collect();
        let mut i = 0;
        if seg.flags & PATH_BEGIN != 0 {
            if current.points.len() > 1 {
                lines.push(std::mem::take(&mut current));
            }
            current.points.clear();
            if let Some(&p) = pts.first() {
                current.points.push(p);
                first = Some(p);
                i = 1;
            }
        }
        if seg.flags & PATH_BEZIER != 0 {
            while i + 2 < pts.len() {
                current.curve_to(pts[i], pts[i + 1], pts[i + 2]);
                i += 3;
            }
        } else {
            current.points.extend_from_slice(&pts[i.min(pts.len())..]);
        }
        if seg.flags & PATH_END != 0 {
            if seg.flags & PATH_CLOSE != 0 {
                if let Some(p) = first {
                    current.points.push(p);
                }
            }
            if current.points.len() > 1 {
                lines.push(std::mem::take(&mut current));
            }
            current.points.clear();
        }
    }
    if current.points.len() > 1 {
        lines.push(current);
    }
    lines
}

fn line_style(attr: &LineAttr) -> LineStyle {
    let px = |v: i32| (((i64::from(v) + 8) >> 4).clamp(1, 1 << 16)) as u32;
    LineStyle {
        width: px(attr.width),
        dashes: if attr.flags & super::commands::LINE_STYLED != 0 {
            attr.style.iter().map(|&v| px(v)).collect()
        } else {
            Vec::new()
        },
        start_with_gap: attr.flags & LINE_START_WITH_GAP != 0,
    }
}

/// A display head read as a pixel source (none: an empty image).
struct HeadSource<'s>(Option<&'s crate::display::Surface>);

impl PixelSource for HeadSource<'_> {
    fn width(&self) -> u32 {
        self.0.map_or(0, |s| s.width)
    }
    fn height(&self) -> u32 {
        self.0.map_or(0, |s| s.height)
    }
    fn has_alpha(&self) -> bool {
        false
    }
    fn read_row(&self, x: u32, y: u32, out: &mut [u32]) {
        let Some(surface) = self.0.filter(|s| y < s.height) else {
            return;
        };
        let row = surface.row(y);
        for (i, o) in out.iter_mut().enumerate() {
            let at = 4 * (x as usize + i);
            *o = row
                .get(at..at + 4)
                .map_or(0, |p| u32::from_le_bytes([p[0], p[1], p[2], 0xff]));
        }
    }
}
