//! Who may try to link, and how often: after a wrong password a source is
//! barred for a delay that grows with each failure (its tickets are not
//! even checked meanwhile, so parallel connections guess no faster), and
//! connections still in the link stage have caps of their own, apart from
//! the linked ones, so that idle or guessing sockets cannot keep a real
//! client out.
//!
//! Sans-IO: the event loop reports failures and successes and asks which
//! pre-link connection to drop when a new one arrives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Where a connection comes from (`None`: the Unix socket).
pub type Source = Option<IpAddr>;

/// Connections in the link stage at most, over all sources …
pub const MAX_LINKING: usize = 32;
/// … and from one source; past either, the oldest one goes.
pub const MAX_LINKING_PER_SOURCE: usize = 8;
/// The first wrong password of a source is answered after this …
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// … each further one after twice the last, up to this (under the link
/// stage's 10 s limit).
const MAX_DELAY: Duration = Duration::from_secs(8);
/// A source without failures for this long starts again from zero.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Sources remembered at most (the stalest is forgotten first).
const MAX_SOURCES: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// No ticket from the source is checked before this.
    barred_until: Instant,
}

/// Failed attempts per source.
#[derive(Debug, Default)]
pub struct LinkGuard {
    failures: HashMap<Source, Failures>,
}

impl LinkGuard {
    /// Records a wrong password from `source`; how long to wait before
    /// answering it.
    pub fn failed(&mut self, source: Source, now: Instant) -> Duration {
        if self.failures.len() >= MAX_SOURCES && !self.failures.contains_key(&source) {
            self.forget_stalest();
        }
        let entry = self.failures.entry(source).or_insert(Failures {
            count: 0,
            last: now,
            barred_until: now,
        });
        if now.duration_since(entry.last) > FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let doublings = (entry.count - 1).min(16);
        let delay = FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
        entry.barred_until = now + delay;
        delay
    }

    /// Until when `source` is barred after its last wrong password (its
    /// tickets are refused unchecked until then), if it is.
    pub fn barred_until(&self, source: Source, now: Instant) -> Option<Instant> {
        let until = self.failures.get(&source)?.barred_until;
        (until > now).then_some(until)
    }

    /// A right password: the source starts again from zero.
    pub fn succeeded(&mut self, source: Source) {
        self.failures.remove(&source);
    }

    fn forget_stalest(&mut self) {
        if let Some(stalest) = self
            .failures
            .iter()
            .min_by_key(|(_, f)| f.last)
            .map(|(s, _)| *s)
        {
            self.failures.remove(&stalest);
        }
    }
}

/// A connection in the link stage, as [`to_evict`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Linking<T> {
    pub id: T,
    pub source: Source,
    pub opened: Instant,
}

/// The pre-link connection to drop so that one more from `source` fits
/// the caps, if any: the oldest of that source when it is at its cap,
/// else the oldest of all when all are.
pub fn to_evict<T: Copy>(source: Source, linking: &[Linking<T>]) -> Option<T> {
    let oldest = |pick: &dyn Fn(&Linking<T>) -> bool| {
        let picked = linking.iter().filter(|l| pick(l));
        picked.min_by_key(|l| l.opened).map(|l| l.id)
    };
    if linking.iter().filter(|l| l.source == source).count() >= MAX_LINKING_PER_SOURCE {
        oldest(&|l| l.source == source)
    } else if linking.len() >= MAX_LINKING {
        oldest(&|_| true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_source_and_reset() {
        let mut g = LinkGuard::default();
        let t = Instant::now();
        let a: Source = Some("10.0.0.1".parse().unwrap());
        let b: Source = Some("10.0.0.2".parse().unwrap());
        let delays: Vec<u64> = (0..8).map(|_| g.failed(a, t).as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(g.failed(b, t), FIRST_DELAY, "another source is not slowed");
        assert_eq!(g.barred_until(a, t), Some(t + MAX_DELAY));
        assert_eq!(g.barred_until(a, t + MAX_DELAY), None);
        g.succeeded(a);
        assert_eq!(g.barred_until(a, t), None);
        assert_eq!(g.failed(a, t), FIRST_DELAY);
        let later = t + FORGET_AFTER + Duration::from_secs(1);
        g.failed(b, t);
        assert_eq!(
            g.failed(b, later),
            FIRST_DELAY,
            "old failures are forgotten"
        );
    }

    #[test]
    fn sources_remembered_are_bounded() {
        let mut g = LinkGuard::default();
        let t = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            g.failed(
                Some(IpAddr::from(i.to_be_bytes())),
                t + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(g.failures.len(), MAX_SOURCES);
    }

    #[test]
    fn the_oldest_prelink_connection_makes_room() {
        let t = Instant::now();
        let a: Source = Some("10.0.0.1".parse().unwrap());
        let at = |i: u64| t + Duration::from_millis(i);
        let mut linking: Vec<Linking<usize>> = (0..MAX_LINKING_PER_SOURCE)
            .map(|i| Linking {
                id: i,
                source: a,
                opened: at(10 + i as u64),
            })
            .collect();
        assert_eq!(to_evict(None, &linking), None);
        assert_eq!(to_evict(a, &linking), Some(0));
        linking.extend(
            (100..100 + MAX_LINKING - MAX_LINKING_PER_SOURCE).map(|i| Linking {
                id: i,
                source: Some(IpAddr::from((i as u32).to_be_bytes())),
                opened: at(i as u64 - 100),
            }),
        );
        assert_eq!(to_evict(None, &linking), Some(100), "the oldest of all");
    }
}
