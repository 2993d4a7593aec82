//! Parsing and validating guest commands into the types of
//! [`super::commands`] (docs/qxl.md §7, hardening §11).
//!
//! Rules: every structure is read out of guest memory once (into a small
//! array) and parsed from that copy; every QXLPHYSICAL is translated through
//! the memslots for exactly the bytes that will be read; every length, count
//! and size is checked with overflow-safe arithmetic against fixed limits;
//! chunk lists are bounded in length (which also ends cycles) and in total
//! size. Pixel data is not copied: it is described by validated ranges.

mod draw;
mod image;
mod other;

use super::commands::{PixelData, Point, Rect};
use super::memory::{BarMemory, GuestRange};
use super::memslots::{MemSlots, TranslateError};

pub use draw::DRAWABLE_SIZE;

/// Most chunks in one chunk list (also what stops a cyclic list).
pub const MAX_CHUNKS: usize = 65536;
/// Most clip rectangles per drawable.
pub const MAX_CLIP_RECTS: u32 = 4096;
/// Most bytes of a path or glyph string (copied to the host to be parsed).
pub const MAX_SHAPE_BYTES: u64 = 1 << 20;
/// Largest cursor side (QEMU's limit, CVE-2021-4206).
pub const MAX_CURSOR_SIDE: u16 = 512;
/// Largest `height * stride` of a bitmap (spice's limit).
pub const MAX_BITMAP_BYTES: u64 = 0x7FFF_FFFF;
/// Largest width or height of a bitmap or rectangle we render.
pub const MAX_DIMENSION: u32 = 1 << 16;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what}: {source}")]
    Address {
        what: &'static str,
        source: TranslateError,
    },
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError::Invalid {
        what,
        detail: detail.into(),
    }
}

/// Little-endian fields of a structure copied out of guest memory.
pub(crate) struct Le<'a>(pub &'a [u8]);

impl Le<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }
    pub fn u8(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }
    pub fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.bytes(at))
    }
    pub fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.bytes(at))
    }
    pub fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes(at))
    }
    pub fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.bytes(at))
    }
    pub fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.bytes(at))
    }
    /// A `QXLRect`: top, left, bottom, right.
    pub fn rect(&self, at: usize) -> Rect {
        Rect::new(
            self.i32(at + 4),
            self.i32(at),
            self.i32(at + 12),
            self.i32(at + 8),
        )
    }
    /// A `QXLPoint`: x, y as i32.
    pub fn point(&self, at: usize) -> Point {
        Point {
            x: self.i32(at),
            y: self.i32(at + 4),
        }
    }
    /// A `QXLPoint16`.
    pub fn point16(&self, at: usize) -> Point {
        Point {
            x: i32::from(self.i16(at)),
            y: i32::from(self.i16(at + 2)),
        }
    }
}

/// Size of a `QXLDataChunk` header.
const CHUNK_HEADER: u64 = 20;

/// Reads commands out of guest memory.
pub struct Parser<'a> {
    pub memory: &'a BarMemory,
    pub slots: &'a MemSlots,
    pub n_surfaces: u32,
}

impl<'a> Parser<'a> {
    pub fn new(memory: &'a BarMemory, slots: &'a MemSlots, n_surfaces: u32) -> Self {
        Parser {
            memory,
            slots,
            n_surfaces,
        }
    }

    pub fn translate(
        &self,
        addr: u64,
        len: u64,
        what: &'static str,
    ) -> Result<GuestRange, ParseError> {
        self.slots
            .translate(addr, len)
            .map_err(|source| ParseError::Address { what, source })
    }

    /// Copies the `N`-byte structure at guest address `addr`.
    pub fn fetch<const N: usize>(
        &self,
        addr: u64,
        what: &'static str,
    ) -> Result<[u8; N], ParseError> {
        let range = self.translate(addr, N as u64, what)?;
        self.memory
            .read_array::<N>(range, 0)
            .ok_or_else(|| invalid(what, "unreadable"))
    }

    /// Walks the QXLDataChunk list whose first header is at `addr`: at most
    /// [`MAX_CHUNKS`] chunks (zero-sized ones count) and `max_total` bytes.
    pub fn chunks(
        &self,
        addr: u64,
        max_total: u64,
        what: &'static str,
    ) -> Result<PixelData, ParseError> {
        let mut data = PixelData::default();
        let mut next = addr;
        let mut count = 0usize;
        loop {
            count += 1;
            if count > MAX_CHUNKS {
                return Err(invalid(
                    what,
                    format!("chunk list longer than {MAX_CHUNKS} (a cycle?)"),
                ));
            }
            let header = self.fetch::<20>(next, what)?;
            let header = Le(&header);
            let size = u64::from(header.u32(0));
            if data.len() + size > max_total {
                return Err(invalid(
                    what,
                    format!("chunk data exceeds {max_total} bytes"),
                ));
            }
            let range = self.translate(next, CHUNK_HEADER + size, what)?;
            if let Some(piece) = range.sub(CHUNK_HEADER, size) {
                data.push(piece);
            }
            next = header.u64(12);
            if next == 0 {
                return Ok(data);
            }
        }
    }

    /// Copies a whole (bounded) chunk stream to the host.
    pub fn copy_stream(&self, data: &PixelData, what: &'static str) -> Result<Vec<u8>, ParseError> {
        let mut out = vec![0u8; data.len() as usize];
        if data.read(self.memory, 0, &mut out) {
            Ok(out)
        } else {
            Err(invalid(what, "unreadable"))
        }
    }

    pub(crate) fn check_surface_id(&self, id: u32, what: &'static str) -> Result<u32, ParseError> {
        if id < self.n_surfaces {
            Ok(id)
        } else {
            Err(invalid(what, format!("surface id {id} out of range")))
        }
    }
}

/// A rectangle that is not inverted and not beyond [`MAX_DIMENSION`].
pub(crate) fn check_rect(r: Rect, what: &'static str) -> Result<Rect, ParseError> {
    let limit = MAX_DIMENSION as i32;
    let ok = |v: i32| (-limit..=limit).contains(&v);
    if !(ok(r.left) && ok(r.top) && ok(r.right) && ok(r.bottom)) {
        return Err(invalid(what, format!("rectangle {r:?} out of range")));
    }
    Ok(r)
}
