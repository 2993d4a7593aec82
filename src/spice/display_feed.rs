//! The display worker: one thread per [`Display`] that consumes its
//! [`Subscription`] and folds the events into a small [`Feed`] the event
//! loop picks up (damage as a bounded [`Region`], plus "head changed" and
//! "cursor changed" flags), then wakes the loop.
//!
//! Nothing here waits on a client: the subscription is bounded by the
//! Display (it turns into `Resync` when it overflows), and the feed is
//! bounded by the region's rectangle limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use devices::display::{DisplayEvent, Subscription};

use super::region::Region;

/// The head of each Display that its display channel shows.
pub const SHOWN_HEAD: u32 = 0;

/// Events of one Display not yet handed to its channels.
#[derive(Debug, Default)]
pub struct FeedState {
    pub damage: Region,
    pub head_changed: bool,
    pub cursor_changed: bool,
}

impl FeedState {
    pub fn apply(&mut self, event: &DisplayEvent) {
        match event {
            DisplayEvent::Damage { head, rect } if *head == SHOWN_HEAD => self.damage.add(*rect),
            DisplayEvent::HeadChanged { head, .. } | DisplayEvent::HeadRemoved { head }
                if *head == SHOWN_HEAD =>
            {
                self.head_changed = true;
                self.damage.clear();
            }
            DisplayEvent::Cursor => self.cursor_changed = true,
            DisplayEvent::Resync => {
                self.head_changed = true;
                self.cursor_changed = true;
                self.damage.clear();
            }
            _ => {}
        }
    }
}

/// Shared between a worker and the event loop.
#[derive(Debug, Default)]
pub struct Feed {
    state: Mutex<FeedState>,
}

impl Feed {
    /// Takes everything collected so far.
    pub fn take(&self) -> FeedState {
        std::mem::take(&mut *self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Starts the worker for one Display; it ends when `stop` is set.
pub fn spawn(
    index: usize,
    subscription: Subscription,
    feed: Arc<Feed>,
    waker: Arc<mio::Waker>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("spice-display{index}"))
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(first) = subscription.next(Duration::from_millis(100)) else {
                    continue;
                };
                {
                    let mut state = feed.state.lock().unwrap_or_else(|p| p.into_inner());
                    state.apply(&first);
                    while let Some(event) = subscription.try_next() {
                        state.apply(&event);
                    }
                }
                if let Err(e) = waker.wake() {
                    tracing::warn!("spice: cannot wake the event loop: {e}");
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::display::Rect;

    #[test]
    fn events_fold_into_state() {
        let mut s = FeedState::default();
        s.apply(&DisplayEvent::Damage {
            head: 0,
            rect: Rect::new(0, 0, 4, 4),
        });
        s.apply(&DisplayEvent::Damage {
            head: 1,
            rect: Rect::new(0, 0, 8, 8),
        });
        assert_eq!(s.damage.rects(), &[Rect::new(0, 0, 4, 4)]);
        assert!(!s.head_changed && !s.cursor_changed);
        s.apply(&DisplayEvent::HeadChanged {
            head: 0,
            width: 1,
            height: 1,
        });
        assert!(s.head_changed && s.damage.is_empty());
        s.apply(&DisplayEvent::Cursor);
        assert!(s.cursor_changed);
        let mut s = FeedState::default();
        s.apply(&DisplayEvent::Resync);
        assert!(s.head_changed && s.cursor_changed);
    }
}
