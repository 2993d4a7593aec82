//! The cursor channel (type 4): the guest's pointer shape and position.
//!
//! On link: `SET_ACK`, then `CURSOR_INIT` with the current state. After
//! that, each change of the [`Display`]'s cursor is sent as `SET` (new
//! shape, or shown again), `MOVE` (position only) or `HIDE`. Only the
//! latest state matters, so changes are coalesced, never queued. Shapes
//! go out as ALPHA cursors (32-bit ARGB), the type every client supports.

use std::sync::Arc;

use devices::display::{CursorShape, CursorState, Display};

use super::channel::{AckWindow, BaseMessage, ChannelError, Encode, Outbox};
use super::protocol::cursor_msg;
use super::wire::Writer;

/// Largest cursor we forward (clients handle bigger, guests never need it).
pub const MAX_CURSOR_SIDE: u16 = 512;
const CURSOR_FLAG_NONE: u16 = 1;
const CURSOR_TYPE_ALPHA: u8 = 0;

/// The `Cursor` structure: flags, then header and ARGB data unless NONE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorImage(pub Option<Arc<CursorShape>>);

impl CursorImage {
    /// The shape if it is well-formed and small enough to send.
    fn from_state(state: &CursorState) -> CursorImage {
        CursorImage(state.shape.clone().filter(|s| {
            s.width > 0
                && s.height > 0
                && s.width <= MAX_CURSOR_SIDE
                && s.height <= MAX_CURSOR_SIDE
                && s.argb.len() == usize::from(s.width) * usize::from(s.height) * 4
        }))
    }

    fn encode(&self, w: &mut Writer) {
        match &self.0 {
            None => {
                w.u16(CURSOR_FLAG_NONE);
            }
            Some(shape) => {
                w.u16(0)
                    .u64(0) // unique: not cached
                    .u8(CURSOR_TYPE_ALPHA)
                    .u16(shape.width)
                    .u16(shape.height)
                    .u16(shape.hot_x.min(shape.width - 1))
                    .u16(shape.hot_y.min(shape.height - 1))
                    .bytes(&shape.argb);
            }
        }
    }
}

fn clamp16(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// `CURSOR_INIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorInit {
    pub x: i16,
    pub y: i16,
    pub visible: bool,
    pub cursor: CursorImage,
}

impl Encode for CursorInit {
    const TYPE: u16 = cursor_msg::INIT;
    fn encode(&self, w: &mut Writer) {
        w.i16(self.x)
            .i16(self.y)
            .u16(0)
            .u16(0)
            .u8(self.visible.into());
        self.cursor.encode(w);
    }
}

/// `CURSOR_SET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorSet {
    pub x: i16,
    pub y: i16,
    pub visible: bool,
    pub cursor: CursorImage,
}

impl Encode for CursorSet {
    const TYPE: u16 = cursor_msg::SET;
    fn encode(&self, w: &mut Writer) {
        w.i16(self.x).i16(self.y).u8(self.visible.into());
        self.cursor.encode(w);
    }
}

/// `CURSOR_MOVE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorMove {
    pub x: i16,
    pub y: i16,
}

impl Encode for CursorMove {
    const TYPE: u16 = cursor_msg::MOVE;
    fn encode(&self, w: &mut Writer) {
        w.i16(self.x).i16(self.y);
    }
}

/// `CURSOR_HIDE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorHide;

impl Encode for CursorHide {
    const TYPE: u16 = cursor_msg::HIDE;
    fn encode(&self, _: &mut Writer) {}
}

/// The server side of one cursor channel connection.
pub struct CursorChannel {
    display: Arc<Display>,
    ack: AckWindow,
    /// What the client was last told.
    sent: CursorState,
    dirty: bool,
}

impl CursorChannel {
    /// Queues `SET_ACK` and `CURSOR_INIT`.
    pub fn start(display: Arc<Display>, out: &mut Outbox) -> CursorChannel {
        let ack = AckWindow::start(out);
        let state = display.cursor();
        out.push(&CursorInit {
            x: clamp16(state.x),
            y: clamp16(state.y),
            visible: state.visible,
            cursor: CursorImage::from_state(&state),
        });
        CursorChannel {
            display,
            ack,
            sent: state,
            dirty: false,
        }
    }

    /// Only base messages exist client → server on this channel.
    pub fn handle(&mut self, msg_type: u16, body: &[u8]) -> Result<(), ChannelError> {
        match BaseMessage::decode(msg_type, body)? {
            Some(base) => {
                self.ack.on_message(&base);
                Ok(())
            }
            None => Err(ChannelError::UnknownType(msg_type)),
        }
    }

    /// The cursor changed.
    pub fn cursor_changed(&mut self) {
        self.dirty = true;
    }

    pub fn has_work(&self) -> bool {
        self.dirty
    }

    /// Sends the difference between what the client has and the cursor now.
    pub fn pump(&mut self, out: &mut Outbox) {
        if !self.dirty || !self.ack.may_send(out) {
            return;
        }
        self.dirty = false;
        let now = self.display.cursor();
        let shape_changed = match (&now.shape, &self.sent.shape) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b) && a != b,
            (None, None) => false,
            _ => true,
        };
        let (x, y) = (clamp16(now.x), clamp16(now.y));
        if shape_changed || (now.visible && !self.sent.visible) {
            out.push(&CursorSet {
                x,
                y,
                visible: now.visible,
                cursor: CursorImage::from_state(&now),
            });
        } else if !now.visible && self.sent.visible {
            out.push(&CursorHide);
        } else if (now.x, now.y) != (self.sent.x, self.sent.y) {
            out.push(&CursorMove { x, y });
        }
        self.sent = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::wire::{next_frame, HeaderMode};

    fn sent(out: &mut Outbox) -> Vec<(u16, Vec<u8>)> {
        let bytes = out.take_bytes();
        let mut at = 0;
        let mut v = Vec::new();
        while let Some((h, b, used)) = next_frame(HeaderMode::Mini, &bytes[at..], u32::MAX).unwrap()
        {
            v.push((h.msg_type, b.to_vec()));
            at += used;
        }
        v
    }

    fn arrow() -> Arc<CursorShape> {
        Arc::new(CursorShape {
            width: 2,
            height: 1,
            hot_x: 1,
            hot_y: 5,
            argb: vec![1, 2, 3, 255, 4, 5, 6, 255],
        })
    }

    #[test]
    fn init_without_shape_is_eleven_bytes() {
        let display = Display::new();
        let mut out = Outbox::new(HeaderMode::Mini);
        CursorChannel::start(display, &mut out);
        let msgs = sent(&mut out);
        assert_eq!(msgs[0].0, 3);
        assert_eq!(msgs[1], (101, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]));
    }

    #[test]
    fn set_move_hide_follow_the_display() {
        let display = Display::new();
        display.update_cursor(|c| {
            c.shape = Some(arrow());
            c.x = 10;
            c.y = -3;
            c.visible = true;
        });
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut channel = CursorChannel::start(display.clone(), &mut out);
        let init = &sent(&mut out)[1];
        let expected_cursor = [
            &[0, 0][..],
            &[0; 8],
            &[0, 2, 0, 1, 0, 1, 0, 0, 0], // ALPHA 2x1, hot (1, clamped 0)
            &[1, 2, 3, 255, 4, 5, 6, 255],
        ]
        .concat();
        assert_eq!(init.1[..9], [10, 0, 0xfd, 0xff, 0, 0, 0, 0, 1]);
        assert_eq!(init.1[9..], expected_cursor[..]);

        display.update_cursor(|c| c.x = 70_000);
        channel.cursor_changed();
        channel.pump(&mut out);
        assert_eq!(sent(&mut out), vec![(104, vec![0xff, 0x7f, 0xfd, 0xff])]);

        display.update_cursor(|c| c.visible = false);
        channel.cursor_changed();
        channel.pump(&mut out);
        assert_eq!(sent(&mut out), vec![(105, vec![])]);

        display.update_cursor(|c| c.visible = true);
        channel.cursor_changed();
        channel.pump(&mut out);
        let set = sent(&mut out);
        assert_eq!(set[0].0, 103);
        assert_eq!(set[0].1[..5], [0xff, 0x7f, 0xfd, 0xff, 1]);
        assert_eq!(set[0].1[5..], expected_cursor[..]);

        // Nothing changed: nothing sent.
        channel.cursor_changed();
        channel.pump(&mut out);
        assert!(sent(&mut out).is_empty());

        // A malformed shape is sent as "no cursor".
        display.update_cursor(|c| {
            c.shape = Some(Arc::new(CursorShape {
                width: 4,
                height: 4,
                hot_x: 0,
                hot_y: 0,
                argb: vec![0; 3],
            }))
        });
        channel.cursor_changed();
        channel.pump(&mut out);
        assert_eq!(
            sent(&mut out),
            vec![(103, vec![0xff, 0x7f, 0xfd, 0xff, 1, 1, 0])]
        );
        assert!(channel.handle(101, &[]).is_err());
        channel.handle(1, &[1, 0, 0, 0]).unwrap();
    }
}
