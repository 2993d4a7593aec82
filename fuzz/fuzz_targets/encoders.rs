//! The image encoders fed with guest-controlled pixels: every
//! `image-compression` mode (QUIC, LZ, GLZ with a session window, LZ4, the
//! auto modes' classifier), JPEG and zlib-GLZ as on a slow link, for images
//! of any size up to 64x64 whose pixels come from the fuzz input. Nothing
//! may panic, and no encoding may be far larger than the raw pixels.
#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use saffron::spice::codec::glz::GlzDictionary;
use saffron::spice::codec::policy::{
    ClientTraits, CompressionOptions, Compressor, ImageCompression, Request, WanCompression,
};

fuzz_target!(|data: &[u8]| {
    let Some((&[w, h, mode, flags], pixels)) = data.split_first_chunk::<4>() else {
        return;
    };
    if pixels.is_empty() {
        return;
    }
    let (width, height) = (1 + u32::from(w % 64), 1 + u32::from(h % 64));
    let pixels: Vec<u32> = pixels
        .chunks(3)
        .cycle()
        .take((width * height) as usize)
        .map(|p| p.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b)))
        .collect();
    let wan = |on: bool| {
        if on {
            WanCompression::Always
        } else {
            WanCompression::Never
        }
    };
    let options = CompressionOptions {
        image: ImageCompression::from_wire(1 + mode % 7).expect("1..=7"),
        jpeg: wan(flags & 1 != 0),
        zlib_glz: wan(flags & 2 != 0),
        ..CompressionOptions::default()
    };
    let client = ClientTraits {
        lz4: flags & 4 != 0,
        low_bandwidth: flags & 8 != 0,
    };
    let mut compressor = Compressor::new(options, client);
    let window = GlzDictionary::new(1 << 20).map(|d| Arc::new(Mutex::new(d)));
    compressor.set_glz(window, 0);
    let raw = u64::from(width * height) * 4;
    for id in 0..2 {
        // Twice: the second time GLZ may refer to the first image.
        let request = Request {
            id,
            width,
            height,
            pixels: pixels.clone(),
            lossy_ok: flags & 16 != 0,
        };
        compressor.compress(vec![request]);
        let out: u64 = compressor.stats.bytes_out.iter().sum();
        assert!(
            out <= (id + 1) * (2 * raw + 4096),
            "{out} bytes for {raw} raw"
        );
    }
});
