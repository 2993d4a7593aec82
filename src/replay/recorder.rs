//! `--record FILE`: writes what a QXL device accepted in libspice's
//! `SPICE_REPLAY 1` format, so any session can be replayed by
//! `saffron replay` (or by spice's own replayer).
//!
//! It is a [`DrawableObserver`] on the device's worker thread: every
//! command is written *after* the device parsed and validated it, from the
//! same copy of guest memory the renderer used (spice's recorder reads
//! guest memory before validation, and a second time). Refused commands
//! are not recorded. Device messages are written with the numbers
//! spice-server uses for the same QXL port (docs/replay-format.md §3.2); a
//! primary create is written with the surface's contents as the device
//! shows them (always with KEEP_DATA, so a replay starts from that
//! picture).
//!
//! What our command model does not keep is written as a guest would most
//! plainly have sent it: bitmaps as chunk lists (one chunk per piece of
//! guest memory), image descriptor flags and palette ids 0, stroke widths
//! and join styles not at all (the format has no place for them).
//!
//! Each event is formatted in memory and written with one `write_all`, so a
//! killed VMM leaves a file that ends on an event boundary (or inside the
//! last event, which readers report as truncation).

use std::fs::File;
use std::io::Write;

use devices::qxl::commands as qc;
use devices::qxl::defs;
use devices::qxl::memory::{BarMemory, GuestRange};
use devices::qxl::surfaces::SurfaceInfo;
use devices::qxl::DrawableObserver;

use super::model::*;
use super::writer::{write_event, HEADER};

/// Writes events to a file; errors are logged once and stop the recording.
pub struct Recorder {
    file: Option<File>,
    memory: BarMemory,
    counter: u32,
    /// A created primary, written once its port command is reported.
    pending_primary: Option<PrimaryCreate>,
    events: u64,
    bytes: u64,
}

/// `CLOCK_MONOTONIC` in nanoseconds, the recorder's clock.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass, which lives
    // on this stack frame for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

impl Recorder {
    /// Creates (truncates) `path` and writes the header. `memory` is a view
    /// of the device's BARs (the same backing the device reads).
    pub fn create(path: &std::path::Path, memory: BarMemory) -> std::io::Result<Recorder> {
        let mut file = File::create(path)?;
        file.write_all(HEADER)?;
        Ok(Recorder {
            file: Some(file),
            memory,
            counter: 0,
            pending_primary: None,
            events: 0,
            bytes: HEADER.len() as u64,
        })
    }

    fn emit(&mut self, kind: EventKind) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let event = Event {
            counter: self.counter,
            timestamp: monotonic_ns(),
            kind,
        };
        self.counter = self.counter.wrapping_add(1);
        let mut out = Vec::new();
        write_event(&mut out, &event);
        if let Err(e) = file.write_all(&out) {
            tracing::error!("recording stopped: cannot write: {e}");
            self.file = None;
            return;
        }
        self.events += 1;
        self.bytes += out.len() as u64;
    }

    fn device(&mut self, message: u32) {
        self.emit(EventKind::Device {
            message,
            primary: None,
        });
    }

    fn read(&self, range: GuestRange) -> Vec<u8> {
        let mut bytes = vec![0u8; range.len as usize];
        self.memory.read(range, 0, &mut bytes);
        bytes
    }

    fn pixel_data(&self, data: &qc::PixelData) -> Chunks {
        let chunks: Chunks = data.ranges().map(|r| self.read(*r)).collect();
        if chunks.is_empty() {
            vec![Vec::new()]
        } else {
            chunks
        }
    }

    fn image(&self, image: &qc::Image) -> Option<Image> {
        match image {
            qc::Image::SelfBitmap => None,
            qc::Image::Surface(id) => Some(Image {
                id: 0,
                flags: 0,
                width: 0,
                height: 0,
                body: ImageBody::Surface(*id),
            }),
            qc::Image::Bitmap(b) => Some(Image {
                id: b.id,
                flags: 0,
                width: b.width,
                height: b.height,
                body: ImageBody::Bitmap(Bitmap {
                    format: bitmap_format_number(b.format),
                    flags: if b.top_down { BITMAP_TOP_DOWN } else { 0 },
                    x: b.width,
                    y: b.height,
                    stride: b.stride,
                    palette: b.palette.as_ref().map(|ents| Palette {
                        unique: 0,
                        ents: ents.clone(),
                    }),
                    data: self.pixel_data(&b.data),
                }),
            }),
        }
    }

    fn brush(&self, brush: &qc::Brush) -> Brush {
        match brush {
            qc::Brush::None => Brush::None,
            qc::Brush::Solid(c) => Brush::Solid(*c),
            qc::Brush::Pattern { image, origin } => Brush::Pattern {
                image: self.image(image),
                pos: point(*origin),
            },
        }
    }

    fn mask(&self, mask: &Option<qc::Mask>) -> QMask {
        match mask {
            None => QMask {
                flags: 0,
                pos: QPoint::default(),
                bitmap: None,
            },
            Some(m) => QMask {
                flags: u8::from(m.invert),
                pos: point(m.origin),
                bitmap: self.image(&m.image),
            },
        }
    }

    fn blit(&self, b: &qc::Blit) -> Blit {
        Blit {
            src: self.image(&b.src),
            src_area: rect(b.src_area),
            rop_descriptor: b.rop.0,
            scale_mode: scale(b.scale),
            mask: self.mask(&b.mask),
        }
    }

    fn draw_op(&self, op: &qc::DrawOp) -> DrawOp {
        match op {
            qc::DrawOp::Nop => DrawOp::Nop,
            qc::DrawOp::Fill { brush, rop, mask } => DrawOp::Fill {
                brush: self.brush(brush),
                rop_descriptor: rop.0,
                mask: self.mask(mask),
            },
            qc::DrawOp::Opaque { blit, brush } => DrawOp::Opaque {
                src: self.image(&blit.src),
                src_area: rect(blit.src_area),
                brush: self.brush(brush),
                rop_descriptor: blit.rop.0,
                scale_mode: scale(blit.scale),
                mask: self.mask(&blit.mask),
            },
            qc::DrawOp::Copy(b) => DrawOp::Copy(self.blit(b)),
            qc::DrawOp::Blend(b) => DrawOp::Blend(self.blit(b)),
            qc::DrawOp::Blackness { mask } => DrawOp::Blackness(self.mask(mask)),
            qc::DrawOp::Whiteness { mask } => DrawOp::Whiteness(self.mask(mask)),
            qc::DrawOp::Invers { mask } => DrawOp::Invers(self.mask(mask)),
            qc::DrawOp::Rop3 {
                src,
                src_area,
                brush,
                rop3,
                scale: s,
                mask,
            } => DrawOp::Rop3 {
                src: self.image(src),
                src_area: rect(*src_area),
                brush: self.brush(brush),
                rop3: *rop3,
                scale_mode: scale(*s),
                mask: self.mask(mask),
            },
            qc::DrawOp::Stroke {
                path,
                attr,
                brush,
                fore_mode,
                back_mode,
            } => DrawOp::Stroke {
                path: vec![path_bytes(path)],
                attr_flags: attr.flags,
                style: (attr.flags & qc::LINE_STYLED != 0).then(|| {
                    let n = attr.style.len().min(255);
                    let bytes = attr.style[..n]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    (n as u8, bytes)
                }),
                brush: self.brush(brush),
                fore_mode: fore_mode.0,
                back_mode: back_mode.0,
            },
            qc::DrawOp::Text {
                text,
                back_area,
                fore_brush,
                back_brush,
                fore_mode,
                back_mode,
            } => {
                let bytes = glyph_bytes(text);
                DrawOp::Text {
                    string: GlyphString {
                        data_size: bytes.len() as u32,
                        length: text.glyphs.len().min(usize::from(u16::MAX)) as u16,
                        flags: match text.depth {
                            qc::GlyphDepth::A1 => 1,
                            qc::GlyphDepth::A4 => 2,
                            qc::GlyphDepth::A8 => 4,
                        },
                        chunks: vec![bytes],
                    },
                    back_area: rect(*back_area),
                    fore_brush: self.brush(fore_brush),
                    back_brush: self.brush(back_brush),
                    fore_mode: fore_mode.0,
                    back_mode: back_mode.0,
                }
            }
            qc::DrawOp::Transparent {
                src,
                src_area,
                src_color,
                true_color,
            } => DrawOp::Transparent {
                src: self.image(src),
                src_area: rect(*src_area),
                src_color: *src_color,
                true_color: *true_color,
            },
            qc::DrawOp::AlphaBlend {
                flags,
                alpha,
                src,
                src_area,
            } => DrawOp::AlphaBlend {
                alpha_flags: Some(*flags),
                alpha: *alpha,
                src: self.image(src),
                src_area: rect(*src_area),
            },
            qc::DrawOp::CopyBits { src_pos } => DrawOp::CopyBits {
                src_pos: point(*src_pos),
            },
            qc::DrawOp::Composite(c) => {
                let transform = |t: &Option<qc::Transform>| {
                    t.map(|t| t.0.iter().flat_map(|v| v.to_le_bytes()).collect())
                };
                DrawOp::Composite(Box::new(Composite {
                    flags: u32::from(c.op)
                        | u32::from(c.src_filter & 7) << 8
                        | u32::from(c.mask_filter & 7) << 11
                        | u32::from(c.src_repeat & 3) << 14
                        | u32::from(c.mask_repeat & 3) << 16
                        | u32::from(c.component_alpha) << 18,
                    src: self.image(&c.src),
                    src_transform: transform(&c.src_transform),
                    mask: c.mask.as_ref().and_then(|m| self.image(m)),
                    mask_transform: transform(&c.mask_transform),
                    src_origin: point(c.src_origin),
                    mask_origin: point(c.mask_origin),
                }))
            }
        }
    }

    /// Events and bytes written so far.
    pub fn written(&self) -> (u64, u64) {
        (self.events, self.bytes)
    }
}

impl DrawableObserver for Recorder {
    fn drawable(&mut self, d: &qc::Drawable, _memory: &BarMemory) {
        let mut surfaces_dest = [-1i32; 3];
        let mut surfaces_rects = [QRect::default(); 3];
        for (i, dep) in d.dependencies.iter().enumerate() {
            if let Some(dep) = dep {
                surfaces_dest[i] = dep.surface_id as i32;
                surfaces_rects[i] = rect(dep.rect);
            }
        }
        let clip = match &d.clip {
            qc::Clip::None => None,
            qc::Clip::Rects(rects) => {
                let bytes = rects
                    .iter()
                    .flat_map(|r| {
                        [r.top, r.left, r.bottom, r.right]
                            .into_iter()
                            .flat_map(i32::to_le_bytes)
                    })
                    .collect();
                Some((rects.len() as u32, vec![bytes]))
            }
        };
        let drawable = Drawable {
            bbox: rect(d.bbox),
            clip,
            effect: d.effect,
            mm_time: d.mm_time,
            layout: DrawableLayout::Native {
                self_bitmap: u8::from(d.self_bitmap.is_some()),
                self_bitmap_area: d.self_bitmap.map(rect).unwrap_or_default(),
                surface_id: d.surface_id,
                surfaces_dest,
                surfaces_rects,
            },
            op: self.draw_op(&d.op),
        };
        self.emit(EventKind::Command(Command::Draw(Box::new(drawable))));
    }

    fn surface(&mut self, cmd: &qc::SurfaceCmd, info: Option<&SurfaceInfo>) {
        let command = match *cmd {
            qc::SurfaceCmd::Create {
                surface_id,
                format,
                width,
                height,
                stride,
                keep_data,
                ..
            } => SurfaceCmd {
                surface_id,
                flags: u32::from(keep_data),
                kind: SurfaceCmdKind::Create {
                    format,
                    width,
                    height,
                    stride,
                    data: keep_data.then(|| info.map(|i| self.read(i.mem)).unwrap_or_default()),
                },
            },
            qc::SurfaceCmd::Destroy { surface_id } => SurfaceCmd {
                surface_id,
                flags: 0,
                kind: SurfaceCmdKind::Destroy,
            },
        };
        self.emit(EventKind::Command(Command::Surface(command)));
    }

    fn update(&mut self, cmd: &qc::UpdateCmd) {
        self.emit(EventKind::Command(Command::Update(UpdateCmd {
            area: rect(cmd.area),
            update_id: cmd.update_id,
            surface_id: cmd.surface_id,
        })));
    }

    fn cursor(&mut self, cmd: &qc::CursorCmd) {
        let command = match cmd {
            qc::CursorCmd::Set {
                x,
                y,
                visible,
                image,
            } => CursorCmd::Set {
                pos: QPoint {
                    x: i32::from(*x),
                    y: i32::from(*y),
                },
                visible: u8::from(*visible),
                shape: CursorShape {
                    unique: image.unique,
                    kind: image.kind,
                    width: image.width,
                    height: image.height,
                    hot_x: image.hot_x,
                    hot_y: image.hot_y,
                    data_size: image.data.len() as u32,
                    chunks: vec![image.data.clone()],
                },
            },
            qc::CursorCmd::Move { x, y } => CursorCmd::Move {
                pos: QPoint {
                    x: i32::from(*x),
                    y: i32::from(*y),
                },
            },
            qc::CursorCmd::Hide => CursorCmd::Hide,
            qc::CursorCmd::Trail { length, frequency } => CursorCmd::Trail {
                length: *length,
                frequency: *frequency,
            },
        };
        self.emit(EventKind::Command(Command::Cursor(command)));
    }

    fn primary(&mut self, primary: Option<&SurfaceInfo>) {
        // Written when the port command that created it is reported.
        self.pending_primary = primary.map(|info| PrimaryCreate {
            width: info.width,
            height: info.height,
            stride: info.stride,
            format: info.format,
            position: 0,
            mouse_mode: 0,
            flags: defs::SURF_FLAG_KEEP_DATA,
            kind: defs::SURF_TYPE_PRIMARY,
            data: self.read(info.mem),
        });
    }

    fn reset(&mut self) {
        // What spice-server sees on a QEMU device reset.
        self.pending_primary = None;
        self.device(message::DESTROY_SURFACES);
        self.device(message::RESET_MEMSLOTS);
    }

    fn io(&mut self, port: u8) {
        use message::*;
        let number = match port {
            defs::IO_UPDATE_AREA => UPDATE,
            defs::IO_UPDATE_AREA_ASYNC => UPDATE_ASYNC,
            defs::IO_NOTIFY_OOM => OOM,
            defs::IO_MEMSLOT_ADD => ADD_MEMSLOT,
            defs::IO_MEMSLOT_ADD_ASYNC => ADD_MEMSLOT_ASYNC,
            defs::IO_MEMSLOT_DEL => DEL_MEMSLOT,
            defs::IO_CREATE_PRIMARY | defs::IO_CREATE_PRIMARY_ASYNC => {
                // Only a create that succeeded is written (with its body).
                if let Some(p) = self.pending_primary.take() {
                    let message = if port == defs::IO_CREATE_PRIMARY {
                        CREATE_PRIMARY_SURFACE
                    } else {
                        CREATE_PRIMARY_SURFACE_ASYNC
                    };
                    self.emit(EventKind::Device {
                        message,
                        primary: Some(p),
                    });
                }
                return;
            }
            defs::IO_DESTROY_PRIMARY => DESTROY_PRIMARY_SURFACE,
            defs::IO_DESTROY_PRIMARY_ASYNC => DESTROY_PRIMARY_SURFACE_ASYNC,
            defs::IO_DESTROY_SURFACE_WAIT => DESTROY_SURFACE_WAIT,
            defs::IO_DESTROY_SURFACE_ASYNC => DESTROY_SURFACE_WAIT_ASYNC,
            defs::IO_DESTROY_ALL_SURFACES => DESTROY_SURFACES,
            defs::IO_DESTROY_ALL_SURFACES_ASYNC => DESTROY_SURFACES_ASYNC,
            defs::IO_FLUSH_SURFACES_ASYNC => FLUSH_SURFACES_ASYNC,
            defs::IO_MONITORS_CONFIG_ASYNC => MONITORS_CONFIG_ASYNC,
            // Reset is written by `reset`; the rest is not a device message.
            _ => return,
        };
        self.device(number);
    }
}

fn rect(r: qc::Rect) -> QRect {
    QRect::new(r.left, r.top, r.right, r.bottom)
}

fn point(p: qc::Point) -> QPoint {
    QPoint { x: p.x, y: p.y }
}

fn scale(s: qc::ScaleMode) -> u8 {
    match s {
        qc::ScaleMode::Interpolate => 0,
        qc::ScaleMode::Nearest => 1,
    }
}

fn bitmap_format_number(f: qc::BitmapFormat) -> u8 {
    use qc::BitmapFormat::*;
    match f {
        OneBitLe => 1,
        OneBitBe => 2,
        FourBitLe => 3,
        FourBitBe => 4,
        EightBit => 5,
        Rgb16 => 6,
        Rgb24 => 7,
        Rgb32 => 8,
        Rgba => 9,
        A8 => 10,
    }
}

/// The `QXLPathSeg` stream of a path.
fn path_bytes(path: &qc::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for seg in &path.segments {
        out.extend_from_slice(&seg.flags.to_le_bytes());
        out.extend_from_slice(&(seg.points.len() as u32).to_le_bytes());
        for p in &seg.points {
            out.extend_from_slice(&p.x.to_le_bytes());
            out.extend_from_slice(&p.y.to_le_bytes());
        }
    }
    out
}

/// The `QXLRasterGlyph` stream of a string.
fn glyph_bytes(text: &qc::GlyphString) -> Vec<u8> {
    let mut out = Vec::new();
    for g in &text.glyphs {
        for v in [g.render_pos.x, g.render_pos.y, g.origin.x, g.origin.y] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&g.width.to_le_bytes());
        out.extend_from_slice(&g.height.to_le_bytes());
        out.extend_from_slice(&g.data);
    }
    out
}
