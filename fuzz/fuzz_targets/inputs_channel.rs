//! Inputs channel messages from a hostile client.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use saffron::spice::channel::Outbox;
use saffron::spice::inputs_channel::{InputsChannel, KeyboardLeds};
use saffron::spice::wire::HeaderMode;
use saffron::spice::NoInput;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut out = Outbox::new(HeaderMode::Mini);
    let mut channel = InputsChannel::start(Arc::new(NoInput), KeyboardLeds::default(), &mut out);
    common::for_each_message(data, |t, body| {
        let r = channel.handle(t, body, &mut out);
        let _ = out.take_bytes();
        r
    });
    channel.release_all();
});
