//! How a sound card hands audio to whoever plays and records it (the SPICE
//! server, or nothing) without knowing who that is.
//!
//! Samples are always signed 16-bit little-endian, interleaved. The card
//! paces itself: it calls [`AudioBackend::output`] as the guest's buffer is
//! played, in real time, and [`AudioBackend::input`] as the guest's capture
//! buffer fills; a backend never blocks it.

/// The sample rate and channel count of a stream (S16LE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    pub rate: u32,
    pub channels: u8,
}

impl PcmFormat {
    /// Bytes of one frame (one sample per channel).
    pub fn frame_bytes(&self) -> usize {
        2 * usize::from(self.channels)
    }

    pub fn bytes_per_second(&self) -> u64 {
        u64::from(self.rate) * self.frame_bytes() as u64
    }
}

/// Which way a stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Guest → host (playback).
    Output,
    /// Host → guest (capture).
    Input,
}

/// A volume as the guest's mixer set it: linear, 0 (silent) to 65535
/// (full), per side, and a mute flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Volume {
    pub left: u16,
    pub right: u16,
    pub mute: bool,
}

/// Where a sound card's audio goes and comes from. Called from the card's
/// threads; implementations must not block for long.
pub trait AudioBackend: Send + Sync {
    /// The guest started a stream in this format.
    fn started(&self, direction: Direction, format: PcmFormat);
    /// The guest stopped the stream.
    fn stopped(&self, direction: Direction);
    /// Played samples (whole frames of the started format).
    fn output(&self, pcm: &[u8]);
    /// Fills `buf` with captured samples as far as it has them; returns
    /// how many bytes it wrote (the card plays silence for the rest).
    fn input(&self, buf: &mut [u8]) -> usize;
    /// The guest changed a volume.
    fn volume(&self, direction: Direction, volume: Volume);
}

/// A backend that drops what is played and records silence.
#[derive(Debug, Default)]
pub struct NoAudio;

impl AudioBackend for NoAudio {
    fn started(&self, _: Direction, _: PcmFormat) {}
    fn stopped(&self, _: Direction) {}
    fn output(&self, _: &[u8]) {}
    fn input(&self, _: &mut [u8]) -> usize {
        0
    }
    fn volume(&self, _: Direction, _: Volume) {}
}
