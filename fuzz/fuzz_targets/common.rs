//! Splits fuzz input into client messages the way the event loop does
//! (mini headers, size limit) and hands each to `handle`; stops at the
//! first error, as the server disconnects then.

use saffron::spice::connection::MAX_CLIENT_MESSAGE;
use saffron::spice::wire::{next_frame, HeaderMode};

pub fn for_each_message(
    data: &[u8],
    mut handle: impl FnMut(u16, &[u8]) -> Result<(), saffron::spice::channel::ChannelError>,
) {
    let mut at = 0;
    while let Ok(Some((header, body, used))) =
        next_frame(HeaderMode::Mini, &data[at..], MAX_CLIENT_MESSAGE)
    {
        if handle(header.msg_type, body).is_err() {
            return;
        }
        at += used;
    }
}
