//! The SPICE `Image` structure on the wire: descriptor (id, type, flags,
//! size) and the type's payload (docs/spice-protocol.md §5.2).
//!
//! Pointers inside an image (a bitmap's or LZ_PLT's palette) point after
//! the pixel data, which is written right after the payload header, so
//! spice-html5 (which takes "the rest of the message" as pixels for
//! bitmaps) still works for palette-less images.

use super::{pixel_bytes, BitmapFormat, Palette};
use crate::spice::wire::Writer;

pub const IMAGE_TYPE_BITMAP: u8 = 0;
pub const IMAGE_TYPE_QUIC: u8 = 1;
pub const IMAGE_TYPE_LZ_PLT: u8 = 100;
pub const IMAGE_TYPE_LZ_RGB: u8 = 101;
pub const IMAGE_TYPE_GLZ_RGB: u8 = 102;
pub const IMAGE_TYPE_FROM_CACHE: u8 = 103;
pub const IMAGE_TYPE_JPEG: u8 = 105;
pub const IMAGE_TYPE_FROM_CACHE_LOSSLESS: u8 = 106;
pub const IMAGE_TYPE_ZLIB_GLZ_RGB: u8 = 107;
pub const IMAGE_TYPE_JPEG_ALPHA: u8 = 108;
pub const IMAGE_TYPE_LZ4: u8 = 109;

/// `SPICE_IMAGE_FLAGS_*`.
pub const IMAGE_FLAG_CACHE_ME: u8 = 1;
pub const IMAGE_FLAG_HIGH_BITS_SET: u8 = 2;
pub const IMAGE_FLAG_CACHE_REPLACE_ME: u8 = 4;

/// `SPICE_BITMAP_FLAGS_*`.
pub const BITMAP_FLAG_PAL_CACHE_ME: u8 = 1;
pub const BITMAP_FLAG_PAL_FROM_CACHE: u8 = 2;
pub const BITMAP_FLAG_TOP_DOWN: u8 = 4;

const JPEG_ALPHA_FLAG_TOP_DOWN: u8 = 1;

/// How a palette reaches the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaletteSource {
    /// Sent with the image; `cache_me` asks the client to keep it under
    /// `palette.unique`.
    Inline { palette: Palette, cache_me: bool },
    /// The client has it cached under this id.
    Cached(u64),
}

/// The pixel data of an image, in one of SPICE's image encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageData {
    /// Uncompressed 32-bit rows, top row first: `0x00RRGGBB` pixels, sent
    /// as their B, G, R, X bytes.
    Bitmap32 {
        pixels: Vec<u32>,
    },
    /// Uncompressed rows of any format (`stride` bytes each).
    Bitmap {
        format: BitmapFormat,
        top_down: bool,
        stride: u32,
        palette: Option<PaletteSource>,
        pixels: Vec<u8>,
    },
    Quic(Vec<u8>),
    LzRgb(Vec<u8>),
    LzPlt {
        top_down: bool,
        palette: PaletteSource,
        data: Vec<u8>,
    },
    GlzRgb(Vec<u8>),
    ZlibGlzRgb {
        glz_size: u32,
        data: Vec<u8>,
    },
    Jpeg(Vec<u8>),
    /// Always top-down: `data` is the JPEG (`jpeg_size` bytes) then LZ alpha.
    JpegAlpha {
        jpeg_size: u32,
        data: Vec<u8>,
    },
    Lz4(Vec<u8>),
    /// The client has this image id cached.
    FromCache,
    /// The client has it cached, and must use it only if cached losslessly.
    FromCacheLossless,
}

impl ImageData {
    pub fn image_type(&self) -> u8 {
        match self {
            ImageData::Bitmap32 { .. } | ImageData::Bitmap { .. } => IMAGE_TYPE_BITMAP,
            ImageData::Quic(_) => IMAGE_TYPE_QUIC,
            ImageData::LzRgb(_) => IMAGE_TYPE_LZ_RGB,
            ImageData::LzPlt { .. } => IMAGE_TYPE_LZ_PLT,
            ImageData::GlzRgb(_) => IMAGE_TYPE_GLZ_RGB,
            ImageData::ZlibGlzRgb { .. } => IMAGE_TYPE_ZLIB_GLZ_RGB,
            ImageData::Jpeg(_) => IMAGE_TYPE_JPEG,
            ImageData::JpegAlpha { .. } => IMAGE_TYPE_JPEG_ALPHA,
            ImageData::Lz4(_) => IMAGE_TYPE_LZ4,
            ImageData::FromCache => IMAGE_TYPE_FROM_CACHE,
            ImageData::FromCacheLossless => IMAGE_TYPE_FROM_CACHE_LOSSLESS,
        }
    }

    /// Whether the client gets an approximation of the picture.
    pub fn is_lossy(&self) -> bool {
        matches!(self, ImageData::Jpeg(_) | ImageData::JpegAlpha { .. })
    }

    /// Bytes of pixel payload (for statistics).
    pub fn payload_len(&self) -> usize {
        match self {
            ImageData::Bitmap32 { pixels } => pixels.len() * 4,
            ImageData::Bitmap { pixels, .. } => pixels.len(),
            ImageData::Quic(d)
            | ImageData::LzRgb(d)
            | ImageData::GlzRgb(d)
            | ImageData::Jpeg(d)
            | ImageData::Lz4(d)
            | ImageData::LzPlt { data: d, .. }
            | ImageData::ZlibGlzRgb { data: d, .. }
            | ImageData::JpegAlpha { data: d, .. } => d.len(),
            ImageData::FromCache | ImageData::FromCacheLossless => 0,
        }
    }
}

/// A SPICE `Image`: descriptor plus payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: u64,
    /// `IMAGE_FLAG_*`.
    pub flags: u8,
    pub width: u32,
    pub height: u32,
    pub data: ImageData,
}

fn put_palette(w: &mut Writer, p: &Palette) {
    w.u64(p.unique).u16(p.entries.len() as u16);
    for &e in &p.entries {
        w.u32(e);
    }
}

/// Writes the palette field: an id, or a pointer slot to patch later.
fn palette_field(w: &mut Writer, palette: Option<&PaletteSource>, flags: &mut u8) -> Option<usize> {
    match palette {
        Some(PaletteSource::Cached(id)) => {
            *flags |= BITMAP_FLAG_PAL_FROM_CACHE;
            w.u64(*id);
            None
        }
        Some(PaletteSource::Inline { cache_me, .. }) => {
            if *cache_me {
                *flags |= BITMAP_FLAG_PAL_CACHE_ME;
            }
            Some(w.pointer_slot())
        }
        None => {
            w.u32(0);
            None
        }
    }
}

fn finish_palette(w: &mut Writer, slot: Option<usize>, palette: Option<&PaletteSource>) {
    if let (Some(slot), Some(PaletteSource::Inline { palette, .. })) = (slot, palette) {
        w.patch_pointer(slot);
        put_palette(w, palette);
    }
}

impl Image {
    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.id)
            .u8(self.data.image_type())
            .u8(self.flags)
            .u32(self.width)
            .u32(self.height);
        match &self.data {
            ImageData::Bitmap32 { pixels } => {
                w.u8(BitmapFormat::Rgb32 as u8)
                    .u8(BITMAP_FLAG_TOP_DOWN)
                    .u32(self.width)
                    .u32(self.height)
                    .u32(self.width * 4)
                    .u32(0) // no palette
                    .bytes(pixel_bytes(pixels));
            }
            ImageData::Bitmap {
                format,
                top_down,
                stride,
                palette,
                pixels,
            } => {
                // The flags byte precedes the palette field: build it first.
                let mut flags = if *top_down { BITMAP_FLAG_TOP_DOWN } else { 0 };
                if let Some(p) = palette {
                    flags |= match p {
                        PaletteSource::Cached(_) => BITMAP_FLAG_PAL_FROM_CACHE,
                        PaletteSource::Inline { cache_me: true, .. } => BITMAP_FLAG_PAL_CACHE_ME,
                        PaletteSource::Inline { .. } => 0,
                    };
                }
                w.u8(*format as u8)
                    .u8(flags)
                    .u32(self.width)
                    .u32(self.height)
                    .u32(*stride);
                let slot = palette_field(w, palette.as_ref(), &mut flags);
                w.bytes(pixels);
                finish_palette(w, slot, palette.as_ref());
            }
            ImageData::Quic(d)
            | ImageData::LzRgb(d)
            | ImageData::GlzRgb(d)
            | ImageData::Jpeg(d)
            | ImageData::Lz4(d) => {
                w.u32(d.len() as u32).bytes(d);
            }
            ImageData::LzPlt {
                top_down,
                palette,
                data,
            } => {
                let mut flags = if *top_down { BITMAP_FLAG_TOP_DOWN } else { 0 };
                flags |= match palette {
                    PaletteSource::Cached(_) => BITMAP_FLAG_PAL_FROM_CACHE,
                    PaletteSource::Inline { cache_me: true, .. } => BITMAP_FLAG_PAL_CACHE_ME,
                    PaletteSource::Inline { .. } => 0,
                };
                w.u8(flags).u32(data.len() as u32);
                let slot = palette_field(w, Some(palette), &mut flags);
                w.bytes(data);
                finish_palette(w, slot, Some(palette));
            }
            ImageData::ZlibGlzRgb { glz_size, data } => {
                w.u32(*glz_size).u32(data.len() as u32).bytes(data);
            }
            ImageData::JpegAlpha { jpeg_size, data } => {
                w.u8(JPEG_ALPHA_FLAG_TOP_DOWN)
                    .u32(*jpeg_size)
                    .u32(data.len() as u32)
                    .bytes(data);
            }
            ImageData::FromCache | ImageData::FromCacheLossless => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(img: &Image) -> Vec<u8> {
        let mut w = Writer::new();
        img.encode(&mut w);
        w.into_bytes()
    }

    #[test]
    fn layouts() {
        let img = |data| Image {
            id: 7,
            flags: IMAGE_FLAG_CACHE_ME,
            width: 2,
            height: 1,
            data,
        };
        let b = body(&img(ImageData::Quic(vec![1, 2, 3, 4])));
        assert_eq!(
            &b[..18],
            &[7, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(&b[18..], &[4, 0, 0, 0, 1, 2, 3, 4]);
        let b = body(&img(ImageData::ZlibGlzRgb {
            glz_size: 9,
            data: vec![5],
        }));
        assert_eq!(&b[18..], &[9, 0, 0, 0, 1, 0, 0, 0, 5]);
        let b = body(&img(ImageData::JpegAlpha {
            jpeg_size: 1,
            data: vec![5, 6],
        }));
        assert_eq!(&b[18..], &[1, 1, 0, 0, 0, 2, 0, 0, 0, 5, 6]);
        assert_eq!(body(&img(ImageData::FromCache)).len(), 18);
        // LZ_PLT: flags, size, palette pointer → after the data.
        let p = Palette {
            unique: 3,
            entries: vec![0x112233, 0x445566],
        };
        let b = body(&img(ImageData::LzPlt {
            top_down: true,
            palette: PaletteSource::Inline {
                palette: p.clone(),
                cache_me: true,
            },
            data: vec![9, 9, 9],
        }));
        assert_eq!(b[18], BITMAP_FLAG_TOP_DOWN | BITMAP_FLAG_PAL_CACHE_ME);
        assert_eq!(&b[19..23], &[3, 0, 0, 0]);
        assert_eq!(&b[23..27], &[30, 0, 0, 0]);
        assert_eq!(&b[27..30], &[9, 9, 9]);
        assert_eq!(&b[30..38], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[38..40], &[2, 0]);
        let b = body(&img(ImageData::LzPlt {
            top_down: false,
            palette: PaletteSource::Cached(3),
            data: vec![9],
        }));
        assert_eq!(b[18], BITMAP_FLAG_PAL_FROM_CACHE);
        assert_eq!(&b[23..31], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b.len(), 32);
    }
}
