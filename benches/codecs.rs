//! `cargo bench --bench codecs`: speed (MB/s of 32-bit input) and
//! compression ratio of every image encoder on a fixed image set, plus the
//! `auto_*` heuristic's choice against the measured smaller codec.
//!
//! The set is made at bench time: generated pictures (photo-like shading,
//! a desktop with windows and text, a terminal, noise) and real images
//! found on this machine (PNG/JPEG files of Debian packages under
//! /usr/share, and the JPEG photos shipped inside the jpeg-decoder crate
//! in the local cargo registry). Nothing is downloaded or committed.

use std::time::{Duration, Instant};

use saffron::spice::codec::classify::{self, Content};
use saffron::spice::codec::glz::{self, GlzDictionary, GlzImage};
use saffron::spice::codec::{jpeg, lz, lz4, quic, Bitmap};

struct Img {
    name: String,
    w: u32,
    h: u32,
    bgrx: Vec<u8>,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

fn generated() -> Vec<Img> {
    let (w, h) = (1024u32, 768u32);
    let mut rng = Rng(7);
    let photo = (0..w * h)
        .flat_map(|i| {
            let (x, y) = ((i % w) as f32 / 37.0, (i / w) as f32 / 23.0);
            let n = (rng.next() % 9) as f32 - 4.0;
            [
                (128.0 + 90.0 * (x + y * 0.3).sin() + n) as u8,
                (128.0 + 80.0 * (y * 0.7 - x * 0.2).cos() + n) as u8,
                (128.0 + 70.0 * ((x * x + y) * 0.05).sin() + n) as u8,
                0,
            ]
        })
        .collect();
    let mut desk = vec![0x0030_5070u32; (w * h) as usize];
    for k in 0..5u32 {
        let (x0, y0) = (60 + k * 150, 40 + k * 110);
        for y in y0..(y0 + 360).min(h) {
            for x in x0..(x0 + 480).min(w) {
                let (lx, ly) = (x - x0, y - y0);
                desk[(y * w + x) as usize] = if ly < 18 {
                    0x0033_66aa
                } else if ly % 14 < 10 && (lx / 7 * 31 + ly / 14 * 17 + k) % 5 != 0 && lx % 7 < 5 {
                    if (lx * 3 + ly * 5 + k) % 4 == 0 {
                        0x00ee_eeee
                    } else {
                        0x0010_1010
                    }
                } else {
                    0x00ee_eeee
                };
            }
        }
    }
    let mut term = vec![0u32; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let (cx, cy) = (x / 8, y / 16);
            let ch = (cx * 7 + cy * 131 + cy * cy) % 97;
            let on =
                ch > 20 && (x % 8) < 6 && (y % 16) < 12 && ((ch + x % 8 * 3 + y % 16 * 5) % 3) == 0;
            term[(y * w + x) as usize] = if on { 0x00c0_c0c0 } else { 0 };
        }
    }
    let noise = (0..512 * 512)
        .flat_map(|_| rng.next().to_le_bytes())
        .collect();
    let px = |v: Vec<u32>| v.iter().flat_map(|p| p.to_le_bytes()).collect();
    vec![
        Img {
            name: "gen: photo-like 1024x768".into(),
            w,
            h,
            bgrx: photo,
        },
        Img {
            name: "gen: desktop 1024x768".into(),
            w,
            h,
            bgrx: px(desk),
        },
        Img {
            name: "gen: terminal 1024x768".into(),
            w,
            h,
            bgrx: px(term),
        },
        Img {
            name: "gen: noise 512x512".into(),
            w: 512,
            h: 512,
            bgrx: noise,
        },
    ]
}

fn load(path: &str) -> Option<Img> {
    let bytes = std::fs::read(path).ok()?;
    let (w, h, rgb): (u32, u32, Vec<u8>) = if path.ends_with(".png") {
        let mut d = png::Decoder::new(std::io::Cursor::new(bytes));
        d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut r = d.read_info().ok()?;
        let mut buf = vec![0; r.output_buffer_size()?];
        let info = r.next_frame(&mut buf).ok()?;
        let n = info.color_type.samples();
        let rgb = buf[..info.buffer_size()]
            .chunks_exact(n)
            .flat_map(|p| match n {
                4 => {
                    let a = u32::from(p[3]);
                    let m = |c: u8| ((u32::from(c) * a + 255 * (255 - a)) / 255) as u8;
                    [m(p[0]), m(p[1]), m(p[2])]
                }
                3 => [p[0], p[1], p[2]],
                _ => [p[0]; 3],
            })
            .collect();
        (info.width, info.height, rgb)
    } else {
        let mut d = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
        let px = d.decode().ok()?;
        let info = d.info()?;
        let rgb = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => px,
            jpeg_decoder::PixelFormat::L8 => px.iter().flat_map(|&l| [l; 3]).collect(),
            _ => return None,
        };
        (u32::from(info.width), u32::from(info.height), rgb)
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    Some(Img {
        name: format!("real: {name} {w}x{h}"),
        w,
        h,
        bgrx: rgb
            .chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0], 0])
            .collect(),
    })
}

fn real() -> Vec<Img> {
    let mut paths: Vec<String> = [
        "/usr/share/doc/nodejs/contributing/doc_img/youtube-stream-status.png",
        "/usr/share/doc/nodejs/contributing/doc_img/compare-boxplot.png",
        "/usr/share/doc/valgrind/html/images/kcachegrind_xtree.png",
        "/usr/share/icons/Adwaita/512x512/places/folder-pictures.png",
        "/usr/share/doc/nodejs/full-white-stripe.jpg",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Photographs: the jpeg-decoder crate's own test pictures, if the
    // crate is in the local cargo registry.
    if let Ok(home) =
        std::env::var("CARGO_HOME").or_else(|_| std::env::var("HOME").map(|h| h + "/.cargo"))
    {
        if let Ok(dirs) = std::fs::read_dir(format!("{home}/registry/src")) {
            for d in dirs.flatten() {
                for name in ["tower.jpg", "large_image.jpg"] {
                    let p = d.path().join("jpeg-decoder-0.3.2/benches").join(name);
                    if p.exists() {
                        paths.push(p.display().to_string());
                    }
                }
            }
        }
    }
    paths.iter().filter_map(|p| load(p)).collect()
}

/// Runs `f` until ~0.4 s passed (at least twice); seconds per run.
fn time<R>(mut f: impl FnMut() -> R) -> (f64, R) {
    let start = Instant::now();
    let mut runs = 0u32;
    let mut last;
    loop {
        last = f();
        runs += 1;
        if runs >= 2 && start.elapsed() > Duration::from_millis(400) {
            break;
        }
    }
    (start.elapsed().as_secs_f64() / f64::from(runs), last)
}

/// The table rows of one image.
struct Rows<'a> {
    image: &'a str,
    raw: f64,
    /// `SAFFRON_BENCH_CODECS`: only codecs whose names start so.
    only: &'a Option<Vec<String>>,
}

impl Rows<'_> {
    /// Times `f` and prints its row when `codec` is wanted, else runs it
    /// once untimed; `f`'s output either way (`size` is its byte count).
    fn run<R>(&self, codec: &str, size: impl Fn(&R) -> usize, mut f: impl FnMut() -> R) -> R {
        let wanted = self
            .only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| codec.starts_with(p.as_str())));
        if !wanted {
            return f();
        }
        let (secs, out) = time(f);
        let size = size(&out);
        println!(
            "| {} | {codec} | {:.0} | {:.2} | {size} |",
            self.image,
            self.raw / secs / 1e6,
            self.raw / size as f64
        );
        out
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // useful: run quickly then.
    let quick = !std::env::args().any(|a| a == "--bench");
    // SAFFRON_BENCH_CODECS=QUIC,LZ: only the rows of these codecs (by prefix).
    let only: Option<Vec<String>> = std::env::var("SAFFRON_BENCH_CODECS")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let mut set = generated();
    set.extend(real());
    if quick {
        set.truncate(2);
    }
    println!(
        "JPEG: pictures of {} pixels or more are coded in bands on {} encoder threads \
         (MB/s is wall time).\n",
        jpeg::MIN_BANDED_PIXELS,
        saffron::spice::codec::parallel::workers()
    );
    println!("| image | codec | MB/s | ratio | bytes |");
    println!("|---|---|---:|---:|---:|");
    let mut heuristic = Vec::new();
    for img in &set {
        let b = Bitmap::rgb32(img.w, img.h, &img.bgrx).expect("valid image");
        let raw = img.bgrx.len() as f64;
        let rows = Rows {
            image: &img.name,
            raw,
            only: &only,
        };
        let q = rows.run("QUIC", Vec::len, || quic::encode(&b).expect("quic"));
        let l = rows.run("LZ", Vec::len, || lz::encode(&b).expect("lz"));
        // (The time includes taking the pixels as GLZ's words, which the
        // server gets from its copy of the picture.)
        let glz_once = |d: &mut GlzDictionary| {
            let image = GlzImage::of(&b).expect("rgb32");
            let encoded = d.encode_batch(0, vec![image]).pop().expect("one");
            encoded.expect("fits the window")
        };
        let g = rows.run("GLZ (new window)", Vec::len, || {
            glz_once(&mut GlzDictionary::new(1 << 24).expect("window"))
        });
        let mut d = GlzDictionary::new(1 << 24).expect("window");
        glz_once(&mut d);
        rows.run("GLZ (picture seen before)", Vec::len, || glz_once(&mut d));
        rows.run(
            "zlib over GLZ (zlib time only)",
            |z| *z,
            || glz::zlib_wrap(&g).map(|(_, z)| z.len()).unwrap_or(g.len()),
        );
        rows.run("LZ4", Vec::len, || lz4::encode(&b).expect("lz4"));
        rows.run("JPEG q85 (lossy)", Vec::len, || {
            jpeg::encode(&b, jpeg::DEFAULT_QUALITY, jpeg::Chroma::Subsampled).expect("jpeg")
        });
        rows.run("JPEG q85, full chroma (lossy)", Vec::len, || {
            jpeg::encode(&b, jpeg::DEFAULT_QUALITY, jpeg::Chroma::Full).expect("jpeg")
        });
        if only.is_some() {
            continue;
        }
        let f = classify::features(&img.bgrx, img.w, img.h);
        let (tc, _) = time(|| classify::classify(&img.bgrx, img.w, img.h));
        heuristic.push((
            img.name.clone(),
            f,
            classify::decide(f),
            q.len(),
            l.len(),
            tc,
            raw,
        ));
    }
    println!();
    println!("| image | equal | gradual | choice | QUIC bytes | LZ bytes | smaller | bytes lost | classify µs |");
    println!("|---|---:|---:|---|---:|---:|---|---:|---:|");
    let (mut chosen, mut best) = (0usize, 0usize);
    for (name, f, c, q, l, tc, raw) in heuristic {
        let pick = match c {
            Content::Photographic => q,
            Content::Synthetic => l,
            Content::Noise => l.min(raw as usize),
        };
        let smaller = if q < l { "QUIC" } else { "LZ" };
        chosen += pick;
        best += q.min(l);
        println!(
            "| {name} | {:.2} | {:.2} | {c:?} | {q} | {l} | {smaller} | {} | {:.0} |",
            f.equal,
            f.gradual,
            pick - q.min(l),
            tc * 1e6
        );
    }
    println!();
    println!(
        "auto total {chosen} bytes vs best-of-both {best} bytes ({:+.1}%)",
        (chosen as f64 / best as f64 - 1.0) * 100.0
    );
}
