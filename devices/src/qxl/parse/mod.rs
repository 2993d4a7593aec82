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

use core::mem::size_of;

use zerocopy::{FromBytes, IntoBytes, KnownLayout};

use super::abi::QxlDataChunk;
use super::commands::{PixelData, Rect};
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

/// Size of a `QXLDataChunk` header.
const CHUNK_HEADER: u64 = size_of::<QxlDataChunk>() as u64;

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

    /// Copies the structure at guest address `addr` out of guest memory
    /// (once: everything is parsed from the copy).
    pub fn read<T: FromBytes + IntoBytes + KnownLayout>(
        &self,
        addr: u64,
        what: &'static str,
    ) -> Result<T, ParseError> {
        let range = self.translate(addr, size_of::<T>() as u64, what)?;
        let mut value = T::new_zeroed();
        if self.memory.read(range, 0, value.as_mut_bytes()) {
            Ok(value)
        } else {
            Err(invalid(what, "unreadable"))
        }
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
            let header: QxlDataChunk = self.read(next, what)?;
            let size = u64::from(header.data_size.get());
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
            next = header.next_chunk.get();
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
