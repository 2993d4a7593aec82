//! Lays a recorded command out in device memory the way a guest driver
//! does: packed little-endian QXL structures (spice-protocol's
//! `qxl_dev.h`, sizes in docs/qxl.md Appendix A), chunk
//! lists linked through `QXLDataChunk` headers, null pointers where the
//! recording had none.
//!
//! A command becomes one [`Block`]: its bytes plus the places that hold a
//! QXLPHYSICAL. Addresses are filled in by [`Block::link`] once the driver
//! knows where in its memslot the block goes, so every pointer is made by
//! the same (checked) encoding. Off-screen surface pixels go to the surface
//! BAR instead ([`Prepared::surface_memory`]).

use super::model::*;

/// Bytes of each structure (packed).
pub mod size {
    pub const DRAWABLE: usize = 191;
    pub const CHUNK_HEADER: usize = 20;
    pub const IMAGE_BITMAP: usize = 48;
    pub const IMAGE_SURFACE: usize = 22;
    pub const IMAGE_QUIC: usize = 22;
    pub const PALETTE_HEADER: usize = 10;
    pub const SURFACE_CMD: usize = 41;
    pub const UPDATE_CMD: usize = 32;
    pub const CURSOR_CMD: usize = 150;
    pub const CURSOR_HEADER: usize = 22;
    pub const MESSAGE_HEADER: usize = 8;
    pub const TRANSFORM: usize = 24;
}

/// What a pointer field points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An offset inside the same block.
    Local(usize),
    /// The start of the command's surface memory.
    SurfaceMemory,
}

/// A command's structures before they get an address.
#[derive(Debug, Default)]
pub struct Block {
    pub bytes: Vec<u8>,
    pointers: Vec<(usize, Target)>,
}

impl Block {
    /// Appends `len` zero bytes, 8-byte aligned; returns their offset.
    fn alloc(&mut self, len: usize) -> usize {
        let at = self.bytes.len().next_multiple_of(8);
        self.bytes.resize(at + len, 0);
        at
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn u8(&mut self, at: usize, v: u8) {
        self.bytes[at] = v;
    }

    fn u16(&mut self, at: usize, v: u16) {
        self.put(at, &v.to_le_bytes());
    }

    fn u32(&mut self, at: usize, v: u32) {
        self.put(at, &v.to_le_bytes());
    }

    fn i32(&mut self, at: usize, v: i32) {
        self.put(at, &v.to_le_bytes());
    }

    fn u64(&mut self, at: usize, v: u64) {
        self.put(at, &v.to_le_bytes());
    }

    fn rect(&mut self, at: usize, r: &QRect) {
        self.i32(at, r.top);
        self.i32(at + 4, r.left);
        self.i32(at + 8, r.bottom);
        self.i32(at + 12, r.right);
    }

    fn point(&mut self, at: usize, p: &QPoint) {
        self.i32(at, p.x);
        self.i32(at + 4, p.y);
    }

    fn point16(&mut self, at: usize, p: &QPoint) {
        self.u16(at, p.x as i16 as u16);
        self.u16(at + 2, p.y as i16 as u16);
    }

    fn pointer(&mut self, at: usize, target: Target) {
        self.pointers.push((at, target));
    }

    /// Fills in every pointer: `local(offset)` is the address of the
    /// block's byte `offset`, `surface` that of the surface memory. None if
    /// an address cannot be made.
    pub fn link(
        &mut self,
        local: impl Fn(usize) -> Option<u64>,
        surface: Option<u64>,
    ) -> Option<()> {
        for (at, target) in std::mem::take(&mut self.pointers) {
            let addr = match target {
                Target::Local(offset) => local(offset)?,
                Target::SurfaceMemory => surface?,
            };
            self.u64(at, addr);
        }
        Some(())
    }

    /// Writes a chunk list whose first `QXLDataChunk` header is at
    /// `first` (already allocated); later chunks are appended.
    fn chunk_list(&mut self, first: usize, chunks: &Chunks) {
        let empty = Vec::new();
        let head = chunks.first().unwrap_or(&empty);
        self.u32(first, head.len() as u32);
        let data = first + size::CHUNK_HEADER;
        self.put(data, head);
        let mut previous = first;
        for chunk in chunks.iter().skip(1) {
            let at = self.alloc(size::CHUNK_HEADER + chunk.len());
            self.u32(at, chunk.len() as u32);
            self.pointer(at + 4, Target::Local(previous));
            self.put(at + size::CHUNK_HEADER, chunk);
            self.pointer(previous + 12, Target::Local(at));
            previous = at;
        }
    }

    /// A structure of `header` bytes followed by an inline chunk list.
    fn with_chunks(&mut self, header: usize, chunks: &Chunks) -> usize {
        let first_len = chunks.first().map_or(0, Vec::len);
        let at = self.alloc(header + size::CHUNK_HEADER + first_len);
        self.chunk_list(at + header, chunks);
        at
    }
}

/// Which ring a command goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    Command,
    Cursor,
}

/// A command ready to be placed.
#[derive(Debug)]
pub struct Prepared {
    pub ring: RingKind,
    pub kind: u32,
    pub block: Block,
    /// Off-screen surface memory this command needs: its size, and the
    /// initial pixels (KEEP_DATA).
    pub surface_memory: Option<(u64, Option<Vec<u8>>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("compat drawables (QXL revision 1 drivers) cannot be replayed")]
    Compat,
    #[error("{0} commands have no body to replay")]
    Empty(u32),
    #[error("surface of {0} bytes is too large")]
    SurfaceSize(u64),
}

/// Builds the structures of `command`; `id` goes in its release info.
pub fn prepare(command: &Command, id: u64) -> Result<Prepared, LayoutError> {
    let mut b = Block::default();
    let mut surface_memory = None;
    let (ring, kind) = match command {
        Command::Empty(t) => return Err(LayoutError::Empty(*t)),
        Command::Draw(d) => {
            drawable(&mut b, d, id)?;
            (RingKind::Command, command::DRAW)
        }
        Command::Update(u) => {
            let at = b.alloc(size::UPDATE_CMD);
            b.u64(at, id);
            b.rect(at + 8, &u.area);
            b.u32(at + 24, u.update_id);
            b.u32(at + 28, u.surface_id);
            (RingKind::Command, command::UPDATE)
        }
        Command::Message(text) => {
            let at = b.alloc(size::MESSAGE_HEADER + text.len() + 1);
            b.u64(at, id);
            b.put(at + size::MESSAGE_HEADER, text);
            (RingKind::Command, command::MESSAGE)
        }
        Command::Surface(s) => {
            let at = b.alloc(size::SURFACE_CMD);
            b.u64(at, id);
            b.u32(at + 8, s.surface_id);
            b.u32(at + 13, s.flags);
            match &s.kind {
                SurfaceCmdKind::Create {
                    format,
                    width,
                    height,
                    stride,
                    data,
                } => {
                    b.u8(at + 12, 0);
                    b.u32(at + 17, *format);
                    b.u32(at + 21, *width);
                    b.u32(at + 25, *height);
                    b.i32(at + 29, *stride);
                    let bytes = u64::from(*height) * u64::from(stride.unsigned_abs());
                    if bytes > devices::qxl::defs::MAX_SURFACE_BYTES {
                        return Err(LayoutError::SurfaceSize(bytes));
                    }
                    if bytes > 0 {
                        b.pointer(at + 33, Target::SurfaceMemory);
                        surface_memory = Some((bytes, data.clone()));
                    }
                }
                SurfaceCmdKind::Destroy => b.u8(at + 12, 1),
            }
            (RingKind::Command, command::SURFACE)
        }
        Command::Cursor(c) => {
            let at = b.alloc(size::CURSOR_CMD);
            b.u64(at, id);
            match c {
                CursorCmd::Set {
                    pos,
                    visible,
                    shape,
                } => {
                    b.u8(at + 8, 0);
                    b.point16(at + 9, pos);
                    b.u8(at + 13, *visible);
                    let cursor = b.with_chunks(size::CURSOR_HEADER, &shape.chunks);
                    b.u64(cursor, shape.unique);
                    b.u16(cursor + 8, shape.kind);
                    b.u16(cursor + 10, shape.width);
                    b.u16(cursor + 12, shape.height);
                    b.u16(cursor + 14, shape.hot_x);
                    b.u16(cursor + 16, shape.hot_y);
                    // spice's replayer uses the chunk total, not the recorded size.
                    b.u32(cursor + 18, chunks_len(&shape.chunks) as u32);
                    b.pointer(at + 14, Target::Local(cursor));
                }
                CursorCmd::Move { pos } => {
                    b.u8(at + 8, 1);
                    b.point16(at + 9, pos);
                }
                CursorCmd::Hide => b.u8(at + 8, 2),
                CursorCmd::Trail { length, frequency } => {
                    b.u8(at + 8, 3);
                    b.u16(at + 9, *length);
                    b.u16(at + 11, *frequency);
                }
            }
            (RingKind::Cursor, command::CURSOR)
        }
    };
    Ok(Prepared {
        ring,
        kind,
        block: b,
        surface_memory,
    })
}

fn drawable(b: &mut Block, d: &Drawable, id: u64) -> Result<(), LayoutError> {
    let DrawableLayout::Native {
        self_bitmap,
        self_bitmap_area,
        surface_id,
        surfaces_dest,
        surfaces_rects,
    } = &d.layout
    else {
        return Err(LayoutError::Compat);
    };
    let at = b.alloc(size::DRAWABLE);
    b.u64(at, id);
    b.u32(at + 8, *surface_id);
    b.u8(at + 12, d.effect);
    b.u8(at + 13, d.op.type_number());
    b.u8(at + 14, *self_bitmap);
    b.rect(at + 15, self_bitmap_area);
    b.rect(at + 31, &d.bbox);
    if let Some((num_rects, chunks)) = &d.clip {
        b.u32(at + 47, 1);
        let clip = b.with_chunks(4, chunks);
        b.u32(clip, *num_rects);
        b.pointer(at + 51, Target::Local(clip));
    }
    b.u32(at + 59, d.mm_time);
    for i in 0..3 {
        b.i32(at + 63 + 4 * i, surfaces_dest[i]);
        b.rect(at + 75 + 16 * i, &surfaces_rects[i]);
    }
    draw_union(b, at + 123, &d.op);
    Ok(())
}

/// The op-specific part of a drawable at `u`.
fn draw_union(b: &mut Block, u: usize, op: &DrawOp) {
    match op {
        DrawOp::Nop => {}
        DrawOp::Fill {
            brush,
            rop_descriptor,
            mask,
        } => {
            put_brush(b, u, brush);
            b.u16(u + 20, *rop_descriptor);
            put_qmask(b, u + 22, mask);
        }
        DrawOp::Opaque {
            src,
            src_area,
            brush,
            rop_descriptor,
            scale_mode,
            mask,
        } => {
            put_image_ptr(b, u, src.as_ref());
            b.rect(u + 8, src_area);
            put_brush(b, u + 24, brush);
            b.u16(u + 44, *rop_descriptor);
            b.u8(u + 46, *scale_mode);
            put_qmask(b, u + 47, mask);
        }
        DrawOp::Copy(blit) | DrawOp::Blend(blit) => {
            put_image_ptr(b, u, blit.src.as_ref());
            b.rect(u + 8, &blit.src_area);
            b.u16(u + 24, blit.rop_descriptor);
            b.u8(u + 26, blit.scale_mode);
            put_qmask(b, u + 27, &blit.mask);
        }
        DrawOp::CopyBits { src_pos } => b.point(u, src_pos),
        DrawOp::Blackness(m) | DrawOp::Whiteness(m) | DrawOp::Invers(m) => put_qmask(b, u, m),
        DrawOp::Rop3 {
            src,
            src_area,
            brush,
            rop3,
            scale_mode,
            mask,
        } => {
            put_image_ptr(b, u, src.as_ref());
            b.rect(u + 8, src_area);
            put_brush(b, u + 24, brush);
            b.u8(u + 44, *rop3);
            b.u8(u + 45, *scale_mode);
            put_qmask(b, u + 46, mask);
        }
        DrawOp::Stroke {
            path,
            attr_flags,
            style,
            brush,
            fore_mode,
            back_mode,
        } => {
            // QXLPath: data_size, then the first chunk.
            let p = b.with_chunks(4, path);
            b.u32(p, chunks_len(path) as u32);
            b.pointer(u, Target::Local(p));
            b.u8(u + 8, *attr_flags);
            if let Some((nseg, bytes)) = style {
                b.u8(u + 8 + 3, *nseg);
                let s = b.alloc(bytes.len());
                b.put(s, bytes);
                b.pointer(u + 8 + 12, Target::Local(s));
            }
            put_brush(b, u + 28, brush);
            b.u16(u + 48, *fore_mode);
            b.u16(u + 50, *back_mode);
        }
        DrawOp::Text {
            string,
            back_area,
            fore_brush,
            back_brush,
            fore_mode,
            back_mode,
        } => {
            let s = b.with_chunks(8, &string.chunks);
            b.u32(s, string.data_size);
            b.u16(s + 4, string.length);
            b.u16(s + 6, string.flags);
            b.pointer(u, Target::Local(s));
            b.rect(u + 8, back_area);
            put_brush(b, u + 24, fore_brush);
            put_brush(b, u + 44, back_brush);
            b.u16(u + 64, *fore_mode);
            b.u16(u + 66, *back_mode);
        }
        DrawOp::Transparent {
            src,
            src_area,
            src_color,
            true_color,
        } => {
            put_image_ptr(b, u, src.as_ref());
            b.rect(u + 8, src_area);
            b.u32(u + 24, *src_color);
            b.u32(u + 28, *true_color);
        }
        DrawOp::AlphaBlend {
            alpha_flags,
            alpha,
            src,
            src_area,
        } => {
            b.u16(u, alpha_flags.unwrap_or(0));
            b.u8(u + 2, *alpha);
            put_image_ptr(b, u + 3, src.as_ref());
            b.rect(u + 11, src_area);
        }
        DrawOp::Composite(c) => {
            b.u32(u, c.flags);
            put_image_ptr(b, u + 4, c.src.as_ref());
            if let Some(t) = &c.src_transform {
                let at = b.alloc(size::TRANSFORM);
                b.put(at, &t[..t.len().min(size::TRANSFORM)]);
                b.pointer(u + 12, Target::Local(at));
            }
            put_image_ptr(b, u + 20, c.mask.as_ref());
            if let Some(t) = &c.mask_transform {
                let at = b.alloc(size::TRANSFORM);
                b.put(at, &t[..t.len().min(size::TRANSFORM)]);
                b.pointer(u + 28, Target::Local(at));
            }
            b.point16(u + 36, &c.src_origin);
            b.point16(u + 40, &c.mask_origin);
        }
    }
}

/// A `QXLBrush` (20 bytes) at `at`.
fn put_brush(b: &mut Block, at: usize, brush: &Brush) {
    match brush {
        Brush::None => b.u32(at, 0),
        Brush::Solid(color) => {
            b.u32(at, 1);
            b.u32(at + 4, *color);
        }
        Brush::Pattern { image, pos } => {
            b.u32(at, 2);
            put_image_ptr(b, at + 4, image.as_ref());
            b.point(at + 12, pos);
        }
    }
}

/// A `QXLQMask` (17 bytes) at `at`.
fn put_qmask(b: &mut Block, at: usize, mask: &QMask) {
    b.u8(at, mask.flags);
    b.point(at + 1, &mask.pos);
    put_image_ptr(b, at + 9, mask.bitmap.as_ref());
}

/// Writes the image (if any) and points the field at `at` to it.
fn put_image_ptr(b: &mut Block, at: usize, image: Option<&Image>) {
    if let Some(image) = image {
        let i = put_image(b, image);
        b.pointer(at, Target::Local(i));
    }
}

fn put_image(b: &mut Block, image: &Image) -> usize {
    let descriptor = |b: &mut Block, at: usize| {
        b.u64(at, image.id);
        b.u8(at + 8, image.type_number());
        b.u8(at + 9, image.flags);
        b.u32(at + 10, image.width);
        b.u32(at + 14, image.height);
    };
    match &image.body {
        ImageBody::Bitmap(bm) => {
            let at = b.alloc(size::IMAGE_BITMAP);
            descriptor(b, at);
            b.u8(at + 18, bm.format);
            b.u8(at + 19, bm.flags);
            b.u32(at + 20, bm.x);
            b.u32(at + 24, bm.y);
            b.u32(at + 28, bm.stride);
            if let Some(p) = &bm.palette {
                let pal = b.alloc(size::PALETTE_HEADER + 4 * p.ents.len());
                b.u64(pal, p.unique);
                b.u16(pal + 8, p.ents.len() as u16);
                for (i, e) in p.ents.iter().enumerate() {
                    b.u32(pal + size::PALETTE_HEADER + 4 * i, *e);
                }
                b.pointer(at + 32, Target::Local(pal));
            }
            if bm.flags & BITMAP_DIRECT != 0 {
                let len = chunks_len(&bm.data) as usize;
                let data = b.alloc(len);
                let mut o = data;
                for c in &bm.data {
                    b.put(o, c);
                    o += c.len();
                }
                b.pointer(at + 40, Target::Local(data));
            } else {
                let first_len = bm.data.first().map_or(0, Vec::len);
                let chunk = b.alloc(size::CHUNK_HEADER + first_len);
                b.chunk_list(chunk, &bm.data);
                b.pointer(at + 40, Target::Local(chunk));
            }
            at
        }
        ImageBody::Quic { data_size, chunks } => {
            let at = b.with_chunks(size::IMAGE_QUIC, chunks);
            descriptor(b, at);
            b.u32(at + 18, *data_size);
            at
        }
        ImageBody::Surface(id) => {
            let at = b.alloc(size::IMAGE_SURFACE);
            descriptor(b, at);
            b.u32(at + 18, *id);
            at
        }
    }
}
