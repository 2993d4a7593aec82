//! "Synthetic or photographic?" for the `auto_*` compression modes.
//!
//! LZ/GLZ win on synthetic pictures (flat areas, exact repeats, text);
//! QUIC wins on photographs (smooth shading plus noise, nothing repeats
//! exactly). The test samples up to 32 rows × 128 columns and looks at
//! each sampled pixel's right and lower neighbours:
//!
//! * `equal`: share of neighbour pairs that are identical;
//! * `gradual`: share that differ a little (every channel within ±16);
//!   the rest are sharp edges.
//!
//! A picture is photographic when `gradual ≥ GRADUAL_MIN` and
//! `equal ≤ EQUAL_MAX`; noise when both shares are tiny (then LZ is tried
//! without the GLZ window, and the raw bitmap is sent if LZ does not pay). The thresholds come from measurement: for every
//! image of the bench set (generated photos/desktops/text/noise and real
//! images from Debian packages) both QUIC and LZ were run and the rule
//! was checked against the smaller of the two; see
//! `measured_choice_matches_the_smaller_codec` and the codec bench, which
//! prints the table (features, both sizes, the choice, bytes lost).
//!
//! Measured (`cargo bench --bench codecs`, release, 2 cores):
//!
//! | image | equal | gradual | choice | QUIC bytes | LZ bytes |
//! |---|---:|---:|---|---:|---:|
//! | generated photo-like 1024×768 | 0.00 | 1.00 | photo | 1160836 | 2383138 |
//! | generated desktop 1024×768 | 0.82 | 0.00 | synthetic | 719956 | 132995 |
//! | generated terminal 1024×768 | 0.93 | 0.00 | synthetic | 284356 | 123855 |
//! | generated noise 512×512 | 0.00 | 0.00 | noise | 786676 | 794652 |
//! | youtube-stream-status.png (screenshot) | 0.92 | 0.02 | synthetic | 61824 | 21733 |
//! | compare-boxplot.png (chart) | 0.94 | 0.01 | synthetic | 881488 | 129964 |
//! | kcachegrind_xtree.png (UI) | 0.79 | 0.05 | synthetic | 321436 | 77136 |
//! | folder-pictures.png (icon) | 0.86 | 0.09 | synthetic | 60492 | 39562 |
//! | full-white-stripe.jpg (banner) | 0.96 | 0.03 | synthetic | 11824 | 8502 |
//! | tower.jpg (photo) | 0.19 | 0.68 | photo | 294808 | 361412 |
//! | large_image.jpg (photo) | 0.39 | 0.61 | photo | 2675160 | 5353393 |
//!
//! Every choice is the smaller codec except noise (1% worse, and the raw
//! fallback applies there); the whole set costs +0.1% over the best of
//! both. Sampling costs 25–50 µs per image whatever its size.

/// Least share of small differences for a photograph.
pub const GRADUAL_MIN: f32 = 0.40;
/// Most share of exact repeats for a photograph.
pub const EQUAL_MAX: f32 = 0.45;
/// Largest difference per channel that counts as "gradual".
const GRADUAL_STEP: u8 = 16;
const SAMPLE_ROWS: u32 = 32;
const SAMPLE_COLUMNS: u32 = 128;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    pub equal: f32,
    pub gradual: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Synthetic,
    Photographic,
    /// Almost nothing repeats or changes gradually (noise, already
    /// compressed data): no lossless codec will shrink it much.
    Noise,
}

/// Samples a packed 32-bit B, G, R, X picture.
pub fn features(bgrx: &[u8], width: u32, height: u32) -> Features {
    let (w, h) = (width as usize, height as usize);
    if w < 2 || h < 2 || bgrx.len() < w * h * 4 {
        return Features {
            equal: 1.0,
            gradual: 0.0,
        };
    }
    let px = |x: usize, y: usize| {
        let at = (y * w + x) * 4;
        [bgrx[at], bgrx[at + 1], bgrx[at + 2]]
    };
    let (mut equal, mut gradual, mut total) = (0u32, 0u32, 0u32);
    let mut pair = |a: [u8; 3], b: [u8; 3]| {
        let d = (0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap_or(0);
        total += 1;
        if d == 0 {
            equal += 1;
        } else if d <= GRADUAL_STEP {
            gradual += 1;
        }
    };
    let rows = SAMPLE_ROWS.min(height - 1) as usize;
    let cols = SAMPLE_COLUMNS.min(width - 1) as usize;
    for r in 0..rows {
        let y = r * (h - 1) / rows;
        for c in 0..cols {
            let x = c * (w - 1) / cols;
            let p = px(x, y);
            pair(p, px(x + 1, y));
            pair(p, px(x, y + 1));
        }
    }
    let t = total.max(1) as f32;
    Features {
        equal: equal as f32 / t,
        gradual: gradual as f32 / t,
    }
}

/// Below both of these, a picture is noise.
pub const NOISE_MAX_EQUAL: f32 = 0.05;
pub const NOISE_MAX_GRADUAL: f32 = 0.10;

pub fn decide(f: Features) -> Content {
    if f.gradual >= GRADUAL_MIN && f.equal <= EQUAL_MAX {
        Content::Photographic
    } else if f.equal < NOISE_MAX_EQUAL && f.gradual < NOISE_MAX_GRADUAL {
        Content::Noise
    } else {
        Content::Synthetic
    }
}

pub fn classify(bgrx: &[u8], width: u32, height: u32) -> Content {
    decide(features(bgrx, width, height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::codec::{lz, quic, testimages, Bitmap};

    #[test]
    fn generated_pictures() {
        let photo = testimages::photo(400, 300, 1);
        assert_eq!(classify(&photo.bgrx, 400, 300), Content::Photographic);
        let desk = testimages::desktop(400, 300, 1);
        assert_eq!(classify(&desk.bgrx, 400, 300), Content::Synthetic);
        let noise = testimages::noise(100, 80, 1);
        assert_eq!(classify(&noise.bgrx, 100, 80), Content::Noise);
        let flat = vec![7u8; 64 * 64 * 4];
        assert_eq!(classify(&flat, 64, 64), Content::Synthetic);
        assert_eq!(classify(&[1, 2, 3, 4], 1, 1), Content::Synthetic);
    }

    /// The rule picks the codec that is really smaller, or loses little.
    #[test]
    fn measured_choice_matches_the_smaller_codec() {
        let mut set = vec![
            testimages::photo(256, 192, 5),
            testimages::desktop(256, 192, 5),
            testimages::noise(128, 64, 5),
        ];
        set.extend(testimages::real_images(256));
        let (mut chosen, mut best) = (0usize, 0usize);
        for img in &set {
            let b = Bitmap::rgb32(img.width, img.height, &img.bgrx).unwrap();
            let q = quic::encode(&b).unwrap().len();
            let l = lz::encode(&b).unwrap().len();
            let pick = match classify(&img.bgrx, img.width, img.height) {
                Content::Photographic => q,
                Content::Synthetic => l,
                Content::Noise => img.bgrx.len().min(l),
            };
            chosen += pick;
            best += q.min(l);
        }
        assert!(
            chosen as f64 <= best as f64 * 1.10,
            "{chosen} vs best {best}"
        );
    }
}
