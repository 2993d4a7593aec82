//! Pixel sources over guest memory for the renderer: bitmaps (any QXL
//! bitmap format, palettes, top-down or bottom-up, chunked) and surfaces
//! (any surface format). Rows are read straight from the BARs; 32-bit rows
//! are copied into the destination without conversion.

use std::cell::RefCell;

use super::commands::{Bitmap, BitmapFormat};
use super::defs::{
    SURFACE_FMT_16_555, SURFACE_FMT_16_565, SURFACE_FMT_1_A, SURFACE_FMT_32_ARGB, SURFACE_FMT_8_A,
};
use super::memory::BarMemory;
use super::surfaces::SurfaceInfo;
use crate::display::render::{BitSource, Pixel, PixelSource};

const OPAQUE: Pixel = 0xff00_0000;

fn rgb555(v: u16) -> Pixel {
    let c = |shift: u16| {
        let c = u32::from((v >> shift) & 0x1f);
        (c << 3) | (c >> 2)
    };
    OPAQUE | (c(10) << 16) | (c(5) << 8) | c(0)
}

fn rgb565(v: u16) -> Pixel {
    let r = u32::from((v >> 11) & 0x1f);
    let g = u32::from((v >> 5) & 0x3f);
    let b = u32::from(v & 0x1f);
    OPAQUE | (((r << 3) | (r >> 2)) << 16) | (((g << 2) | (g >> 4)) << 8) | ((b << 3) | (b >> 2))
}

/// A bitmap in guest memory.
pub struct BitmapSource<'a> {
    memory: &'a BarMemory,
    bitmap: &'a Bitmap,
    scratch: RefCell<Vec<u8>>,
}

impl<'a> BitmapSource<'a> {
    pub fn new(memory: &'a BarMemory, bitmap: &'a Bitmap) -> Self {
        BitmapSource {
            memory,
            bitmap,
            scratch: RefCell::new(Vec::new()),
        }
    }

    fn row_start(&self, y: u32) -> u64 {
        let b = self.bitmap;
        let row = if b.top_down {
            y
        } else {
            b.height - 1 - y.min(b.height - 1)
        };
        u64::from(row) * u64::from(b.stride)
    }

    /// The bytes holding pixels `[x, x + n)` of row `y`, into the scratch buffer.
    fn with_bytes<R>(&self, x: u32, y: u32, n: usize, f: impl FnOnce(&[u8], u32) -> R) -> R {
        let bpp = u64::from(self.bitmap.format.bits_per_pixel());
        let first_bit = u64::from(x) * bpp;
        let end_bit = (u64::from(x) + n as u64) * bpp;
        let start = first_bit / 8;
        let len = (end_bit.div_ceil(8) - start) as usize;
        let mut scratch = self.scratch.borrow_mut();
        scratch.clear();
        scratch.resize(len, 0);
        // A short read (cannot happen for a validated bitmap) leaves zeros.
        self.bitmap
            .data
            .read(self.memory, self.row_start(y) + start, &mut scratch);
        f(&scratch, (first_bit % 8) as u32)
    }

    fn index(&self, bytes: &[u8], bit0: u32, i: usize) -> u8 {
        let bit = bit0 as usize + i * self.bitmap.format.bits_per_pixel() as usize;
        let byte = bytes.get(bit / 8).copied().unwrap_or(0);
        match self.bitmap.format {
            BitmapFormat::OneBitLe => (byte >> (bit % 8)) & 1,
            BitmapFormat::OneBitBe => (byte >> (7 - bit % 8)) & 1,
            BitmapFormat::FourBitLe => {
                if bit.is_multiple_of(8) {
                    byte & 0xf
                } else {
                    byte >> 4
                }
            }
            BitmapFormat::FourBitBe => {
                if bit.is_multiple_of(8) {
                    byte >> 4
                } else {
                    byte & 0xf
                }
            }
            _ => byte,
        }
    }

    fn palette(&self, index: u8) -> Pixel {
        let entry = self
            .bitmap
            .palette
            .as_ref()
            .and_then(|p| p.get(usize::from(index)).copied())
            .unwrap_or(0);
        OPAQUE | entry
    }
}

impl PixelSource for BitmapSource<'_> {
    fn width(&self) -> u32 {
        self.bitmap.width
    }
    fn height(&self) -> u32 {
        self.bitmap.height
    }
    fn has_alpha(&self) -> bool {
        matches!(self.bitmap.format, BitmapFormat::Rgba | BitmapFormat::A8)
    }

    fn read_row(&self, x: u32, y: u32, out: &mut [Pixel]) {
        let format = self.bitmap.format;
        self.with_bytes(x, y, out.len(), |bytes, bit0| {
            for (i, o) in out.iter_mut().enumerate() {
                let at = |size: usize| {
                    &bytes[(i * size).min(bytes.len())..((i + 1) * size).min(bytes.len())]
                };
                let le = |b: &[u8]| b.iter().rev().fold(0u32, |v, &x| (v << 8) | u32::from(x));
                *o = match format {
                    BitmapFormat::Rgb32 => OPAQUE | le(at(4)),
                    BitmapFormat::Rgba => le(at(4)),
                    BitmapFormat::Rgb24 => OPAQUE | le(at(3)),
                    BitmapFormat::Rgb16 => rgb555(le(at(2)) as u16),
                    BitmapFormat::A8 => le(at(1)) << 24,
                    _ => self.palette(self.index(bytes, bit0, i)),
                };
            }
        });
    }

    fn copy_row(&self, x: u32, y: u32, out: &mut [u8]) -> bool {
        if !matches!(self.bitmap.format, BitmapFormat::Rgb32 | BitmapFormat::Rgba) {
            return false;
        }
        self.bitmap
            .data
            .read(self.memory, self.row_start(y) + 4 * u64::from(x), out)
    }
}

impl BitSource for BitmapSource<'_> {
    fn width(&self) -> u32 {
        self.bitmap.width
    }
    fn height(&self) -> u32 {
        self.bitmap.height
    }
    fn read_bits(&self, x: u32, y: u32, out: &mut [u8]) {
        self.with_bytes(x, y, out.len(), |bytes, bit0| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from(self.index(bytes, bit0, i) != 0);
            }
        });
    }
}

/// A surface in guest memory.
pub struct SurfaceSource<'a> {
    memory: &'a BarMemory,
    info: SurfaceInfo,
    scratch: RefCell<Vec<u8>>,
}

impl<'a> SurfaceSource<'a> {
    pub fn new(memory: &'a BarMemory, info: SurfaceInfo) -> Self {
        SurfaceSource {
            memory,
            info,
            scratch: RefCell::new(Vec::new()),
        }
    }
}

impl PixelSource for SurfaceSource<'_> {
    fn width(&self) -> u32 {
        self.info.width
    }
    fn height(&self) -> u32 {
        self.info.height
    }
    fn has_alpha(&self) -> bool {
        matches!(
            self.info.format,
            SURFACE_FMT_32_ARGB | SURFACE_FMT_8_A | SURFACE_FMT_1_A
        )
    }

    fn read_row(&self, x: u32, y: u32, out: &mut [Pixel]) {
        let bpp = u64::from(self.info.bits_per_pixel());
        let start = u64::from(x) * bpp / 8;
        let end = (u64::from(x) + out.len() as u64) * bpp;
        let len = (end.div_ceil(8) - start) as usize;
        let mut bytes = self.scratch.borrow_mut();
        bytes.clear();
        bytes.resize(len, 0);
        self.memory
            .read(self.info.mem, self.info.row_offset(y) + start, &mut bytes);
        for (i, o) in out.iter_mut().enumerate() {
            let b = |k: usize| u32::from(bytes.get(k).copied().unwrap_or(0));
            *o = match self.info.format {
                SURFACE_FMT_32_ARGB => {
                    b(4 * i) | b(4 * i + 1) << 8 | b(4 * i + 2) << 16 | b(4 * i + 3) << 24
                }
                SURFACE_FMT_16_555 => rgb555((b(2 * i) | b(2 * i + 1) << 8) as u16),
                SURFACE_FMT_16_565 => rgb565((b(2 * i) | b(2 * i + 1) << 8) as u16),
                SURFACE_FMT_8_A => b(i) << 24,
                SURFACE_FMT_1_A => {
                    // Bit order of 1-bit surfaces: leftmost pixel in the low bit (pixman a1).
                    let bit = (x as usize % 8) + i;
                    if b(bit / 8) >> (bit % 8) & 1 != 0 {
                        OPAQUE
                    } else {
                        0
                    }
                }
                _ => OPAQUE | b(4 * i) | b(4 * i + 1) << 8 | b(4 * i + 2) << 16,
            };
        }
    }

    fn copy_row(&self, x: u32, y: u32, out: &mut [u8]) -> bool {
        if !self.info.is_32bit() {
            return false;
        }
        self.memory.read(
            self.info.mem,
            self.info.row_offset(y) + 4 * u64::from(x),
            out,
        )
    }
}
