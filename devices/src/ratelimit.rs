//! Rate-limited logging of guest misbehaviour: a hostile guest must not be
//! able to flood the host's log.

use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(10);
const PER_WINDOW: u32 = 20;

/// Allows a burst of messages per window and counts the rest.
#[derive(Debug)]
pub struct RateLimit {
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            window_start: Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }
}

impl RateLimit {
    /// Whether to log now; when a new window starts after suppressing,
    /// returns how many messages were dropped too.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.in_window = 0;
        }
        if self.in_window < PER_WINDOW {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_cut() {
        let mut r = RateLimit::default();
        let allowed = (0..100).filter(|_| r.allow().is_some()).count();
        assert_eq!(allowed, PER_WINDOW as usize);
        assert_eq!(r.suppressed, 80);
    }
}
