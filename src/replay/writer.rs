//! Writes events in libspice's `SPICE_REPLAY 1` format, byte for byte as
//! spice-server 0.15's recorder prints them (32-bit fields with `%d`, so
//! `0xFFFFFFFF` reads `-1`; blobs uncompressed), so that spice's own
//! replayer and [`super::reader`] both read what we write.

use std::fmt::Write as _;

use super::model::*;

/// The file header.
pub const HEADER: &[u8] = b"SPICE_REPLAY 1\n";

/// Appends one event (its line and its body) to `out`.
pub fn write_event(out: &mut Vec<u8>, event: &Event) {
    let (what, kind) = match &event.kind {
        EventKind::Command(c) => (0, c.type_number()),
        EventKind::Device { message, .. } => (1, *message),
    };
    let mut w = Writer(out);
    w.line(format_args!(
        "event {} {what} {kind} {}",
        event.counter, event.timestamp
    ));
    match &event.kind {
        EventKind::Command(c) => w.command(c),
        EventKind::Device { primary, .. } => {
            if let Some(p) = primary {
                w.primary(p);
            }
        }
    }
}

/// `%d` of a 32-bit field.
fn d(v: u32) -> i32 {
    v as i32
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn line(&mut self, args: std::fmt::Arguments) {
        let mut s = String::new();
        let _ = s.write_fmt(args);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(b'\n');
    }

    fn key(&mut self, key: &str, v: impl std::fmt::Display) {
        self.line(format_args!("{key} {v}"));
    }

    fn rect(&mut self, name: &str, r: &QRect) {
        self.line(format_args!(
            "rect {name} {} {} {} {}",
            r.top, r.left, r.bottom, r.right
        ));
    }

    fn point(&mut self, key: &str, p: &QPoint) {
        self.line(format_args!("{key} {} {}", p.x, p.y));
    }

    fn blob(&mut self, prefix: &str, data: &[u8]) {
        let _ = write!(StringSink(self.0), "binary 0 {prefix} {}:", data.len());
        self.0.extend_from_slice(data);
        self.0.push(b'\n');
    }

    fn chunks(&mut self, prefix: &str, chunks: &Chunks) {
        // At least one chunk is always written.
        let empty = vec![Vec::new()];
        let chunks = if chunks.is_empty() { &empty } else { chunks };
        self.line(format_args!(
            "data_chunks {} {}",
            chunks.len() - 1,
            chunks_len(chunks)
        ));
        for c in chunks {
            self.blob(prefix, c);
        }
    }

    fn primary(&mut self, p: &PrimaryCreate) {
        self.line(format_args!(
            "{} {} {} {}",
            d(p.width),
            d(p.height),
            p.stride,
            d(p.format)
        ));
        self.line(format_args!(
            "{} {} {} {}",
            d(p.position),
            d(p.mouse_mode),
            d(p.flags),
            d(p.kind)
        ));
        self.blob("data", &p.data);
    }

    fn command(&mut self, c: &Command) {
        match c {
            Command::Empty(_) => {}
            Command::Draw(d) => self.drawable(d),
            Command::Update(u) => {
                self.line(format_args!("update"));
                self.rect("area", &u.area);
                self.key("update_id", d(u.update_id));
                self.key("surface_id", d(u.surface_id));
            }
            Command::Cursor(c) => self.cursor(c),
            Command::Message(m) => self.blob("message", m),
            Command::Surface(s) => self.surface(s),
        }
    }

    fn surface(&mut self, s: &SurfaceCmd) {
        self.line(format_args!("surface_cmd"));
        self.key("surface_id", d(s.surface_id));
        let kind = match s.kind {
            SurfaceCmdKind::Create { .. } => 0,
            SurfaceCmdKind::Destroy => 1,
        };
        self.key("type", kind);
        self.key("flags", d(s.flags));
        if let SurfaceCmdKind::Create {
            format,
            width,
            height,
            stride,
            data,
        } = &s.kind
        {
            self.key("u.surface_create.format", d(*format));
            self.key("u.surface_create.width", d(*width));
            self.key("u.surface_create.height", d(*height));
            self.key("u.surface_create.stride", stride);
            if let Some(data) = data {
                self.blob("data", data);
            }
        }
    }

    fn cursor(&mut self, c: &CursorCmd) {
        self.line(format_args!("cursor_cmd"));
        match c {
            CursorCmd::Set {
                pos,
                visible,
                shape,
            } => {
                self.key("type", 0);
                self.point("point16", pos);
                self.key("u.set.visible", visible);
                self.key("header.unique", shape.unique);
                self.key("header.type", shape.kind);
                self.key("header.width", shape.width);
                self.key("header.height", shape.height);
                self.key("header.hot_spot_x", shape.hot_x);
                self.key("header.hot_spot_y", shape.hot_y);
                self.key("data_size", d(shape.data_size));
                self.chunks("cursor", &shape.chunks);
            }
            CursorCmd::Move { pos } => {
                self.key("type", 1);
                self.point("point16", pos);
            }
            CursorCmd::Hide => self.key("type", 2),
            CursorCmd::Trail { length, frequency } => {
                self.key("type", 3);
                self.key("u.trail.length", length);
                self.key("u.trail.frequency", frequency);
            }
        }
    }

    fn drawable(&mut self, dr: &Drawable) {
        self.line(format_args!("drawable"));
        self.rect("bbox", &dr.bbox);
        match &dr.clip {
            None => self.key("type", 0),
            Some((n, chunks)) => {
                self.key("type", 1);
                self.key("num_rects", d(*n));
                self.chunks("clip_rects", chunks);
            }
        }
        self.key("effect", dr.effect);
        self.key("mm_time", d(dr.mm_time));
        match &dr.layout {
            DrawableLayout::Native {
                self_bitmap,
                self_bitmap_area,
                surface_id,
                surfaces_dest,
                surfaces_rects,
            } => {
                self.key("self_bitmap", self_bitmap);
                self.rect("self_bitmap_area", self_bitmap_area);
                self.key("surface_id", d(*surface_id));
                for i in 0..3 {
                    self.key("surfaces_dest", surfaces_dest[i]);
                    self.rect("surfaces_rects", &surfaces_rects[i]);
                }
            }
            DrawableLayout::Compat {
                bitmap_offset,
                bitmap_area,
            } => {
                self.key("bitmap_offset", d(*bitmap_offset));
                self.rect("bitmap_area", bitmap_area);
            }
        }
        self.key("type", dr.op.type_number());
        self.draw_op(&dr.op);
    }

    fn draw_op(&mut self, op: &DrawOp) {
        match op {
            DrawOp::Nop => {}
            DrawOp::Fill {
                brush,
                rop_descriptor,
                mask,
            } => {
                self.brush(brush);
                self.key("rop_descriptor", rop_descriptor);
                self.qmask(mask);
            }
            DrawOp::Opaque {
                src,
                src_area,
                brush,
                rop_descriptor,
                scale_mode,
                mask,
            } => {
                self.image(src.as_ref());
                self.rect("src_area", src_area);
                self.brush(brush);
                self.key("rop_descriptor", rop_descriptor);
                self.key("scale_mode", scale_mode);
                self.qmask(mask);
            }
            DrawOp::Copy(b) | DrawOp::Blend(b) => {
                self.image(b.src.as_ref());
                self.rect("src_area", &b.src_area);
                self.key("rop_descriptor", b.rop_descriptor);
                self.key("scale_mode", b.scale_mode);
                self.qmask(&b.mask);
            }
            DrawOp::CopyBits { src_pos } => self.point("point", src_pos),
            DrawOp::Blackness(m) | DrawOp::Whiteness(m) | DrawOp::Invers(m) => self.qmask(m),
            DrawOp::Rop3 {
                src,
                src_area,
                brush,
                rop3,
                scale_mode,
                mask,
            } => {
                self.image(src.as_ref());
                self.rect("src_area", src_area);
                self.brush(brush);
                self.key("rop3", rop3);
                self.key("scale_mode", scale_mode);
                self.qmask(mask);
            }
            DrawOp::Stroke {
                path,
                attr_flags,
                style,
                brush,
                fore_mode,
                back_mode,
            } => {
                self.chunks("path", path);
                self.key("attr.flags", attr_flags);
                if let Some((nseg, bytes)) = style {
                    self.key("attr.style_nseg", nseg);
                    self.blob("style", bytes);
                }
                self.brush(brush);
                self.key("fore_mode", fore_mode);
                self.key("back_mode", back_mode);
            }
            DrawOp::Text {
                string,
                back_area,
                fore_brush,
                back_brush,
                fore_mode,
                back_mode,
            } => {
                self.key("data_size", d(string.data_size));
                self.key("length", string.length);
                self.key("flags", string.flags);
                self.chunks("string", &string.chunks);
                self.rect("back_area", back_area);
                self.brush(fore_brush);
                self.brush(back_brush);
                self.key("fore_mode", fore_mode);
                self.key("back_mode", back_mode);
            }
            DrawOp::Transparent {
                src,
                src_area,
                src_color,
                true_color,
            } => {
                self.image(src.as_ref());
                self.rect("src_area", src_area);
                self.key("src_color", d(*src_color));
                self.key("true_color", d(*true_color));
            }
            DrawOp::AlphaBlend {
                alpha_flags,
                alpha,
                src,
                src_area,
            } => {
                if let Some(f) = alpha_flags {
                    self.key("alpha_flags", f);
                }
                self.key("alpha", alpha);
                self.image(src.as_ref());
                self.rect("src_area", src_area);
            }
            DrawOp::Composite(c) => {
                self.key("flags", d(c.flags));
                self.image(c.src.as_ref());
                self.key("src_transform", u8::from(c.src_transform.is_some()));
                if let Some(t) = &c.src_transform {
                    self.blob("transform", t);
                }
                self.key("mask", u8::from(c.mask.is_some()));
                if let Some(m) = &c.mask {
                    self.image(Some(m));
                }
                self.key("mask_transform", u8::from(c.mask_transform.is_some()));
                if let Some(t) = &c.mask_transform {
                    self.blob("transform", t);
                }
                self.point("src_origin", &c.src_origin);
                self.point("mask_origin", &c.mask_origin);
            }
        }
    }

    fn brush(&mut self, b: &Brush) {
        match b {
            Brush::None => self.key("type", 0),
            Brush::Solid(color) => {
                self.key("type", 1);
                self.key("u.color", d(*color));
            }
            Brush::Pattern { image, pos } => {
                self.key("type", 2);
                self.image(image.as_ref());
                self.point("point", pos);
            }
        }
    }

    fn qmask(&mut self, m: &QMask) {
        self.key("flags", m.flags);
        self.point("point", &m.pos);
        self.image(m.bitmap.as_ref());
    }

    fn image(&mut self, image: Option<&Image>) {
        let Some(i) = image else {
            self.key("image", 0);
            return;
        };
        self.key("image", 1);
        self.key("descriptor.id", i.id);
        self.key("descriptor.type", i.type_number());
        self.key("descriptor.flags", i.flags);
        self.key("descriptor.width", d(i.width));
        self.key("descriptor.height", d(i.height));
        match &i.body {
            ImageBody::Bitmap(b) => {
                self.key("bitmap.format", b.format);
                self.key("bitmap.flags", b.flags);
                self.key("bitmap.x", d(b.x));
                self.key("bitmap.y", d(b.y));
                self.key("bitmap.stride", d(b.stride));
                self.key("has_palette", u8::from(b.palette.is_some()));
                if let Some(p) = &b.palette {
                    self.key("qp.num_ents", p.ents.len());
                    self.key("unique", p.unique);
                    for e in &p.ents {
                        self.key("ents", d(*e));
                    }
                }
                if b.flags & BITMAP_DIRECT != 0 {
                    let flat: Vec<u8> = b.data.concat();
                    self.blob("image_data_flat", &flat);
                } else {
                    self.chunks("bitmap.data", &b.data);
                }
            }
            ImageBody::Quic { data_size, chunks } => {
                self.key("quic.data_size", d(*data_size));
                self.chunks("quic.data", chunks);
            }
            ImageBody::Surface(id) => self.key("surface_image.surface_id", d(*id)),
        }
    }
}

/// `fmt::Write` into a byte vector.
struct StringSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for StringSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
