//! A [`Display`]'s events as the event loop sees them: the loop
//! subscribes to each Display ([`DisplayFeed::new`]); the Display wakes the
//! loop when the subscription's queue stops being empty, and the loop
//! folds everything queued into a small [`FeedState`] (damage as a bounded
//! [`Region`], plus "head changed" and "cursor changed" flags) for its
//! channels.
//!
//! Nothing here waits on a client: the subscription is bounded by the
//! Display (it turns into `Resync` when it overflows), and the state is
//! bounded by the region's rectangle limit.

use std::sync::Arc;

use devices::display::{Display, DisplayEvent, EventFilter, Notify, Subscription};

use super::region::Region;

/// The head of each Display that its display channel shows.
pub const SHOWN_HEAD: u32 = 0;

/// Events of one Display not yet handed to its channels.
#[derive(Debug, Default, Clone)]
pub struct FeedState {
    pub damage: Region,
    pub head_changed: bool,
    pub monitors_changed: bool,
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
            DisplayEvent::MonitorsChanged => self.monitors_changed = true,
            DisplayEvent::Resync => {
                self.head_changed = true;
                self.monitors_changed = true;
                self.cursor_changed = true;
                self.damage.clear();
            }
            _ => {}
        }
    }
}

/// The event loop's subscription to one Display.
pub struct DisplayFeed {
    subscription: Subscription,
}

impl DisplayFeed {
    /// Subscribes to `display`'s events that `wants` takes; `notify` is
    /// called whenever some arrive.
    pub fn new(display: &Arc<Display>, notify: Notify, wants: EventFilter) -> DisplayFeed {
        DisplayFeed {
            subscription: display.subscribe_to(notify, wants),
        }
    }

    /// The event loop's feed: cursor changes only (display channels have
    /// feeds of their own, [`Self::shown_head`]); `waker` wakes the loop.
    pub fn cursor(display: &Arc<Display>, waker: Arc<mio::Waker>) -> DisplayFeed {
        let notify = Box::new(move || {
            if let Err(e) = waker.wake() {
                tracing::warn!("spice: cannot wake the event loop: {e}");
            }
        });
        DisplayFeed::new(display, notify, |e| {
            matches!(e, DisplayEvent::Cursor | DisplayEvent::Resync)
        })
    }

    /// A display channel's feed: the shown head's pictures.
    pub fn shown_head(display: &Arc<Display>, notify: Notify) -> DisplayFeed {
        DisplayFeed::new(display, notify, |e| match e {
            DisplayEvent::Damage { head, .. }
            | DisplayEvent::HeadChanged { head, .. }
            | DisplayEvent::HeadRemoved { head } => *head == SHOWN_HEAD,
            DisplayEvent::Cursor => false,
            DisplayEvent::MonitorsChanged | DisplayEvent::Resync => true,
        })
    }

    pub fn display(&self) -> &Arc<Display> {
        self.subscription.display()
    }

    /// Everything that happened since the last call.
    pub fn take(&self) -> FeedState {
        let mut state = FeedState::default();
        while let Some(event) = self.subscription.try_next() {
            state.apply(&event);
        }
        state
    }
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
