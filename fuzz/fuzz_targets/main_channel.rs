//! Main channel messages from a hostile client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron::spice::channel::Outbox;
use saffron::spice::main_channel::{MainChannel, MainSetup};
use saffron::spice::wire::HeaderMode;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut out = Outbox::new(HeaderMode::Mini);
    let setup = MainSetup {
        session_id: 1,
        channels: vec![(2, 0), (3, 0), (4, 0)],
        display_channels: 1,
        client_mouse_allowed: data.first().is_some_and(|b| b & 1 == 1),
        mm_time_now: 0,
    };
    let mut main = MainChannel::start(setup, &mut out, 0);
    common::for_each_message(data, |t, body| main.handle(t, body, &mut out, 1));
    let _ = out.take_bytes();
});
