//! The PS/2 keyboard: scancode set 2 natively, set 1 when the controller
//! translates (the default, and what PC operating systems use).
//!
//! Keys arrive as PC AT set-1 scancodes (what SPICE clients send). With
//! translation on they go to the guest as they are; with translation off and
//! set 2 selected they are converted to set-2 make/break sequences.

use std::collections::VecDeque;

use super::push_bounded;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;
const ECHO: u8 = 0xee;

/// The LEDs the guest set (bit 0 scroll lock, 1 num lock, 2 caps lock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leds(pub u8);

impl Leds {
    pub fn scroll_lock(self) -> bool {
        self.0 & 1 != 0
    }
    pub fn num_lock(self) -> bool {
        self.0 & 2 != 0
    }
    pub fn caps_lock(self) -> bool {
        self.0 & 4 != 0
    }
}

#[derive(Debug)]
pub struct Keyboard {
    queue: VecDeque<u8>,
    scanning: bool,
    scancode_set: u8,
    leds: Leds,
    /// A command waiting for its parameter byte.
    pending: Option<u8>,
    /// Bumped each time the guest changes the LEDs, so observers can poll.
    led_generation: u64,
}

impl Default for Keyboard {
    fn default() -> Self {
        Keyboard {
            queue: VecDeque::new(),
            scanning: true,
            scancode_set: 2,
            leds: Leds::default(),
            pending: None,
            led_generation: 0,
        }
    }
}

impl Keyboard {
    pub fn leds(&self) -> Leds {
        self.leds
    }

    pub fn led_generation(&self) -> u64 {
        self.led_generation
    }

    pub(super) fn has_output(&self) -> bool {
        !self.queue.is_empty()
    }

    pub(super) fn pop(&mut self) -> Option<u8> {
        self.queue.pop_front()
    }

    fn push(&mut self, byte: u8) {
        push_bounded(&mut self.queue, byte);
    }

    fn reset(&mut self) {
        self.queue.clear();
        self.scanning = true;
        self.scancode_set = 2;
        self.pending = None;
        if self.leds != Leds::default() {
            self.leds = Leds::default();
            self.led_generation += 1;
        }
    }

    /// A byte the guest wrote to the keyboard.
    pub(super) fn command(&mut self, byte: u8, translate: bool) {
        if let Some(command) = self.pending.take() {
            match command {
                0xed => {
                    self.leds = Leds(byte & 0x7);
                    self.led_generation += 1;
                    self.push(ACK);
                }
                0xf0 if byte == 0 => {
                    self.push(ACK);
                    // Reported through the translation, as the controller would.
                    let set = self.scancode_set;
                    self.push(if translate {
                        [0, 0x43, 0x41, 0x3f][usize::from(set)]
                    } else {
                        set
                    });
                }
                0xf0 if (1..=3).contains(&byte) => {
                    self.scancode_set = byte;
                    self.push(ACK);
                }
                0xf0 => self.push(RESEND),
                _ => self.push(ACK), // typematic rate/delay
            }
            return;
        }
        match byte {
            0xed | 0xf0 | 0xf3 => {
                self.pending = Some(byte);
                self.push(ACK);
            }
            0xee => self.push(ECHO),
            0xf2 => {
                self.push(ACK);
                self.push(0xab);
                self.push(if translate { 0x41 } else { 0x83 });
            }
            0xf4 => {
                self.scanning = true;
                self.push(ACK);
            }
            0xf5 => {
                self.scanning = false;
                self.queue.clear();
                self.push(ACK);
            }
            0xf6 => {
                self.scanning = true;
                self.scancode_set = 2;
                self.push(ACK);
            }
            0xf7..=0xfd => self.push(ACK), // set-3 key types: accepted, ignored
            0xff => {
                self.reset();
                self.push(ACK);
                self.push(BAT_OK);
            }
            _ => self.push(RESEND),
        }
    }

    /// A key pressed or released, as set-1 scancode bytes.
    pub(super) fn key_event(&mut self, set1: &[u8], translate: bool) {
        if !self.scanning || set1.is_empty() {
            return;
        }
        // Never start a sequence the queue cannot finish.
        let room = super::DEVICE_QUEUE_LIMIT.saturating_sub(self.queue.len());
        if translate || self.scancode_set == 1 {
            if set1.len() <= room {
                set1.iter().for_each(|b| self.push(*b));
            }
        } else {
            let set2 = set1_to_set2(set1);
            if set2.len() <= room {
                set2.iter().for_each(|b| self.push(*b));
            }
        }
    }
}

/// Set-1 make code → set-2 make code (0 where there is none).
#[rustfmt::skip]
const SET1_TO_SET2: [u8; 128] = [
    0x00, 0x76, 0x16, 0x1e, 0x26, 0x25, 0x2e, 0x36, 0x3d, 0x3e, 0x46, 0x45, 0x4e, 0x55, 0x66, 0x0d, // 0x00
    0x15, 0x1d, 0x24, 0x2d, 0x2c, 0x35, 0x3c, 0x43, 0x44, 0x4d, 0x54, 0x5b, 0x5a, 0x14, 0x1c, 0x1b, // 0x10
    0x23, 0x2b, 0x34, 0x33, 0x3b, 0x42, 0x4b, 0x4c, 0x52, 0x0e, 0x12, 0x5d, 0x1a, 0x22, 0x21, 0x2a, // 0x20
    0x32, 0x31, 0x3a, 0x41, 0x49, 0x4a, 0x59, 0x7c, 0x11, 0x29, 0x58, 0x05, 0x06, 0x04, 0x0c, 0x03, // 0x30
    0x0b, 0x83, 0x0a, 0x01, 0x09, 0x77, 0x7e, 0x6c, 0x75, 0x7d, 0x7b, 0x6b, 0x73, 0x74, 0x79, 0x69, // 0x40
    0x72, 0x7a, 0x70, 0x71, 0x84, 0x00, 0x61, 0x78, 0x07, 0x00, 0x00, 0x1f, 0x27, 0x2f, 0x00, 0x00, // 0x50
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 0x60
    0x13, 0x00, 0x00, 0x51, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0x67, 0x00, 0x6a, 0x00, 0x00, // 0x70
];

/// Converts one key's set-1 bytes (optionally 0xe0/0xe1-prefixed) to set 2.
pub fn set1_to_set2(set1: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(set1.len() * 2);
    for &byte in set1 {
        match byte {
            0xe0 | 0xe1 => out.push(byte),
            _ => {
                let code = SET1_TO_SET2[usize::from(byte & 0x7f)];
                if code == 0 {
                    continue;
                }
                if byte & 0x80 != 0 {
                    out.push(0xf0);
                }
                out.push(code);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set2_conversion() {
        assert_eq!(set1_to_set2(&[0x1e]), vec![0x1c]); // A down
        assert_eq!(set1_to_set2(&[0x9e]), vec![0xf0, 0x1c]); // A up
        assert_eq!(set1_to_set2(&[0xe0, 0x48]), vec![0xe0, 0x75]); // Up down
        assert_eq!(set1_to_set2(&[0xe0, 0xc8]), vec![0xe0, 0xf0, 0x75]); // Up up
        assert_eq!(set1_to_set2(&[0xe0, 0x5b]), vec![0xe0, 0x1f]); // left Windows
    }

    #[test]
    fn set2_codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &c in SET1_TO_SET2.iter().filter(|c| **c != 0) {
            assert!(seen.insert(c), "{c:#x} twice");
        }
    }

    #[test]
    fn leds_and_untranslated_keys() {
        let mut k = Keyboard::default();
        k.command(0xed, false);
        k.command(0x04, false);
        assert!(k.leds().caps_lock());
        assert_eq!(k.led_generation(), 1);
        k.queue.clear();
        k.key_event(&[0x1e], false);
        assert_eq!(k.pop(), Some(0x1c));
    }
}
