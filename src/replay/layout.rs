//! Lays a recorded command out in device memory the way a guest driver
//! does: the QXL structures of [`devices::qxl::abi`] (the same ones the
//! device parses), chunk lists linked through `QXLDataChunk` headers, null
//! pointers where the recording had none.
//!
//! A command becomes one [`Block`]: its bytes plus the places that hold a
//! QXLPHYSICAL. Addresses are filled in by [`Block::link`] once the driver
//! knows where in its memslot the block goes, so every pointer is made by
//! the same (checked) encoding. Off-screen surface pixels go to the surface
//! BAR instead ([`Prepared::surface_memory`]).

use core::mem::{offset_of, size_of};

use devices::qxl::abi::*;
use zerocopy::{FromZeros, Immutable, IntoBytes};

use super::model::*;

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

    /// Appends `value` (8-byte aligned); returns its offset.
    fn add<T: IntoBytes + Immutable>(&mut self, value: &T) -> usize {
        let at = self.alloc(size_of::<T>());
        self.put(at, value.as_bytes());
        at
    }

    /// Overwrites the structure at `at` (allocated earlier) with `value`.
    fn set<T: IntoBytes + Immutable>(&mut self, at: usize, value: &T) {
        self.put(at, value.as_bytes());
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
            self.put(at, &addr.to_le_bytes());
        }
        Some(())
    }

    /// Writes a chunk list whose first `QXLDataChunk` header is at
    /// `first` (already allocated with room for the first chunk's data);
    /// later chunks are appended.
    fn chunk_list(&mut self, first: usize, chunks: &Chunks) {
        const HEADER: usize = size_of::<QxlDataChunk>();
        const NEXT: usize = offset_of!(QxlDataChunk, next_chunk);
        const PREV: usize = offset_of!(QxlDataChunk, prev_chunk);
        let empty = Vec::new();
        let head = chunks.first().unwrap_or(&empty);
        self.set(first, &chunk_header(head));
        self.put(first + HEADER, head);
        let mut previous = first;
        for chunk in chunks.iter().skip(1) {
            let at = self.alloc(HEADER + chunk.len());
            self.set(at, &chunk_header(chunk));
            self.pointer(at + PREV, Target::Local(previous));
            self.put(at + HEADER, chunk);
            self.pointer(previous + NEXT, Target::Local(at));
            previous = at;
        }
    }

    /// A structure `head` that ends in its first chunk's header (at
    /// `chunk`), followed by that chunk's data and the rest of the list.
    fn with_chunks<T: IntoBytes + Immutable>(
        &mut self,
        head: &T,
        chunk: usize,
        chunks: &Chunks,
    ) -> usize {
        let first_len = chunks.first().map_or(0, Vec::len);
        let at = self.alloc(size_of::<T>() + first_len);
        self.set(at, head);
        self.chunk_list(at + chunk, chunks);
        at
    }
}

fn chunk_header(data: &[u8]) -> QxlDataChunk {
    QxlDataChunk {
        data_size: (data.len() as u32).into(),
        ..FromZeros::new_zeroed()
    }
}

fn rect(r: &QRect) -> QxlRect {
    QxlRect::new(r.top, r.left, r.bottom, r.right)
}

fn point(p: &QPoint) -> QxlPoint {
    QxlPoint {
        x: p.x.into(),
        y: p.y.into(),
    }
}

fn point16(p: &QPoint) -> QxlPoint16 {
    QxlPoint16 {
        x: (p.x as i16).into(),
        y: (p.y as i16).into(),
    }
}

/// Which ring a command goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    Command,
    Cursor,
}

/// Off-screen surface memory a command needs: its size, and the initial
/// pixels (KEEP_DATA).
pub type SurfaceMemory = (u64, Option<Vec<u8>>);

/// A command ready to be placed.
#[derive(Debug)]
pub struct Prepared {
    pub ring: RingKind,
    pub kind: u32,
    pub block: Block,
    pub surface_memory: Option<SurfaceMemory>,
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
            b.add(&QxlUpdateCmd {
                release_info: id.into(),
                area: rect(&u.area),
                update_id: u.update_id.into(),
                surface_id: u.surface_id.into(),
            });
            (RingKind::Command, command::UPDATE)
        }
        Command::Message(text) => {
            let at = b.add(&QxlMessage {
                release_info: id.into(),
            });
            let body = b.alloc(text.len() + 1);
            debug_assert_eq!(body, at + size_of::<QxlMessage>());
            b.put(body, text);
            (RingKind::Command, command::MESSAGE)
        }
        Command::Surface(s) => {
            surface_memory = surface_cmd(&mut b, s, id)?;
            (RingKind::Command, command::SURFACE)
        }
        Command::Cursor(c) => {
            cursor_cmd(&mut b, c, id);
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

/// A `QXLSurfaceCmd`; returns the surface memory it needs.
fn surface_cmd(
    b: &mut Block,
    s: &SurfaceCmd,
    id: u64,
) -> Result<Option<SurfaceMemory>, LayoutError> {
    let mut cmd = QxlSurfaceCmd {
        release_info: id.into(),
        surface_id: s.surface_id.into(),
        flags: s.flags.into(),
        ..FromZeros::new_zeroed()
    };
    let SurfaceCmdKind::Create {
        format,
        width,
        height,
        stride,
        data,
    } = &s.kind
    else {
        cmd.kind = 1;
        b.add(&cmd);
        return Ok(None);
    };
    cmd.format = (*format).into();
    cmd.width = (*width).into();
    cmd.height = (*height).into();
    cmd.stride = (*stride).into();
    let at = b.add(&cmd);
    let bytes = u64::from(*height) * u64::from(stride.unsigned_abs());
    if bytes > devices::qxl::defs::MAX_SURFACE_BYTES {
        return Err(LayoutError::SurfaceSize(bytes));
    }
    if bytes == 0 {
        return Ok(None);
    }
    b.pointer(at + offset_of!(QxlSurfaceCmd, data), Target::SurfaceMemory);
    Ok(Some((bytes, data.clone())))
}

/// A `QXLCursorCmd` (with the device data the device never reads).
fn cursor_cmd(b: &mut Block, c: &CursorCmd, id: u64) {
    let mut cmd = QxlCursorCmd {
        release_info: id.into(),
        ..FromZeros::new_zeroed()
    };
    let mut shape_at = None;
    match c {
        CursorCmd::Set {
            pos,
            visible,
            shape,
        } => {
            cmd.pos = point16(pos);
            cmd.visible = *visible;
            let cursor = QxlCursor {
                unique: shape.unique.into(),
                kind: shape.kind.into(),
                width: shape.width.into(),
                height: shape.height.into(),
                hot_x: shape.hot_x.into(),
                hot_y: shape.hot_y.into(),
                // spice's replayer uses the chunk total, not the recorded size.
                data_size: (chunks_len(&shape.chunks) as u32).into(),
                chunk: QxlDataChunk::new_zeroed(),
            };
            shape_at = Some((cursor, shape));
        }
        CursorCmd::Move { pos } => {
            cmd.kind = 1;
            cmd.pos = point16(pos);
        }
        CursorCmd::Hide => cmd.kind = 2,
        CursorCmd::Trail { length, frequency } => {
            cmd.kind = 3;
            cmd.pos = QxlPoint16 {
                x: (*length as i16).into(),
                y: (*frequency as i16).into(),
            };
        }
    }
    let at = b.alloc(CURSOR_CMD_SIZE);
    b.set(at, &cmd);
    if let Some((cursor, shape)) = shape_at {
        let chunk = offset_of!(QxlCursor, chunk);
        let cursor = b.with_chunks(&cursor, chunk, &shape.chunks);
        b.pointer(at + offset_of!(QxlCursorCmd, shape), Target::Local(cursor));
    }
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
    let mut raw = QxlDrawable {
        release_info: id.into(),
        surface_id: (*surface_id).into(),
        effect: d.effect,
        kind: d.op.type_number(),
        self_bitmap: *self_bitmap,
        self_bitmap_area: rect(self_bitmap_area),
        bbox: rect(&d.bbox),
        mm_time: d.mm_time.into(),
        surfaces_dest: surfaces_dest.map(Into::into),
        surfaces_rects: std::array::from_fn(|i| rect(&surfaces_rects[i])),
        ..FromZeros::new_zeroed()
    };
    if d.clip.is_some() {
        raw.clip.kind = 1.into();
    }
    let at = b.add(&raw);
    if let Some((num_rects, chunks)) = &d.clip {
        let head = QxlClipRects {
            num_rects: (*num_rects).into(),
            chunk: QxlDataChunk::new_zeroed(),
        };
        let clip = b.with_chunks(&head, offset_of!(QxlClipRects, chunk), chunks);
        let field = offset_of!(QxlDrawable, clip) + offset_of!(QxlClip, data);
        b.pointer(at + field, Target::Local(clip));
    }
    draw_union(b, at + offset_of!(QxlDrawable, u), &d.op);
    Ok(())
}

/// The op-specific part of a drawable at `u`: its structure, with the
/// pointers of its fields (offsets in the structure) filled in later.
fn draw_union(b: &mut Block, u: usize, op: &DrawOp) {
    match op {
        DrawOp::Nop => {}
        DrawOp::Fill {
            brush,
            rop_descriptor,
            mask,
        } => {
            let fill = QxlFill {
                brush: put_brush(b, u + offset_of!(QxlFill, brush), brush),
                rop_descriptor: (*rop_descriptor).into(),
                mask: put_qmask(b, u + offset_of!(QxlFill, mask), mask),
            };
            b.set(u, &fill);
        }
        DrawOp::Opaque {
            src,
            src_area,
            brush,
            rop_descriptor,
            scale_mode,
            mask,
        } => {
            put_image_ptr(b, u + offset_of!(QxlOpaque, src_bitmap), src.as_ref());
            let opaque = QxlOpaque {
                src_bitmap: 0.into(),
                src_area: rect(src_area),
                brush: put_brush(b, u + offset_of!(QxlOpaque, brush), brush),
                rop_descriptor: (*rop_descriptor).into(),
                scale_mode: *scale_mode,
                mask: put_qmask(b, u + offset_of!(QxlOpaque, mask), mask),
            };
            b.set(u, &opaque);
        }
        DrawOp::Copy(blit) | DrawOp::Blend(blit) => {
            put_image_ptr(b, u + offset_of!(QxlCopy, src_bitmap), blit.src.as_ref());
            let copy = QxlCopy {
                src_bitmap: 0.into(),
                src_area: rect(&blit.src_area),
                rop_descriptor: blit.rop_descriptor.into(),
                scale_mode: blit.scale_mode,
                mask: put_qmask(b, u + offset_of!(QxlCopy, mask), &blit.mask),
            };
            b.set(u, &copy);
        }
        DrawOp::CopyBits { src_pos } => b.set(
            u,
            &QxlCopyBits {
                src_pos: point(src_pos),
            },
        ),
        DrawOp::Blackness(m) | DrawOp::Whiteness(m) | DrawOp::Invers(m) => {
            let mask = put_qmask(b, u + offset_of!(QxlMaskOnly, mask), m);
            b.set(u, &QxlMaskOnly { mask });
        }
        DrawOp::Rop3 {
            src,
            src_area,
            brush,
            rop3,
            scale_mode,
            mask,
        } => {
            put_image_ptr(b, u + offset_of!(QxlRop3, src_bitmap), src.as_ref());
            let rop = QxlRop3 {
                src_bitmap: 0.into(),
                src_area: rect(src_area),
                brush: put_brush(b, u + offset_of!(QxlRop3, brush), brush),
                rop3: *rop3,
                scale_mode: *scale_mode,
                mask: put_qmask(b, u + offset_of!(QxlRop3, mask), mask),
            };
            b.set(u, &rop);
        }
        DrawOp::Stroke {
            path,
            attr_flags,
            style,
            brush,
            fore_mode,
            back_mode,
        } => {
            let head = QxlPath {
                data_size: (chunks_len(path) as u32).into(),
                chunk: QxlDataChunk::new_zeroed(),
            };
            let p = b.with_chunks(&head, offset_of!(QxlPath, chunk), path);
            b.pointer(u + offset_of!(QxlStroke, path), Target::Local(p));
            let mut attr = QxlLineAttr {
                flags: *attr_flags,
                ..FromZeros::new_zeroed()
            };
            if let Some((nseg, bytes)) = style {
                attr.style_nseg = *nseg;
                let s = b.alloc(bytes.len());
                b.put(s, bytes);
                let field = offset_of!(QxlStroke, attr) + offset_of!(QxlLineAttr, style);
                b.pointer(u + field, Target::Local(s));
            }
            let stroke = QxlStroke {
                path: 0.into(),
                attr,
                brush: put_brush(b, u + offset_of!(QxlStroke, brush), brush),
                fore_mode: (*fore_mode).into(),
                back_mode: (*back_mode).into(),
            };
            b.set(u, &stroke);
        }
        DrawOp::Text {
            string,
            back_area,
            fore_brush,
            back_brush,
            fore_mode,
            back_mode,
        } => {
            let head = QxlString {
                data_size: string.data_size.into(),
                length: string.length.into(),
                flags: string.flags.into(),
                chunk: QxlDataChunk::new_zeroed(),
            };
            let s = b.with_chunks(&head, offset_of!(QxlString, chunk), &string.chunks);
            b.pointer(u + offset_of!(QxlText, string), Target::Local(s));
            let text = QxlText {
                string: 0.into(),
                back_area: rect(back_area),
                fore_brush: put_brush(b, u + offset_of!(QxlText, fore_brush), fore_brush),
                back_brush: put_brush(b, u + offset_of!(QxlText, back_brush), back_brush),
                fore_mode: (*fore_mode).into(),
                back_mode: (*back_mode).into(),
            };
            b.set(u, &text);
        }
        DrawOp::Transparent {
            src,
            src_area,
            src_color,
            true_color,
        } => {
            put_image_ptr(b, u + offset_of!(QxlTransparent, src_bitmap), src.as_ref());
            let transparent = QxlTransparent {
                src_bitmap: 0.into(),
                src_area: rect(src_area),
                src_color: (*src_color).into(),
                true_color: (*true_color).into(),
            };
            b.set(u, &transparent);
        }
        DrawOp::AlphaBlend {
            alpha_flags,
            alpha,
            src,
            src_area,
        } => {
            put_image_ptr(b, u + offset_of!(QxlAlphaBlend, src_bitmap), src.as_ref());
            let blend = QxlAlphaBlend {
                alpha_flags: alpha_flags.unwrap_or(0).into(),
                alpha: *alpha,
                src_bitmap: 0.into(),
                src_area: rect(src_area),
            };
            b.set(u, &blend);
        }
        DrawOp::Composite(c) => {
            put_image_ptr(b, u + offset_of!(QxlComposite, src), c.src.as_ref());
            put_transform(
                b,
                u + offset_of!(QxlComposite, src_transform),
                &c.src_transform,
            );
            put_image_ptr(b, u + offset_of!(QxlComposite, mask), c.mask.as_ref());
            put_transform(
                b,
                u + offset_of!(QxlComposite, mask_transform),
                &c.mask_transform,
            );
            let composite = QxlComposite {
                flags: c.flags.into(),
                src_origin: point16(&c.src_origin),
                mask_origin: point16(&c.mask_origin),
                ..FromZeros::new_zeroed()
            };
            b.set(u, &composite);
        }
    }
}

/// A transform's recorded bytes (at most a `QXLTransform`), pointed at by
/// the field at `at`.
fn put_transform(b: &mut Block, at: usize, transform: &Option<Vec<u8>>) {
    if let Some(t) = transform {
        let bytes = &t[..t.len().min(size_of::<QxlTransform>())];
        let data = b.alloc(size_of::<QxlTransform>());
        b.put(data, bytes);
        b.pointer(at, Target::Local(data));
    }
}

/// A `QXLBrush` for the structure field at `at` (its pattern's pointer
/// is filled in later).
fn put_brush(b: &mut Block, at: usize, brush: &Brush) -> QxlBrush {
    match brush {
        Brush::None => QxlBrush::new_zeroed(),
        Brush::Solid(color) => QxlBrush {
            kind: 1.into(),
            pattern: u64::from(*color).into(),
            ..FromZeros::new_zeroed()
        },
        Brush::Pattern { image, pos } => {
            put_image_ptr(b, at + offset_of!(QxlBrush, pattern), image.as_ref());
            QxlBrush {
                kind: 2.into(),
                pattern: 0.into(),
                pos: point(pos),
            }
        }
    }
}

/// A `QXLQMask` for the structure field at `at`.
fn put_qmask(b: &mut Block, at: usize, mask: &QMask) -> QxlQMask {
    put_image_ptr(b, at + offset_of!(QxlQMask, bitmap), mask.bitmap.as_ref());
    QxlQMask {
        flags: mask.flags,
        pos: point(&mask.pos),
        bitmap: 0.into(),
    }
}

/// Writes the image (if any) and points the field at `at` to it.
fn put_image_ptr(b: &mut Block, at: usize, image: Option<&Image>) {
    if let Some(image) = image {
        let i = put_image(b, image);
        b.pointer(at, Target::Local(i));
    }
}

fn put_image(b: &mut Block, image: &Image) -> usize {
    let descriptor = QxlImageDescriptor {
        id: image.id.into(),
        kind: image.type_number(),
        flags: image.flags,
        width: image.width.into(),
        height: image.height.into(),
    };
    match &image.body {
        ImageBody::Bitmap(bm) => {
            let at = b.add(&QxlBitmapImage {
                descriptor,
                format: bm.format,
                flags: bm.flags,
                x: bm.x.into(),
                y: bm.y.into(),
                stride: bm.stride.into(),
                palette: 0.into(),
                data: 0.into(),
            });
            if let Some(p) = &bm.palette {
                let head = QxlPalette {
                    unique: p.unique.into(),
                    num_ents: (p.ents.len() as u16).into(),
                };
                let pal = b.alloc(size_of::<QxlPalette>() + 4 * p.ents.len());
                b.set(pal, &head);
                let ents: Vec<u8> = p.ents.iter().flat_map(|e| e.to_le_bytes()).collect();
                b.put(pal + size_of::<QxlPalette>(), &ents);
                b.pointer(at + offset_of!(QxlBitmapImage, palette), Target::Local(pal));
            }
            let data = if bm.flags & BITMAP_DIRECT != 0 {
                let data = b.alloc(chunks_len(&bm.data) as usize);
                let mut o = data;
                for c in &bm.data {
                    b.put(o, c);
                    o += c.len();
                }
                data
            } else {
                let first_len = bm.data.first().map_or(0, Vec::len);
                let chunk = b.alloc(size_of::<QxlDataChunk>() + first_len);
                b.chunk_list(chunk, &bm.data);
                chunk
            };
            b.pointer(at + offset_of!(QxlBitmapImage, data), Target::Local(data));
            at
        }
        ImageBody::Quic { data_size, chunks } => {
            let head = QxlQuicImage {
                descriptor,
                data_size: (*data_size).into(),
                chunk: QxlDataChunk::new_zeroed(),
            };
            b.with_chunks(&head, offset_of!(QxlQuicImage, chunk), chunks)
        }
        ImageBody::Surface(id) => b.add(&QxlSurfaceImage {
            descriptor,
            surface_id: (*id).into(),
        }),
    }
}
