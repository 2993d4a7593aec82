//! The multimedia clock shared by the main channel (its `multi_media_time`)
//! and video streams (frame times), so a client can keep them in step.

use std::time::Instant;

/// The multimedia clock: milliseconds since the server started, the time
/// base of the main channel's `multi_media_time` and of stream frames.
#[derive(Debug, Clone, Copy)]
pub struct MmClock {
    epoch: Instant,
}

impl MmClock {
    pub fn new(epoch: Instant) -> MmClock {
        MmClock { epoch }
    }

    pub fn at(&self, t: Instant) -> u32 {
        t.saturating_duration_since(self.epoch).as_millis() as u32
    }
}

impl Default for MmClock {
    fn default() -> Self {
        MmClock::new(Instant::now())
    }
}
