//! The cursor channel (type 4): the guest's pointer shape and position.
//!
//! On link: `SET_ACK`, then `CURSOR_INIT` with the current state. After
//! that, each change of the [`Display`]'s cursor is sent as `SET` (new
//! shape, or shown again), `MOVE` (position only) or `HIDE`. Only the
//! latest state matters, so changes are coalesced, never queued. Shapes
//! go out as ALPHA cursors (32-bit ARGB), the type every client supports.
//!
//! Shapes are cached on clients that keep a cursor cache: the first time
//! with `CACHE_ME`, after that `FROM_CACHE` with no pixels (a desktop
//! switches between a handful of shapes all the time). A shape's id is a
//! keyed hash of the shape itself, as guests give none (Linux's qxl driver
//! sends `unique` 0, so spice-server never caches its cursors). The server
//! mirrors the client's cache ([`CursorCache`]: 256 shapes of up to 64×64,
//! fewer of bigger ones; least recently used evicted with `INVAL_ONE`).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use devices::display::{CursorShape, CursorState, Display};

use super::channel::{AckWindow, BaseMessage, ChannelError, Encode, Outbox};
use super::image_cache::CursorCache;
use super::protocol::{channel, cursor_msg};
use super::session::{Changes, ChannelKind, Context, SentTotals, SpiceChannel};
use super::wire::{Caps, Writer};

/// Largest cursor we forward (clients handle bigger, guests never need it).
pub const MAX_CURSOR_SIDE: u16 = 512;
const CURSOR_FLAG_NONE: u16 = 1;
const CURSOR_FLAG_CACHE_ME: u16 = 2;
const CURSOR_FLAG_FROM_CACHE: u16 = 4;
const CURSOR_TYPE_ALPHA: u8 = 0;

/// How a shape travels: whole, whole and kept by the client, or by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    Uncached,
    CacheMe,
    FromCache,
}

/// The `Cursor` structure: flags, then header and ARGB data unless NONE
/// (no data either when it comes from the client's cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorImage {
    pub shape: Option<Arc<CursorShape>>,
    pub id: u64,
    pub caching: Caching,
}

impl CursorImage {
    /// The shape if it is well-formed and small enough to send.
    fn sendable(state: &CursorState) -> Option<Arc<CursorShape>> {
        state.shape.clone().filter(|s| {
            s.width > 0
                && s.height > 0
                && s.width <= MAX_CURSOR_SIDE
                && s.height <= MAX_CURSOR_SIDE
                && s.argb.len() == usize::from(s.width) * usize::from(s.height) * 4
        })
    }

    fn encode(&self, w: &mut Writer) {
        match &self.shape {
            None => {
                w.u16(CURSOR_FLAG_NONE);
            }
            Some(shape) => {
                let flags = match self.caching {
                    Caching::Uncached => 0,
                    Caching::CacheMe => CURSOR_FLAG_CACHE_ME,
                    Caching::FromCache => CURSOR_FLAG_FROM_CACHE,
                };
                w.u16(flags)
                    .u64(self.id)
                    .u8(CURSOR_TYPE_ALPHA)
                    .u16(shape.width)
                    .u16(shape.height)
                    .u16(shape.hot_x.min(shape.width - 1))
                    .u16(shape.hot_y.min(shape.height - 1));
                if self.caching != Caching::FromCache {
                    w.bytes(&shape.argb);
                }
            }
        }
    }
}

/// The server's mirror of a client's cursor cache, and the key of the
/// shape ids (random per connection, so no guest can aim two different
/// shapes at one id; an accidental clash among 256 cached 64-bit ids is
/// about 2^-49 likely).
struct ShapeCache {
    held: CursorCache,
    ids: RandomState,
}

impl ShapeCache {
    /// How to send `shape`, and the ids the client must drop first.
    fn place(&mut self, shape: &CursorShape) -> (u64, Caching, Vec<u64>) {
        let id = self.ids.hash_one(shape);
        if self.held.0.touch(id).is_some() {
            return (id, Caching::FromCache, Vec::new());
        }
        match self
            .held
            .0
            .insert(id, CursorCache::cost(shape.width, shape.height), false)
        {
            Some(evicted) => (id, Caching::CacheMe, evicted),
            None => (id, Caching::Uncached, Vec::new()),
        }
    }
}

/// `CURSOR_INVAL_ONE`: a shape the client must drop from its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorInvalOne {
    pub id: u64,
}

impl Encode for CursorInvalOne {
    const TYPE: u16 = cursor_msg::INVAL_ONE;
    fn encode(&self, w: &mut Writer) {
        w.u64(self.id);
    }
}

/// Shapes a cursor channel sent, and how many of them as cache ids.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CursorStats {
    pub shapes: u64,
    pub from_cache: u64,
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
    /// Which display's events it takes (its channel id).
    feed: usize,
    ack: AckWindow,
    /// What the client was last told.
    sent: CursorState,
    dirty: bool,
    /// None for a client without a cursor cache.
    cache: Option<ShapeCache>,
    stats: CursorStats,
}

impl CursorChannel {
    /// Queues `SET_ACK` and `CURSOR_INIT` (which empties the client's
    /// cursor cache). `client_caches` says whether the client keeps one.
    pub fn start(display: Arc<Display>, client_caches: bool, out: &mut Outbox) -> CursorChannel {
        let ack = AckWindow::start(out);
        let state = display.cursor();
        let mut channel = CursorChannel {
            display,
            feed: 0,
            ack,
            sent: state.clone(),
            dirty: false,
            cache: client_caches.then(|| ShapeCache {
                held: CursorCache::default(),
                ids: RandomState::new(),
            }),
            stats: CursorStats::default(),
        };
        let cursor = channel.image(&state, out);
        out.push(&CursorInit {
            x: clamp16(state.x),
            y: clamp16(state.y),
            visible: state.visible,
            cursor,
        });
        channel
    }

    /// The cursor of `state` as the client will get it next; queues the
    /// cache evictions that must reach the client before it.
    fn image(&mut self, state: &CursorState, out: &mut Outbox) -> CursorImage {
        let Some(shape) = CursorImage::sendable(state) else {
            return CursorImage {
                shape: None,
                id: 0,
                caching: Caching::Uncached,
            };
        };
        let (id, caching) = match &mut self.cache {
            Some(cache) => {
                let (id, caching, evicted) = cache.place(&shape);
                for id in evicted {
                    out.push(&CursorInvalOne { id });
                }
                (id, caching)
            }
            None => (0, Caching::Uncached),
        };
        self.stats.shapes += 1;
        self.stats.from_cache += u64::from(caching == Caching::FromCache);
        CursorImage {
            shape: Some(shape),
            id,
            caching,
        }
    }

    /// Shapes sent so far.
    pub fn stats(&self) -> CursorStats {
        self.stats
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
            let cursor = self.image(&now, out);
            out.push(&CursorSet {
                x,
                y,
                visible: now.visible,
                cursor,
            });
        } else if !now.visible && self.sent.visible {
            out.push(&CursorHide);
        } else if (now.x, now.y) != (self.sent.x, self.sent.y) {
            out.push(&CursorMove { x, y });
        }
        self.sent = now;
    }
}

/// The cursor channel kind: one per Display.
pub const KIND: ChannelKind = ChannelKind {
    channel_type: channel::CURSOR,
    name: "cursor",
    count: |server| server.displays.len(),
    caps: Caps::default,
    open: |o, out| {
        let display = o.server.displays[usize::from(o.id)].clone();
        let mut channel = CursorChannel::start(display, o.session.client_caches, out);
        channel.feed = usize::from(o.id);
        Box::new(channel)
    },
};

impl SpiceChannel for CursorChannel {
    fn receive(&mut self, msg_type: u16, body: &[u8], _: &mut Context) -> Result<(), ChannelError> {
        self.handle(msg_type, body)
    }

    fn update(&mut self, changes: &Changes, _: &mut Outbox) {
        if changes
            .displays
            .get(self.feed)
            .is_some_and(|f| f.cursor_changed)
        {
            self.cursor_changed();
        }
    }

    fn has_work(&self) -> bool {
        self.dirty
    }

    fn pump(&mut self, cx: &mut Context) {
        CursorChannel::pump(self, cx.out);
    }

    fn add_sent(&self, sent: &mut SentTotals) {
        sent.cursor_shapes += self.stats.shapes;
        sent.cursor_shapes_from_cache += self.stats.from_cache;
    }

    fn bounds_own_output(&self) -> bool {
        true
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
        CursorChannel::start(display, false, &mut out);
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
        let mut channel = CursorChannel::start(display.clone(), false, &mut out);
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

    fn shape(seed: u8) -> Arc<CursorShape> {
        Arc::new(CursorShape {
            width: 2,
            height: 2,
            hot_x: 0,
            hot_y: 0,
            argb: vec![seed; 16],
        })
    }

    /// Flags, id and the bytes after the header of a SET's cursor.
    fn set_cursor(body: &[u8]) -> (u16, u64, &[u8]) {
        let flags = u16::from_le_bytes([body[5], body[6]]);
        let id = u64::from_le_bytes(body[7..15].try_into().unwrap());
        (flags, id, &body[24..])
    }

    fn show(display: &Display, channel: &mut CursorChannel, out: &mut Outbox, s: Arc<CursorShape>) {
        display.update_cursor(|c| {
            c.shape = Some(s);
            c.visible = true;
        });
        channel.cursor_changed();
        channel.pump(out);
        // The client acknowledges every message (one ACK per window).
        channel.handle(1, &[1, 0, 0, 0]).unwrap();
        channel.handle(2, &[]).unwrap();
    }

    #[test]
    fn shapes_are_sent_once_then_from_the_client_cache() {
        let display = Display::new();
        display.update_cursor(|c| {
            c.shape = Some(shape(1));
            c.visible = true;
        });
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut channel = CursorChannel::start(display.clone(), true, &mut out);
        let init = sent(&mut out).remove(1);
        assert_eq!(init.0, cursor_msg::INIT);
        let flags = u16::from_le_bytes([init.1[9], init.1[10]]);
        let first_id = u64::from_le_bytes(init.1[11..19].try_into().unwrap());
        assert_eq!(flags, CURSOR_FLAG_CACHE_ME);
        assert_eq!(init.1[28..], [1; 16]);

        // Another shape (an equal copy of it is the same shape): cached too.
        show(&display, &mut channel, &mut out, shape(2));
        let msgs = sent(&mut out);
        let (flags, second_id, data) = set_cursor(&msgs[0].1);
        assert_eq!(
            (msgs.len(), flags, data),
            (1, CURSOR_FLAG_CACHE_ME, &[2; 16][..])
        );
        assert_ne!(second_id, first_id);
        show(&display, &mut channel, &mut out, shape(2));
        assert!(sent(&mut out).is_empty(), "an equal shape is no change");

        // Back to the first: by id, no pixels.
        show(&display, &mut channel, &mut out, shape(1));
        let msgs = sent(&mut out);
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            set_cursor(&msgs[0].1),
            (CURSOR_FLAG_FROM_CACHE, first_id, &[][..])
        );
        assert_eq!(
            channel.stats(),
            CursorStats {
                shapes: 3,
                from_cache: 1
            }
        );

        // The cache holds 256 shapes: 254 more fill it, and the next one
        // pushes out the least recently used (shape 2), which the client
        // is told to drop first.
        let other = |n: u16| {
            Arc::new(CursorShape {
                width: 3,
                height: 1,
                hot_x: 0,
                hot_y: 0,
                argb: [n.to_le_bytes(); 6].concat(),
            })
        };
        for n in 0..254 {
            show(&display, &mut channel, &mut out, other(n));
        }
        assert!(sent(&mut out).iter().all(|m| m.0 == cursor_msg::SET));
        let extra = other(254);
        show(&display, &mut channel, &mut out, extra);
        let msgs = sent(&mut out);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(
            msgs[0],
            (cursor_msg::INVAL_ONE, second_id.to_le_bytes().to_vec())
        );
        assert_eq!(set_cursor(&msgs[1].1).0, CURSOR_FLAG_CACHE_ME);
        show(&display, &mut channel, &mut out, shape(2));
        let msgs = sent(&mut out);
        assert_eq!(
            msgs[0],
            (cursor_msg::INVAL_ONE, first_id.to_le_bytes().to_vec())
        );
        assert_eq!(
            set_cursor(&msgs[1].1),
            (CURSOR_FLAG_CACHE_ME, second_id, &[2; 16][..])
        );
    }

    #[test]
    fn big_shapes_take_more_of_the_cursor_cache() {
        // 512×512 shapes: four fill the 256 × 64×64 pixels the client is
        // asked to hold, so the fifth pushes the first out.
        let big = |v: u8| {
            Arc::new(CursorShape {
                width: 512,
                height: 512,
                hot_x: 0,
                hot_y: 0,
                argb: vec![v; 512 * 512 * 4],
            })
        };
        let display = Display::new();
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut channel = CursorChannel::start(display.clone(), true, &mut out);
        let _ = sent(&mut out);
        let mut ids = Vec::new();
        for v in 1..=4 {
            show(&display, &mut channel, &mut out, big(v));
            let msgs = sent(&mut out);
            assert_eq!(msgs.len(), 1, "{v}: no eviction yet");
            ids.push(set_cursor(&msgs[0].1).1);
        }
        show(&display, &mut channel, &mut out, big(5));
        let msgs = sent(&mut out);
        assert_eq!(
            msgs[0],
            (cursor_msg::INVAL_ONE, ids[0].to_le_bytes().to_vec())
        );
        assert_eq!(set_cursor(&msgs[1].1).0, CURSOR_FLAG_CACHE_ME);
    }
}
