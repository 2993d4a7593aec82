//! Surfaces: the primary (surface 0, created through the I/O ports and shown
//! on the display) and off-screen surfaces (created by `QXL_CMD_SURFACE`),
//! each a validated block of device memory (docs/qxl.md §3.1, §5.5, §7.8).

use super::defs::{
    surface_format_bpp, MAX_SURFACE_BYTES, SURFACE_FMT_32_ARGB, SURFACE_FMT_32_XRGB,
};
use super::memory::GuestRange;
use super::memslots::MemSlots;
use crate::display::{Rect, MAX_DIMENSION};

/// A surface's geometry and where its pixels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurfaceInfo {
    pub format: u32,
    pub width: u32,
    pub height: u32,
    /// Bytes between rows; negative when the surface is stored bottom-up.
    pub stride: i32,
    /// All `height * |stride|` bytes, lowest address first.
    pub mem: GuestRange,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SurfaceError {
    #[error("surface format {0} does not exist")]
    Format(u32),
    #[error("surface size {width}x{height} is not allowed")]
    Size { width: u32, height: u32 },
    #[error(
        "stride {stride} is not a multiple of 4 or too short for {width} pixels of {bpp} bits"
    )]
    Stride { stride: i32, width: u32, bpp: u32 },
    #[error("surface of {0} bytes is too large")]
    TooLarge(u64),
    #[error("surface memory: {0}")]
    Memory(#[from] super::memslots::TranslateError),
}

impl SurfaceInfo {
    /// Validates a surface description (spice's `red_validate_surface` plus
    /// QEMU's stride check) and translates its memory.
    pub fn validate(
        slots: &MemSlots,
        format: u32,
        width: u32,
        height: u32,
        stride: i32,
        mem: u64,
    ) -> Result<SurfaceInfo, SurfaceError> {
        let bpp = surface_format_bpp(format).ok_or(SurfaceError::Format(format))?;
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(SurfaceError::Size { width, height });
        }
        let abs = u64::from(stride.unsigned_abs());
        if stride == i32::MIN
            || stride % 4 != 0
            || abs < (u64::from(width) * u64::from(bpp)).div_ceil(8)
        {
            return Err(SurfaceError::Stride { stride, width, bpp });
        }
        let bytes = abs * u64::from(height);
        if bytes > MAX_SURFACE_BYTES {
            return Err(SurfaceError::TooLarge(bytes));
        }
        let mem = slots.translate(mem, bytes)?;
        Ok(SurfaceInfo {
            format,
            width,
            height,
            stride,
            mem,
        })
    }

    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    pub fn bits_per_pixel(&self) -> u32 {
        surface_format_bpp(self.format).unwrap_or(32)
    }

    /// Whether the renderer can draw into it (32-bit formats).
    pub fn is_32bit(&self) -> bool {
        matches!(self.format, SURFACE_FMT_32_XRGB | SURFACE_FMT_32_ARGB)
    }

    pub fn has_alpha(&self) -> bool {
        self.format == SURFACE_FMT_32_ARGB
    }

    /// Offset in `mem` of row `y` (0 = top row).
    pub fn row_offset(&self, y: u32) -> u64 {
        let abs = u64::from(self.stride.unsigned_abs());
        if self.stride >= 0 {
            u64::from(y) * abs
        } else {
            u64::from(self.height - 1 - y.min(self.height - 1)) * abs
        }
    }
}

/// Off-screen surfaces by id (id 0, the primary, is kept apart).
pub struct SurfaceTable {
    slots: Vec<Option<OffscreenSurface>>,
}

/// An off-screen surface and the create command to release when it goes away.
#[derive(Debug, Clone, Copy)]
pub struct OffscreenSurface {
    pub info: SurfaceInfo,
    pub create_release: GuestRange,
}

impl SurfaceTable {
    pub fn new(count: u32) -> Self {
        SurfaceTable {
            slots: vec![None; count as usize],
        }
    }

    pub fn get(&self, id: u32) -> Option<&OffscreenSurface> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub fn insert(&mut self, id: u32, surface: OffscreenSurface) -> bool {
        match self.slots.get_mut(id as usize) {
            Some(slot @ None) if id != 0 => {
                *slot = Some(surface);
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, id: u32) -> Option<OffscreenSurface> {
        self.slots.get_mut(id as usize)?.take()
    }

    /// Removes every surface, in id order.
    pub fn drain(&mut self) -> Vec<OffscreenSurface> {
        self.slots.iter_mut().filter_map(Option::take).collect()
    }

    pub fn count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}
