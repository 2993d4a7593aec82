//! TEST ONLY: serves a synthetic picture over SPICE, without a VM, so real
//! clients can be tried against the server natively.
//!
//! ```text
//! cargo run --example spice_demo -- --spice port=5930 [--size 1024x768] [--animate]
//! spicy-screenshot -h 127.0.0.1 -p 5930 -o out.ppm
//! ```
//!
//! The picture is a deterministic pattern ([`pattern_pixel`]); with
//! `--animate` a band moves across it. Keyboard and mouse input is printed.
//! `--dump PATH` writes the current picture as PPM on SIGUSR1-free polling:
//! every time the file `PATH.request` appears (for tests).

use std::sync::Arc;
use std::time::Duration;

use devices::display::{Display, Rect};
use saffron::spice::{InputSink, MouseButtons, ServerInputs, SpiceConfig, SpiceServer};

/// The test pattern: BGRX bytes of pixel (x, y).
fn pattern_pixel(x: u32, y: u32) -> [u8; 4] {
    [(x * 7 + y) as u8, (y * 3) as u8, (x ^ y) as u8, 0]
}

struct PrintInput;

impl InputSink for PrintInput {
    fn key(&self, s: &[u8]) {
        println!("key {s:02x?}");
    }
    fn relative_motion(&self, dx: i32, dy: i32, b: MouseButtons) {
        println!("motion {dx} {dy} {}", b.0);
    }
    fn absolute_position(&self, d: u8, x: u32, y: u32, b: MouseButtons) {
        println!("position {d} {x} {y} {}", b.0);
    }
    fn buttons(&self, b: MouseButtons) {
        println!("buttons {}", b.0);
    }
    fn wheel(&self, dz: i32, b: MouseButtons) {
        println!("wheel {dz} {}", b.0);
    }
}

fn write_ppm(display: &Display, path: &str) -> std::io::Result<()> {
    let Some(head) = display.head(0) else {
        return Ok(());
    };
    let mut out = format!("P6\n{} {}\n255\n", head.width, head.height).into_bytes();
    for y in 0..head.height {
        for px in head.row(y).chunks(4) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    drop(head);
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, out)?;
    std::fs::rename(tmp, path)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SAFFRON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let spice = value("--spice").unwrap_or_else(|| "port=5930".into());
    let config = SpiceConfig::parse(&spice).unwrap_or_else(|e| panic!("--spice: {e}"));
    let (width, height) = value("--size")
        .and_then(|s| {
            let (w, h) = s.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .unwrap_or((1024u32, 768u32));
    let animate = args.iter().any(|a| a == "--animate");
    let dump = value("--dump");

    let display = Display::new();
    display.resize(0, width, height);
    display.draw(0, |s| {
        for y in 0..s.height {
            for (x, px) in s.row_mut(y).chunks_mut(4).enumerate() {
                px.copy_from_slice(&pattern_pixel(x as u32, y));
            }
        }
        Some(s.bounds())
    });
    let server = SpiceServer::start(
        &config,
        ServerInputs {
            displays: vec![display.clone()],
            input: Arc::new(PrintInput),
            tablet: args.iter().any(|a| a == "--tablet"),
            agent: None,
            audio: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    if let Some(addr) = server.local_addr() {
        println!("listening {addr}");
    }
    let mut frame = 0u32;
    loop {
        std::thread::sleep(Duration::from_millis(if animate { 16 } else { 100 }));
        if animate {
            frame += 1;
            let band = 32;
            let x = (frame * 8) % width.saturating_sub(band).max(1);
            display.draw(0, |s| {
                for y in 0..s.height {
                    let row = s.row_mut(y);
                    for xx in x..x + band {
                        let at = xx as usize * 4;
                        row[at..at + 4].copy_from_slice(&[
                            frame as u8,
                            (frame >> 8) as u8,
                            y as u8,
                            0,
                        ]);
                    }
                }
                Some(Rect::new(x as i32, 0, (x + band) as i32, height as i32))
            });
        }
        if let Some(path) = &dump {
            let request = format!("{path}.request");
            if std::fs::remove_file(&request).is_ok() {
                if let Err(e) = write_ppm(&display, path) {
                    eprintln!("dump: {e}");
                }
            }
        }
    }
}
