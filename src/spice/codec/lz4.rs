//! LZ4 images (`SPICE_IMAGE_TYPE_LZ4`, only for clients with the display
//! cap LZ4_COMPRESSION): one byte top_down, one byte bitmap format
//! (16BIT, 24BIT, 32BIT or RGBA), then LZ4 blocks, each preceded by its
//! compressed size as a big-endian u32. spice-gtk decodes the blocks as
//! one stream into the packed rows (`width · bytes per pixel` each).
//! The block compression itself is lz4_flex's.

use super::{Bitmap, BitmapFormat, CodecError};

/// Rows are compressed in blocks of about this many bytes, so no single
/// block (and allocation) grows with the image.
const BLOCK_BYTES: usize = 1 << 20;

pub fn encode(bitmap: &Bitmap) -> Result<Vec<u8>, CodecError> {
    if !matches!(
        bitmap.format,
        BitmapFormat::Rgb16 | BitmapFormat::Rgb24 | BitmapFormat::Rgb32 | BitmapFormat::Rgba
    ) {
        return Err(CodecError::Unsupported {
            codec: "LZ4",
            format: bitmap.format,
        });
    }
    let stride = bitmap.stride();
    let rows_per_block = (BLOCK_BYTES / stride).max(1);
    let mut out = Vec::with_capacity(bitmap.data.len() / 3 + 16);
    out.push(u8::from(bitmap.top_down));
    out.push(bitmap.format as u8);
    for block in bitmap.data.chunks(rows_per_block * stride) {
        let z = lz4_flex::block::compress(block);
        out.extend_from_slice(&(z.len() as u32).to_be_bytes());
        out.extend_from_slice(&z);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::codec::testimages;

    /// Decodes as spice-gtk does: blocks one after the other.
    fn decode(s: &[u8], expected_len: usize) -> (bool, u8, Vec<u8>) {
        let mut out = Vec::new();
        let mut at = 2;
        while at < s.len() {
            let n = u32::from_be_bytes(s[at..at + 4].try_into().unwrap()) as usize;
            at += 4;
            out.extend(
                lz4_flex::block::decompress(&s[at..at + n], expected_len - out.len()).unwrap(),
            );
            at += n;
        }
        (s[0] != 0, s[1], out)
    }

    #[test]
    fn round_trips_in_blocks() {
        let img = testimages::photo(700, 500, 1);
        let b = Bitmap::rgb32(700, 500, &img.bgrx).unwrap();
        let s = encode(&b).unwrap();
        assert_eq!(decode(&s, img.bgrx.len()), (true, 8, img.bgrx.clone()));
        let sample = testimages::all_formats_sample();
        for (format, w, h, data, _) in sample {
            let Ok(b) = Bitmap::new(format, w, h, false, &data, None) else {
                continue;
            };
            if let Ok(s) = encode(&b) {
                assert_eq!(decode(&s, data.len()), (false, format as u8, data.clone()));
            }
        }
    }
}
