//! Opus for the playback and record channels (libopus through the `opus`
//! crate): one 480-frame packet in, one Opus packet out, as SPICE clients
//! expect (docs/hda.md §6.5). Opus takes 48, 24, 16, 12 and 8 kHz, mono or
//! stereo; other streams go raw.

use devices::audio::PcmFormat;

/// The rates Opus codes in SPICE's 480-frame packets (at 16 kHz they
/// would last 30 ms, which is not an Opus frame length).
const RATES: [u32; 4] = [48000, 24000, 12000, 8000];
/// The largest Opus packet we send (as spice-common's encoder buffer).
const MAX_PACKET: usize = 480;
/// The most frames one client packet may decode to (120 ms at 48 kHz,
/// Opus's longest packet).
const MAX_DECODED_FRAMES: usize = 5760;

/// Whether Opus can carry a stream of this format.
pub fn can_code(format: PcmFormat) -> bool {
    RATES.contains(&format.rate) && (1..=2).contains(&format.channels)
}

fn channels(format: PcmFormat) -> opus::Channels {
    if format.channels == 1 {
        opus::Channels::Mono
    } else {
        opus::Channels::Stereo
    }
}

/// Encodes a playback stream.
pub struct Encoder(opus::Encoder);

impl Encoder {
    /// `None` when Opus cannot carry the format or libopus refused.
    pub fn new(format: PcmFormat) -> Option<Encoder> {
        if !can_code(format) {
            return None;
        }
        opus::Encoder::new(format.rate, channels(format), opus::Application::Audio)
            .ok()
            .map(Encoder)
    }

    /// One packet of S16LE frames (480 for SPICE) as an Opus packet.
    pub fn encode(&mut self, pcm: &[u8]) -> Option<Vec<u8>> {
        let samples: Vec<i16> = pcm
            .chunks_exact(2)
            .map(|s| i16::from_le_bytes([s[0], s[1]]))
            .collect();
        self.0.encode_vec(&samples, MAX_PACKET).ok()
    }
}

/// Decodes what a client records.
pub struct Decoder {
    decoder: opus::Decoder,
    channels: usize,
}

impl Decoder {
    pub fn new(format: PcmFormat) -> Option<Decoder> {
        if !can_code(format) {
            return None;
        }
        let decoder = opus::Decoder::new(format.rate, channels(format)).ok()?;
        Some(Decoder {
            decoder,
            channels: usize::from(format.channels),
        })
    }

    /// An Opus packet as S16LE frames; `None` for a packet libopus refuses.
    pub fn decode(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let mut samples = vec![0i16; MAX_DECODED_FRAMES * self.channels];
        let frames = self.decoder.decode(packet, &mut samples, false).ok()?;
        Some(
            samples[..frames * self.channels]
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_the_round_trip() {
        let format = PcmFormat {
            rate: 48000,
            channels: 2,
        };
        let mut enc = Encoder::new(format).unwrap();
        let mut dec = Decoder::new(format).unwrap();
        let mut out = Vec::new();
        for packet in 0..50 {
            let pcm: Vec<u8> = (0..480)
                .flat_map(|i| {
                    let t = (packet * 480 + i) as f64 / 48000.0;
                    let v = (10000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
                    [v.to_le_bytes(), v.to_le_bytes()].concat()
                })
                .collect();
            let coded = enc.encode(&pcm).unwrap();
            assert!(coded.len() <= MAX_PACKET && coded.len() < pcm.len() / 4);
            out.extend(dec.decode(&coded).unwrap());
        }
        assert_eq!(out.len(), 50 * 1920);
        // The decoded tone: as loud as the original, after the codec's delay.
        let tail = &out[out.len() / 2..];
        let peak = tail
            .chunks_exact(4)
            .map(|f| i16::from_le_bytes([f[0], f[1]]).unsigned_abs())
            .max()
            .unwrap();
        assert!((9000..11000).contains(&peak), "{peak}");
    }

    #[test]
    fn what_opus_cannot_carry_and_garbage() {
        let cd = PcmFormat {
            rate: 44100,
            channels: 2,
        };
        assert!(Encoder::new(cd).is_none());
        let mut dec = Decoder::new(PcmFormat {
            rate: 48000,
            channels: 1,
        })
        .unwrap();
        assert!(dec.decode(&[0xff; 1000]).is_none());
    }
}
