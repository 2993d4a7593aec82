//! The LZ image codec (`SPICE_IMAGE_TYPE_LZ_RGB` / `LZ_PLT`, and the alpha
//! plane of JPEG_ALPHA): a byte-oriented LZ77 over pixels.
//!
//! Stream: seven big-endian u32 (`"LZ  "` magic 0x20205a4c, version
//! 0x00010001, LZ image type, width, height, stride, top_down), then
//! commands until every pixel is produced:
//!
//! * `c < 32`: `c + 1` literal pixels follow (B,G,R for RGB; high byte
//!   then low byte for RGB16; one byte for palette, alpha and A8 units).
//! * `c >= 32`: a copy. `L = c >> 5` (7: more length bytes follow, each
//!   added, until one is not 255); then the low 8 bits of the distance.
//!   Distance = `((c & 31) << 8 | low) + 1`, or, when those are 31 and 255,
//!   `8192 + (next two bytes, big-endian)`. Length = `L - 1 + extra + bias`
//!   units, bias 1 for RGB24/32, 2 for RGB16, 3 for byte units. The copy
//!   may overlap what it produces (runs are distance 1).
//!
//! RGBA is an RGB32 stream followed by an alpha stream; XXXA is the alpha
//! stream alone. Palette images are compressed as their packed row bytes.
//! Matches are found with a hash of three units (greedy, plus run
//! detection); they never leave the image, so the decoders' bounds checks
//! always pass.

use super::{Bitmap, BitmapFormat, CodecError};

/// "LZ  " read as a big-endian u32.
pub const LZ_MAGIC: u32 = 0x2020_5a4c;
/// Version 1.1.
pub const LZ_VERSION: u32 = 0x0001_0001;

/// Longest literal run of one command.
const MAX_COPY: usize = 32;
/// Longest distance of the 2-byte form.
const MAX_NEAR_DISTANCE: usize = 8191;
/// Longest distance of the 4-byte form.
const MAX_FAR_DISTANCE: usize = 8192 + 65535;
const HASH_LOG: u32 = 16;

/// `LzImageType` of lz_common.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LzType {
    Plt1Le = 1,
    Plt1Be = 2,
    Plt4Le = 3,
    Plt4Be = 4,
    Plt8 = 5,
    Rgb16 = 6,
    Rgb24 = 7,
    Rgb32 = 8,
    Rgba = 9,
    Xxxa = 10,
    A8 = 11,
}

impl LzType {
    pub fn for_format(format: BitmapFormat) -> LzType {
        match format {
            BitmapFormat::Plt1Le => LzType::Plt1Le,
            BitmapFormat::Plt1Be => LzType::Plt1Be,
            BitmapFormat::Plt4Le => LzType::Plt4Le,
            BitmapFormat::Plt4Be => LzType::Plt4Be,
            BitmapFormat::Plt8 => LzType::Plt8,
            BitmapFormat::Rgb16 => LzType::Rgb16,
            BitmapFormat::Rgb24 => LzType::Rgb24,
            BitmapFormat::Rgb32 => LzType::Rgb32,
            BitmapFormat::Rgba => LzType::Rgba,
            BitmapFormat::A8 => LzType::A8,
        }
    }
}

/// What one LZ unit is and how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A palette byte, an alpha byte or an A8 pixel.
    Byte,
    /// x1r5g5b5, the x bit ignored.
    Rgb16,
    /// B, G, R (24- and 32-bit pixels).
    Rgb,
}

impl Unit {
    /// Length bias of the LZ decoders (shortest copy).
    pub(crate) fn lz_bias(self) -> usize {
        match self {
            Unit::Byte => 3,
            Unit::Rgb16 => 2,
            Unit::Rgb => 1,
        }
    }

    pub(crate) fn put_literal(self, key: u32, out: &mut Vec<u8>) {
        match self {
            Unit::Byte => out.push(key as u8),
            Unit::Rgb16 => out.extend_from_slice(&[(key >> 8) as u8, key as u8]),
            Unit::Rgb => out.extend_from_slice(&[key as u8, (key >> 8) as u8, (key >> 16) as u8]),
        }
    }
}

/// The comparable value of every unit of the image (for RGB: B | G<<8 | R<<16).
pub(crate) fn keys(bitmap: &Bitmap, unit: Unit, alpha: bool) -> Vec<u32> {
    let d = bitmap.data;
    match (bitmap.format, unit, alpha) {
        // A whole-word load of fixed-size chunks and a mask: vectorised
        // (a gather of four bytes of a slice is half as fast).
        (BitmapFormat::Rgb32 | BitmapFormat::Rgba, Unit::Rgb, false) => d
            .as_chunks::<4>()
            .0
            .iter()
            .map(|p| u32::from_le_bytes(*p) & 0x00ff_ffff)
            .collect(),
        (BitmapFormat::Rgb24, Unit::Rgb, false) => d
            .chunks_exact(3)
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
            .collect(),
        (BitmapFormat::Rgb16, Unit::Rgb16, false) => d
            .chunks_exact(2)
            .map(|p| u32::from(u16::from_le_bytes([p[0], p[1]]) & 0x7fff))
            .collect(),
        (BitmapFormat::Rgba | BitmapFormat::Rgb32, Unit::Byte, true) => {
            d.chunks_exact(4).map(|p| u32::from(p[3])).collect()
        }
        _ => d.iter().map(|&b| u32::from(b)).collect(),
    }
}

/// A `bits`-bit hash of units `i..i + 3`.
pub(crate) fn hash_bits(keys: &[u32], i: usize, bits: u32) -> usize {
    let h = keys[i].wrapping_mul(0x9E37_79B1)
        ^ keys[i + 1].wrapping_mul(0x85EB_CA77).rotate_left(11)
        ^ keys[i + 2].wrapping_mul(0xC2B2_AE3D).rotate_left(22);
    (h.wrapping_mul(0x2545_F491) >> (32 - bits)) as usize
}

/// Bits of an image's own match table: about one slot per pixel, at most
/// 2^16 (filling a large table for a small image costs more than coding it).
pub(crate) fn local_hash_bits(pixels: usize) -> u32 {
    (usize::BITS - pixels.leading_zeros()).clamp(8, HASH_LOG)
}

/// How many units from `a` and `b` on are equal (`b < a`, may overlap).
pub(crate) fn match_len(keys: &[u32], a: usize, b: usize) -> usize {
    common_prefix(&keys[a..], &keys[b..])
}

/// How many leading units `a` and `b` share. Compares blocks of 8 first
/// (they compile to vector compares), then the units of the last block.
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (blocks_a, _) = a.as_chunks::<8>();
    let (blocks_b, _) = b.as_chunks::<8>();
    let same = blocks_a
        .iter()
        .zip(blocks_b)
        .take_while(|(x, y)| x == y)
        .count();
    let at = same * 8;
    at + a[at..]
        .iter()
        .zip(&b[at..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Writes literal units `keys[from..to]` in commands of at most 32.
pub(crate) fn put_literals(keys: &[u32], from: usize, to: usize, unit: Unit, out: &mut Vec<u8>) {
    let mut at = from;
    while at < to {
        let n = (to - at).min(MAX_COPY);
        out.push((n - 1) as u8);
        for &k in &keys[at..at + n] {
            unit.put_literal(k, out);
        }
        at += n;
    }
}

/// Writes the length part of a copy command: `L` into the command byte
/// (with `low5` in its low bits) and the extra bytes.
pub(crate) fn put_length(value: usize, low5: u8, out: &mut Vec<u8>) {
    if value < 7 {
        out.push(((value as u8) << 5) | low5);
    } else {
        out.push((7 << 5) | low5);
        let mut rest = value - 7;
        while rest >= 255 {
            out.push(255);
            rest -= 255;
        }
        out.push(rest as u8);
    }
}

fn put_copy(len: usize, distance: usize, unit: Unit, out: &mut Vec<u8>) {
    let value = len + 1 - unit.lz_bias();
    if distance <= MAX_NEAR_DISTANCE {
        let d = distance - 1;
        put_length(value, (d >> 8) as u8, out);
        out.push(d as u8);
    } else {
        let d = distance - 8192;
        put_length(value, 31, out);
        out.extend_from_slice(&[255, (d >> 8) as u8, d as u8]);
    }
}

/// Shortest copy worth its bytes at this distance.
fn min_copy(unit: Unit, distance: usize) -> usize {
    let near = distance <= MAX_NEAR_DISTANCE;
    match unit {
        Unit::Rgb => 2,
        Unit::Rgb16 => {
            if near {
                2
            } else {
                3
            }
        }
        Unit::Byte => {
            if near {
                3
            } else {
                5
            }
        }
    }
}

/// After this many positions in a row without a match, the encoders
/// start stepping over positions (one more per this many misses, as LZ4
/// does): incompressible stretches (photos, noise) cost a fraction of the
/// lookups, and the first match ends the skipping.
pub(crate) const SKIP_AFTER_MISSES: usize = 32;

/// How far to move after a miss, `misses` misses in a row.
pub(crate) fn miss_step(misses: usize) -> usize {
    1 + misses / SKIP_AFTER_MISSES
}

/// Compresses one unit stream (no header).
pub(crate) fn compress_units(keys: &[u32], unit: Unit, out: &mut Vec<u8>) {
    let n = keys.len();
    let bits = local_hash_bits(n);
    let mut table = vec![u32::MAX; 1 << bits];
    let mut literal_from = 0;
    let mut misses = 0;
    let mut i = 0;
    while i < n {
        let mut best = (0, 0);
        if i > 0 && keys[i] == keys[i - 1] {
            best = (match_len(keys, i, i - 1), 1);
        }
        if i + 3 <= n {
            let h = hash_bits(keys, i, bits);
            let candidate = table[h];
            table[h] = i as u32;
            if candidate != u32::MAX {
                let c = candidate as usize;
                let distance = i - c;
                if distance <= MAX_FAR_DISTANCE && distance > 1 && keys[c] == keys[i] {
                    let len = match_len(keys, i, c);
                    if len > best.0 {
                        best = (len, distance);
                    }
                }
            }
        }
        let (len, distance) = best;
        if len >= unit.lz_bias() && len >= min_copy(unit, distance) {
            put_literals(keys, literal_from, i, unit, out);
            put_copy(len, distance, unit, out);
            i += len;
            // Remember where the copy ended, as fastlz does.
            for at in [i.saturating_sub(2), i.saturating_sub(1)] {
                if at + 3 <= n && at > 0 {
                    table[hash_bits(keys, at, bits)] = at as u32;
                }
            }
            literal_from = i;
            misses = 0;
        } else {
            misses += 1;
            i += miss_step(misses);
        }
    }
    put_literals(keys, literal_from, n, unit, out);
}

fn put_header(ty: LzType, bitmap: &Bitmap, out: &mut Vec<u8>) {
    let stride = match ty {
        LzType::Xxxa => bitmap.width * 4,
        _ => bitmap.stride() as u32,
    };
    for word in [
        LZ_MAGIC,
        LZ_VERSION,
        ty as u32,
        bitmap.width,
        bitmap.height,
        stride,
        u32::from(bitmap.top_down),
    ] {
        out.extend_from_slice(&word.to_be_bytes());
    }
}

/// Encodes an image as an LZ stream of its own format's LZ type (RGB
/// formats go in `LZ_RGB` images, palette formats in `LZ_PLT`).
pub fn encode(bitmap: &Bitmap) -> Result<Vec<u8>, CodecError> {
    let ty = LzType::for_format(bitmap.format);
    let mut out = Vec::with_capacity(bitmap.data.len() / 4 + 64);
    put_header(ty, bitmap, &mut out);
    match bitmap.format {
        BitmapFormat::Rgb32 | BitmapFormat::Rgb24 => {
            compress_units(&keys(bitmap, Unit::Rgb, false), Unit::Rgb, &mut out)
        }
        BitmapFormat::Rgba => {
            compress_units(&keys(bitmap, Unit::Rgb, false), Unit::Rgb, &mut out);
            compress_units(&keys(bitmap, Unit::Byte, true), Unit::Byte, &mut out);
        }
        BitmapFormat::Rgb16 => {
            compress_units(&keys(bitmap, Unit::Rgb16, false), Unit::Rgb16, &mut out)
        }
        _ => compress_units(&keys(bitmap, Unit::Byte, false), Unit::Byte, &mut out),
    }
    Ok(out)
}

/// Encodes the alpha bytes of a 32-bit image as an LZ `XXXA` stream (the
/// alpha plane of JPEG_ALPHA).
pub fn encode_alpha(bitmap: &Bitmap) -> Result<Vec<u8>, CodecError> {
    if !matches!(bitmap.format, BitmapFormat::Rgba | BitmapFormat::Rgb32) {
        return Err(CodecError::Unsupported {
            codec: "LZ alpha",
            format: bitmap.format,
        });
    }
    let mut out = Vec::with_capacity(bitmap.data.len() / 16 + 64);
    put_header(LzType::Xxxa, bitmap, &mut out);
    compress_units(&keys(bitmap, Unit::Byte, true), Unit::Byte, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::codec::reference;
    use crate::spice::codec::testimages::{self, all_formats_sample};
    use crate::spice::codec::Palette;

    #[test]
    fn common_prefix_counts_across_blocks() {
        let a: Vec<u32> = (0..40).collect();
        for differ in [0, 1, 7, 8, 9, 16, 31, 33, 39] {
            let mut b = a.clone();
            b[differ] = 1000;
            assert_eq!(common_prefix(&a, &b), differ);
            assert_eq!(common_prefix(&b[..differ], &a), differ);
        }
        assert_eq!(common_prefix(&a, &a[..21]), 21);
        assert_eq!(common_prefix(&a, &a), 40);
        assert_eq!(common_prefix(&[], &a), 0);
        // Overlapping runs: keys[a..] against keys[b..] with b < a.
        let run = [5u32; 19];
        assert_eq!(match_len(&run, 3, 2), 16);
    }

    fn roundtrip(bitmap: &Bitmap) {
        let stream = encode(bitmap).unwrap();
        let decoded = reference::lz_decode(&stream, bitmap.palette).unwrap();
        assert_eq!(decoded.width, bitmap.width);
        assert_eq!(decoded.height, bitmap.height);
        assert_eq!(decoded.top_down, bitmap.top_down);
        assert_eq!(
            decoded.data,
            reference::expected_lz_output(bitmap),
            "{:?} {}x{}",
            bitmap.format,
            bitmap.width,
            bitmap.height
        );
    }

    #[test]
    fn every_format_round_trips() {
        for (format, w, h, data, palette) in all_formats_sample() {
            let bitmap = Bitmap::new(format, w, h, true, &data, palette.as_ref()).unwrap();
            roundtrip(&bitmap);
            let bitmap = Bitmap::new(format, w, h, false, &data, palette.as_ref()).unwrap();
            roundtrip(&bitmap);
        }
    }

    #[test]
    fn random_synthetic_and_real_rgb32_round_trip() {
        for img in testimages::rgb32_set() {
            let bitmap = Bitmap::rgb32(img.width, img.height, &img.bgrx).unwrap();
            let stream = encode(&bitmap).unwrap();
            let decoded = reference::lz_decode(&stream, None).unwrap();
            assert_eq!(
                decoded.data,
                reference::expected_lz_output(&bitmap),
                "{}",
                img.name
            );
        }
    }

    #[test]
    fn long_runs_far_copies_and_tiny_images() {
        // 1 pixel, 3 pixels, a long run, repeats at near and far distances.
        let mut cases: Vec<(u32, u32, Vec<u8>)> = vec![
            (1, 1, vec![1, 2, 3, 0]),
            (3, 1, vec![1, 2, 3, 0, 1, 2, 3, 0, 4, 5, 6, 0]),
            (5000, 3, vec![7; 5000 * 3 * 4]),
        ];
        let mut far = Vec::new();
        let pattern: Vec<u8> = (0..40_000u32)
            .flat_map(|i| [(i * 7) as u8, (i >> 3) as u8, ((i * 13) >> 5) as u8, 0])
            .collect();
        far.extend_from_slice(&pattern);
        far.extend_from_slice(&pattern[..4000 * 4]);
        far.extend_from_slice(&pattern[8000 * 4..]);
        far.truncate(76_000 * 4);
        cases.push((1000, 76, far));
        for (w, h, data) in cases {
            roundtrip(&Bitmap::rgb32(w, h, &data).unwrap());
        }
        let palette = Palette {
            unique: 5,
            entries: vec![0xff0000, 0x00ff00],
        };
        let bits = vec![0b1010_0000u8; 4 * 10];
        roundtrip(&Bitmap::new(BitmapFormat::Plt1Be, 30, 10, true, &bits, Some(&palette)).unwrap());
    }

    #[test]
    fn compresses_synthetic_content() {
        let img = testimages::desktop(640, 480, 1);
        let bitmap = Bitmap::rgb32(img.width, img.height, &img.bgrx).unwrap();
        let size = encode(&bitmap).unwrap().len();
        assert!(size * 10 < img.bgrx.len(), "{size}");
    }
}
