//! SPICE image compression: the encoders for every image type stock
//! clients decode, the choice between them, and the caches.
//!
//! * [`quic`]: QUIC (SFALIC-style predictive Golomb coding), lossless, for
//!   photographic content (RGB32, RGB24, RGB16, RGBA, gray).
//! * [`lz`]: LZ (fastlz-style dictionary coding within one image), for
//!   synthetic content (RGB16/24/32, RGBA, alpha-only, palette images, A8).
//! * [`glz`]: GLZ, LZ whose matches may also point into earlier images the
//!   client still holds (a per-client window), optionally zlib-wrapped.
//! * [`lz4`], [`jpeg`]: LZ4 (when the client advertises it) and JPEG /
//!   JPEG with an LZ alpha plane (lossy, only when allowed).
//! * [`classify`]: the measured "synthetic or photographic" test used by the
//!   `auto_*` modes; [`policy`]: the `--spice` compression options and the
//!   per-image choice; [`image`]: the SPICE `Image` structure on the wire.
//! * [`parallel`]: encodes several images at once on scoped worker threads.
//!
//! Every encoder here writes the exact bitstream of the reference decoders
//! (spice-common's quic.c / lz.c, spice-gtk's decode-glz.c, spice-html5's
//! quic.js / lz.js); the tests decode their output with independent
//! decoders (`reference`, and spice-html5 under node) and with real clients.

pub mod classify;
pub mod glz;
pub mod image;
pub mod jpeg;
pub mod lz;
pub mod lz4;
pub mod parallel;
pub mod policy;
pub mod quic;

#[cfg(test)]
mod html5_tests;
#[cfg(test)]
pub(crate) mod reference;
#[cfg(test)]
pub(crate) mod testimages;

use std::fmt;

/// Largest image any encoder accepts, in pixels (2^28: 1 GiB of 32-bit
/// pixels; the reference decoders refuse 2^29 and more).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 28;

/// SPICE bitmap formats (`SPICE_BITMAP_FMT_*`, the wire values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BitmapFormat {
    /// 1 bit per pixel, palette index, least significant bit first.
    Plt1Le = 1,
    /// 1 bit per pixel, palette index, most significant bit first.
    Plt1Be = 2,
    /// 4 bits per pixel, palette index, low nibble first.
    Plt4Le = 3,
    /// 4 bits per pixel, palette index, high nibble first.
    Plt4Be = 4,
    /// 8-bit palette index.
    Plt8 = 5,
    /// x1r5g5b5, u16 little-endian.
    Rgb16 = 6,
    /// Bytes B, G, R.
    Rgb24 = 7,
    /// Bytes B, G, R, X.
    Rgb32 = 8,
    /// Bytes B, G, R, A (premultiplied).
    Rgba = 9,
    /// Alpha only, one byte.
    A8 = 10,
}

impl BitmapFormat {
    pub fn bits_per_pixel(self) -> u64 {
        match self {
            BitmapFormat::Plt1Le | BitmapFormat::Plt1Be => 1,
            BitmapFormat::Plt4Le | BitmapFormat::Plt4Be => 4,
            BitmapFormat::Plt8 | BitmapFormat::A8 => 8,
            BitmapFormat::Rgb16 => 16,
            BitmapFormat::Rgb24 => 24,
            BitmapFormat::Rgb32 | BitmapFormat::Rgba => 32,
        }
    }

    /// Bytes of one row without padding.
    pub fn row_bytes(self, width: u32) -> u64 {
        (u64::from(width) * self.bits_per_pixel()).div_ceil(8)
    }

    pub fn has_palette(self) -> bool {
        matches!(
            self,
            BitmapFormat::Plt1Le
                | BitmapFormat::Plt1Be
                | BitmapFormat::Plt4Le
                | BitmapFormat::Plt4Be
                | BitmapFormat::Plt8
        )
    }
}

/// A palette: `unique` is its cache id (0: not cacheable), entries xRGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    pub unique: u64,
    pub entries: Vec<u32>,
}

/// An uncompressed source image. Rows are packed (`format.row_bytes`
/// bytes each, no padding), first row first; `top_down` says whether the
/// first row is the top of the picture (it is passed on to the client).
#[derive(Debug, Clone, Copy)]
pub struct Bitmap<'a> {
    pub format: BitmapFormat,
    pub width: u32,
    pub height: u32,
    pub top_down: bool,
    pub data: &'a [u8],
    pub palette: Option<&'a Palette>,
}

/// Packed pixels `0x00RRGGBB` (what `Surface::copy_rect` gives) as the
/// B, G, R, X bytes of a 32-bit bitmap (x86 is little-endian), without a
/// copy.
pub fn pixel_bytes(pixels: &[u32]) -> &[u8] {
    zerocopy::IntoBytes::as_bytes(pixels)
}

// (The byte order above, and the wire's, are little-endian's.)
const _: () = assert!(cfg!(target_endian = "little"));

/// Why an image could not be encoded in a given way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// Width or height is 0, or the image is over [`MAX_IMAGE_PIXELS`].
    BadSize { width: u32, height: u32 },
    /// `data` does not hold exactly `height` packed rows.
    BadLength { expected: u64, actual: usize },
    /// A palette format without a usable palette.
    MissingPalette,
    /// This encoder does not take this format.
    Unsupported {
        codec: &'static str,
        format: BitmapFormat,
    },
    /// The external encoder failed (JPEG, zlib, LZ4).
    Encoder(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::BadSize { width, height } => write!(f, "bad image size {width}x{height}"),
            CodecError::BadLength { expected, actual } => {
                write!(f, "image data is {actual} bytes, expected {expected}")
            }
            CodecError::MissingPalette => write!(f, "palette image without a palette"),
            CodecError::Unsupported { codec, format } => {
                write!(f, "{codec} cannot encode {format:?} images")
            }
            CodecError::Encoder(e) => write!(f, "encoder failed: {e}"),
        }
    }
}

impl std::error::Error for CodecError {}

impl<'a> Bitmap<'a> {
    /// Checks the size, the data length and the palette.
    pub fn new(
        format: BitmapFormat,
        width: u32,
        height: u32,
        top_down: bool,
        data: &'a [u8],
        palette: Option<&'a Palette>,
    ) -> Result<Bitmap<'a>, CodecError> {
        let pixels = u64::from(width) * u64::from(height);
        if width == 0 || height == 0 || pixels > MAX_IMAGE_PIXELS {
            return Err(CodecError::BadSize { width, height });
        }
        let expected = format.row_bytes(width) * u64::from(height);
        if data.len() as u64 != expected {
            return Err(CodecError::BadLength {
                expected,
                actual: data.len(),
            });
        }
        if format.has_palette() && !matches!(palette, Some(p) if !p.entries.is_empty()) {
            return Err(CodecError::MissingPalette);
        }
        Ok(Bitmap {
            format,
            width,
            height,
            top_down,
            data,
            palette,
        })
    }

    /// 32-bit BGRX rows, top row first (what a Display surface holds).
    pub fn rgb32(width: u32, height: u32, data: &'a [u8]) -> Result<Bitmap<'a>, CodecError> {
        Bitmap::new(BitmapFormat::Rgb32, width, height, true, data, None)
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.format.row_bytes(self.width) as usize
    }

    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}
