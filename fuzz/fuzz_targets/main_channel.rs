//! Main channel messages from a hostile client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron::spice::channel::Outbox;
use saffron::spice::main_channel::{MainChannel, MainSetup};
use saffron::spice::wire::HeaderMode;
use saffron::spice::MousePolicy;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut out = Outbox::new(HeaderMode::Mini);
    let setup = MainSetup {
        session_id: 1,
        channels: vec![(2, 0), (3, 0), (4, 0)],
        display_channels: 1,
        client_mouse_allowed: data.first().is_some_and(|b| b & 1 == 1),
        mouse: match data.first().map(|b| b >> 1 & 3) {
            Some(1) => MousePolicy::Client,
            Some(2) => MousePolicy::Server,
            _ => MousePolicy::Auto,
        },
        mm_time_now: 0,
        agent: None,
    };
    let mut main = MainChannel::start(setup, &mut out, 0);
    // Time passes as the input says (each message's first byte, in 10 ms
    // steps), so that the network test's slow results and re-test happen.
    let mut now_ns = 0u64;
    common::for_each_message(data, |t, body| {
        now_ns += u64::from(body.first().copied().unwrap_or(0)) * 10_000_000;
        let handled = main.handle(t, body, &mut out, now_ns);
        let _ = out.take_bytes();
        handled
    });
});
