//! The encoders against spice-html5's JavaScript decoders (quic.js, lz.js
//! and its message parsers), run under node: each picture is sent as a
//! DRAW_COPY body, decoded by spice-html5, and must come back exact.
//! Skipped (loudly) when node or spice-html5 is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::image::{Image, ImageData};
use super::{lz, quic, testimages, Bitmap, BitmapFormat};
use crate::spice::channel::Encode;
use crate::spice::display_channel::DrawCopy;
use devices::display::Rect;

/// node, from PATH.
const NODE: &str = "node";

/// Where the spice-html5 package put its modules, or None.
fn html5_dir() -> Option<PathBuf> {
    let quic = testimages::package_file("spice-html5", "/quic.js")?;
    quic.parent().map(Path::to_path_buf)
}

/// A directory with spice-html5's modules and our harness, or None.
fn harness() -> Option<PathBuf> {
    let node_runs = Command::new(NODE).arg("--version").output().is_ok();
    let Some(html5) = html5_dir().filter(|_| node_runs) else {
        eprintln!("SKIPPED: node or spice-html5 is not installed");
        return None;
    };
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "saffron-html5-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).ok()?;
    for f in [
        "enums.js",
        "quic.js",
        "lz.js",
        "spicetype.js",
        "spicedataview.js",
    ] {
        std::fs::copy(html5.join(f), dir.join(f)).ok()?;
    }
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).ok()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spice/html5_decode.mjs");
    std::fs::copy(script, dir.join("html5_decode.mjs")).ok()?;
    Some(dir)
}

fn draw_copy(width: u32, height: u32, data: ImageData) -> Vec<u8> {
    DrawCopy {
        surface_id: 0,
        dest: Rect::new(0, 0, width as i32, height as i32),
        image: Image {
            id: 1,
            flags: 0,
            width,
            height,
            data,
        },
    }
    .body()
}

/// Decodes DRAW_COPY bodies with spice-html5; RGBA pictures.
fn html5_decode(dir: &Path, bodies: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let paths: Vec<PathBuf> = bodies
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let p = dir.join(format!("body{k}"));
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect();
    let out = Command::new(NODE)
        .current_dir(dir)
        .arg("html5_decode.mjs")
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    paths
        .iter()
        .map(|p| std::fs::read(p.with_extension("rgba")).unwrap())
        .collect()
}

fn rgba_of(bgrx: &[u8]) -> Vec<u8> {
    bgrx.chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0], 255])
        .collect()
}

#[test]
fn quic_and_lz_decode_exactly_in_spice_html5() {
    let Some(dir) = harness() else { return };
    let mut set = testimages::rgb32_set();
    set.push(testimages::desktop(640, 400, 9));
    set.push(testimages::photo(513, 300, 9));
    set.extend(testimages::real_images(512));
    let mut bodies = Vec::new();
    let mut expected = Vec::new();
    for img in &set {
        let b = Bitmap::rgb32(img.width, img.height, &img.bgrx).unwrap();
        bodies.push(draw_copy(
            img.width,
            img.height,
            ImageData::Quic(quic::encode(&b).unwrap()),
        ));
        expected.push((format!("QUIC {}", img.name), rgba_of(&img.bgrx)));
        bodies.push(draw_copy(
            img.width,
            img.height,
            ImageData::LzRgb(lz::encode(&b).unwrap()),
        ));
        expected.push((format!("LZ {}", img.name), rgba_of(&img.bgrx)));
    }
    // LZ RGBA: the alpha stream after the colour stream.
    let img = testimages::photo(97, 41, 4);
    let mut rgba = img.bgrx.clone();
    for (i, p) in rgba.chunks_exact_mut(4).enumerate() {
        p[3] = if i % 50 < 20 { 255 } else { (i * 7) as u8 };
    }
    let b = Bitmap::new(BitmapFormat::Rgba, 97, 41, true, &rgba, None).unwrap();
    bodies.push(draw_copy(97, 41, ImageData::LzRgb(lz::encode(&b).unwrap())));
    expected.push((
        "LZ RGBA".into(),
        rgba.chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0], p[3]])
            .collect(),
    ));
    let got = html5_decode(&dir, &bodies);
    for ((name, want), got) in expected.iter().zip(&got) {
        assert!(
            want == got,
            "{name}: spice-html5 decoded a different picture"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
