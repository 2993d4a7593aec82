//! Cursor channel messages from a hostile client, with cursor changes.
#![no_main]

use std::sync::Arc;

use devices::display::{CursorShape, Display};
use libfuzzer_sys::fuzz_target;
use saffron::spice::channel::Outbox;
use saffron::spice::cursor_channel::CursorChannel;
use saffron::spice::wire::HeaderMode;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let display = Display::new();
    let mut out = Outbox::new(HeaderMode::Mini);
    // With and without the client's cursor cache.
    let client_caches = data.first().is_some_and(|b| b & 1 == 1);
    let mut channel = CursorChannel::start(display.clone(), client_caches, &mut out);
    common::for_each_message(data, |t, body| {
        let result = channel.handle(t, body);
        let b = body.first().copied().unwrap_or(0);
        display.update_cursor(|c| {
            c.x = i32::from(b) * 1000 - 100_000;
            c.visible = b & 1 == 1;
            if b & 2 == 2 {
                let (w, h) = (u16::from(b % 5), u16::from(b % 3));
                c.shape = Some(Arc::new(CursorShape {
                    width: w,
                    height: h,
                    hot_x: u16::from(b),
                    hot_y: 0,
                    argb: vec![b; usize::from(b)],
                }));
            }
        });
        channel.cursor_changed();
        channel.pump(&mut out);
        let _ = out.take_bytes();
        result
    });
});
