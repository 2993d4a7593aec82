//! JPEG (`SPICE_IMAGE_TYPE_JPEG`) and JPEG with an alpha plane
//! (`JPEG_ALPHA`: the JPEG of the colours followed by an LZ `XXXA` stream
//! of the alpha bytes). Lossy: used only where the policy allows it.
//! The JPEG itself is baseline JFIF from the jpeg-encoder crate; the
//! picture is always sent top-down (the JPEG_ALPHA TOP_DOWN flag is set
//! and the alpha plane is coded in the same order).

use std::borrow::Cow;

use super::{lz, Bitmap, BitmapFormat, CodecError};

/// spice-server's default quality.
pub const DEFAULT_QUALITY: u8 = 85;

/// The picture as top-down B, G, R, A rows: the bitmap's own bytes when it
/// already is that (a 32-bit top-down picture), else a converted copy.
fn top_down_bgra<'a>(bitmap: &Bitmap<'a>) -> Result<Cow<'a, [u8]>, CodecError> {
    if bitmap.top_down && matches!(bitmap.format, BitmapFormat::Rgb32 | BitmapFormat::Rgba) {
        return Ok(Cow::Borrowed(bitmap.data));
    }
    let stride = bitmap.stride();
    let rows = |y: usize| {
        let r = if bitmap.top_down {
            y
        } else {
            bitmap.height as usize - 1 - y
        };
        &bitmap.data[r * stride..(r + 1) * stride]
    };
    let mut out = Vec::with_capacity(bitmap.pixels() as usize * 4);
    for y in 0..bitmap.height as usize {
        let row = rows(y);
        match bitmap.format {
            BitmapFormat::Rgb32 | BitmapFormat::Rgba => out.extend_from_slice(row),
            BitmapFormat::Rgb24 => row
                .chunks_exact(3)
                .for_each(|p| out.extend([p[0], p[1], p[2], 255])),
            BitmapFormat::Rgb16 => row.chunks_exact(2).for_each(|p| {
                let v = u16::from_le_bytes([p[0], p[1]]);
                let c = |s: u16| (((v >> s) & 0x1f) << 3 | ((v >> s) & 0x1f) >> 2) as u8;
                out.extend([c(0), c(5), c(10), 255]);
            }),
            format => {
                return Err(CodecError::Unsupported {
                    codec: "JPEG",
                    format,
                })
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// Chroma sampling: images use libjpeg's default (2×2 subsampled, as
/// spice-server); a video stream uses it while its pictures survive
/// subsampling well ([`chroma_for`]), else keeps full chroma, which
/// saturated colours with sharp edges need for 30 dB and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    Subsampled,
    Full,
}

/// Subsampled chroma alone must keep at least this PSNR for a stream to
/// use it: the lowest stream quality's quantisation costs detailed
/// pictures about as much again (e.g. a chart at 35 dB of chroma error
/// ends at 29 dB), so only pictures well above it are subsampled.
pub const SUBSAMPLED_CHROMA_MIN_DB: f64 = 37.0;

/// The chroma sampling for frames like this picture (B, G, R, X rows).
pub fn chroma_for(bgrx: &[u8], width: u32, height: u32) -> Chroma {
    if chroma_subsampling_psnr(bgrx, width, height) >= SUBSAMPLED_CHROMA_MIN_DB {
        Chroma::Subsampled
    } else {
        Chroma::Full
    }
}

/// How well the picture survives 2×2 chroma subsampling alone: the PSNR
/// (dB, over R, G and B) of the picture with each 2×2 block's Cb and Cr
/// replaced by their mean, luma kept, estimated on every other row of
/// blocks. Photos lose little (their colour changes slowly); saturated
/// colours with sharp edges lose a lot.
pub fn chroma_subsampling_psnr(bgrx: &[u8], width: u32, height: u32) -> f64 {
    let (w, h) = (width as usize, height as usize);
    if bgrx.len() < w * h * 4 {
        return 0.0;
    }
    let chroma = |x: usize, y: usize| {
        let p = &bgrx[(y * w + x) * 4..];
        let (b, g, r) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
        (
            -0.168_736 * r - 0.331_264 * g + 0.5 * b,
            0.5 * r - 0.418_688 * g - 0.081_312 * b,
        )
    };
    let (mut squared, mut samples) = (0.0, 0u64);
    for y in (0..h.saturating_sub(1)).step_by(4) {
        for x in (0..w.saturating_sub(1)).step_by(2) {
            let px = [
                chroma(x, y),
                chroma(x + 1, y),
                chroma(x, y + 1),
                chroma(x + 1, y + 1),
            ];
            let mean_cb = px.iter().map(|c| c.0).sum::<f64>() / 4.0;
            let mean_cr = px.iter().map(|c| c.1).sum::<f64>() / 4.0;
            for (cb, cr) in px {
                let (db, dr) = (mean_cb - cb, mean_cr - cr);
                let (er, eg, eb) = (1.402 * dr, -0.344_136 * db - 0.714_136 * dr, 1.772 * db);
                squared += er * er + eg * eg + eb * eb;
                samples += 3;
            }
        }
    }
    psnr_of(squared, samples as f64)
}

/// PSNR (dB) of 8-bit samples from the sum of their squared errors.
fn psnr_of(squared: f64, samples: f64) -> f64 {
    if samples == 0.0 || squared == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (squared / samples)).log10()
}

fn jpeg_of(
    bgra: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    chroma: Chroma,
) -> Result<Vec<u8>, CodecError> {
    let (w, h) = (
        u16::try_from(width).map_err(|_| CodecError::BadSize { width, height })?,
        u16::try_from(height).map_err(|_| CodecError::BadSize { width, height })?,
    );
    let mut out = Vec::with_capacity(bgra.len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    if chroma == Chroma::Full {
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    }
    encoder
        .encode(bgra, w, h, jpeg_encoder::ColorType::Bgra)
        .map_err(|e| CodecError::Encoder(e.to_string()))?;
    Ok(out)
}

/// A JPEG of the picture (alpha ignored).
pub fn encode(bitmap: &Bitmap, quality: u8, chroma: Chroma) -> Result<Vec<u8>, CodecError> {
    jpeg_of(
        &top_down_bgra(bitmap)?,
        bitmap.width,
        bitmap.height,
        quality,
        chroma,
    )
}

/// JPEG_ALPHA payload: `(jpeg_size, jpeg bytes followed by the LZ alpha)`.
pub fn encode_with_alpha(bitmap: &Bitmap, quality: u8) -> Result<(u32, Vec<u8>), CodecError> {
    if bitmap.format != BitmapFormat::Rgba {
        return Err(CodecError::Unsupported {
            codec: "JPEG_ALPHA",
            format: bitmap.format,
        });
    }
    let bgra = top_down_bgra(bitmap)?;
    let mut data = jpeg_of(
        &bgra,
        bitmap.width,
        bitmap.height,
        quality,
        Chroma::Subsampled,
    )?;
    let jpeg_size = data.len() as u32;
    let upright = Bitmap::new(
        BitmapFormat::Rgba,
        bitmap.width,
        bitmap.height,
        true,
        &bgra,
        None,
    )?;
    data.extend_from_slice(&lz::encode_alpha(&upright)?);
    Ok((jpeg_size, data))
}

/// Peak signal-to-noise ratio of two same-sized B, G, R(, X) pictures over
/// the colour bytes, in dB.
pub fn psnr(a: &[u8], b: &[u8], bytes_per_pixel: usize) -> f64 {
    let (mut sum, mut n) = (0f64, 0f64);
    for (p, q) in a
        .chunks_exact(bytes_per_pixel)
        .zip(b.chunks_exact(bytes_per_pixel))
    {
        for c in 0..3 {
            let d = f64::from(p[c]) - f64::from(q[c]);
            sum += d * d;
            n += 1.0;
        }
    }
    psnr_of(sum, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::codec::{reference, testimages};

    fn decode(jpeg: &[u8]) -> Vec<u8> {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let rgb = d.decode().unwrap();
        rgb.chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0], 0])
            .collect()
    }

    #[test]
    fn jpeg_is_within_30_db_on_photos_and_real_images() {
        let mut set = vec![testimages::photo(320, 240, 1)];
        set.extend(testimages::real_images(256));
        for img in set {
            let b = Bitmap::rgb32(img.width, img.height, &img.bgrx).unwrap();
            let j = encode(&b, DEFAULT_QUALITY, Chroma::Subsampled).unwrap();
            let p = psnr(&decode(&j), &img.bgrx, 4);
            assert!(p >= 30.0, "{}: {p:.1} dB", img.name);
            assert!(j.len() * 4 < img.bgrx.len(), "{}", img.name);
        }
    }

    /// A photo whose red is XORed with the column, as the replay
    /// workload's synthetic video (tests/replay/fbtool.c) mixes its frames:
    /// sharp steps in red alone, which subsampling smears.
    fn colour_bands(width: u32, height: u32) -> testimages::TestImage {
        let mut img = testimages::photo(width, height, 5);
        for (i, p) in img.bgrx.chunks_exact_mut(4).enumerate() {
            p[2] ^= (i as u32 % width) as u8;
        }
        img.name = "photo with red bands".into();
        img
    }

    /// Video frames: the chroma [`chroma_for`] picks keeps every picture
    /// above 30 dB at the lowest stream quality; it subsamples photos (as
    /// libspice, for fewer bytes and less work) but not colour bands, which
    /// subsampled fall below 30 dB.
    #[test]
    fn stream_chroma_keeps_every_picture_above_30_db() {
        use crate::spice::video_stream::MIN_QUALITY;
        let mut set = vec![
            testimages::desktop(320, 240, 3),
            testimages::photo(320, 240, 3),
            colour_bands(320, 240),
        ];
        set.extend(testimages::real_images(256));
        for img in &set {
            let b = Bitmap::rgb32(img.width, img.height, &img.bgrx).unwrap();
            let chroma = chroma_for(&img.bgrx, img.width, img.height);
            let jpeg = encode(&b, MIN_QUALITY, chroma).unwrap();
            let p = psnr(&decode(&jpeg), &img.bgrx, 4);
            assert!(p >= 30.0, "{} ({chroma:?}): {p:.1} dB", img.name);
        }
        let chroma = |img: &testimages::TestImage| chroma_for(&img.bgrx, img.width, img.height);
        assert_eq!(chroma(&set[1]), Chroma::Subsampled);
        assert_eq!(chroma(&set[2]), Chroma::Full);
        let bands = &set[2];
        let b = Bitmap::rgb32(bands.width, bands.height, &bands.bgrx).unwrap();
        let sub = encode(&b, MIN_QUALITY, Chroma::Subsampled).unwrap();
        assert!(psnr(&decode(&sub), &bands.bgrx, 4) < 30.0);
    }

    #[test]
    fn jpeg_alpha_carries_exact_alpha() {
        let img = testimages::photo(100, 60, 2);
        let mut rgba = img.bgrx.clone();
        for (i, p) in rgba.chunks_exact_mut(4).enumerate() {
            p[3] = if (i / 7) % 3 == 0 {
                255
            } else {
                (i % 251) as u8
            };
        }
        for top_down in [true, false] {
            let b = Bitmap::new(BitmapFormat::Rgba, 100, 60, top_down, &rgba, None).unwrap();
            let (jpeg_size, data) = encode_with_alpha(&b, 90).unwrap();
            let colours = decode(&data[..jpeg_size as usize]);
            let alpha = reference::lz_decode(&data[jpeg_size as usize..], None).unwrap();
            assert_eq!((alpha.ty, alpha.top_down), (10, true));
            let mut upright = rgba.clone();
            if !top_down {
                upright = rgba.chunks_exact(400).rev().flatten().copied().collect();
            }
            let got: Vec<u8> = alpha.data.chunks_exact(4).map(|p| p[3]).collect();
            let want: Vec<u8> = upright.chunks_exact(4).map(|p| p[3]).collect();
            assert_eq!(got, want);
            assert!(psnr(&colours, &upright, 4) > 30.0);
        }
    }
}
