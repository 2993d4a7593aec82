//! The link stage: arbitrary bytes, fed in arbitrary pieces, as the server
//! does (accepting every request, so the auth and ticket stages are
//! reached too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron::spice::link::{LinkRequest, LinkStep, Linker};

fuzz_target!(|data: &[u8]| {
    // First byte: piece size, so partial reads are explored.
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let _ = LinkRequest::decode(rest);
    let mut linker = Linker::new();
    let mut input = Vec::new();
    for chunk in rest.chunks(piece) {
        input.extend_from_slice(chunk);
        loop {
            match linker.step(&mut input) {
                LinkStep::NeedMore => break,
                LinkStep::Request(_) => linker.accept(),
                LinkStep::Ticket(t) => assert_eq!(t.len(), 128),
                LinkStep::Refuse(_) => return,
            }
        }
    }
});
