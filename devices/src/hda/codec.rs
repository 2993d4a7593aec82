//! The duplex codec at address 0 (docs/hda.md §5): an audio function group
//! with one output converter (DAC, NID 2) wired to a line-out pin (NID 3),
//! and one input converter (ADC, NID 4) fed by a line-in pin (NID 5). It
//! presents itself as QEMU's `hda-duplex` with mixer, so guests' drivers
//! treat both alike: Linux binds its generic parser and offers a playback
//! and a capture volume.
//!
//! Every verb gets exactly one response; verbs and nodes it does not know
//! answer 0.

use crate::audio::{Direction, Volume};

/// Node ids.
pub const ROOT: u8 = 0;
pub const AFG: u8 = 1;
pub const DAC: u8 = 2;
pub const OUT_PIN: u8 = 3;
pub const ADC: u8 = 4;
pub const IN_PIN: u8 = 5;

const VENDOR_ID: u32 = 0x1af4_0022;
const REVISION: u32 = 0x0010_0101;
/// 16-bit samples at 44.1 and 48 kHz.
const PCM_CAPS: u32 = 0x0002_0060;
/// PCM only.
const STREAM_FORMATS: u32 = 0x1;
/// Mute capable, 1 dB steps, 75 steps, 0 dB at step 74.
const AMP_CAPS: u32 = 0x8003_4a4a;
/// The gain that is 0 dB (the highest).
pub const GAIN_MAX: u8 = 0x4a;

/// Parameter ids (payload of verb 0xF00).
mod param {
    pub const VENDOR_ID: u8 = 0x00;
    pub const SUBSYSTEM_ID: u8 = 0x01;
    pub const REVISION_ID: u8 = 0x02;
    pub const NODE_COUNT: u8 = 0x04;
    pub const FUNCTION_TYPE: u8 = 0x05;
    pub const AFG_CAPS: u8 = 0x08;
    pub const WIDGET_CAPS: u8 = 0x09;
    pub const PCM: u8 = 0x0a;
    pub const STREAM_FORMATS: u8 = 0x0b;
    pub const PIN_CAPS: u8 = 0x0c;
    pub const AMP_IN_CAPS: u8 = 0x0d;
    pub const CONN_LIST_LEN: u8 = 0x0e;
    pub const AMP_OUT_CAPS: u8 = 0x12;
}

/// A converter's settings as the guest programmed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Converter {
    /// Stream tag (1..15; 0 = none) and channel.
    pub stream: u8,
    pub channel: u8,
    /// The stream format word (docs/hda.md §4.4).
    pub format: u16,
    /// Amp gain (0..=GAIN_MAX) and mute, left and right.
    pub gain: [u8; 2],
    pub mute: [bool; 2],
}

impl Converter {
    fn new(gain: u8) -> Converter {
        Converter {
            stream: 0,
            channel: 0,
            format: 0x0011,
            gain: [gain; 2],
            mute: [false; 2],
        }
    }

    /// The amp as a linear volume: steps are 1 dB, GAIN_MAX is 0 dB; a side
    /// muted alone is at 0, both muted is the mute flag.
    pub fn volume(&self) -> Volume {
        let linear = |side: usize| {
            let db = f64::from(self.gain[side].min(GAIN_MAX)) - f64::from(GAIN_MAX);
            let level = (65535.0 * 10f64.powf(db / 20.0)).round() as u16;
            if self.mute[side] && !self.mute[1 - side] {
                0
            } else {
                level
            }
        };
        Volume {
            left: linear(0),
            right: linear(1),
            mute: self.mute[0] && self.mute[1],
        }
    }
}

/// What a verb changed, for the controller to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// A converter's stream tag or format changed.
    Stream(Direction),
    /// A converter's amp changed.
    Volume(Direction),
    /// The codec was reset: every converter changed.
    Reset,
}

/// The codec's state.
#[derive(Debug, Clone)]
pub struct Codec {
    pub dac: Converter,
    pub adc: Converter,
    pin_ctl: [u8; 2],
    power: u8,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            dac: Converter::new(GAIN_MAX),
            adc: Converter::new(0),
            pin_ctl: [0x40, 0x20],
            power: 0,
        }
    }
}

impl Codec {
    /// The converter feeding or fed by streams of `direction`.
    pub fn converter(&self, direction: Direction) -> &Converter {
        match direction {
            Direction::Output => &self.dac,
            Direction::Input => &self.adc,
        }
    }

    /// Answers one verb (the low 28 bits of a command: NID and verb).
    pub fn verb(&mut self, command: u32) -> (u32, Effect) {
        let nid = ((command >> 20) & 0x7f) as u8;
        if command & (1 << 27) != 0 {
            return (0, Effect::None); // indirect NIDs: not used by anyone
        }
        let payload = command & 0xf_ffff;
        if (payload >> 16) & 0x7 == 0x7 {
            self.verb12(nid, (payload >> 8) as u16, payload as u8)
        } else {
            self.verb4(nid, (payload >> 16) as u8, payload as u16)
        }
    }

    /// Verbs with a 12-bit id and an 8-bit payload.
    fn verb12(&mut self, nid: u8, verb: u16, payload: u8) -> (u32, Effect) {
        let value = match verb {
            0xf00 => parameter(nid, payload),
            0xf20 if nid <= AFG => VENDOR_ID,
            0xf02 => match nid {
                OUT_PIN => u32::from(DAC),
                ADC => u32::from(IN_PIN),
                _ => 0,
            },
            0xf1c => match nid {
                OUT_PIN => 0x0000_4010,
                IN_PIN => 0x0080_5020,
                _ => 0,
            },
            0xf07 => self.pin(nid).map_or(0, |p| u32::from(*p)),
            0x707 => {
                if let Some(p) = self.pin(nid) {
                    *p = payload;
                }
                0
            }
            0xf06 => self
                .converter_mut(nid)
                .map_or(0, |c| u32::from(c.stream << 4 | c.channel)),
            0x706 => {
                return match self.converter_mut(nid) {
                    Some(c) => {
                        c.stream = payload >> 4;
                        c.channel = payload & 0xf;
                        (0, Effect::Stream(direction_of(nid)))
                    }
                    None => (0, Effect::None),
                }
            }
            0xf05 => u32::from(self.power << 4 | self.power),
            0x705 => {
                self.power = payload & 0xf;
                0
            }
            0x7ff if nid == AFG => {
                *self = Codec::default();
                return (0, Effect::Reset);
            }
            _ => 0,
        };
        (value, Effect::None)
    }

    /// Verbs with a 4-bit id and a 16-bit payload.
    fn verb4(&mut self, nid: u8, verb: u8, payload: u16) -> (u32, Effect) {
        let direction = direction_of(nid);
        let Some(c) = self.converter_mut(nid) else {
            return (0, Effect::None);
        };
        match verb {
            0x2 => {
                c.format = payload;
                (0, Effect::Stream(direction))
            }
            0xa => (u32::from(c.format), Effect::None),
            0xb => {
                // Bit 13 set: the left side.
                let side = usize::from(payload & (1 << 13) == 0);
                (
                    u32::from(c.gain[side]) | u32::from(c.mute[side]) << 7,
                    Effect::None,
                )
            }
            0x3 => {
                // Only the converter's own amp exists: the DAC's output
                // amp, the ADC's input amp.
                let ours = match direction {
                    Direction::Output => payload & (1 << 15) != 0,
                    Direction::Input => payload & (1 << 14) != 0,
                };
                if !ours {
                    return (0, Effect::None);
                }
                let gain = (payload & 0x7f) as u8;
                let mute = payload & (1 << 7) != 0;
                for (side, bit) in [(0, 13), (1, 12)] {
                    if payload & (1 << bit) != 0 {
                        c.gain[side] = gain.min(GAIN_MAX);
                        c.mute[side] = mute;
                    }
                }
                (0, Effect::Volume(direction))
            }
            _ => (0, Effect::None),
        }
    }

    fn converter_mut(&mut self, nid: u8) -> Option<&mut Converter> {
        match nid {
            DAC => Some(&mut self.dac),
            ADC => Some(&mut self.adc),
            _ => None,
        }
    }

    fn pin(&mut self, nid: u8) -> Option<&mut u8> {
        match nid {
            OUT_PIN => Some(&mut self.pin_ctl[0]),
            IN_PIN => Some(&mut self.pin_ctl[1]),
            _ => None,
        }
    }
}

fn direction_of(nid: u8) -> Direction {
    if nid == ADC {
        Direction::Input
    } else {
        Direction::Output
    }
}

/// Verb 0xF00: the node's parameters.
fn parameter(nid: u8, id: u8) -> u32 {
    use param::*;
    match (nid, id) {
        (ROOT | AFG, VENDOR_ID | SUBSYSTEM_ID) => self::VENDOR_ID,
        (ROOT | AFG, REVISION_ID) => REVISION,
        (ROOT, NODE_COUNT) => 0x0001_0001,
        (AFG, NODE_COUNT) => 0x0002_0004,
        (AFG, FUNCTION_TYPE) => 0x01,
        (AFG, AFG_CAPS) => 0x0000_0808,
        (AFG | DAC | ADC, PCM) => PCM_CAPS,
        (AFG | DAC | ADC, param::STREAM_FORMATS) => self::STREAM_FORMATS,
        (DAC, WIDGET_CAPS) => 0x0000_001d,
        (OUT_PIN, WIDGET_CAPS) => 0x0040_0101,
        (ADC, WIDGET_CAPS) => 0x0010_011b,
        (IN_PIN, WIDGET_CAPS) => 0x0040_0001,
        (OUT_PIN, PIN_CAPS) => 0x10,
        (IN_PIN, PIN_CAPS) => 0x20,
        (DAC, AMP_OUT_CAPS) | (ADC, AMP_IN_CAPS) => AMP_CAPS,
        (OUT_PIN | ADC, CONN_LIST_LEN) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(nid: u8, verb: u32) -> u32 {
        u32::from(nid) << 20 | verb
    }

    #[test]
    fn identity_and_tree() {
        let mut c = Codec::default();
        assert_eq!(c.verb(cmd(0, 0xf0000)).0, 0x1af4_0022);
        assert_eq!(c.verb(cmd(0, 0xf0004)).0, 0x0001_0001);
        assert_eq!(c.verb(cmd(1, 0xf0005)).0, 1);
        assert_eq!(c.verb(cmd(1, 0xf0004)).0, 0x0002_0004);
        assert_eq!(c.verb(cmd(3, 0xf0200)).0, 2);
        assert_eq!(c.verb(cmd(4, 0xf0200)).0, 5);
        assert_eq!(c.verb(cmd(2, 0xf000a)).0, PCM_CAPS);
        assert_eq!(c.verb(cmd(9, 0xf0009)).0, 0, "absent nodes answer 0");
        assert_eq!(c.verb(cmd(2, 0xf0800)).0, 0, "unknown verbs answer 0");
    }

    #[test]
    fn stream_format_and_amps() {
        let mut c = Codec::default();
        assert_eq!(
            c.verb(cmd(2, 0x70651)),
            (0, Effect::Stream(Direction::Output))
        );
        assert_eq!((c.dac.stream, c.dac.channel), (5, 1));
        assert_eq!(c.verb(cmd(2, 0xf0600)).0, 0x51);
        c.verb(cmd(2, 0x24011));
        assert_eq!(c.verb(cmd(2, 0xa0000)).0, 0x4011);
        // Output amp, left only, muted, gain 10.
        assert_eq!(
            c.verb(cmd(2, 0x3a08a)),
            (0, Effect::Volume(Direction::Output))
        );
        assert_eq!(c.verb(cmd(2, 0xba000)).0, 0x8a, "left");
        assert_eq!(c.verb(cmd(2, 0xb8000)).0, 0x4a, "right untouched");
        assert!(!c.dac.volume().mute, "mute needs both sides");
        // The ADC has no output amp: ignored.
        assert_eq!(c.verb(cmd(4, 0x3b000)), (0, Effect::None));
        // The left side muted alone is silent; the flag needs both.
        assert_eq!(c.dac.volume().left, 0);
        assert_eq!(c.dac.volume().right, 65535);
        // Gains beyond the top are clamped.
        c.verb(cmd(4, 0x370ff));
        assert_eq!(c.adc.gain, [GAIN_MAX; 2]);
        assert!(c.adc.volume().mute);
    }

    #[test]
    fn volume_is_decibels() {
        let mut conv = Converter::new(GAIN_MAX);
        assert_eq!(conv.volume().left, 65535);
        conv.gain = [GAIN_MAX - 6, 0];
        let v = conv.volume();
        assert!((32700..32900).contains(&v.left), "{v:?}");
        assert!(v.right < 20, "{v:?}");
    }

    #[test]
    fn power_state_settles_at_once() {
        let mut c = Codec::default();
        c.verb(cmd(1, 0x70503));
        assert_eq!(c.verb(cmd(1, 0xf0500)).0, 0x33);
    }
}
