//! JPEG (`SPICE_IMAGE_TYPE_JPEG`) and JPEG with an alpha plane
//! (`JPEG_ALPHA`: the JPEG of the colours followed by an LZ `XXXA` stream
//! of the alpha bytes). Lossy: used only where the policy allows it.
//! The JPEG itself is baseline JFIF from the jpeg-encoder crate; the
//! picture is always sent top-down (the JPEG_ALPHA TOP_DOWN flag is set
//! and the alpha plane is coded in the same order).
//!
//! A large picture is cut into bands of whole MCU rows that the encoder
//! pool codes at once; their scans are joined into one JPEG with a restart
//! marker between bands (a restart resets exactly what encoding a band on
//! its own starts from), so the client decodes the same pixels as from
//! one piece.

use std::borrow::Cow;
use std::ops::Range;

use super::{lz, parallel, Bitmap, BitmapFormat, CodecError};

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
    encoder.set_sampling_factor(match chroma {
        Chroma::Full => jpeg_encoder::SamplingFactor::R_4_4_4,
        // (jpeg-encoder's own default keeps full chroma from quality 90.)
        Chroma::Subsampled => jpeg_encoder::SamplingFactor::R_4_2_0,
    });
    encoder
        .encode(bgra, w, h, jpeg_encoder::ColorType::Bgra)
        .map_err(|e| CodecError::Encoder(e.to_string()))?;
    Ok(out)
}

/// A JPEG of the picture (alpha ignored); a large one is coded in bands
/// on the encoder pool ([`in_bands`]).
pub fn encode(bitmap: &Bitmap, quality: u8, chroma: Chroma) -> Result<Vec<u8>, CodecError> {
    let (width, height) = (bitmap.width, bitmap.height);
    if width > u32::from(u16::MAX) || height > u32::from(u16::MAX) {
        return Err(CodecError::BadSize { width, height });
    }
    let bgra = top_down_bgra(bitmap)?;
    let mcu_rows = band_mcu_rows(width, height, chroma, parallel::workers());
    if mcu_rows >= height.div_ceil(chroma.mcu_size()) {
        return jpeg_of(&bgra, width, height, quality, chroma);
    }
    in_bands(&bgra, width, height, quality, chroma, mcu_rows)
}

/// Pictures of fewer pixels are one JPEG coded on the caller: handing
/// them to the pool costs more than it saves.
pub const MIN_BANDED_PIXELS: u64 = parallel::MIN_PARALLEL_PIXELS;
/// A band has at least this many pixels (its own headers, tables and
/// restart marker are then a small part of its work).
pub const MIN_BAND_PIXELS: u64 = 32 * 1024;

impl Chroma {
    /// The side of an MCU in pixels: one 8×8 block of each component, or
    /// with 2×2 subsampled chroma, four luma blocks and one of each chroma.
    fn mcu_size(self) -> u32 {
        match self {
            Chroma::Full => 8,
            Chroma::Subsampled => 16,
        }
    }
}

/// MCU rows per band for a picture to be coded on `workers` threads: two
/// bands per worker (so that a worker finishing early takes another), no
/// band under [`MIN_BAND_PIXELS`], and at most 65535 MCUs per band (the
/// largest restart interval). All rows in one band if the picture is
/// under [`MIN_BANDED_PIXELS`] or there is one worker.
fn band_mcu_rows(width: u32, height: u32, chroma: Chroma, workers: usize) -> u32 {
    let mcu = chroma.mcu_size();
    let (mcu_cols, all_rows) = (width.div_ceil(mcu), height.div_ceil(mcu));
    let pixels = u64::from(width) * u64::from(height);
    if workers < 2 || pixels < MIN_BANDED_PIXELS {
        return all_rows;
    }
    let bands = (workers as u32 * 2).min((pixels / MIN_BAND_PIXELS).max(1) as u32);
    let rows = all_rows.div_ceil(bands);
    rows.clamp(1, (u32::from(u16::MAX) / mcu_cols.max(1)).max(1))
}

/// The picture (top-down B, G, R, A rows) coded as bands of `mcu_rows`
/// MCU rows each on the encoder pool, joined into one JPEG.
fn in_bands(
    bgra: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    chroma: Chroma,
    mcu_rows: u32,
) -> Result<Vec<u8>, CodecError> {
    let band_height = mcu_rows * chroma.mcu_size();
    let bands: Vec<Range<u32>> = (0..height)
        .step_by(band_height as usize)
        .map(|top| top..(top + band_height).min(height))
        .collect();
    let row_bytes = width as usize * 4;
    let pieces = parallel::map(&bands, u64::from(width) * u64::from(height), |rows| {
        let bytes = rows.start as usize * row_bytes..rows.end as usize * row_bytes;
        jpeg_of(&bgra[bytes], width, rows.len() as u32, quality, chroma)
    });
    let pieces = pieces.into_iter().collect::<Result<Vec<_>, _>>()?;
    let too_big = |_| CodecError::BadSize { width, height };
    let restart_interval =
        u16::try_from(mcu_rows * width.div_ceil(chroma.mcu_size())).map_err(too_big)?;
    join_bands(
        &pieces,
        u16::try_from(height).map_err(too_big)?,
        restart_interval,
    )
}

/// Where the parts of a baseline JPEG from jpeg-encoder are.
struct JpegParts<'a> {
    /// Everything before the start-of-scan segment.
    tables: &'a [u8],
    /// Offset of the frame height in `tables` (in the SOF0 segment).
    height_at: usize,
    /// The start-of-scan segment.
    scan_header: &'a [u8],
    /// The entropy-coded data, up to the end-of-image marker.
    scan: &'a [u8],
}

const SOF0: u8 = 0xc0;
const SOS: u8 = 0xda;
const DRI: u8 = 0xdd;
const RST0: u8 = 0xd0;
const EOI: u8 = 0xd9;

fn parts(jpeg: &[u8]) -> Result<JpegParts<'_>, CodecError> {
    let bad = |what: &str| CodecError::Encoder(format!("unexpected JPEG layout: {what}"));
    if !jpeg.starts_with(&[0xff, 0xd8]) || !jpeg.ends_with(&[0xff, EOI]) {
        return Err(bad("no SOI/EOI"));
    }
    let mut at = 2;
    let mut height_at = None;
    loop {
        let Some(&[0xff, marker, hi, lo]) = jpeg.get(at..at + 4) else {
            return Err(bad("truncated segment"));
        };
        let end = at + 2 + usize::from(u16::from_be_bytes([hi, lo]));
        if end > jpeg.len() - 2 {
            return Err(bad("segment past the end"));
        }
        match marker {
            SOF0 => height_at = Some(at + 5),
            SOS => {
                return Ok(JpegParts {
                    tables: &jpeg[..at],
                    height_at: height_at.ok_or_else(|| bad("no SOF0 before SOS"))?,
                    scan_header: &jpeg[at..end],
                    scan: &jpeg[end..jpeg.len() - 2],
                });
            }
            _ => {}
        }
        at = end;
    }
}

/// One JPEG of `height` rows from band JPEGs of the same width, quality
/// and chroma (so the same tables), each band `restart_interval` MCUs
/// (the last may have fewer): the first band's tables with the whole
/// height and a restart interval, then every band's scan, restart
/// markers between them.
fn join_bands(
    bands: &[Vec<u8>],
    height: u16,
    restart_interval: u16,
) -> Result<Vec<u8>, CodecError> {
    let parts = bands
        .iter()
        .map(|b| parts(b))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = parts.first() else {
        return Err(CodecError::Encoder("no bands to join".into()));
    };
    let size = parts.iter().map(|p| p.scan.len() + 2).sum::<usize>();
    let mut out = Vec::with_capacity(first.tables.len() + 6 + first.scan_header.len() + size);
    out.extend_from_slice(first.tables);
    out[first.height_at..first.height_at + 2].copy_from_slice(&height.to_be_bytes());
    out.extend([0xff, DRI, 0, 4]);
    out.extend(restart_interval.to_be_bytes());
    out.extend_from_slice(first.scan_header);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.extend([0xff, RST0 + ((i - 1) % 8) as u8]);
        }
        out.extend_from_slice(part.scan);
    }
    out.extend([0xff, EOI]);
    Ok(out)
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

    /// Restart markers in a JPEG's entropy-coded data (byte stuffing
    /// keeps `FF D0..D7` out of it otherwise).
    fn restart_markers(jpeg: &[u8]) -> usize {
        jpeg.windows(2)
            .filter(|w| w[0] == 0xff && (RST0..RST0 + 8).contains(&w[1]))
            .count()
    }

    /// Bands joined with restart markers decode to exactly the pixels of
    /// the picture coded in one piece, whatever the band height, for both
    /// chroma samplings, odd sizes and a last band of fewer rows.
    #[test]
    fn banded_jpeg_decodes_to_the_pixels_of_one_piece() {
        for (width, height, chroma) in [
            (301, 233, Chroma::Full),
            (300, 250, Chroma::Subsampled),
            (37, 70, Chroma::Subsampled),
            (64, 9, Chroma::Full),
        ] {
            let img = colour_bands(width, height);
            let whole = decode(&jpeg_of(&img.bgrx, width, height, 75, chroma).unwrap());
            let all_rows = height.div_ceil(chroma.mcu_size());
            for mcu_rows in [1, 2, 3, all_rows - 1].into_iter().filter(|&r| r >= 1) {
                let banded = in_bands(&img.bgrx, width, height, 75, chroma, mcu_rows).unwrap();
                let bands = all_rows.div_ceil(mcu_rows) as usize;
                assert_eq!(restart_markers(&banded), bands - 1, "{width}x{height}");
                assert!(
                    decode(&banded) == whole,
                    "{width}x{height} {chroma:?} in bands of {mcu_rows} MCU rows"
                );
            }
        }
    }

    /// JPEG sizes are 16-bit: a taller (legal) bitmap is refused before
    /// any band is coded.
    #[test]
    fn pictures_over_65535_rows_are_refused() {
        let data = vec![0u8; 2 * 70_000 * 4];
        let b = Bitmap::rgb32(2, 70_000, &data).unwrap();
        assert!(matches!(
            encode(&b, 80, Chroma::Full),
            Err(CodecError::BadSize {
                width: 2,
                height: 70_000
            })
        ));
    }

    #[test]
    fn bands_are_two_per_worker_within_the_limits() {
        // 1080p, full chroma: 135 MCU rows in 4 bands for 2 workers.
        assert_eq!(band_mcu_rows(1920, 1080, Chroma::Full, 2), 34);
        assert_eq!(band_mcu_rows(1920, 1080, Chroma::Subsampled, 8), 5);
        // One worker, or a small picture: one piece.
        assert_eq!(band_mcu_rows(1920, 1080, Chroma::Full, 1), 135);
        assert_eq!(band_mcu_rows(320, 240, Chroma::Full, 8), 30);
        // Bands keep MIN_BAND_PIXELS: 480x300 is 4 bands, not 16.
        assert_eq!(band_mcu_rows(480, 300, Chroma::Full, 8), 10);
        // A restart interval holds at most 65535 MCUs.
        assert_eq!(band_mcu_rows(65535, 1024, Chroma::Full, 2), 7);
    }

    /// The public encoder bands a large picture when there are workers,
    /// and the result is a valid JPEG of the whole picture.
    #[test]
    fn large_pictures_are_encoded_in_bands() {
        let img = colour_bands(640, 480);
        let b = Bitmap::rgb32(640, 480, &img.bgrx).unwrap();
        let jpeg = encode(&b, 80, Chroma::Full).unwrap();
        let bands = 480u32.div_ceil(8 * band_mcu_rows(640, 480, Chroma::Full, parallel::workers()));
        assert_eq!(restart_markers(&jpeg), bands as usize - 1);
        assert!(psnr(&decode(&jpeg), &img.bgrx, 4) >= 30.0);
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
