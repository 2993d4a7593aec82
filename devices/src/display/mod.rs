//! The display interface between display devices (QXL, VGA) and whoever
//! shows their output (the SPICE server, screendumps).
//!
//! A [`Display`] holds the current picture of each head (a 32-bit BGRX
//! surface), the cursor, and a list of subscribers. Producers draw into a
//! head and report damage; consumers subscribe and receive [`DisplayEvent`]s
//! through a bounded queue. When the queue is full, damage grows the
//! damage queued last; any other event makes a consumer that fell this far
//! behind get one [`DisplayEvent::Resync`] instead of an ever-growing
//! queue, and repaint from the current picture: producers never wait for
//! consumers. A consumer may wait on its queue ([`Subscription::next`]) or
//! be notified when it stops being empty ([`Display::subscribe_notified`]).

mod geometry;
pub mod monitors;
pub mod render;
pub mod switch;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

pub use geometry::Rect;
pub use monitors::{Layout, Monitor};
pub use switch::ScanoutSwitch;

use crate::bus::lock;

/// Bytes per pixel of head surfaces: B, G, R, X in memory (little-endian
/// 0xXXRRGGBB), as QXL's 32-bit formats and SPICE's RGB32 are.
pub const BYTES_PER_PIXEL: usize = 4;
/// Largest head the display accepts (both dimensions).
pub const MAX_DIMENSION: u32 = 16384;
/// Events a subscriber may have queued (beyond it damage merges, and
/// anything else makes it resync).
pub const SUBSCRIBER_QUEUE_LIMIT: usize = 1024;

/// A picture: `height` rows of `width` BGRX pixels, `stride` bytes apart.
#[derive(Clone, PartialEq, Eq)]
pub struct Surface {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for Surface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Surface({}x{})", self.width, self.height)
    }
}

impl Surface {
    /// A black surface; `None` when the size is zero or too large.
    pub fn new(width: u32, height: u32) -> Option<Self> {
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return None;
        }
        let stride = width as usize * BYTES_PER_PIXEL;
        Some(Surface {
            width,
            height,
            stride,
            pixels: vec![0; stride * height as usize],
        })
    }

    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    /// One row of pixels.
    pub fn row(&self, y: u32) -> &[u8] {
        let start = y as usize * self.stride;
        &self.pixels[start..start + self.width as usize * BYTES_PER_PIXEL]
    }

    pub fn row_mut(&mut self, y: u32) -> &mut [u8] {
        let start = y as usize * self.stride;
        let len = self.width as usize * BYTES_PER_PIXEL;
        &mut self.pixels[start..start + len]
    }

    /// The pixel at (x, y) as 0xXXRRGGBB.
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        let at = y as usize * self.stride + x as usize * BYTES_PER_PIXEL;
        u32::from_le_bytes(self.pixels[at..at + 4].try_into().unwrap_or_default())
    }

    /// Copies `rect` (clipped to the surface) out as tightly packed rows of
    /// pixels `0x00RRGGBB`: the byte the 32-bit format leaves unused is
    /// cleared, so equal colours are equal words.
    pub fn copy_rect(&self, rect: Rect) -> Vec<u32> {
        let r = rect.intersect(&self.bounds());
        let mut out = Vec::with_capacity(r.area() as usize);
        for y in r.top..r.bottom {
            let row = self.row(y as u32);
            let span = &row[r.left as usize * BYTES_PER_PIXEL..r.right as usize * BYTES_PER_PIXEL];
            out.extend(
                span.as_chunks::<BYTES_PER_PIXEL>()
                    .0
                    .iter()
                    .map(|p| u32::from_le_bytes(*p) & 0x00ff_ffff),
            );
        }
        out
    }
}

/// A cursor image: ARGB (B, G, R, A bytes), `width`×`height`, hot spot inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CursorShape {
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    pub argb: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorState {
    pub shape: Option<Arc<CursorShape>>,
    pub x: i32,
    pub y: i32,
    pub visible: bool,
}

/// What subscribers are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayEvent {
    /// A head now has this size (created, resized, or after a mode switch);
    /// its whole picture is new.
    HeadChanged { head: u32, width: u32, height: u32 },
    /// A head went away (its device stopped scanning out).
    HeadRemoved { head: u32 },
    /// This part of a head changed.
    Damage { head: u32, rect: Rect },
    /// The cursor changed shape, moved, hid or showed: see [`Display::cursor`].
    Cursor,
    /// The guest's monitors layout changed: see [`Display::monitors`].
    MonitorsChanged,
    /// The subscriber fell behind and lost events: repaint everything.
    Resync,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<DisplayEvent>,
    overflowed: bool,
}

/// Called (on the producer's thread) when a subscriber's queue stops
/// being empty; it should only schedule the consumer, e.g. wake its loop.
pub type Notify = Box<dyn Fn() + Send + Sync>;

/// Which events a subscriber takes (the others are never queued for it).
pub type EventFilter = fn(&DisplayEvent) -> bool;

struct SubscriberShared {
    queue: Mutex<Queue>,
    ready: Condvar,
    notify: Option<Notify>,
    wants: EventFilter,
}

/// A consumer's end: events in order, bounded.
pub struct Subscription {
    shared: Arc<SubscriberShared>,
    display: Arc<Display>,
}

impl Subscription {
    pub fn display(&self) -> &Arc<Display> {
        &self.display
    }

    /// The next event, waiting up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<DisplayEvent> {
        let mut q = lock(&self.shared.queue);
        if q.events.is_empty() && !q.overflowed {
            q = self
                .shared
                .ready
                .wait_timeout(q, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Self::pop(&mut q)
    }

    /// The next event if one is queued.
    pub fn try_next(&self) -> Option<DisplayEvent> {
        Self::pop(&mut lock(&self.shared.queue))
    }

    fn pop(q: &mut Queue) -> Option<DisplayEvent> {
        if q.overflowed {
            q.overflowed = false;
            q.events.clear();
            return Some(DisplayEvent::Resync);
        }
        q.events.pop_front()
    }
}

/// Whether `event` says nothing that `last`, the event queued before it,
/// does not already say: damage inside that damage, or a second cursor
/// change.
fn adds_nothing(event: &DisplayEvent, last: Option<&DisplayEvent>) -> bool {
    match (event, last) {
        (DisplayEvent::Damage { head, rect }, Some(DisplayEvent::Damage { head: h, rect: r })) => {
            head == h && r.contains(rect)
        }
        (DisplayEvent::Cursor, Some(DisplayEvent::Cursor)) => true,
        _ => false,
    }
}

/// Heads, monitors, cursor and subscribers of one display device.
pub struct Display {
    heads: RwLock<Vec<Option<Surface>>>,
    layout: RwLock<Layout>,
    cursor: RwLock<CursorState>,
    subscribers: Mutex<Vec<Weak<SubscriberShared>>>,
}

impl Display {
    pub fn new() -> Arc<Self> {
        Arc::new(Display {
            heads: RwLock::new(Vec::new()),
            layout: RwLock::new(Layout::default()),
            cursor: RwLock::new(CursorState::default()),
            subscribers: Mutex::new(Vec::new()),
        })
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        self.subscribe_with(None, |_| true)
    }

    /// A subscription whose consumer is told through `notify` whenever its
    /// queue stops being empty, instead of waiting on it: a consumer that
    /// drains the queue ([`Subscription::try_next`] until `None`) on each
    /// call misses no event.
    pub fn subscribe_notified(self: &Arc<Self>, notify: Notify) -> Subscription {
        self.subscribe_with(Some(notify), |_| true)
    }

    /// [`Display::subscribe_notified`] to the events `wants` accepts only
    /// (a consumer that needs the cursor is not woken by every draw).
    pub fn subscribe_to(self: &Arc<Self>, notify: Notify, wants: EventFilter) -> Subscription {
        self.subscribe_with(Some(notify), wants)
    }

    fn subscribe_with(
        self: &Arc<Self>,
        notify: Option<Notify>,
        wants: EventFilter,
    ) -> Subscription {
        let shared = Arc::new(SubscriberShared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            notify,
            wants,
        });
        lock(&self.subscribers).push(Arc::downgrade(&shared));
        Subscription {
            shared,
            display: self.clone(),
        }
    }

    fn publish(&self, event: DisplayEvent) {
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|weak| {
            let Some(s) = weak.upgrade() else {
                return false;
            };
            if !(s.wants)(&event) {
                return true;
            }
            let mut q = lock(&s.queue);
            let was_empty = q.events.is_empty() && !q.overflowed;
            if !q.overflowed && !adds_nothing(&event, q.events.back()) {
                if q.events.len() < SUBSCRIBER_QUEUE_LIMIT {
                    q.events.push_back(event.clone());
                } else {
                    // Full: damage next to damage of the same head grows
                    // it (the consumer repaints more, but needs no resync);
                    // anything else overflows.
                    match (&event, q.events.back_mut()) {
                        (
                            DisplayEvent::Damage { head, rect },
                            Some(DisplayEvent::Damage { head: h, rect: r }),
                        ) if head == h => *r = r.union(rect),
                        _ => q.overflowed = true,
                    }
                }
            }
            let now_empty = q.events.is_empty() && !q.overflowed;
            drop(q);
            s.ready.notify_one();
            if was_empty && !now_empty {
                if let Some(notify) = &s.notify {
                    notify();
                }
            }
            true
        });
    }

    fn heads_write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Option<Surface>>> {
        self.heads.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a head's size (a black picture); `false` if the size is invalid.
    pub fn resize(&self, head: u32, width: u32, height: u32) -> bool {
        self.resize_if(head, width, height, || true)
    }

    /// [`Display::resize`], if `allowed()` says so under the display's lock
    /// (how the VGA checks its [`ScanoutSwitch`] race-free); `false` when
    /// not allowed or the size is invalid.
    pub fn resize_if(
        &self,
        head: u32,
        width: u32,
        height: u32,
        allowed: impl FnOnce() -> bool,
    ) -> bool {
        let Some(surface) = Surface::new(width, height) else {
            return false;
        };
        {
            let mut heads = self.heads_write();
            if !allowed() {
                return false;
            }
            let index = head as usize;
            if heads.len() <= index {
                heads.resize_with(index + 1, || None);
            }
            heads[index] = Some(surface);
        }
        self.publish(DisplayEvent::HeadChanged {
            head,
            width,
            height,
        });
        true
    }

    pub fn remove_head(&self, head: u32) {
        let removed = self
            .heads_write()
            .get_mut(head as usize)
            .and_then(Option::take)
            .is_some();
        if removed {
            self.publish(DisplayEvent::HeadRemoved { head });
        }
    }

    /// Draws into a head; `draw` returns the part it changed (clipped to the head).
    pub fn draw(&self, head: u32, draw: impl FnOnce(&mut Surface) -> Option<Rect>) {
        let damage = {
            let mut heads = self.heads_write();
            let Some(Some(surface)) = heads.get_mut(head as usize) else {
                return;
            };
            let bounds = surface.bounds();
            draw(surface)
                .map(|r| r.intersect(&bounds))
                .filter(|r| !r.is_empty())
        };
        if let Some(rect) = damage {
            self.publish(DisplayEvent::Damage { head, rect });
        }
    }

    /// Draws into a head in one go; `draw` returns every part it changed
    /// (each clipped to the head and reported as its own damage event).
    pub fn draw_rects(&self, head: u32, draw: impl FnOnce(&mut Surface) -> Vec<Rect>) {
        let damage: Vec<Rect> = {
            let mut heads = self.heads_write();
            let Some(Some(surface)) = heads.get_mut(head as usize) else {
                return;
            };
            let bounds = surface.bounds();
            draw(surface)
                .into_iter()
                .map(|r| r.intersect(&bounds))
                .filter(|r| !r.is_empty())
                .collect()
        };
        for rect in damage {
            self.publish(DisplayEvent::Damage { head, rect });
        }
    }

    /// Reads a head's current picture.
    pub fn head(&self, head: u32) -> Option<HeadGuard<'_>> {
        let heads = self.heads.read().unwrap_or_else(|p| p.into_inner());
        heads.get(head as usize)?.as_ref()?;
        Some(HeadGuard {
            heads,
            index: head as usize,
        })
    }

    /// The heads that exist, with their sizes.
    pub fn heads(&self) -> Vec<(u32, u32, u32)> {
        let heads = self.heads.read().unwrap_or_else(|p| p.into_inner());
        heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|s| (i as u32, s.width, s.height)))
            .collect()
    }

    /// Sets how many outputs the device offers (at least 1).
    pub fn set_max_monitors(&self, max: u32) {
        self.layout.write().unwrap_or_else(|p| p.into_inner()).max = max.max(1);
    }

    /// Sets the guest's monitors layout of head 0 (empty: one output
    /// showing all of it), at most the outputs offered.
    pub fn set_guest_monitors(&self, mut monitors: Vec<Monitor>) {
        let changed = {
            let mut layout = self.layout.write().unwrap_or_else(|p| p.into_inner());
            monitors.truncate(layout.max as usize);
            let changed = layout.guest != monitors;
            layout.guest = monitors;
            changed
        };
        if changed {
            self.publish(DisplayEvent::MonitorsChanged);
        }
    }

    /// The outputs offered and the guest's layout.
    pub fn layout(&self) -> Layout {
        self.layout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The monitors of head 0 as it is now (none without head 0).
    pub fn monitors(&self) -> Vec<Monitor> {
        let size = self.head(0).map(|h| (h.width, h.height));
        self.layout().monitors(size)
    }

    pub fn cursor(&self) -> CursorState {
        self.cursor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn update_cursor(&self, update: impl FnOnce(&mut CursorState)) {
        update(&mut self.cursor.write().unwrap_or_else(|p| p.into_inner()));
        self.publish(DisplayEvent::Cursor);
    }
}

/// Read access to one head's surface.
pub struct HeadGuard<'a> {
    heads: RwLockReadGuard<'a, Vec<Option<Surface>>>,
    index: usize,
}

impl std::ops::Deref for HeadGuard<'_> {
    type Target = Surface;
    fn deref(&self) -> &Surface {
        // `head()` only builds a guard for a head that exists, and the read
        // lock keeps it there.
        self.heads[self.index]
            .as_ref()
            .expect("head exists while guarded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_reports_clipped_damage() {
        let display = Display::new();
        let sub = display.subscribe();
        assert!(display.resize(0, 64, 32));
        display.draw(0, |s| {
            s.row_mut(1)[..4].copy_from_slice(&[1, 2, 3, 0]);
            Some(Rect::new(-5, 0, 100, 2))
        });
        assert_eq!(
            sub.try_next(),
            Some(DisplayEvent::HeadChanged {
                head: 0,
                width: 64,
                height: 32
            })
        );
        assert_eq!(
            sub.try_next(),
            Some(DisplayEvent::Damage {
                head: 0,
                rect: Rect::new(0, 0, 64, 2)
            })
        );
        assert_eq!(sub.try_next(), None);
        assert_eq!(display.head(0).unwrap().pixel(0, 1), 0x0003_0201);
    }

    #[test]
    fn draw_rects_reports_each_rectangle() {
        let display = Display::new();
        display.resize(0, 10, 10);
        let sub = display.subscribe();
        display.draw_rects(0, |s| {
            s.row_mut(9)[36..40].copy_from_slice(&[1, 1, 1, 0]);
            vec![
                Rect::new(0, 0, 2, 2),
                Rect::new(20, 20, 30, 30),
                Rect::new(8, 8, 12, 12),
            ]
        });
        let events: Vec<_> = std::iter::from_fn(|| sub.try_next()).collect();
        assert_eq!(
            events,
            vec![
                DisplayEvent::Damage {
                    head: 0,
                    rect: Rect::new(0, 0, 2, 2)
                },
                DisplayEvent::Damage {
                    head: 0,
                    rect: Rect::new(8, 8, 10, 10)
                },
            ]
        );
        assert_eq!(display.head(0).unwrap().pixel(9, 9), 0x0001_0101);
        display.draw_rects(1, |_| unreachable!("no such head"));
    }

    #[test]
    fn invalid_sizes_are_refused() {
        let display = Display::new();
        assert!(!display.resize(0, 0, 10));
        assert!(!display.resize(0, MAX_DIMENSION + 1, 10));
        assert!(display.head(0).is_none());
        display.draw(3, |_| unreachable!("no such head"));
    }

    #[test]
    fn slow_subscriber_gets_resync_not_unbounded_queue() {
        let display = Display::new();
        let sub = display.subscribe();
        display.resize(0, 100, 100);
        for i in 0..10 * SUBSCRIBER_QUEUE_LIMIT {
            let x = (i % 100) as i32;
            display.draw(0, |_| Some(Rect::new(x, 0, x + 1, 1)));
            display.update_cursor(|c| c.x = x);
        }
        assert_eq!(sub.try_next(), Some(DisplayEvent::Resync));
        assert_eq!(sub.try_next(), None);
    }

    #[test]
    fn damage_past_a_full_queue_grows_the_last_damage() {
        let display = Display::new();
        let sub = display.subscribe();
        display.resize(0, 100, 100);
        sub.try_next();
        for i in 0..10 * SUBSCRIBER_QUEUE_LIMIT {
            let (x, y) = ((i % 100) as i32, (i / 100 % 100) as i32);
            display.draw(0, |_| Some(Rect::new(x, y, x + 1, y + 1)));
        }
        let mut events = Vec::new();
        while let Some(event) = sub.try_next() {
            events.push(event);
        }
        assert_eq!(events.len(), SUBSCRIBER_QUEUE_LIMIT, "bounded, no resync");
        let mut covered = vec![false; 100 * 100];
        for event in &events {
            let DisplayEvent::Damage { head: 0, rect } = event else {
                panic!("unexpected {event:?}");
            };
            for y in rect.top..rect.bottom {
                for x in rect.left..rect.right {
                    covered[(y * 100 + x) as usize] = true;
                }
            }
        }
        for i in 0..10 * SUBSCRIBER_QUEUE_LIMIT {
            let (x, y) = (i % 100, i / 100 % 100);
            assert!(covered[y * 100 + x], "damage at {x},{y} lost");
        }
    }

    #[test]
    fn contained_damage_is_merged() {
        let display = Display::new();
        let sub = display.subscribe();
        display.resize(0, 100, 100);
        sub.try_next();
        display.draw(0, |_| Some(Rect::new(0, 0, 50, 50)));
        display.draw(0, |_| Some(Rect::new(10, 10, 20, 20)));
        assert!(matches!(sub.try_next(), Some(DisplayEvent::Damage { .. })));
        assert_eq!(sub.try_next(), None);
    }

    #[test]
    fn notified_subscriber_is_told_when_its_queue_stops_being_empty() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let display = Display::new();
        let told = Arc::new(AtomicUsize::new(0));
        let counter = told.clone();
        let sub = display.subscribe_notified(Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        display.resize(0, 100, 100);
        display.draw(0, |_| Some(Rect::new(0, 0, 1, 1)));
        assert_eq!(told.load(Ordering::Relaxed), 1, "once until drained");
        while sub.try_next().is_some() {}
        display.draw(0, |_| Some(Rect::new(5, 5, 6, 6)));
        assert_eq!(told.load(Ordering::Relaxed), 2, "again after draining");
        while sub.try_next().is_some() {}
        // An overflow is an event too (Resync), announced once.
        for i in 0..2 * SUBSCRIBER_QUEUE_LIMIT {
            let x = (i % 100) as i32;
            display.draw(0, |_| Some(Rect::new(x, 1, x + 1, 2)));
            display.update_cursor(|c| c.x = x);
        }
        assert_eq!(told.load(Ordering::Relaxed), 3);
        assert_eq!(sub.try_next(), Some(DisplayEvent::Resync));
    }

    #[test]
    fn dropped_subscribers_are_forgotten() {
        let display = Display::new();
        drop(display.subscribe());
        display.resize(0, 8, 8);
        assert!(lock(&display.subscribers).is_empty());
    }

    #[test]
    fn copy_rect_packs_rows() {
        let mut s = Surface::new(4, 3).unwrap();
        s.row_mut(2)[4..8].copy_from_slice(&[1, 2, 3, 9]);
        let copied = s.copy_rect(Rect::new(1, 1, 3, 3));
        assert_eq!(copied.len(), 2 * 2);
        assert_eq!(copied[2], 0x0003_0201);
    }
}
