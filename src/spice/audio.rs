//! Where the sound card's audio meets the playback and record channels
//! (docs/hda.md §6). The card's pump thread calls the [`AudioHub`] as an
//! [`AudioBackend`]; the event loop's channels take what it queued.
//!
//! Playback is cut into packets of 480 frames (10 ms at 48 kHz, what SPICE
//! clients expect), each stamped with the multimedia clock when the guest
//! played its last frame, so video streams and sound share one clock.
//! Everything is bounded and real time: when no client takes packets fast
//! enough the oldest go, and the card is never held up. Recorded audio
//! from the client waits in a ring of [`RECORD_RING`] bytes; the card gets
//! silence until [`RECORD_PREFILL`] has arrived, a cushion against network
//! jitter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use devices::audio::{AudioBackend, Direction, PcmFormat, Volume};
use devices::bus::lock as locked;
use mio::Waker;

use super::mm_clock::MmClock;

/// Frames per playback packet.
pub const PACKET_FRAMES: usize = 480;
/// Events queued for the playback channel at most (half a second of
/// packets); past that the oldest packet goes, and when only control
/// events are queued (a guest that starts, stops and changes volumes in a
/// loop) they are replaced by the state they add up to.
pub const MAX_PLAYBACK_EVENTS: usize = 50;
/// Events queued for the record channel at most (the same way).
pub const MAX_RECORD_EVENTS: usize = 16;
/// Bytes of recorded audio kept at most (about 340 ms at 48 kHz stereo).
pub const RECORD_RING: usize = 65536;
/// Bytes that must have arrived before recording reaches the guest
/// (80 ms at 48 kHz stereo, about what libspice waits for). Only at the
/// start: after the ring ran dry, what arrives goes on at once (waiting
/// again would turn every late packet into 80 ms more of silence).
pub const RECORD_PREFILL: usize = 15360;

/// What the playback channel sends, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaybackEvent {
    Start { format: PcmFormat, time: u32 },
    Data { time: u32, pcm: Vec<u8> },
    Stop,
    Volume(Volume),
}

/// What the record channel sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEvent {
    Start(PcmFormat),
    Stop,
    Volume(Volume),
}

/// Counters for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// The format while the guest plays (or records).
    pub format: Option<PcmFormat>,
    /// Bytes the guest played (or was given from clients).
    pub bytes: u64,
    /// Packets (or bytes, for recording) dropped because nobody took them.
    pub dropped: u64,
    /// Recording: bytes that arrived as Opus (before decoding).
    pub opus_bytes: u64,
}

#[derive(Default)]
struct PlaybackState {
    format: Option<PcmFormat>,
    volume: Option<Volume>,
    partial: Vec<u8>,
    events: VecDeque<PlaybackEvent>,
    stats: StreamStats,
}

#[derive(Default)]
struct RecordState {
    format: Option<PcmFormat>,
    volume: Option<Volume>,
    ring: VecDeque<u8>,
    primed: bool,
    events: VecDeque<RecordEvent>,
    stats: StreamStats,
}

impl PlaybackState {
    fn push(&mut self, event: PlaybackEvent, now: u32) {
        if let (PlaybackEvent::Volume(_), Some(PlaybackEvent::Volume(last))) =
            (&event, self.events.back_mut())
        {
            *last = match event {
                PlaybackEvent::Volume(v) => v,
                _ => *last,
            };
            return;
        }
        if self.events.len() >= MAX_PLAYBACK_EVENTS {
            let data = self
                .events
                .iter()
                .position(|e| matches!(e, PlaybackEvent::Data { .. }));
            if let Some(i) = data {
                self.events.remove(i);
                self.stats.dropped += 1;
            } else {
                self.events.clear();
                self.events.push_back(PlaybackEvent::Stop);
                if let Some(format) = self.format {
                    self.events
                        .push_back(PlaybackEvent::Start { format, time: now });
                }
                self.events.extend(self.volume.map(PlaybackEvent::Volume));
            }
        }
        self.events.push_back(event);
    }
}

impl RecordState {
    fn push(&mut self, event: RecordEvent) {
        if self.events.len() >= MAX_RECORD_EVENTS {
            self.events.clear();
            self.events.push_back(RecordEvent::Stop);
            self.events.extend(self.format.map(RecordEvent::Start));
            self.events.extend(self.volume.map(RecordEvent::Volume));
        }
        self.events.push_back(event);
    }
}

/// The meeting point; one per server.
#[derive(Default)]
pub struct AudioHub {
    playback: Mutex<PlaybackState>,
    record: Mutex<RecordState>,
    /// The event loop's waker and clock, once the server runs, and
    /// whether sound may go as Opus.
    server: OnceLock<(Arc<Waker>, MmClock, bool)>,
}

impl AudioHub {
    /// From now on, wake this loop and stamp packets with this clock;
    /// `opus`: sound may go as Opus (`playback-compression`).
    pub fn attach(&self, waker: Arc<Waker>, clock: MmClock, opus: bool) {
        let _ = self.server.set((waker, clock, opus));
    }

    /// Whether the channels may offer Opus.
    pub fn opus_allowed(&self) -> bool {
        self.server.get().is_some_and(|s| s.2)
    }

    fn now(&self) -> u32 {
        self.server
            .get()
            .map_or(0, |(_, clock, _)| clock.at(Instant::now()))
    }

    fn wake(&self) {
        if let Some((waker, _, _)) = self.server.get() {
            let _ = waker.wake();
        }
    }

    /// A playback channel opened: forget what was queued for an earlier
    /// one; the state to announce (format while playing, volume).
    pub fn open_playback(&self) -> (Option<(PcmFormat, u32)>, Option<Volume>) {
        let now = self.now();
        let mut p = locked(&self.playback);
        p.events.clear();
        (p.format.map(|f| (f, now)), p.volume)
    }

    /// Takes the events queued for the playback channel.
    pub fn take_playback(&self) -> VecDeque<PlaybackEvent> {
        std::mem::take(&mut locked(&self.playback).events)
    }

    pub fn playback_stats(&self) -> StreamStats {
        locked(&self.playback).stats
    }

    /// A record channel opened: the state to announce.
    pub fn open_record(&self) -> (Option<PcmFormat>, Option<Volume>) {
        let mut r = locked(&self.record);
        r.events.clear();
        (r.format, r.volume)
    }

    pub fn take_record(&self) -> VecDeque<RecordEvent> {
        std::mem::take(&mut locked(&self.record).events)
    }

    pub fn record_stats(&self) -> StreamStats {
        locked(&self.record).stats
    }

    /// The format the guest records in, while it does.
    pub fn record_format(&self) -> Option<PcmFormat> {
        locked(&self.record).format
    }

    /// Samples a client recorded for a stream of `format` (whole frames;
    /// the record channel checked them), decoded from `opus_bytes` of Opus
    /// if not 0; dropped unless the guest records in that format now. The
    /// oldest go when the ring is full.
    pub fn recorded(&self, format: PcmFormat, pcm: &[u8], opus_bytes: usize) {
        let mut r = locked(&self.record);
        if r.format != Some(format) {
            return;
        }
        r.stats.bytes += pcm.len() as u64;
        r.stats.opus_bytes += opus_bytes as u64;
        let pcm = &pcm[pcm.len().saturating_sub(RECORD_RING)..];
        let over = (r.ring.len() + pcm.len()).saturating_sub(RECORD_RING);
        if over > 0 {
            let frame = r.format.map_or(4, |f| f.frame_bytes());
            let over = over.next_multiple_of(frame).min(r.ring.len());
            r.ring.drain(..over);
            r.stats.dropped += over as u64;
        }
        r.ring.extend(pcm);
        if r.ring.len() >= RECORD_PREFILL {
            r.primed = true;
        }
    }
}

impl AudioBackend for AudioHub {
    fn started(&self, direction: Direction, format: PcmFormat) {
        let time = self.now();
        match direction {
            Direction::Output => {
                let mut p = locked(&self.playback);
                p.format = Some(format);
                p.partial.clear();
                p.stats.format = Some(format);
                p.push(PlaybackEvent::Start { format, time }, time);
            }
            Direction::Input => {
                let mut r = locked(&self.record);
                r.format = Some(format);
                r.ring.clear();
                r.primed = false;
                r.stats.format = Some(format);
                r.push(RecordEvent::Start(format));
            }
        }
        self.wake();
    }

    fn stopped(&self, direction: Direction) {
        match direction {
            Direction::Output => {
                let mut p = locked(&self.playback);
                p.format = None;
                p.stats.format = None;
                p.push(PlaybackEvent::Stop, self.now());
            }
            Direction::Input => {
                let mut r = locked(&self.record);
                r.format = None;
                r.stats.format = None;
                r.ring.clear();
                r.push(RecordEvent::Stop);
            }
        }
        self.wake();
    }

    fn output(&self, pcm: &[u8]) {
        let time = self.now();
        let mut p = locked(&self.playback);
        let Some(format) = p.format else {
            return;
        };
        p.stats.bytes += pcm.len() as u64;
        let packet = PACKET_FRAMES * format.frame_bytes();
        let mut rest = pcm;
        let mut sent = false;
        while !rest.is_empty() {
            let take = (packet - p.partial.len()).min(rest.len());
            p.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if p.partial.len() == packet {
                let pcm = std::mem::replace(&mut p.partial, Vec::with_capacity(packet));
                p.push(PlaybackEvent::Data { time, pcm }, time);
                sent = true;
            }
        }
        drop(p);
        if sent {
            self.wake();
        }
    }

    fn input(&self, buf: &mut [u8]) -> usize {
        let mut r = locked(&self.record);
        if !r.primed {
            return 0;
        }
        let n = buf.len().min(r.ring.len());
        for (b, s) in buf.iter_mut().zip(r.ring.drain(..n)) {
            *b = s;
        }
        n
    }

    fn volume(&self, direction: Direction, volume: Volume) {
        match direction {
            Direction::Output => {
                let mut p = locked(&self.playback);
                if p.volume != Some(volume) {
                    p.volume = Some(volume);
                    p.push(PlaybackEvent::Volume(volume), 0);
                }
            }
            Direction::Input => {
                let mut r = locked(&self.record);
                if r.volume != Some(volume) {
                    r.volume = Some(volume);
                    r.push(RecordEvent::Volume(volume));
                }
            }
        }
        self.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEREO_48K: PcmFormat = PcmFormat {
        rate: 48000,
        channels: 2,
    };

    #[test]
    fn playback_is_cut_into_10_ms_packets_and_bounded() {
        let hub = AudioHub::default();
        hub.output(&[1; 100]);
        assert!(hub.take_playback().is_empty(), "not playing: dropped");
        hub.started(Direction::Output, STEREO_48K);
        hub.output(&[1; 1000]);
        hub.output(&[2; 3000]);
        let events: Vec<_> = hub.take_playback().into_iter().collect();
        assert!(matches!(events[0], PlaybackEvent::Start { format, .. } if format == STEREO_48K));
        let PlaybackEvent::Data { pcm, .. } = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(pcm.len(), 1920);
        assert_eq!(&pcm[999..1001], &[1, 2]);
        assert_eq!(events.len(), 3, "4000 bytes: two packets and a partial");
        for _ in 0..300 {
            hub.output(&[0; 1920]);
        }
        hub.stopped(Direction::Output);
        let events = hub.take_playback();
        assert_eq!(events.len(), MAX_PLAYBACK_EVENTS);
        assert_eq!(events.back(), Some(&PlaybackEvent::Stop), "control kept");
        assert_eq!(
            hub.playback_stats().dropped,
            301 - MAX_PLAYBACK_EVENTS as u64
        );
    }

    #[test]
    fn a_guest_toggling_streams_and_volumes_queues_only_their_sum() {
        let hub = AudioHub::default();
        for i in 0..10_000u32 {
            let v = Volume {
                left: i as u16,
                right: 0,
                mute: false,
            };
            hub.started(Direction::Output, STEREO_48K);
            hub.volume(Direction::Output, v);
            hub.stopped(Direction::Output);
            hub.started(Direction::Input, STEREO_48K);
            hub.volume(Direction::Input, v);
            hub.stopped(Direction::Input);
        }
        hub.started(Direction::Output, STEREO_48K);
        let playback = hub.take_playback();
        assert!(playback.len() <= MAX_PLAYBACK_EVENTS);
        assert!(matches!(playback.back(), Some(PlaybackEvent::Start { .. })));
        let record = hub.take_record();
        assert!(record.len() <= MAX_RECORD_EVENTS);
        assert_eq!(record.back(), Some(&RecordEvent::Stop));
    }

    #[test]
    fn recording_waits_for_the_prefill_and_drops_the_oldest() {
        let hub = AudioHub::default();
        hub.recorded(STEREO_48K, &[9; 4000], 0);
        assert_eq!(hub.record_stats().bytes, 0, "not recording: ignored");
        hub.started(Direction::Input, STEREO_48K);
        let mut buf = [0u8; 1000];
        hub.recorded(STEREO_48K, &[1; 8000], 0);
        assert_eq!(hub.input(&mut buf), 0, "not primed");
        hub.recorded(STEREO_48K, &[2; 8000], 0);
        assert_eq!(hub.input(&mut buf), 1000);
        assert_eq!(buf[0], 1);
        hub.recorded(STEREO_48K, &[3; RECORD_RING], 0);
        assert_eq!(hub.input(&mut buf), 1000);
        assert_eq!(buf[0], 3, "the oldest went");
        assert_eq!(hub.record_stats().dropped, 15000);
    }
}
