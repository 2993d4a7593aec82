//! `saffron replay`'s reader of libspice recordings, fed any bytes (after
//! the header, half the time, so that events are reached): it must end
//! with an item stream, a skipped event or a read error, never a panic,
//! and never hold more than its limits allow (a lying blob size must not
//! allocate).
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron::replay::{Limits, Reader};

const HEADER: &[u8] = b"SPICE_REPLAY 1\n";

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_event_bytes: 1 << 20,
        ..Limits::default()
    };
    let with_header = data.first().is_some_and(|b| b & 1 == 1);
    let input: Vec<u8> = if with_header {
        [HEADER, &data[1..]].concat()
    } else {
        data.to_vec()
    };
    let Ok(mut reader) = Reader::new(input.as_slice(), limits) else {
        return;
    };
    // Each item consumes input, so this ends.
    while let Ok(Some(_)) = reader.next_item() {}
});
