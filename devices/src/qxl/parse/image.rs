//! Images (QXLImage: bitmaps and surface references), palettes, brushes and
//! masks (docs/qxl.md §7.5, §7.7).

use core::mem::size_of;

use super::{invalid, ParseError, Parser, MAX_BITMAP_BYTES, MAX_DIMENSION};
use crate::qxl::abi::{
    QxlBitmapImage, QxlBrush, QxlImageDescriptor, QxlPalette, QxlQMask, QxlSurfaceImage,
};
use crate::qxl::commands::{Bitmap, BitmapFormat, Brush, Image, Mask, PixelData, Point};

const IMAGE_TYPE_BITMAP: u8 = 0;
const IMAGE_TYPE_QUIC: u8 = 1;
const IMAGE_TYPE_SURFACE: u8 = 104;

const BITMAP_DIRECT: u8 = 1;
const BITMAP_TOP_DOWN: u8 = 4;

const BRUSH_NONE: u32 = 0;
const BRUSH_SOLID: u32 = 1;
const BRUSH_PATTERN: u32 = 2;

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
        let descriptor: QxlImageDescriptor = self.read(addr, what)?;
        match descriptor.kind {
            IMAGE_TYPE_SURFACE => {
                let image: QxlSurfaceImage = self.read(addr, what)?;
                let id = self.check_surface_id(image.surface_id.get(), what)?;
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
        let f: QxlBitmapImage = self.read(addr, what)?;
        let format = BitmapFormat::from_spice(f.format)
            .ok_or_else(|| invalid(what, format!("bitmap format {}", f.format)))?;
        let flags = f.flags;
        let (width, height, stride) = (f.x.get(), f.y.get(), f.stride.get());
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
        let palette_addr = f.palette.get();
        let palette = if format.has_palette() && palette_addr != 0 {
            Some(self.palette(palette_addr, what)?)
        } else if format.has_palette() && usage == Use::Source {
            return Err(invalid(what, "palettised bitmap without a palette"));
        } else {
            None
        };
        let data_addr = f.data.get();
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
            id: f.descriptor.id.get(),
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
        const HEAD: u64 = size_of::<QxlPalette>() as u64;
        let head: QxlPalette = self.read(addr, what)?;
        let count = usize::from(head.num_ents.get());
        let range = self.translate(addr, HEAD + 4 * count as u64, what)?;
        let kept = count.min(MAX_PALETTE);
        let mut bytes = vec![0u8; 4 * kept];
        if !self.memory.read(range, HEAD, &mut bytes) {
            return Err(invalid(what, "unreadable palette"));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x00ff_ffff)
            .collect())
    }

    /// A `QXLBrush` of a structure already copied out of guest memory.
    pub(crate) fn brush(
        &self,
        b: &QxlBrush,
        self_bitmap: bool,
        what: &'static str,
    ) -> Result<Brush, ParseError> {
        match b.kind.get() {
            BRUSH_NONE => Ok(Brush::None),
            // A solid colour is the low half of the pattern field.
            BRUSH_SOLID => Ok(Brush::Solid(b.pattern.get() as u32)),
            BRUSH_PATTERN => Ok(Brush::Pattern {
                image: self.image(b.pattern.get(), self_bitmap, Use::Source, what)?,
                origin: Point {
                    x: b.pos.x.get(),
                    y: b.pos.y.get(),
                },
            }),
            other => Err(invalid(what, format!("brush type {other}"))),
        }
    }

    /// A `QXLQMask` of a structure already copied; `None` without a bitmap.
    pub(crate) fn mask(
        &self,
        m: &QxlQMask,
        what: &'static str,
    ) -> Result<Option<Mask>, ParseError> {
        let addr = m.bitmap.get();
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
            invert: m.flags & 1 != 0,
            origin: Point {
                x: m.pos.x.get(),
                y: m.pos.y.get(),
            },
            image,
        }))
    }
}
