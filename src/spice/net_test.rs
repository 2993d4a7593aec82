//! The network test a session starts with, as libspice's: how fast and how
//! far away the client is, so that `jpeg-wan-compression=auto` and
//! `zlib-glz-wan-compression=auto` turn on for a slow link only.
//!
//! Right after `INIT` the main channel sends three `PING`s: two empty ones
//! (the smaller of their round trips is the latency) and one carrying
//! [`RATE_TEST_BYTES`] of zeros. Its round trip less the latency is the time
//! those bytes took; the bit rate follows. Below [`LOW_BANDWIDTH_BPS`] the
//! link is slow.
//!
//! Round trips are measured on our clock, from when we queued each ping to
//! when its `PONG` arrives (the server handles `PONG`s even while it holds
//! back a client's requests for unread replies, as it does while the large
//! ping goes out); the timestamp the client echoes must be the one we sent.
//! A client can still answer early or late: that only changes how its own
//! session is compressed. A client that stalls for a moment while the large
//! ping arrives would look like a slow link, so a slow result is measured
//! once more and the faster of the two counts. A result that makes no sense
//! (the large ping came back sooner than the latency) counts as a fast link,
//! as in libspice. A slow link is measured again every
//! [`SLOW_LINK_REMEASURE`], so that the session follows it when it gets
//! faster (libspice measures once).

use std::time::Duration;

/// Zero bytes carried by the rate test's ping (libspice's `NET_TEST_BYTES`).
pub const RATE_TEST_BYTES: u32 = 250 * 1024;
/// Links slower than this many bits per second are slow (libspice's
/// threshold).
pub const LOW_BANDWIDTH_BPS: u64 = 10 * 1024 * 1024;
/// How many times the rate is measured when it comes out slow.
pub const RATE_ATTEMPTS: u32 = 2;
/// A slow link is measured again this often: it may have become faster
/// (a laptop that left a poor hotspot), or a client that stalled twice may
/// have been taken for a slow one. That costs 250 KiB a minute, about 1.7%
/// of a 2 Mbit/s link. A fast link is not measured again.
pub const SLOW_LINK_REMEASURE: Duration = Duration::from_secs(60);

/// What the test found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEstimate {
    /// The smallest round trip of an empty ping.
    pub latency: Duration,
    /// Bits per second the rate test's bytes went at; `None` when the test
    /// gave no sensible figure (counted as fast).
    pub bits_per_second: Option<u64>,
}

impl LinkEstimate {
    /// Whether the link is slow enough for lossy and extra compression.
    pub fn low_bandwidth(&self) -> bool {
        self.bits_per_second
            .is_some_and(|bps| bps < LOW_BANDWIDTH_BPS)
    }
}

/// A ping to send: its id and how many zero bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestPing {
    pub id: u32,
    pub payload: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the first empty ping.
    Warmup,
    /// Waiting for the second empty ping.
    Latency,
    /// Waiting for the large ping.
    Rate,
    Done,
}

/// One session's test: which ping ids are ours, when each was queued.
#[derive(Debug)]
pub struct NetTest {
    stage: Stage,
    /// The awaited pings in the order they were sent (answers come in that
    /// order), with when each was queued (ns on the server's clock).
    sent_at: Vec<(u32, u64)>,
    latency_ns: u64,
    attempts: u32,
    best_bps: Option<u64>,
    result: Option<LinkEstimate>,
    /// When a slow link is to be measured again (ns on the server's clock).
    remeasure_at: Option<u64>,
}

impl NetTest {
    /// Starts the test: the pings to queue now, ids from `first_id` on,
    /// each stamped with `now_ns` (they are queued together).
    pub fn start(first_id: u32, now_ns: u64) -> (NetTest, Vec<TestPing>) {
        let pings = vec![
            TestPing {
                id: first_id,
                payload: 0,
            },
            TestPing {
                id: first_id.wrapping_add(1),
                payload: 0,
            },
            TestPing {
                id: first_id.wrapping_add(2),
                payload: RATE_TEST_BYTES,
            },
        ];
        let test = NetTest {
            stage: Stage::Warmup,
            sent_at: pings.iter().map(|p| (p.id, now_ns)).collect(),
            latency_ns: u64::MAX,
            attempts: 0,
            best_bps: None,
            result: None,
            remeasure_at: None,
        };
        (test, pings)
    }

    /// The result, once the test is over.
    pub fn result(&self) -> Option<LinkEstimate> {
        self.result
    }

    /// Pings to queue now, ids from `next_id` on, if a slow link is due to
    /// be measured again ([`SLOW_LINK_REMEASURE`]); the result stands
    /// until the new one is in.
    pub fn due(&mut self, now_ns: u64, next_id: u32) -> Vec<TestPing> {
        match self.remeasure_at {
            Some(at) if now_ns >= at => {
                self.remeasure_at = None;
                self.attempts = 0;
                self.best_bps = None;
                self.latency_ns = u64::MAX;
                self.measure_rate(next_id, now_ns)
            }
            _ => Vec::new(),
        }
    }

    /// An empty ping (for the latency) and the large one, ids from
    /// `next_id` on.
    fn measure_rate(&mut self, next_id: u32, now_ns: u64) -> Vec<TestPing> {
        let pings = vec![
            TestPing {
                id: next_id,
                payload: 0,
            },
            TestPing {
                id: next_id.wrapping_add(1),
                payload: RATE_TEST_BYTES,
            },
        ];
        self.sent_at = pings.iter().map(|p| (p.id, now_ns)).collect();
        self.stage = Stage::Latency;
        pings
    }

    /// Whether `id` is a ping of this test still awaited.
    pub fn awaits(&self, id: u32) -> bool {
        self.sent_at.iter().any(|(i, _)| *i == id)
    }

    /// A `PONG` for ping `id` with echoed `timestamp` arrived at `now_ns`.
    /// Returns pings to queue now (a second rate test, with ids from
    /// `next_id` on). Answers out of order, or with a timestamp we did not
    /// send, are ignored (logged); the test then waits on.
    pub fn pong(&mut self, id: u32, timestamp: u64, now_ns: u64, next_id: u32) -> Vec<TestPing> {
        // (None awaited once the test is over.)
        let Some(&(expected, sent)) = self.sent_at.first() else {
            return Vec::new();
        };
        if id != expected || timestamp != sent {
            tracing::debug!(
                "net test: ignoring pong {id} (expected {expected}, timestamp {timestamp}, sent {sent})"
            );
            return Vec::new();
        }
        let round_trip = now_ns.saturating_sub(sent);
        self.sent_at.remove(0);
        match self.stage {
            Stage::Warmup => {
                self.latency_ns = round_trip;
                self.stage = Stage::Latency;
            }
            Stage::Latency => {
                self.latency_ns = self.latency_ns.min(round_trip);
                self.stage = Stage::Rate;
            }
            Stage::Rate => {
                self.attempts += 1;
                let bps = (round_trip > self.latency_ns).then(|| {
                    u64::from(RATE_TEST_BYTES) * 8 * 1_000_000_000 / (round_trip - self.latency_ns)
                });
                tracing::debug!(
                    "net test: rate ping back after {} µs (latency {} µs): {bps:?} bit/s",
                    round_trip / 1000,
                    self.latency_ns / 1000
                );
                self.best_bps = match (self.best_bps, bps) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                let estimate = LinkEstimate {
                    latency: Duration::from_nanos(self.latency_ns),
                    // No sensible figure this time: fast, as libspice.
                    bits_per_second: bps.and(self.best_bps),
                };
                if estimate.low_bandwidth() && self.attempts < RATE_ATTEMPTS {
                    // Perhaps the client stalled: measure again.
                    return self.measure_rate(next_id, now_ns);
                }
                self.stage = Stage::Done;
                self.sent_at.clear();
                self.result = Some(estimate);
                self.remeasure_at = estimate
                    .low_bandwidth()
                    .then(|| now_ns.saturating_add(SLOW_LINK_REMEASURE.as_nanos() as u64));
            }
            Stage::Done => {}
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Answers the test's pings in order, each `round_trips[i]` ns after it
    /// was queued; returns the result and how many pings there were.
    fn run(round_trips: &[u64]) -> (Option<LinkEstimate>, usize) {
        let (mut test, mut pending) = NetTest::start(10, 0);
        let mut answered = 0;
        for trip in round_trips {
            let ping = pending.remove(0);
            let sent = test.sent_at.iter().find(|(i, _)| *i == ping.id).unwrap().1;
            answered += 1;
            pending.extend(test.pong(ping.id, sent, sent + trip, 100));
        }
        assert!(pending.is_empty(), "pings left unanswered");
        (test.result(), answered)
    }

    #[test]
    fn a_fast_link_is_measured_once() {
        // 2 ms latency, 250 KiB in 10 ms more: 204.8 Mbit/s.
        let (r, pings) = run(&[3 * MS, 2 * MS, 12 * MS]);
        let r = r.unwrap();
        assert_eq!(pings, 3);
        assert_eq!(r.latency, Duration::from_millis(2));
        assert_eq!(r.bits_per_second, Some(250 * 1024 * 8 * 100));
        assert!(!r.low_bandwidth());
    }

    #[test]
    fn a_slow_link_is_measured_twice_and_the_faster_result_counts() {
        // 1 s for 250 KiB (2 Mbit/s), then 0.5 s (4 Mbit/s): still slow.
        let (r, pings) = run(&[MS, MS, 1001 * MS, MS, 501 * MS]);
        let r = r.unwrap();
        assert_eq!(pings, 5);
        assert_eq!(r.bits_per_second, Some(250 * 1024 * 8 * 2));
        assert!(r.low_bandwidth());
    }

    #[test]
    fn a_stalled_client_is_not_taken_for_a_slow_link() {
        // The first large ping waited 300 ms on the client; the second
        // went in 1 ms.
        let (r, _) = run(&[MS, MS, 301 * MS, MS, 2 * MS]);
        assert!(!r.unwrap().low_bandwidth());
    }

    #[test]
    fn a_slow_link_is_measured_again_a_minute_later() {
        let (mut test, pings) = NetTest::start(1, 0);
        let ms = 1_000_000;
        test.pong(pings[0].id, 0, ms, 10);
        test.pong(pings[1].id, 0, ms, 10);
        // 250 KiB in a second, twice: 2 Mbit/s.
        let again = test.pong(pings[2].id, 0, 1001 * ms, 10);
        test.pong(again[0].id, 1001 * ms, 1002 * ms, 20);
        test.pong(again[1].id, 1001 * ms, 2002 * ms, 20);
        let slow = test.result().unwrap();
        assert!(slow.low_bandwidth());
        assert!(test.due(2002 * ms + 59_000 * ms, 30).is_empty());
        let later = 2002 * ms + SLOW_LINK_REMEASURE.as_nanos() as u64;
        let pings = test.due(later, 30);
        assert_eq!(pings.iter().map(|p| p.id).collect::<Vec<_>>(), [30, 31]);
        assert!(test.due(later, 40).is_empty(), "one measurement at a time");
        // The old result stands until the new one is in: now 100 Mbit/s.
        test.pong(30, later, later + ms, 40);
        assert_eq!(test.result(), Some(slow));
        assert!(test.pong(31, later, later + 21 * ms, 40).is_empty());
        let fast = test.result().unwrap();
        assert_eq!(fast.latency, Duration::from_millis(1));
        assert!(!fast.low_bandwidth(), "{fast:?}");
        // A fast link is not measured again.
        assert!(test.due(later + 3_600_000 * ms, 50).is_empty());
    }

    #[test]
    fn a_senseless_result_counts_as_fast() {
        let (r, pings) = run(&[5 * MS, 5 * MS, 4 * MS]);
        let r = r.unwrap();
        assert_eq!((pings, r.bits_per_second), (3, None));
        assert!(!r.low_bandwidth());
    }

    #[test]
    fn foreign_and_forged_pongs_are_ignored() {
        let (mut test, pings) = NetTest::start(1, 1000);
        // Not ours, ours out of order, ours with a forged timestamp.
        assert!(test.pong(99, 1000, 2000, 50).is_empty());
        assert!(test.pong(pings[2].id, 1000, 2000, 50).is_empty());
        assert!(test.pong(pings[0].id, 0, 2000, 50).is_empty());
        assert!(test.awaits(pings[0].id));
        // The test goes on with the real answers.
        test.pong(pings[0].id, 1000, 2000, 50);
        test.pong(pings[1].id, 1000, 2000, 50);
        // Answered twice: the second is ignored.
        test.pong(pings[1].id, 1000, 2000, 50);
        assert!(test.result().is_none());
        // 250 KiB in 1 ms: fast, so measured once.
        assert!(test.pong(pings[2].id, 1000, 1_002_000, 50).is_empty());
        let r = test.result().unwrap();
        assert_eq!(r.latency, Duration::from_nanos(1000));
        assert!(!r.low_bandwidth());
        assert!(!test.awaits(pings[2].id));
    }
}
