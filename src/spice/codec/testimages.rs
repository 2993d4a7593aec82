//! Test pictures for the codec tests: generated ones (noise, photo-like
//! gradients, desktop-like synthetic scenes, every bitmap format) and
//! real images found on this machine (PNG/JPEG files shipped by Debian
//! packages, found through dpkg's file lists), cropped to keep
//! debug-build tests quick.

use super::{BitmapFormat, Palette};

pub struct TestImage {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// 32-bit B, G, R, X rows, top first.
    pub bgrx: Vec<u8>,
}

/// Deterministic xorshift.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

pub fn noise(width: u32, height: u32, seed: u32) -> TestImage {
    let mut rng = Rng(u64::from(seed) * 7919 + 1);
    TestImage {
        name: format!("noise {width}x{height}"),
        width,
        height,
        bgrx: (0..width * height)
            .flat_map(|_| rng.next().to_le_bytes())
            .collect(),
    }
}

/// Smooth shading with sensor-like noise: what a photograph looks like to
/// a predictor.
pub fn photo(width: u32, height: u32, seed: u32) -> TestImage {
    let mut rng = Rng(u64::from(seed) * 104_729 + 3);
    let mut bgrx = Vec::with_capacity((width * height * 4) as usize);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32 / 37.0, y as f32 / 23.0);
            let base = [
                128.0 + 90.0 * (fx + fy * 0.3).sin(),
                128.0 + 80.0 * (fy * 0.7 - fx * 0.2 + seed as f32).cos(),
                128.0 + 70.0 * ((fx * fx + fy) * 0.05).sin(),
            ];
            for b in base {
                let n = (rng.next() % 9) as f32 - 4.0;
                bgrx.push((b + n).clamp(0.0, 255.0) as u8);
            }
            bgrx.push(0);
        }
    }
    TestImage {
        name: format!("photo {width}x{height}"),
        width,
        height,
        bgrx,
    }
}

/// A desktop: flat background, windows with borders and title bars, rows
/// of text-like glyphs, a few icons.
pub fn desktop(width: u32, height: u32, seed: u32) -> TestImage {
    let mut rng = Rng(u64::from(seed) * 31 + 11);
    let mut px = vec![0x0030_5070u32; (width * height) as usize];
    let fill = |px: &mut [u32], x0: u32, y0: u32, w: u32, h: u32, c: u32| {
        for y in y0..(y0 + h).min(height) {
            for x in x0..(x0 + w).min(width) {
                px[(y * width + x) as usize] = c;
            }
        }
    };
    for _ in 0..4 {
        let (x, y) = (rng.next() % width.max(1), rng.next() % height.max(1));
        let (w, h) = (width / 2, height / 2);
        fill(&mut px, x, y, w, h, 0x00ee_eeee);
        fill(&mut px, x, y, w, 14, 0x0033_66aa);
        // Text: 6x9 glyphs of random bit patterns, 12 px line pitch.
        let mut ty = y + 20;
        while ty + 9 < (y + h).min(height) {
            let mut tx = x + 4;
            while tx + 6 < (x + w).min(width) {
                let glyph = rng.next();
                if !glyph.is_multiple_of(7) {
                    for gy in 0..9 {
                        for gx in 0..5 {
                            if glyph >> ((gy * 5 + gx) % 31) & 1 == 1 {
                                px[((ty + gy) * width + tx + gx) as usize] = 0x0010_1010;
                            }
                        }
                    }
                }
                tx += 6;
            }
            ty += 12;
        }
    }
    TestImage {
        name: format!("desktop {width}x{height}"),
        width,
        height,
        bgrx: px.iter().flat_map(|p| p.to_le_bytes()).collect(),
    }
}

/// Real pictures from Debian packages, if installed: (package, the end of
/// the file's path).
const REAL_IMAGES: &[(&str, &str)] = &[
    ("nodejs", "/doc_img/youtube-stream-status.png"),
    ("adwaita-icon-theme", "/512x512/places/folder-pictures.png"),
    ("valgrind", "/images/kcachegrind_xtree.png"),
    ("nodejs", "/full-white-stripe.jpg"),
];

/// The installed file of Debian package `package` whose path ends with
/// `suffix` (from `dpkg -L`), or None.
pub fn package_file(package: &str, suffix: &str) -> Option<std::path::PathBuf> {
    let out = std::process::Command::new("dpkg")
        .args(["-L", package])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|line| line.ends_with(suffix))
        .map(std::path::PathBuf::from)
        .filter(|path| path.is_file())
}

/// Decodes a PNG or JPEG file into BGRX (alpha dropped), or None.
pub fn load(path: &std::path::Path) -> Option<TestImage> {
    let bytes = std::fs::read(path).ok()?;
    let png = path.extension().is_some_and(|e| e == "png");
    let (width, height, rgb): (u32, u32, Vec<[u8; 3]>) = if png {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().ok()?;
        let mut buf = vec![0; reader.output_buffer_size()?];
        let info = reader.next_frame(&mut buf).ok()?;
        let data = &buf[..info.buffer_size()];
        let channels = info.color_type.samples();
        let rgb = data
            .chunks_exact(channels)
            .map(|p| match channels {
                1 | 2 => [p[0]; 3],
                _ => {
                    // Composite alpha over grey so shapes stay visible.
                    let a = if channels == 4 { u32::from(p[3]) } else { 255 };
                    let mix = |c: u8| ((u32::from(c) * a + 128 * (255 - a)) / 255) as u8;
                    [mix(p[0]), mix(p[1]), mix(p[2])]
                }
            })
            .collect();
        (info.width, info.height, rgb)
    } else {
        let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
        let pixels = decoder.decode().ok()?;
        let info = decoder.info()?;
        let rgb = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => {
                pixels.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect()
            }
            jpeg_decoder::PixelFormat::L8 => pixels.iter().map(|&l| [l; 3]).collect(),
            _ => return None,
        };
        (u32::from(info.width), u32::from(info.height), rgb)
    };
    Some(TestImage {
        name: path.file_name()?.to_string_lossy().into_owned(),
        width,
        height,
        bgrx: rgb.iter().flat_map(|p| [p[2], p[1], p[0], 0]).collect(),
    })
}

/// The top-left `w`×`h` of an image.
pub fn crop(img: &TestImage, w: u32, h: u32) -> TestImage {
    let (w, h) = (w.min(img.width), h.min(img.height));
    let mut bgrx = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        let at = (y * img.width * 4) as usize;
        bgrx.extend_from_slice(&img.bgrx[at..at + (w * 4) as usize]);
    }
    TestImage {
        name: format!("{} ({w}x{h})", img.name),
        width: w,
        height: h,
        bgrx,
    }
}

/// Installed real images, cropped to at most `max`×`max`.
pub fn real_images(max: u32) -> Vec<TestImage> {
    REAL_IMAGES
        .iter()
        .filter_map(|(package, suffix)| load(&package_file(package, suffix)?))
        .map(|img| crop(&img, max, max))
        .collect()
}

/// Generated and real 32-bit images of several kinds and sizes.
pub fn rgb32_set() -> Vec<TestImage> {
    let mut set = vec![
        noise(61, 17, 1),
        photo(200, 150, 2),
        desktop(300, 200, 3),
        photo(33, 257, 4),
    ];
    set.extend(real_images(192));
    set
}

/// A small image in every bitmap format, with structure (runs, repeats)
/// and noise; odd width so palette rows have padding bits.
#[allow(clippy::type_complexity)]
pub fn all_formats_sample() -> Vec<(BitmapFormat, u32, u32, Vec<u8>, Option<Palette>)> {
    let (w, h) = (37u32, 11u32);
    let mut out = Vec::new();
    for format in [
        BitmapFormat::Plt1Le,
        BitmapFormat::Plt1Be,
        BitmapFormat::Plt4Le,
        BitmapFormat::Plt4Be,
        BitmapFormat::Plt8,
        BitmapFormat::Rgb16,
        BitmapFormat::Rgb24,
        BitmapFormat::Rgb32,
        BitmapFormat::Rgba,
        BitmapFormat::A8,
    ] {
        let mut rng = Rng(u64::from(format as u32) * 977 + 5);
        let len = (format.row_bytes(w) * u64::from(h)) as usize;
        let data: Vec<u8> = (0..len)
            .map(|i| {
                if (i / 16) % 3 == 0 {
                    0x5a
                } else if (i / 7) % 4 == 1 {
                    (i / 8) as u8
                } else {
                    rng.next() as u8
                }
            })
            .collect();
        let palette = format.has_palette().then(|| Palette {
            unique: 0x1234,
            entries: (0..(1u32 << format.bits_per_pixel().min(8)))
                .map(|i| i.wrapping_mul(0x010f_3b17) & 0x00ff_ffff)
                .collect(),
        });
        out.push((format, w, h, data, palette));
    }
    out
}
