//! The playback channel (type 5): the guest's sound to the client
//! (docs/hda.md §6).
//!
//! On open the client gets `MODE`, then `START` if the guest is playing,
//! then the volume; after that `START`, `DATA`, `STOP` and volume changes
//! as the [`AudioHub`] queued them. `DATA` is Opus when the client takes it,
//! `playback-compression` allows it and Opus can carry the guest's format
//! (48 kHz, not 44.1), else raw PCM; a `MODE` precedes a `START` whose
//! stream goes the other way than the last. Sound is real time: when the
//! client's socket has more than [`MAX_BACKLOG`] unsent, packets are
//! dropped rather than queued. The client sends nothing but base messages.

use std::collections::VecDeque;
use std::sync::Arc;

use devices::audio::{PcmFormat, Volume};

use super::audio::{AudioHub, PlaybackEvent};
use super::channel::{BaseMessage, ChannelError, Encode, Outbox};
use super::opus::Encoder;
use super::protocol::{audio, audio_cap, channel, playback_msg};
use super::session::{ChannelKind, Context, SentTotals, SpiceChannel};
use super::wire::{Caps, Writer};

/// Unsent bytes past which packets are dropped (about 300 ms of raw
/// 48 kHz stereo).
pub const MAX_BACKLOG: usize = 64 * 1024;

/// `MODE`: how `DATA` is coded.
struct Mode {
    time: u32,
    mode: u16,
}

impl Encode for Mode {
    const TYPE: u16 = playback_msg::MODE;
    fn encode(&self, w: &mut Writer) {
        w.u32(self.time).u16(self.mode);
    }
}

/// `START` (playback) carries a time; the record channel's does not.
pub struct Start<const TYPE: u16> {
    pub format: PcmFormat,
    pub time: Option<u32>,
}

impl<const TYPE: u16> Encode for Start<TYPE> {
    const TYPE: u16 = TYPE;
    fn encode(&self, w: &mut Writer) {
        w.u32(u32::from(self.format.channels))
            .u16(audio::FORMAT_S16)
            .u32(self.format.rate);
        if let Some(time) = self.time {
            w.u32(time);
        }
    }
}

/// An empty message (`STOP`).
pub struct Empty<const TYPE: u16>;

impl<const TYPE: u16> Encode for Empty<TYPE> {
    const TYPE: u16 = TYPE;
    fn encode(&self, _: &mut Writer) {}
}

/// `VOLUME`: two channels, linear, 65535 is full.
pub struct VolumeMsg<const TYPE: u16>(pub Volume);

impl<const TYPE: u16> Encode for VolumeMsg<TYPE> {
    const TYPE: u16 = TYPE;
    fn encode(&self, w: &mut Writer) {
        w.u8(2).u16(self.0.left).u16(self.0.right);
    }
}

/// `MUTE`.
pub struct Mute<const TYPE: u16>(pub bool);

impl<const TYPE: u16> Encode for Mute<TYPE> {
    const TYPE: u16 = TYPE;
    fn encode(&self, w: &mut Writer) {
        w.u8(u8::from(self.0));
    }
}

/// Sends a volume and its mute flag, when the client takes them.
pub fn send_volume<const VOLUME: u16, const MUTE: u16>(
    volume: Volume,
    client_has_volume: bool,
    out: &mut Outbox,
) {
    if client_has_volume {
        out.push(&VolumeMsg::<VOLUME>(volume));
        out.push(&Mute::<MUTE>(volume.mute));
    }
}

pub struct PlaybackChannel {
    hub: Arc<AudioHub>,
    client_has_volume: bool,
    /// The client takes Opus and we may send it.
    opus: bool,
    /// The mode last sent, and the encoder of the stream if it is Opus.
    mode: u16,
    encoder: Option<Encoder>,
    /// Packets dropped because the client fell behind (or the encoder
    /// failed).
    dropped: u64,
    /// Packets sent and their payload bytes.
    sent: (u64, u64),
}

/// What the client asked for and may get.
#[derive(Debug, Clone, Copy)]
pub struct ClientAudio {
    pub volume: bool,
    pub opus: bool,
}

pub const KIND: ChannelKind = ChannelKind {
    channel_type: channel::PLAYBACK,
    name: "playback",
    count: |s| usize::from(s.audio.is_some()),
    caps: || Caps::from_bits(&[audio_cap::VOLUME, audio_cap::PLAYBACK_OPUS]),
    open: |o, out| {
        let hub = o.server.audio.clone().unwrap_or_default();
        let client = ClientAudio {
            volume: o.client_caps.has(audio_cap::VOLUME),
            opus: o.client_caps.has(audio_cap::PLAYBACK_OPUS) && hub.opus_allowed(),
        };
        Box::new(PlaybackChannel::start(
            hub,
            client,
            o.server.clock().at(o.now),
            out,
        ))
    },
};

impl PlaybackChannel {
    pub fn start(hub: Arc<AudioHub>, client: ClientAudio, now: u32, out: &mut Outbox) -> Self {
        let (playing, volume) = hub.open_playback();
        let mode = if client.opus {
            audio::MODE_OPUS
        } else {
            audio::MODE_RAW
        };
        out.push(&Mode { time: now, mode });
        let mut ch = PlaybackChannel {
            hub,
            client_has_volume: client.volume,
            opus: client.opus,
            mode,
            encoder: None,
            dropped: 0,
            sent: (0, 0),
        };
        if let Some((format, time)) = playing {
            ch.start_stream(format, time, out);
        }
        if let Some(v) = volume {
            send_volume::<{ playback_msg::VOLUME }, { playback_msg::MUTE }>(v, client.volume, out);
        }
        ch
    }

    /// `START` of a stream, after a `MODE` if it goes the other way than
    /// the last.
    fn start_stream(&mut self, format: PcmFormat, time: u32, out: &mut Outbox) {
        self.encoder = if self.opus {
            Encoder::new(format)
        } else {
            None
        };
        let mode = if self.encoder.is_some() {
            audio::MODE_OPUS
        } else {
            audio::MODE_RAW
        };
        if mode != self.mode {
            out.push(&Mode { time, mode });
            self.mode = mode;
        }
        out.push(&Start::<{ playback_msg::START }> {
            format,
            time: Some(time),
        });
    }

    fn send_data(&mut self, time: u32, pcm: Vec<u8>, out: &mut Outbox) {
        let payload = match &mut self.encoder {
            Some(encoder) => match encoder.encode(&pcm) {
                Some(coded) => coded,
                None => {
                    self.dropped += 1;
                    return;
                }
            },
            None => pcm,
        };
        self.sent.0 += 1;
        self.sent.1 += payload.len() as u64;
        let mut body = Vec::with_capacity(4 + payload.len());
        body.extend_from_slice(&time.to_le_bytes());
        body.extend_from_slice(&payload);
        out.push_raw(playback_msg::DATA, body);
    }

    fn send(&mut self, events: VecDeque<PlaybackEvent>, out: &mut Outbox) {
        for event in events {
            match event {
                PlaybackEvent::Start { format, time } => self.start_stream(format, time, out),
                PlaybackEvent::Stop => out.push(&Empty::<{ playback_msg::STOP }>),
                PlaybackEvent::Volume(v) => send_volume::<
                    { playback_msg::VOLUME },
                    { playback_msg::MUTE },
                >(v, self.client_has_volume, out),
                PlaybackEvent::Data { .. } if out.queued_bytes() > MAX_BACKLOG => {
                    self.dropped += 1;
                }
                PlaybackEvent::Data { time, pcm } => self.send_data(time, pcm, out),
            }
        }
    }
}

impl SpiceChannel for PlaybackChannel {
    fn receive(
        &mut self,
        msg_type: u16,
        body: &[u8],
        _cx: &mut Context,
    ) -> Result<(), ChannelError> {
        match BaseMessage::decode(msg_type, body)? {
            Some(_) => Ok(()),
            None => Err(ChannelError::UnknownType(msg_type)),
        }
    }

    fn pump(&mut self, cx: &mut Context) {
        // A client that does not read gets nothing more queued: the hub
        // drops its oldest packets and sums up the rest.
        if cx.out.queued_bytes() > MAX_BACKLOG {
            return;
        }
        let events = self.hub.take_playback();
        if !events.is_empty() {
            self.send(events, cx.out);
        }
    }

    fn add_sent(&self, sent: &mut SentTotals) {
        sent.audio_packets += self.sent.0;
        sent.audio_bytes += self.sent.1;
    }

    fn closed(&mut self) {
        if self.dropped > 0 {
            tracing::info!(
                "SPICE playback: {} packets dropped, the client fell behind",
                self.dropped
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::wire::{DataHeader, HeaderMode};
    use devices::audio::{AudioBackend, Direction};

    fn messages(out: &mut Outbox) -> Vec<(u16, Vec<u8>)> {
        let bytes = out.take_bytes();
        let mut rest = &bytes[..];
        let mut v = Vec::new();
        while !rest.is_empty() {
            let h = DataHeader::decode(HeaderMode::Mini, rest).unwrap();
            let len = HeaderMode::Mini.header_len();
            v.push((h.msg_type, rest[len..len + h.size as usize].to_vec()));
            rest = &rest[len + h.size as usize..];
        }
        v
    }

    const FORMAT: PcmFormat = PcmFormat {
        rate: 44100,
        channels: 2,
    };

    #[test]
    fn open_announces_mode_start_and_volume_then_streams() {
        let hub = Arc::new(AudioHub::default());
        hub.started(Direction::Output, FORMAT);
        hub.volume(
            Direction::Output,
            Volume {
                left: 100,
                right: 200,
                mute: true,
            },
        );
        let mut out = Outbox::new(HeaderMode::Mini);
        let client = ClientAudio {
            volume: true,
            opus: false,
        };
        let mut ch = PlaybackChannel::start(hub.clone(), client, 77, &mut out);
        let m = messages(&mut out);
        let types: Vec<u16> = m.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [102, 103, 105, 106]);
        assert_eq!(m[0].1, [77, 0, 0, 0, 1, 0]);
        assert_eq!(&m[1].1[..10], &[2, 0, 0, 0, 1, 0, 0x44, 0xac, 0, 0]);
        assert_eq!(m[2].1, [2, 100, 0, 200, 0]);
        assert_eq!(m[3].1, [1]);
        hub.output(&[7; 1920]);
        hub.stopped(Direction::Output);
        ch.send(hub.take_playback(), &mut out);
        let m = messages(&mut out);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].0, m[0].1.len()), (101, 4 + 1920));
        assert_eq!(m[1], (104, vec![]));
    }

    #[test]
    fn a_client_that_does_not_read_loses_packets_not_memory() {
        let hub = Arc::new(AudioHub::default());
        let mut out = Outbox::new(HeaderMode::Mini);
        let client = ClientAudio {
            volume: false,
            opus: false,
        };
        let mut ch = PlaybackChannel::start(hub.clone(), client, 0, &mut out);
        hub.started(Direction::Output, FORMAT);
        for _ in 0..10 {
            for _ in 0..20 {
                hub.output(&[0; 1920]);
            }
            ch.send(hub.take_playback(), &mut out);
        }
        assert!(
            out.queued_bytes() <= MAX_BACKLOG + 1930,
            "{}",
            out.queued_bytes()
        );
        assert!(ch.dropped > 150, "{}", ch.dropped);
    }

    #[test]
    fn opus_for_48_khz_raw_for_44_1() {
        let hub = Arc::new(AudioHub::default());
        let mut out = Outbox::new(HeaderMode::Mini);
        let client = ClientAudio {
            volume: false,
            opus: true,
        };
        let mut ch = PlaybackChannel::start(hub.clone(), client, 5, &mut out);
        assert_eq!(messages(&mut out), [(102, vec![5, 0, 0, 0, 3, 0])]);
        let dvd = PcmFormat {
            rate: 48000,
            channels: 2,
        };
        hub.started(Direction::Output, dvd);
        hub.output(&[0; 1920]);
        hub.stopped(Direction::Output);
        hub.started(Direction::Output, FORMAT);
        ch.send(hub.take_playback(), &mut out);
        let m = messages(&mut out);
        let types: Vec<u16> = m.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            types,
            [103, 101, 104, 102, 103],
            "START, DATA, STOP, MODE raw, START"
        );
        assert!(
            m[1].1.len() < 4 + 200,
            "silence codes small: {}",
            m[1].1.len()
        );
        assert_eq!(&m[3].1[4..], &[1, 0]);
    }
}
