//! The PS/2 mouse: relative motion in stream or remote mode, wrap (echo)
//! mode, resolution, sample rate, 2:1 scaling, and the IntelliMouse
//! protocols drivers switch on with sample-rate sequences: 200/100/80 gives
//! the wheel (ID 3), then 200/200/80 the 5-button Explorer (ID 4, wheel plus
//! side and extra buttons), as Linux's psmouse and Windows' i8042prt do.
//!
//! Motion is never queued without bound: a few packets wait for the guest,
//! and motion beyond that accumulates in counters (as a real mouse's do)
//! and goes out when the guest has read what was queued. Button changes are
//! never lost: the next packet carries the current buttons.

use std::collections::VecDeque;

use super::DEVICE_QUEUE_LIMIT;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;
/// Largest motion one packet carries (9-bit two's complement).
const MAX_DELTA: i32 = 255;
const MIN_DELTA: i32 = -256;
/// Motion packets queued for the guest at most; more motion accumulates.
pub const MOTION_PACKETS_QUEUED: usize = 8;
/// Accumulated motion is clamped to this (a flood cannot wind it up).
const MAX_ACCUMULATED: i32 = 4096;

/// Buttons held down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MouseButtons {
    pub left: bool,
    pub right: bool,
    pub middle: bool,
    /// Button 4 ("back"), reported only in the Explorer (ID 4) protocol.
    pub side: bool,
    /// Button 5 ("forward"), reported only in the Explorer (ID 4) protocol.
    pub extra: bool,
}

impl MouseButtons {
    /// Bits 0-2 of a packet's first byte.
    fn packet_bits(self) -> u8 {
        u8::from(self.left) | (u8::from(self.right) << 1) | (u8::from(self.middle) << 2)
    }

    /// Bits 0-2 of the status byte: right, middle, left.
    fn status_bits(self) -> u8 {
        u8::from(self.right) | (u8::from(self.middle) << 1) | (u8::from(self.left) << 2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Remote,
    /// Echoes every byte until 0xec (reset wrap mode) or 0xff.
    Wrap,
}

#[derive(Debug)]
pub struct Mouse {
    /// Replies to commands; sent before any packet.
    replies: VecDeque<u8>,
    /// Motion packets (whole packets only).
    queue: VecDeque<u8>,
    mode: Mode,
    /// The mode to go back to when wrap mode ends.
    mode_before_wrap: Mode,
    reporting: bool,
    sample_rate: u8,
    resolution: u8,
    scaling_2to1: bool,
    /// 0: standard, 3: IntelliMouse (wheel), 4: IntelliMouse Explorer.
    id: u8,
    /// The last three sample rates set, to spot the magic sequences.
    rate_history: [u8; 3],
    /// A command waiting for its parameter byte (0xe8 or 0xf3).
    pending: Option<u8>,
    buttons: MouseButtons,
    /// Motion not sent yet: (dx, dy, dz), screen orientation.
    accumulated: (i32, i32, i32),
    /// Buttons changed since the last packet queued.
    buttons_dirty: bool,
    /// The last packet sent, for the resend command.
    last_packet: Vec<u8>,
}

impl Default for Mouse {
    fn default() -> Self {
        Mouse {
            replies: VecDeque::new(),
            queue: VecDeque::new(),
            mode: Mode::Stream,
            mode_before_wrap: Mode::Stream,
            reporting: false,
            sample_rate: 100,
            resolution: 2,
            scaling_2to1: false,
            id: 0,
            rate_history: [0; 3],
            pending: None,
            buttons: MouseButtons::default(),
            accumulated: (0, 0, 0),
            buttons_dirty: false,
            last_packet: Vec::new(),
        }
    }
}

impl Mouse {
    pub(super) fn pop(&mut self) -> Option<u8> {
        let byte = match self.replies.pop_front() {
            Some(byte) => byte,
            None => self.queue.pop_front()?,
        };
        self.flush_accumulated();
        Some(byte)
    }

    /// The protocol the guest's driver switched on: 0 (3-byte packets),
    /// 3 (IntelliMouse wheel) or 4 (IntelliMouse Explorer).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Whether the guest's driver enabled the wheel.
    pub fn has_wheel(&self) -> bool {
        self.id >= 3
    }

    /// Whether the mouse sends motion (stream mode, reporting enabled).
    pub fn is_reporting(&self) -> bool {
        self.reporting && self.mode == Mode::Stream
    }

    pub fn sample_rate(&self) -> u8 {
        self.sample_rate
    }

    pub fn resolution(&self) -> u8 {
        self.resolution
    }

    fn reply(&mut self, byte: u8) {
        if self.replies.len() < DEVICE_QUEUE_LIMIT {
            self.replies.push_back(byte);
        }
    }

    fn set_defaults(&mut self) {
        self.reporting = false;
        self.sample_rate = 100;
        self.resolution = 2;
        self.scaling_2to1 = false;
        self.mode = Mode::Stream;
        self.accumulated = (0, 0, 0);
    }

    /// A byte the guest sent to the mouse (controller command 0xd4).
    pub(super) fn command(&mut self, byte: u8) {
        if self.mode == Mode::Wrap && byte != 0xec && byte != 0xff {
            self.reply(byte);
            return;
        }
        if let Some(command) = self.pending.take() {
            match command {
                0xf3 => {
                    self.sample_rate = byte;
                    self.rate_history = [self.rate_history[1], self.rate_history[2], byte];
                    match self.rate_history {
                        [200, 100, 80] if self.id == 0 => self.id = 3,
                        [200, 200, 80] if self.id == 3 => self.id = 4,
                        _ => {}
                    }
                }
                _ => self.resolution = byte.min(3), // 0xe8
            }
            self.reply(ACK);
            return;
        }
        // Any command clears the packets the mouse had not sent yet; a packet
        // after the reply brings the guest's button state up to date.
        if !self.queue.is_empty() {
            self.queue.clear();
            self.buttons_dirty = true;
        }
        match byte {
            0xe6 | 0xe7 => {
                self.scaling_2to1 = byte == 0xe7;
                self.reply(ACK);
            }
            0xe8 | 0xf3 => {
                self.pending = Some(byte);
                self.reply(ACK);
            }
            0xe9 => {
                self.reply(ACK);
                let status = (u8::from(self.mode == Mode::Remote) << 6)
                    | (u8::from(self.reporting) << 5)
                    | (u8::from(self.scaling_2to1) << 4)
                    | self.buttons.status_bits();
                self.reply(status);
                self.reply(self.resolution);
                self.reply(self.sample_rate);
            }
            0xea => {
                self.mode = Mode::Stream;
                self.accumulated = (0, 0, 0);
                self.reply(ACK);
            }
            0xeb => {
                self.reply(ACK);
                let (dx, dy, dz) = std::mem::take(&mut self.accumulated);
                let packet = self.packet(
                    dx.clamp(MIN_DELTA, MAX_DELTA),
                    dy.clamp(-MAX_DELTA, -MIN_DELTA),
                    dz,
                );
                packet.into_iter().for_each(|b| self.reply(b));
            }
            0xec => {
                if self.mode == Mode::Wrap {
                    self.mode = self.mode_before_wrap;
                }
                self.reply(ACK);
            }
            0xee => {
                if self.mode != Mode::Wrap {
                    self.mode_before_wrap = self.mode;
                }
                self.mode = Mode::Wrap;
                self.reply(ACK);
            }
            0xf0 => {
                self.mode = Mode::Remote;
                self.reply(ACK);
            }
            0xf2 => {
                self.reply(ACK);
                self.reply(self.id);
            }
            // Enabling and disabling reset the motion counters.
            0xf4 | 0xf5 => {
                self.reporting = byte == 0xf4;
                self.accumulated = (0, 0, 0);
                self.reply(ACK);
            }
            0xf6 => {
                self.set_defaults();
                self.reply(ACK);
            }
            0xfe => {
                let packet = self.last_packet.clone();
                packet.into_iter().for_each(|b| self.reply(b));
            }
            0xff => {
                self.set_defaults();
                self.id = 0;
                self.rate_history = [0; 3];
                self.reply(ACK);
                self.reply(BAT_OK);
                self.reply(0x00);
            }
            _ => self.reply(RESEND),
        }
    }

    fn packet_len(&self) -> usize {
        if self.has_wheel() {
            4
        } else {
            3
        }
    }

    /// One packet; `dy` is screen orientation (positive = down).
    fn packet(&mut self, dx: i32, dy: i32, dz: i32) -> Vec<u8> {
        let (dx, dy) = if self.scaling_2to1 {
            (scale_2to1(dx), scale_2to1(dy))
        } else {
            (dx, dy)
        };
        let (dx, dy) = (
            dx.clamp(MIN_DELTA, MAX_DELTA),
            (-dy).clamp(MIN_DELTA, MAX_DELTA),
        );
        let mut header = 0x08 | self.buttons.packet_bits();
        if dx < 0 {
            header |= 0x10;
        }
        if dy < 0 {
            header |= 0x20;
        }
        let mut packet = vec![header, dx as u8, dy as u8];
        match self.id {
            // A signed byte; positive = wheel turned towards the user.
            3 => packet.push(dz.clamp(-8, 7) as i8 as u8),
            // Four bits of wheel, then buttons 4 and 5.
            4 => packet.push(
                ((dz.clamp(-8, 7) as u8) & 0x0f)
                    | (u8::from(self.buttons.side) << 4)
                    | (u8::from(self.buttons.extra) << 5),
            ),
            _ => {}
        }
        self.last_packet = packet.clone();
        self.buttons_dirty = false;
        packet
    }

    fn motion_packets_queued(&self) -> usize {
        self.queue.len() / self.packet_len()
    }

    /// Motion and button state from the user (dy positive = down, dz
    /// positive = towards the user).
    pub(super) fn motion(&mut self, dx: i32, dy: i32, dz: i32, buttons: MouseButtons) {
        if buttons != self.buttons {
            self.buttons = buttons;
            self.buttons_dirty = true;
        }
        // Without the wheel protocol, wheel turns have nowhere to go.
        let dz = if self.has_wheel() { dz } else { 0 };
        let (ax, ay, az) = self.accumulated;
        let clamp = |v: i32| v.clamp(-MAX_ACCUMULATED, MAX_ACCUMULATED);
        self.accumulated = (
            clamp(ax.saturating_add(dx)),
            clamp(ay.saturating_add(dy)),
            clamp(az.saturating_add(dz)),
        );
        if self.is_reporting() {
            self.flush_accumulated();
        }
    }

    /// Queues packets for the accumulated motion (and a button change)
    /// while there is room.
    fn flush_accumulated(&mut self) {
        if !self.is_reporting() || self.pending.is_some() {
            return;
        }
        while self.buttons_dirty || self.accumulated != (0, 0, 0) {
            if self.motion_packets_queued() >= MOTION_PACKETS_QUEUED
                || self.queue.len() + self.packet_len() > DEVICE_QUEUE_LIMIT
            {
                return;
            }
            let (dx, dy, dz) = self.accumulated;
            let (px, py) = (
                dx.clamp(MIN_DELTA, MAX_DELTA),
                dy.clamp(-MAX_DELTA, -MIN_DELTA),
            );
            let pz = if self.has_wheel() { dz.clamp(-8, 7) } else { 0 };
            self.accumulated = (dx - px, dy - py, if self.has_wheel() { dz - pz } else { 0 });
            let packet = self.packet(px, py, pz);
            self.queue.extend(packet);
        }
    }
}

/// The PS/2 2:1 scaling curve (applied in stream mode).
fn scale_2to1(v: i32) -> i32 {
    let magnitude = match v.unsigned_abs() {
        0 => 0,
        1 | 2 => 1,
        3 => 3,
        4 => 6,
        5 => 9,
        n => (2 * n).min(i32::MAX as u32) as i32,
    };
    if v < 0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> Mouse {
        let mut m = Mouse::default();
        m.command(0xf4);
        m.replies.clear();
        m
    }

    fn drain(m: &mut Mouse) -> Vec<u8> {
        std::iter::from_fn(|| m.pop()).collect()
    }

    fn left() -> MouseButtons {
        MouseButtons {
            left: true,
            ..Default::default()
        }
    }

    fn magic(m: &mut Mouse, rates: [u8; 3]) {
        for r in rates {
            m.command(0xf3);
            m.command(r);
        }
        m.command(0xf2);
    }

    #[test]
    fn motion_packet() {
        let mut m = enabled();
        m.motion(5, 3, 0, left());
        // dy=3 down on screen is -3 for PS/2.
        assert_eq!(drain(&mut m), vec![0x08 | 0x01 | 0x20, 5, (-3i8) as u8]);
    }

    #[test]
    fn large_motion_is_split() {
        let mut m = enabled();
        m.motion(600, 0, 0, MouseButtons::default());
        let out = drain(&mut m);
        assert_eq!(out.len(), 9);
        let total: i32 = out.chunks(3).map(|p| i32::from(p[1])).sum();
        assert_eq!(total, 600);
    }

    #[test]
    fn button_change_without_motion_sends_a_packet() {
        let right = MouseButtons {
            right: true,
            ..Default::default()
        };
        let mut m = enabled();
        m.motion(0, 0, 0, right);
        assert_eq!(drain(&mut m), vec![0x0a, 0, 0]);
        m.motion(0, 0, 0, right);
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn intellimouse_and_explorer() {
        let mut m = enabled();
        magic(&mut m, [200, 100, 80]);
        assert_eq!(
            drain(&mut m),
            vec![0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 3]
        );
        m.motion(0, 0, -1, MouseButtons::default());
        // ID 3: the wheel byte is a signed byte.
        assert_eq!(drain(&mut m), vec![0x08, 0, 0, 0xff]);
        magic(&mut m, [200, 200, 80]);
        assert_eq!(drain(&mut m).last(), Some(&4));
        let side = MouseButtons {
            side: true,
            ..Default::default()
        };
        m.motion(0, 0, 2, side);
        // ID 4: four bits of wheel, button 4 in bit 4.
        assert_eq!(drain(&mut m), vec![0x08, 0, 0, 0x12]);
        // Set Default keeps the protocol; reset goes back to ID 0.
        m.command(0xf6);
        m.command(0xf2);
        assert_eq!(drain(&mut m), vec![0xfa, 0xfa, 4]);
        m.command(0xff);
        m.command(0xf2);
        assert_eq!(drain(&mut m), vec![0xfa, 0xaa, 0x00, 0xfa, 0x00]);
        // 200/200/80 alone is not the Explorer sequence.
        magic(&mut m, [200, 200, 80]);
        assert_eq!(drain(&mut m).last(), Some(&0));
    }

    #[test]
    fn status_request() {
        let mut m = enabled();
        m.command(0xe8);
        m.command(3);
        m.command(0xe7);
        m.command(0xf3);
        m.command(40);
        m.motion(0, 0, 0, left());
        drain(&mut m);
        m.command(0xe9);
        // Enabled, 2:1 scaling, left button (bit 2 in the status byte).
        assert_eq!(drain(&mut m), vec![0xfa, 0x20 | 0x10 | 0x04, 3, 40]);
    }

    #[test]
    fn remote_mode_reports_on_request() {
        let mut m = enabled();
        m.command(0xf0);
        drain(&mut m);
        m.motion(10, -4, 0, MouseButtons::default());
        m.motion(5, 0, 0, MouseButtons::default());
        assert!(drain(&mut m).is_empty(), "no stream in remote mode");
        m.command(0xeb);
        assert_eq!(drain(&mut m), vec![0xfa, 0x08, 15, 4]);
        m.command(0xeb);
        assert_eq!(drain(&mut m), vec![0xfa, 0x08, 0, 0]);
        m.command(0xea);
        m.command(0xe9);
        assert_eq!(drain(&mut m)[2] & 0x40, 0, "back in stream mode");
    }

    #[test]
    fn wrap_mode_echoes() {
        let mut m = enabled();
        m.command(0xee);
        m.command(0x12);
        m.command(0xf4);
        m.command(0xec);
        m.command(0xf2);
        assert_eq!(drain(&mut m), vec![0xfa, 0x12, 0xf4, 0xfa, 0xfa, 0x00]);
    }

    #[test]
    fn scaling_2to1_curve() {
        let mut m = enabled();
        m.command(0xe7);
        drain(&mut m);
        m.motion(4, -5, 0, MouseButtons::default());
        assert_eq!(drain(&mut m), vec![0x08, 6, 9]);
        assert_eq!(scale_2to1(-7), -14);
    }

    #[test]
    fn a_flood_accumulates_instead_of_queueing() {
        let mut m = enabled();
        for _ in 0..100_000 {
            m.motion(3, 1, 0, MouseButtons::default());
        }
        assert!(m.queue.len() <= MOTION_PACKETS_QUEUED * 3);
        assert_eq!(m.accumulated.0, MAX_ACCUMULATED);
        // A button pressed and released in the flood is not lost: the last
        // state goes out.
        m.motion(0, 0, 0, left());
        let out = drain(&mut m);
        assert!(out.len() > MOTION_PACKETS_QUEUED * 3);
        assert_eq!(
            out[out.len() - 3] & 0x07,
            0x01,
            "left button in the last packet"
        );
        assert_eq!(m.accumulated, (0, 0, 0));
    }

    #[test]
    fn disabled_mouse_sends_nothing_and_keeps_no_backlog() {
        let mut m = Mouse::default();
        m.motion(100, 100, 0, left());
        assert!(drain(&mut m).is_empty());
        m.command(0xf4);
        // Enabling resets the motion counters: the ACK, then the buttons.
        assert_eq!(drain(&mut m), vec![0xfa, 0x09, 0, 0]);
    }
}
