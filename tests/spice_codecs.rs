//! Every image encoding against the real client, natively: the server
//! shows a picture mixing photographic content, desktop-like synthetic
//! content and (if installed) a real image from a Debian package;
//! spicy-screenshot (spice-gtk's decoders) must reproduce it pixel for
//! pixel in every lossless mode, and a spice-glib client must see JPEG
//! updates at ≥ 30 dB PSNR.

mod support;

use devices::display::{Display, Rect};
use support::*;

const SPICY: &str = "/usr/bin/spicy-screenshot";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

/// B, G, R, X of a photo-like (smooth + noise) pixel.
fn photo_pixel(x: u32, y: u32, seed: u32, rng: &mut Rng) -> [u8; 4] {
    let (fx, fy) = (x as f32 / 41.0, y as f32 / 29.0);
    let base = [
        128.0 + 90.0 * (fx + fy * 0.3 + seed as f32).sin(),
        128.0 + 80.0 * (fy * 0.7 - fx * 0.2).cos(),
        128.0 + 70.0 * ((fx * fx + fy) * 0.05).sin(),
    ];
    let mut p = [0u8; 4];
    for c in 0..3 {
        p[c] = (base[c] + (rng.next() % 7) as f32 - 3.0).clamp(0.0, 255.0) as u8;
    }
    p
}

/// Left third photo, middle third text on flat colour, right third a real
/// PNG from a Debian package if one is installed (else more text).
fn paint_mixed(display: &Display, seed: u32) {
    let real = ["/usr/share/doc/nodejs/contributing/doc_img/youtube-stream-status.png"]
        .iter()
        .find_map(|p| load_png(p));
    display.draw(0, |s| {
        let (w, h) = (s.width, s.height);
        let mut rng = Rng(u64::from(seed) * 977 + 1);
        for y in 0..h {
            for x in 0..w {
                let p = if x < w / 3 {
                    photo_pixel(x, y, seed, &mut rng)
                } else if x < 2 * w / 3 || real.is_none() {
                    let glyph = (x / 6 + y / 12 * 131 + seed) % 17;
                    let on = (glyph * 7 + x % 6 + (y % 12) * 5).is_multiple_of(3) && y % 12 < 9;
                    if on {
                        [0x10, 0x10, 0x10, 0]
                    } else {
                        [0xee, 0xee, 0xee, 0]
                    }
                } else {
                    let (iw, ih, rgb) = real.as_ref().unwrap();
                    let (ix, iy) = ((x - 2 * w / 3) % iw, y % ih);
                    let i = ((iy * iw + ix) * 3) as usize;
                    [rgb[i + 2], rgb[i + 1], rgb[i], 0]
                };
                let at = (x * 4) as usize;
                s.row_mut(y)[at..at + 4].copy_from_slice(&p);
            }
        }
        Some(s.bounds())
    });
}

fn load_png(path: &str) -> Option<(u32, u32, Vec<u8>)> {
    let mut d = png::Decoder::new(std::io::Cursor::new(std::fs::read(path).ok()?));
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = d.read_info().ok()?;
    let mut buf = vec![0; r.output_buffer_size()?];
    let info = r.next_frame(&mut buf).ok()?;
    let n = info.color_type.samples();
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(n)
        .flat_map(|p| {
            if n >= 3 {
                [p[0], p[1], p[2]]
            } else {
                [p[0]; 3]
            }
        })
        .collect();
    Some((info.width, info.height, rgb))
}

#[test]
fn spicy_screenshot_is_exact_in_every_lossless_mode() {
    if !have(SPICY) {
        return;
    }
    for mode in ["auto_glz", "auto_lz", "quic", "glz", "lz", "lz4", "off"] {
        let t = start_server(800, 500, &format!("image-compression={mode}"));
        paint_mixed(&t.display, 1);
        let out = temp_path(&format!("codec-{mode}.ppm"));
        let shot =
            spicy_screenshot(t.port, None, &out).unwrap_or_else(|| panic!("{mode}: no screenshot"));
        assert_same_picture(&shot, &t.display);
        // zlib over GLZ as well.
        if mode == "glz" {
            drop(t);
            let t = start_server(
                800,
                500,
                "image-compression=glz,zlib-glz-wan-compression=always",
            );
            paint_mixed(&t.display, 2);
            let shot = spicy_screenshot(t.port, None, &out).expect("zlib-glz screenshot");
            assert_same_picture(&shot, &t.display);
        }
    }
}

/// The colour bytes (the X byte is the client's business).
fn rgb(bgrx: &[u8]) -> Vec<u8> {
    bgrx.chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let (mut sum, mut n) = (0f64, 0f64);
    for (p, q) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for c in 0..3 {
            let d = f64::from(p[c]) - f64::from(q[c]);
            sum += d * d;
            n += 1.0;
        }
    }
    10.0 * (255.0f64 * 255.0 / (sum / n).max(1e-9)).log10()
}

/// The slow link's speed: 4 Mbit/s, well under the 10 Mibit/s under which
/// the network test calls a link slow.
const SLOW_LINK_BYTES_PER_SECOND: u64 = 500_000;

/// JPEG updates where `jpeg-wan-compression` allows them: always, or (auto)
/// when the session's network test finds a slow link; over a fast link, or
/// with `never`, every update is exact.
#[test]
fn spice_glib_sees_jpeg_updates_within_30_db_and_exact_lossless_ones() {
    if !have("/usr/bin/python3") || !have(SPICY) {
        return;
    }
    // (options, over a slow link, JPEG expected)
    for (options, slow, lossy) in [
        ("jpeg-wan-compression=always", false, true),
        (
            "image-compression=auto_glz,jpeg-wan-compression=never",
            true,
            false,
        ),
        // jpeg-wan-compression=auto: as the network test finds the link.
        ("image-compression=auto_glz", false, false),
        ("image-compression=auto_glz", true, true),
    ] {
        eprintln!("{options}, {} link", if slow { "slow" } else { "fast" });
        let t = start_server(640, 400, options);
        paint_mixed(&t.display, 1);
        let port = if slow {
            slow_link(t.port, SLOW_LINK_BYTES_PER_SECOND)
        } else {
            t.port
        };
        let mut client = GlibClient::connect(port);
        assert_eq!(client.wait_for("PRIMARY"), "PRIMARY 640 400 2560");
        client.wait_for("MARK");
        // The first picture is always lossless.
        assert!(rgb(&client.dump("first.raw")) == rgb(&t.display.head(0).unwrap().pixels));
        let link = wait_for_network_test(&t);
        eprintln!("network test: {link:?}");
        assert_eq!(link.low_bandwidth(), slow, "{link:?}");
        // A new photo in the left third: an update (JPEG when allowed).
        t.display.draw(0, |s| {
            let mut rng = Rng(99);
            for y in 0..s.height {
                for x in 0..s.width / 3 {
                    let p = photo_pixel(x, y, 5, &mut rng);
                    s.row_mut(y)[(x * 4) as usize..(x * 4 + 4) as usize].copy_from_slice(&p);
                }
            }
            Some(Rect::new(0, 0, (s.width / 3) as i32, s.height as i32))
        });
        let mut covered = Vec::new();
        while covered.iter().map(|r: &Rect| r.area()).sum::<u64>() < 213 * 400 {
            let line = client.wait_for("INVALIDATE");
            let v: Vec<i32> = line
                .split(' ')
                .skip(1)
                .map(|x| x.parse().unwrap())
                .collect();
            covered.push(Rect::new(v[0], v[1], v[0] + v[2], v[1] + v[3]));
        }
        let got = client.dump("update.raw");
        let want = t.display.head(0).unwrap().pixels.clone();
        if lossy {
            let p = psnr(&got, &want);
            eprintln!("JPEG update seen by spice-glib: {p:.1} dB PSNR");
            assert!(p >= 30.0, "JPEG update at {p:.1} dB");
            assert!(
                rgb(&got) != rgb(&want),
                "the update was not lossy: was JPEG used?"
            );
        } else {
            assert!(rgb(&got) == rgb(&want), "lossless update differs");
        }
    }
}

/// A large video to spice-glib: 800x480 frames, so each is coded in bands
/// on the encoder pool and joined with restart markers (pictures of
/// `jpeg::MIN_BANDED_PIXELS` or more, with two or more encoder threads).
/// While the last frame is held (redrawn unchanged at the video's rate,
/// so the stream goes on), the client must show it within 30 dB, and not
/// exactly: it came from the stream, not from a lossless redraw; once it
/// has been held for `STILL_TO_EXACT`, exactly (the stream hidden with a
/// clip and the picture drawn over it); and when the video plays on, the
/// stream shows again.
#[test]
fn spice_glib_shows_a_large_video_stream_within_30_db() {
    use saffron::spice::video_stream::STILL_TO_EXACT;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    if !have("/usr/bin/python3") || !have(SPICY) {
        return;
    }
    let workers = saffron::spice::codec::parallel::workers();
    eprintln!("encoder threads: {workers} (frames are coded in bands with 2 or more)");
    let t = start_server(1024, 768, "streaming-video=all");
    let mut client = GlibClient::connect(t.port);
    client.wait_for("PRIMARY");
    client.wait_for("MARK");
    let video = Rect::new(100, 120, 900, 600);
    let draw = |display: &Display, frame: u32| {
        display.draw(0, |s| {
            let mut rng = Rng(u64::from(frame) + 1);
            for y in video.top as u32..video.bottom as u32 {
                for x in video.left as u32..video.right as u32 {
                    let p = photo_pixel(x + 7 * frame, y + 3 * frame, 2, &mut rng);
                    s.row_mut(y)[(x * 4) as usize..(x * 4 + 4) as usize].copy_from_slice(&p);
                }
            }
            Some(video)
        });
    };
    const FRAMES: u32 = 60;
    let (playing, holding) = (AtomicBool::new(true), AtomicBool::new(false));
    // The frame drawn again and again once the video has played.
    let held = AtomicU32::new(FRAMES);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut frame = 0;
            while playing.load(Ordering::Relaxed) {
                draw(&t.display, frame.min(held.load(Ordering::Relaxed)));
                frame += 1;
                holding.store(frame > FRAMES, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        let start = Instant::now();
        while !holding.load(Ordering::Relaxed) {
            assert!(start.elapsed() < Duration::from_secs(60), "video too slow");
            std::thread::sleep(Duration::from_millis(50));
        }
        // A second of the held frame.
        std::thread::sleep(Duration::from_secs(1));
        let got = client.dump("video.raw");
        let want = t.display.head(0).unwrap().pixels.clone();
        let sent = t.server.control().sent();
        // Held on past STILL_TO_EXACT: the picture comes exact, over the
        // stream, though the guest still redraws it.
        std::thread::sleep(STILL_TO_EXACT + Duration::from_millis(1500));
        let later = client.dump("video-still.raw");
        let exact = t.server.control().sent();
        // The video goes on by one frame (then holds it): the stream shows
        // that frame, lossy.
        held.store(FRAMES + 1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
        let resumed = client.dump("video-resumed.raw");
        let want_resumed = t.display.head(0).unwrap().pixels.clone();
        playing.store(false, Ordering::Relaxed);
        let in_video = |picture: &[u8]| -> Vec<u8> {
            (video.top..video.bottom)
                .flat_map(|y| {
                    let row = y as usize * 1024 * 4;
                    picture[row + video.left as usize * 4..row + video.right as usize * 4].to_vec()
                })
                .collect()
        };
        let (got, later, want) = (in_video(&got), in_video(&later), in_video(&want));
        let (resumed, want_resumed) = (in_video(&resumed), in_video(&want_resumed));
        let p = psnr(&got, &want);
        eprintln!(
            "large video stream: {} frames, {} KiB; the held frame at {p:.1} dB on spice-glib",
            sent.stream_frames,
            sent.stream_bytes / 1024
        );
        assert!(sent.streams >= 1 && sent.stream_frames >= 20, "{sent:?}");
        assert!(p >= 30.0, "held frame at {p:.1} dB");
        assert!(
            rgb(&got) != rgb(&want),
            "the held frame is exact: not from the stream?"
        );
        assert!(
            rgb(&later) == rgb(&want),
            "the still picture did not come exact"
        );
        assert_eq!(exact.streams, sent.streams, "one stream throughout");
        assert_eq!(sent.stream_stills_made_exact, 0);
        assert_eq!(
            exact.stream_stills_made_exact, 1,
            "exact over the live stream"
        );
        let after = t.server.control().sent();
        let p = psnr(&resumed, &want_resumed);
        eprintln!("the video resumed: its next frame at {p:.1} dB on spice-glib");
        assert_eq!(after.streams, sent.streams, "the same stream plays on");
        assert!(after.stream_frames > exact.stream_frames);
        assert!(p >= 30.0, "resumed frame at {p:.1} dB");
        assert!(
            rgb(&resumed) != rgb(&want_resumed),
            "the resumed frame is exact: is the stream still hidden?"
        );
    });
}

/// A video to spice-glib over a slow link (2 Mbit/s): the stream's frames
/// keep to the part of the link the network test measured
/// (`video_stream::LINK_SHARE`), rather than being encoded at up to 25 fps
/// into socket buffers that the link drains far more slowly (without the
/// limit, this stream ran at 15-20 fps, 190-350 kB/s, over the 250 kB/s
/// link); and the client still gets frames.
#[test]
fn a_video_stream_keeps_to_a_slow_link() {
    use saffron::spice::video_stream::LINK_SHARE;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    if !have("/usr/bin/python3") || !have(SPICY) {
        return;
    }
    const LINK_BYTES_PER_SECOND: u64 = 250_000;
    let t = start_server(400, 300, "streaming-video=all");
    let mut client = GlibClient::connect(slow_link(t.port, LINK_BYTES_PER_SECOND));
    client.wait_for("PRIMARY");
    client.wait_for("MARK");
    let link = wait_for_network_test(&t);
    eprintln!("network test: {link:?}");
    assert!(link.low_bandwidth(), "{link:?}");
    let video = Rect::new(40, 40, 296, 232);
    let playing = AtomicBool::new(true);
    let (first, last) = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut frame = 0u32;
            while playing.load(Ordering::Relaxed) {
                t.display.draw(0, |s| {
                    let mut rng = Rng(u64::from(frame) + 1);
                    for y in video.top as u32..video.bottom as u32 {
                        for x in video.left as u32..video.right as u32 {
                            // A grainy photo: frames of about 20 kB.
                            let mut p = photo_pixel(x + 5 * frame, y + 2 * frame, 3, &mut rng);
                            for c in &mut p[..3] {
                                *c = c.saturating_add((rng.next() % 40) as u8).saturating_sub(20);
                            }
                            s.row_mut(y)[(x * 4) as usize..(x * 4 + 4) as usize]
                                .copy_from_slice(&p);
                        }
                    }
                    Some(video)
                });
                frame += 1;
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        // Once the stream runs, and the link has carried what went before
        // it (the picture, and the frames before it became a stream, which
        // went losslessly: about 7 s at this speed), for 6 s.
        let start = Instant::now();
        while t.server.control().sent().stream_frames < 2 {
            assert!(start.elapsed() < Duration::from_secs(30), "no stream");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_secs(10));
        let first = (Instant::now(), t.server.control().sent());
        std::thread::sleep(Duration::from_secs(6));
        let last = (Instant::now(), t.server.control().sent());
        playing.store(false, Ordering::Relaxed);
        (first, last)
    });
    let seconds = (last.0 - first.0).as_secs_f64();
    let frames = last.1.stream_frames - first.1.stream_frames;
    let bytes = last.1.stream_bytes - first.1.stream_bytes;
    let rate = bytes as f64 / seconds;
    eprintln!(
        "video over a {} kB/s link: {frames} frames in {seconds:.1} s ({:.1} fps), {:.0} kB/s",
        LINK_BYTES_PER_SECOND / 1000,
        frames as f64 / seconds,
        rate / 1000.0
    );
    // Within the video's share of the link as measured (the proxy's
    // first piece goes at once, so that is a little over its rate).
    let measured = link.bits_per_second.unwrap() as f64 / 8.0;
    assert!(
        rate <= measured * LINK_SHARE,
        "{rate:.0} B/s of video for a link measured at {measured:.0} B/s"
    );
    // The client is still playing: it shows recent frames.
    assert!(frames >= 6, "{frames} frames");
    client.wait_for("INVALIDATE");
}
