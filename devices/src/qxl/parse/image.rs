//! Images (QXLImage: bitmaps and surface references), palettes, brushes and
//! masks (docs/qxl.md §7.5, §7.7).

use super::{invalid, Le, ParseError, Parser, MAX_BITMAP_BYTES, MAX_DIMENSION};
use crate::qxl::commands::{Bitmap, BitmapFormat, Brush, Image, Mask, PixelData};

const IMAGE_TYPE_BITMAP: u8 = 0;
const IMAGE_TYPE_QUIC: u8 = 1;
const IMAGE_TYPE_SURFACE: u8 = 104;

const BITMAP_DIRECT: u8 = 1;
const BITMAP_TOP_DOWN: u8 = 4;

const BRUSH_NONE: u32 = 0;
const BRUSH_SOLID: u32 = 1;
const BRUSH_PATTERN: u32 = 2;

/// Size of a `QXLImage` with a bitmap.
const IMAGE_BITMAP_SIZE: usize = 48;
/// Size of a `QXLImage` descriptor plus a surface id.
const IMAGE_SURFACE_SIZE: usize = 22;
const MAX_PALETTE: usize = 256;

/// What an image is used as: palettised masks need no palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    Source,
    Mask,
}

impl Parser<'_> {
    /// An image reference; address 0 is the self-bitmap when the drawable has one.
    pub(crate) fn image(
        &self,
        addr: u64,
        self_bitmap: bool,
        usage: Use,
        what: &'static str,
    ) -> Result<Image, ParseError> {
        if addr == 0 {
            return if self_bitmap {
                Ok(Image::SelfBitmap)
            } else {
                Err(invalid(what, "no image"))
            };
        }
        let descriptor = self.fetch::<IMAGE_SURFACE_SIZE>(addr, what)?;
        let d = Le(&descriptor);
        match d.u8(8) {
            IMAGE_TYPE_SURFACE => {
                let id = self.check_surface_id(d.u32(18), what)?;
                Ok(Image::Surface(id))
            }
            IMAGE_TYPE_BITMAP => self.bitmap(addr, usage, what).map(Image::Bitmap),
            IMAGE_TYPE_QUIC => Err(invalid(what, "QUIC images are not supported")),
            other => Err(invalid(
                what,
                format!("image type {other} is not allowed from a guest"),
            )),
        }
    }

    fn bitmap(&self, addr: u64, usage: Use, what: &'static str) -> Result<Bitmap, ParseError> {
        let raw = self.fetch::<IMAGE_BITMAP_SIZE>(addr, what)?;
        let f = Le(&raw);
        let format = BitmapFormat::from_spice(f.u8(18))
            .ok_or_else(|| invalid(what, format!("bitmap format {}", f.u8(18))))?;
        let flags = f.u8(19);
        let (width, height, stride) = (f.u32(20), f.u32(24), f.u32(28));
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(invalid(what, format!("bitmap size {width}x{height}")));
        }
        let row_bytes = (u64::from(width) * u64::from(format.bits_per_pixel())).div_ceil(8);
        if u64::from(stride) < row_bytes {
            return Err(invalid(
                what,
                format!("stride {stride} shorter than a row of {row_bytes} bytes"),
            ));
        }
        let total = u64::from(height) * u64::from(stride);
        if total > MAX_BITMAP_BYTES {
            return Err(invalid(
                what,
                format!("bitmap of {total} bytes is too large"),
            ));
        }
        let palette_addr = f.u64(32);
        let palette = if format.has_palette() && palette_addr != 0 {
            Some(self.palette(palette_addr, what)?)
        } else if format.has_palette() && usage == Use::Source {
            return Err(invalid(what, "palettised bitmap without a palette"));
        } else {
            None
        };
        let data_addr = f.u64(40);
        let data = if flags & BITMAP_DIRECT != 0 {
            let mut data = PixelData::default();
            data.push(self.translate(data_addr, total, what)?);
            data
        } else {
            let data = self.chunks(data_addr, total, what)?;
            if data.len() != total {
                return Err(invalid(
                    what,
                    format!("chunks hold {} bytes, the bitmap needs {total}", data.len()),
                ));
            }
            data
        };
        Ok(Bitmap {
            id: f.u64(0),
            format,
            top_down: flags & BITMAP_TOP_DOWN != 0,
            width,
            height,
            stride,
            palette,
            data,
        })
    }

    fn palette(&self, addr: u64, what: &'static str) -> Result<Vec<u32>, ParseError> {
        let head = self.fetch::<10>(addr, what)?;
        let count = usize::from(Le(&head).u16(8));
        let range = self.translate(addr, 10 + 4 * count as u64, what)?;
        let kept = count.min(MAX_PALETTE);
        let mut bytes = vec![0u8; 4 * kept];
        if !self.memory.read(range, 10, &mut bytes) {
            return Err(invalid(what, "unreadable palette"));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x00ff_ffff)
            .collect())
    }

    /// A `QXLBrush` (20 bytes) copied out of a structure.
    pub(crate) fn brush(
        &self,
        raw: &[u8],
        self_bitmap: bool,
        what: &'static str,
    ) -> Result<Brush, ParseError> {
        let b = Le(raw);
        match b.u32(0) {
            BRUSH_NONE => Ok(Brush::None),
            BRUSH_SOLID => Ok(Brush::Solid(b.u32(4))),
            BRUSH_PATTERN => Ok(Brush::Pattern {
                image: self.image(b.u64(4), self_bitmap, Use::Source, what)?,
                origin: b.point(12),
            }),
            other => Err(invalid(what, format!("brush type {other}"))),
        }
    }

    /// A `QXLQMask` (17 bytes) copied out of a structure; `None` without a bitmap.
    pub(crate) fn mask(&self, raw: &[u8], what: &'static str) -> Result<Option<Mask>, ParseError> {
        let m = Le(raw);
        let addr = m.u64(9);
        if addr == 0 {
            return Ok(None);
        }
        let image = self.image(addr, false, Use::Mask, what)?;
        match &image {
            Image::Bitmap(b)
                if matches!(b.format, BitmapFormat::OneBitLe | BitmapFormat::OneBitBe) => {}
            _ => return Err(invalid(what, "masks must be 1-bit bitmaps")),
        }
        Ok(Some(Mask {
            invert: m.u8(0) & 1 != 0,
            origin: m.point(1),
            image,
        }))
    }
}
