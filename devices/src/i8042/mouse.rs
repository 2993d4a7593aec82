//! The PS/2 mouse: relative motion in stream mode, with the IntelliMouse
//! wheel (enabled by the 200/100/80 sample-rate sequence, as drivers do).

use std::collections::VecDeque;

use super::push_bounded;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
/// Largest motion one packet carries (9-bit two's complement).
const MAX_DELTA: i32 = 255;
const MIN_DELTA: i32 = -256;

/// Buttons held down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MouseButtons {
    pub left: bool,
    pub right: bool,
    pub middle: bool,
}

impl MouseButtons {
    fn bits(self) -> u8 {
        u8::from(self.left) | (u8::from(self.right) << 1) | (u8::from(self.middle) << 2)
    }
}

#[derive(Debug)]
pub struct Mouse {
    queue: VecDeque<u8>,
    reporting: bool,
    sample_rate: u8,
    resolution: u8,
    scaling_2to1: bool,
    /// 0: standard, 3: IntelliMouse (wheel).
    id: u8,
    /// The last three sample rates set, to spot the IntelliMouse sequence.
    rate_history: [u8; 3],
    pending: Option<u8>,
    buttons: MouseButtons,
}

impl Default for Mouse {
    fn default() -> Self {
        Mouse {
            queue: VecDeque::new(),
            reporting: false,
            sample_rate: 100,
            resolution: 2,
            scaling_2to1: false,
            id: 0,
            rate_history: [0; 3],
            pending: None,
            buttons: MouseButtons::default(),
        }
    }
}

impl Mouse {
    pub(super) fn has_output(&self) -> bool {
        !self.queue.is_empty()
    }

    pub(super) fn pop(&mut self) -> Option<u8> {
        self.queue.pop_front()
    }

    /// Whether the guest's driver enabled the wheel.
    pub fn has_wheel(&self) -> bool {
        self.id == 3
    }

    fn push(&mut self, byte: u8) {
        push_bounded(&mut self.queue, byte);
    }

    fn set_defaults(&mut self) {
        self.reporting = false;
        self.sample_rate = 100;
        self.resolution = 2;
        self.scaling_2to1 = false;
    }

    /// A byte the guest sent to the mouse (controller command 0xd4).
    pub(super) fn command(&mut self, byte: u8) {
        if let Some(command) = self.pending.take() {
            match command {
                0xf3 => {
                    self.sample_rate = byte;
                    self.rate_history = [self.rate_history[1], self.rate_history[2], byte];
                    if self.rate_history == [200, 100, 80] {
                        self.id = 3;
                    }
                }
                _ => self.resolution = byte.min(3), // 0xe8
            }
            self.push(ACK);
            return;
        }
        match byte {
            0xe6 | 0xe7 => {
                self.scaling_2to1 = byte == 0xe7;
                self.push(ACK);
            }
            0xe8 | 0xf3 => {
                self.pending = Some(byte);
                self.push(ACK);
            }
            0xe9 => {
                self.push(ACK);
                let status = (u8::from(self.reporting) << 5)
                    | (u8::from(self.scaling_2to1) << 4)
                    | self.buttons.bits();
                self.push(status);
                self.push(self.resolution);
                self.push(self.sample_rate);
            }
            0xea | 0xf0 | 0xec | 0xee => self.push(ACK), // modes: stream only
            0xeb => {
                self.push(ACK);
                self.push_packet(0, 0, 0);
            }
            0xf2 => {
                self.push(ACK);
                self.push(self.id);
            }
            0xf4 => {
                self.reporting = true;
                self.push(ACK);
            }
            0xf5 => {
                self.reporting = false;
                self.push(ACK);
            }
            0xf6 => {
                self.set_defaults();
                self.push(ACK);
            }
            0xff => {
                self.queue.clear();
                self.set_defaults();
                self.id = 0;
                self.rate_history = [0; 3];
                self.push(ACK);
                self.push(0xaa);
                self.push(0x00);
            }
            _ => self.push(RESEND),
        }
    }

    fn packet_len(&self) -> usize {
        if self.has_wheel() {
            4
        } else {
            3
        }
    }

    fn push_packet(&mut self, dx: i32, dy: i32, dz: i32) {
        if super::DEVICE_QUEUE_LIMIT - self.queue.len() < self.packet_len() {
            return;
        }
        // PS/2 counts y upwards.
        let dy = -dy;
        let mut header = 0x08 | self.buttons.bits();
        if dx < 0 {
            header |= 0x10;
        }
        if dy < 0 {
            header |= 0x20;
        }
        self.push(header);
        self.push(dx as u8);
        self.push(dy as u8);
        if self.has_wheel() {
            // Wheel: 4-bit two's complement, positive = towards the user.
            self.push((dz.clamp(-8, 7) as u8) & 0x0f);
        }
    }

    /// Motion and button state from the user; split into packets as needed.
    pub(super) fn motion(&mut self, mut dx: i32, mut dy: i32, mut dz: i32, buttons: MouseButtons) {
        let buttons_changed = buttons != self.buttons;
        self.buttons = buttons;
        if !self.reporting {
            return;
        }
        let mut first = true;
        while first || dx != 0 || dy != 0 || dz != 0 {
            let (px, py, pz) = (
                dx.clamp(MIN_DELTA, MAX_DELTA),
                dy.clamp(-MAX_DELTA, -MIN_DELTA),
                dz.clamp(-8, 7),
            );
            if !(first && buttons_changed) && px == 0 && py == 0 && pz == 0 {
                break;
            }
            self.push_packet(px, py, pz);
            dx -= px;
            dy -= py;
            dz -= pz;
            first = false;
            if self.queue.len() >= super::DEVICE_QUEUE_LIMIT {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> Mouse {
        let mut m = Mouse::default();
        m.command(0xf4);
        m.queue.clear();
        m
    }

    #[test]
    fn motion_packet() {
        let mut m = enabled();
        m.motion(
            5,
            3,
            0,
            MouseButtons {
                left: true,
                ..Default::default()
            },
        );
        let p: Vec<u8> = m.queue.drain(..).collect();
        // dy=3 down on screen is -3 for PS/2.
        assert_eq!(p, vec![0x08 | 0x01 | 0x20, 5, (-3i8) as u8]);
    }

    #[test]
    fn large_motion_is_split() {
        let mut m = enabled();
        m.motion(600, 0, 0, MouseButtons::default());
        assert_eq!(m.queue.len(), 9);
    }

    #[test]
    fn button_change_without_motion_sends_a_packet() {
        let mut m = enabled();
        m.motion(
            0,
            0,
            0,
            MouseButtons {
                right: true,
                ..Default::default()
            },
        );
        assert_eq!(m.queue.drain(..).collect::<Vec<_>>(), vec![0x0a, 0, 0]);
        m.motion(
            0,
            0,
            0,
            MouseButtons {
                right: true,
                ..Default::default()
            },
        );
        assert!(m.queue.is_empty());
    }

    #[test]
    fn wheel_packets_have_four_bytes() {
        let mut m = enabled();
        for r in [200, 100, 80] {
            m.command(0xf3);
            m.command(r);
        }
        m.queue.clear();
        m.motion(0, 0, -1, MouseButtons::default());
        assert_eq!(
            m.queue.drain(..).collect::<Vec<_>>(),
            vec![0x08, 0, 0, 0x0f]
        );
    }
}
