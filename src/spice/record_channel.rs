//! The record channel (type 6): the client's microphone to the guest
//! (docs/hda.md §6).
//!
//! While the guest records, the client gets `START` with the guest's
//! format and answers with `MODE`, `START_MARK` and `DATA` packets of raw
//! PCM or Opus (the client picks with `MODE`), which go to the
//! [`AudioHub`]'s bounded ring. A client that picks another mode, sends
//! more than [`MAX_PACKET`] bytes at once, raw data that is not whole
//! frames or Opus that does not decode, is cut off.

use std::sync::Arc;

use super::audio::{AudioHub, RecordEvent};
use super::channel::{BaseMessage, ChannelError, Outbox};
use super::opus::Decoder;
use super::playback_channel::MAX_BACKLOG;
use super::playback_channel::{send_volume, Empty, Start};
use super::protocol::{audio, audio_cap, channel, record_msg};
use super::session::{ChannelKind, Context, SpiceChannel};
use super::wire::{Caps, Reader};
use devices::audio::PcmFormat;

/// The largest `DATA` payload taken: 100 ms of 48 kHz stereo (clients
/// send 10 ms).
pub const MAX_PACKET: usize = 19200;

pub struct RecordChannel {
    hub: Arc<AudioHub>,
    client_has_volume: bool,
    /// The client's data is Opus (its `MODE`), and the decoder with the
    /// format it decodes.
    opus: bool,
    decoder: Option<(PcmFormat, Decoder)>,
}

pub const KIND: ChannelKind = ChannelKind {
    channel_type: channel::RECORD,
    name: "record",
    count: |s| usize::from(s.audio.is_some()),
    caps: || Caps::from_bits(&[audio_cap::VOLUME, audio_cap::RECORD_OPUS]),
    open: |o, out| {
        let hub = o.server.audio.clone().unwrap_or_default();
        Box::new(RecordChannel::start(
            hub,
            o.client_caps.has(audio_cap::VOLUME),
            out,
        ))
    },
};

impl RecordChannel {
    pub fn start(hub: Arc<AudioHub>, client_has_volume: bool, out: &mut Outbox) -> Self {
        let (recording, volume) = hub.open_record();
        let ch = RecordChannel {
            hub,
            client_has_volume,
            opus: false,
            decoder: None,
        };
        if let Some(v) = volume {
            ch.send(RecordEvent::Volume(v), out);
        }
        if let Some(format) = recording {
            ch.send(RecordEvent::Start(format), out);
        }
        ch
    }

    fn send(&self, event: RecordEvent, out: &mut Outbox) {
        match event {
            RecordEvent::Start(format) => {
                out.push(&Start::<{ record_msg::START }> { format, time: None })
            }
            RecordEvent::Stop => out.push(&Empty::<{ record_msg::STOP }>),
            RecordEvent::Volume(v) => send_volume::<{ record_msg::VOLUME }, { record_msg::MUTE }>(
                v,
                self.client_has_volume,
                out,
            ),
        }
    }

    fn data(&mut self, body: &[u8]) -> Result<(), ChannelError> {
        let mut r = Reader::new(body);
        r.u32("time")
            .map_err(ChannelError::malformed(record_msg::DATA))?;
        let payload = r.rest();
        if payload.len() > MAX_PACKET {
            return Err(ChannelError::Protocol("record data larger than 100 ms"));
        }
        // Data for a stream the guest already stopped is dropped.
        let Some(format) = self.hub.record_format() else {
            return Ok(());
        };
        if !self.opus {
            if !payload.len().is_multiple_of(format.frame_bytes()) {
                return Err(ChannelError::Protocol("record data is not whole frames"));
            }
            self.hub.recorded(format, payload, 0);
            return Ok(());
        }
        if self.decoder.as_ref().is_none_or(|(f, _)| *f != format) {
            self.decoder = Decoder::new(format).map(|d| (format, d));
        }
        let (_, decoder) = self.decoder.as_mut().ok_or(ChannelError::Protocol(
            "Opus record data for a format Opus cannot carry",
        ))?;
        let pcm = decoder
            .decode(payload)
            .ok_or(ChannelError::Protocol("record data is not Opus"))?;
        self.hub.recorded(format, &pcm, payload.len());
        Ok(())
    }
}

impl SpiceChannel for RecordChannel {
    fn receive(
        &mut self,
        msg_type: u16,
        body: &[u8],
        _cx: &mut Context,
    ) -> Result<(), ChannelError> {
        if BaseMessage::decode(msg_type, body)?.is_some() {
            return Ok(());
        }
        let bad = ChannelError::malformed(msg_type);
        let mut r = Reader::new(body);
        match msg_type {
            record_msg::DATA => self.data(body)?,
            record_msg::MODE => {
                r.u32("time").map_err(&bad)?;
                self.opus = match r.u16("mode").map_err(&bad)? {
                    audio::MODE_RAW => false,
                    audio::MODE_OPUS => true,
                    _ => return Err(ChannelError::Protocol("record mode not raw PCM or Opus")),
                };
                // A new stream: a decoder for its format, when data comes.
                self.decoder = None;
            }
            record_msg::START_MARK => {
                r.u32("time").map_err(&bad)?;
            }
            other => return Err(ChannelError::UnknownType(other)),
        }
        Ok(())
    }

    fn pump(&mut self, cx: &mut Context) {
        // A client that does not read gets nothing more queued; the hub
        // keeps the state its events add up to.
        if cx.out.queued_bytes() > MAX_BACKLOG {
            return;
        }
        for event in self.hub.take_record() {
            self.send(event, cx.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::wire::HeaderMode;
    use devices::audio::{AudioBackend, Direction, PcmFormat};
    use std::time::Instant;

    fn channel() -> (Arc<AudioHub>, RecordChannel, Outbox) {
        let hub = Arc::new(AudioHub::default());
        hub.started(
            Direction::Input,
            PcmFormat {
                rate: 48000,
                channels: 2,
            },
        );
        let mut out = Outbox::new(HeaderMode::Mini);
        let ch = RecordChannel::start(hub.clone(), true, &mut out);
        (hub, ch, out)
    }

    fn receive(ch: &mut RecordChannel, t: u16, body: &[u8]) -> Result<(), ChannelError> {
        let mut out = Outbox::new(HeaderMode::Mini);
        let mut cx = Context {
            out: &mut out,
            now: Instant::now(),
            now_ns: 0,
        };
        ch.receive(t, body, &mut cx)
    }

    #[test]
    fn start_then_client_data_reaches_the_guest() {
        let (hub, mut ch, mut out) = channel();
        let bytes = out.take_bytes();
        assert_eq!(&bytes[..6], &[101, 0, 10, 0, 0, 0], "START, 10 bytes");
        receive(&mut ch, 102, &[0, 0, 0, 0, 1, 0]).unwrap();
        receive(&mut ch, 103, &[0, 0, 0, 0]).unwrap();
        let mut data = vec![0, 0, 0, 0];
        data.extend_from_slice(&[3; 16000]);
        receive(&mut ch, 101, &data).unwrap();
        let mut buf = [0; 16];
        assert_eq!(hub.input(&mut buf), 16);
        assert_eq!(buf, [3; 16]);
    }

    #[test]
    fn bad_client_messages_close_the_channel() {
        let (_hub, mut ch, _out) = channel();
        assert!(receive(&mut ch, 102, &[0, 0, 0, 0, 2, 0]).is_err(), "celt");
        assert!(
            receive(&mut ch, 101, &[0, 0, 0, 0, 1, 2, 3]).is_err(),
            "partial frame"
        );
        let mut huge = vec![0; 4];
        huge.resize(4 + MAX_PACKET + 4, 0);
        assert!(receive(&mut ch, 101, &huge).is_err(), "too large");
        assert!(receive(&mut ch, 101, &[0, 0]).is_err(), "short");
        assert!(receive(&mut ch, 150, &[]).is_err(), "unknown");
        receive(&mut ch, 102, &[0, 0, 0, 0, 3, 0]).unwrap();
        assert!(
            receive(&mut ch, 101, &[0, 0, 0, 0, 0xff, 0xff, 0xff]).is_err(),
            "not Opus"
        );
    }
}
