//! Display channel messages from a hostile client, interleaved with damage
//! and head changes; the output must stay within the head.
#![no_main]

use std::time::Instant;

use devices::display::{Display, Rect};
use libfuzzer_sys::fuzz_target;
use saffron::spice::channel::Outbox;
use saffron::spice::display_channel::{DisplayChannel, ImageSetup};
use saffron::spice::wire::{Caps, HeaderMode};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let display = Display::new();
    display.resize(0, 64, 48);
    let mut out = Outbox::new(HeaderMode::Mini);
    let mut channel = DisplayChannel::start(
        display.clone(),
        0,
        &Caps(vec![0x3bf]),
        ImageSetup::default(),
        &mut out,
        Instant::now(),
    );
    let mut n = 0i32;
    common::for_each_message(data, |t, body| {
        let result = channel.handle(t, body);
        n = n.wrapping_add(1);
        // Damage (even out of bounds) and an occasional resize.
        let x = body.first().copied().unwrap_or(0) as i32 - 64;
        channel.damage(Rect::new(x, x / 2, x + n % 97, x + 40));
        if n % 7 == 0 {
            display.resize(0, 16 + (n as u32 % 50), 9 + (n as u32 % 31));
            channel.head_changed();
        }
        channel.pump(&mut out);
        if out.queued_bytes() > 1 << 20 {
            let _ = out.take_bytes();
        }
        result
    });
});
