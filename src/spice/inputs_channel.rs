//! The inputs channel (type 3): keyboard and mouse from the client, and
//! the keyboard LEDs back to it.
//!
//! Everything the client sends is decoded, checked and handed to an
//! [`InputSink`], a small SPICE-free trait the VMM implements (PS/2
//! keyboard and mouse, a tablet). Keys are PC AT scan code set 1 bytes
//! (`E0`/`E1` prefixes included). Keys and buttons still held when the
//! client goes away are released. Every 4 motion/position messages are
//! acknowledged (`MOUSE_MOTION_ACK`), without which clients stop sending
//! motion. Relative motion is used only in server mouse mode and absolute
//! positions only in client mode (as spice-server does); the sink is told
//! the mode, so buttons and the wheel go to the device that moves the
//! pointer. Lock-key state: we send the guest's LEDs (`INIT`,
//! `KEY_MODIFIERS`), and when the client says its locks differ, we press
//! the lock keys for it.

use std::sync::Arc;

use super::channel::{BaseMessage, ChannelError, Encode, Outbox};
use super::protocol::{channel, inputs_cap, inputs_msg, mouse_mode};
use super::session::{Changes, ChannelKind, Context, SpiceChannel};
use super::wire::{Caps, Reader, Writer};

/// Mouse buttons held down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MouseButtons(pub u8);

impl MouseButtons {
    pub const LEFT: u8 = 1;
    pub const MIDDLE: u8 = 2;
    pub const RIGHT: u8 = 4;
    pub const SIDE: u8 = 8;
    pub const EXTRA: u8 = 16;

    /// From SPICE's `buttons_state` mask (wheel bits dropped).
    fn from_spice(mask: u16) -> MouseButtons {
        let mut b = mask as u8 & 0x7;
        if mask & 0x20 != 0 {
            b |= Self::SIDE;
        }
        if mask & 0x40 != 0 {
            b |= Self::EXTRA;
        }
        MouseButtons(b)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Keyboard lock LEDs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyboardLeds {
    pub scroll_lock: bool,
    pub num_lock: bool,
    pub caps_lock: bool,
}

impl KeyboardLeds {
    /// SPICE's keyboard_modifier_flags.
    pub fn to_spice(self) -> u16 {
        u16::from(self.scroll_lock) | u16::from(self.num_lock) << 1 | u16::from(self.caps_lock) << 2
    }

    pub fn from_spice(flags: u16) -> KeyboardLeds {
        KeyboardLeds {
            scroll_lock: flags & 1 != 0,
            num_lock: flags & 2 != 0,
            caps_lock: flags & 4 != 0,
        }
    }
}

/// Where input goes: implemented by the VMM. Calls come from the SPICE
/// event loop thread and must not block (queue, bounded, and return).
pub trait InputSink: Send + Sync {
    /// Scan code set 1 bytes, in order (`E0 48` = arrow up pressed).
    fn key(&self, scancodes: &[u8]);
    /// Relative pointer motion (server mouse mode).
    fn relative_motion(&self, dx: i32, dy: i32, buttons: MouseButtons);
    /// Absolute pointer position in pixels of display channel `display`
    /// (client mouse mode; only offered when a tablet exists).
    fn absolute_position(&self, display: u8, x: u32, y: u32, buttons: MouseButtons);
    /// A button went down or up; `buttons` is the state after it.
    fn buttons(&self, buttons: MouseButtons);
    /// Wheel: negative is up (away from the user).
    fn wheel(&self, dz: i32, buttons: MouseButtons);
    /// The session's mouse mode: true for client mode (absolute positions),
    /// false for server mode (relative motion).
    fn mouse_mode(&self, _client: bool) {}
}

/// A sink that drops everything (no input devices).
pub struct NoInput;

impl InputSink for NoInput {
    fn key(&self, _: &[u8]) {}
    fn relative_motion(&self, _: i32, _: i32, _: MouseButtons) {}
    fn absolute_position(&self, _: u8, _: u32, _: u32, _: MouseButtons) {}
    fn buttons(&self, _: MouseButtons) {}
    fn wheel(&self, _: i32, _: MouseButtons) {}
}

/// `INPUTS_INIT` / `KEY_MODIFIERS` (server → client): the guest's LEDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputsInit(pub KeyboardLeds);

impl Encode for InputsInit {
    const TYPE: u16 = inputs_msg::INIT;
    fn encode(&self, w: &mut Writer) {
        w.u16(self.0.to_spice());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyModifiers(pub KeyboardLeds);

impl Encode for KeyModifiers {
    const TYPE: u16 = inputs_msg::KEY_MODIFIERS;
    fn encode(&self, w: &mut Writer) {
        w.u16(self.0.to_spice());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MouseMotionAck;

impl Encode for MouseMotionAck {
    const TYPE: u16 = inputs_msg::MOUSE_MOTION_ACK;
    fn encode(&self, _: &mut Writer) {}
}

/// Client → server messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputsMessage {
    Base(BaseMessage),
    KeyDown(u32),
    KeyUp(u32),
    KeyModifiers(u16),
    KeyScancode(Vec<u8>),
    MouseMotion {
        dx: i32,
        dy: i32,
        buttons: u16,
    },
    MousePosition {
        x: u32,
        y: u32,
        buttons: u16,
        display: u8,
    },
    MousePress {
        button: u8,
        buttons: u16,
    },
    MouseRelease {
        button: u8,
        buttons: u16,
    },
}

impl InputsMessage {
    pub fn decode(msg_type: u16, body: &[u8]) -> Result<InputsMessage, ChannelError> {
        if let Some(base) = BaseMessage::decode(msg_type, body)? {
            return Ok(InputsMessage::Base(base));
        }
        let bad = ChannelError::malformed(msg_type);
        let mut r = Reader::new(body);
        Ok(match msg_type {
            inputs_msg::KEY_DOWN => InputsMessage::KeyDown(r.u32("code").map_err(bad)?),
            inputs_msg::KEY_UP => InputsMessage::KeyUp(r.u32("code").map_err(bad)?),
            inputs_msg::CLIENT_KEY_MODIFIERS => {
                InputsMessage::KeyModifiers(r.u16("modifiers").map_err(bad)?)
            }
            inputs_msg::KEY_SCANCODE => InputsMessage::KeyScancode(body.to_vec()),
            inputs_msg::MOUSE_MOTION => InputsMessage::MouseMotion {
                dx: r.i32("dx").map_err(&bad)?,
                dy: r.i32("dy").map_err(&bad)?,
                buttons: r.u16("buttons_state").map_err(&bad)?,
            },
            inputs_msg::MOUSE_POSITION => InputsMessage::MousePosition {
                x: r.u32("x").map_err(&bad)?,
                y: r.u32("y").map_err(&bad)?,
                buttons: r.u16("buttons_state").map_err(&bad)?,
                display: r.u8("display_id").map_err(&bad)?,
            },
            inputs_msg::MOUSE_PRESS | inputs_msg::MOUSE_RELEASE => {
                let button = r.u8("button").map_err(&bad)?;
                let buttons = r.u16("buttons_state").map_err(&bad)?;
                if msg_type == inputs_msg::MOUSE_PRESS {
                    InputsMessage::MousePress { button, buttons }
                } else {
                    InputsMessage::MouseRelease { button, buttons }
                }
            }
            other => return Err(ChannelError::UnknownType(other)),
        })
    }
}

/// Motion messages per `MOUSE_MOTION_ACK` (`SPICE_INPUT_MOTION_ACK_BUNCH`).
pub const MOTION_ACK_BUNCH: u32 = 4;
const BUTTON_WHEEL_UP: u8 = 4;
const BUTTON_WHEEL_DOWN: u8 = 5;
const SCROLL_LOCK: u8 = 0x46;
const NUM_LOCK: u8 = 0x45;
const CAPS_LOCK: u8 = 0x3a;

/// Which keys are down (plain and E0-prefixed make codes).
#[derive(Debug, Default)]
struct PressedKeys {
    plain: [u128; 1],
    extended: [u128; 1],
}

impl PressedKeys {
    fn set(bits: &mut [u128; 1], code: u8, down: bool) {
        let bit = 1u128 << (code & 0x7f);
        if down {
            bits[0] |= bit;
        } else {
            bits[0] &= !bit;
        }
    }

    /// Follows a set-1 byte sequence.
    fn track(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                0xe0 if i + 1 < bytes.len() => {
                    let code = bytes[i + 1];
                    Self::set(&mut self.extended, code, code & 0x80 == 0);
                    i += 2;
                }
                // Pause (E1 1D 45 …) has no release to track.
                0xe1 => i += 3,
                code => {
                    Self::set(&mut self.plain, code, code & 0x80 == 0);
                    i += 1;
                }
            }
        }
    }

    fn is_down(&self, code: u8) -> bool {
        self.plain[0] & (1u128 << (code & 0x7f)) != 0
    }

    /// Release codes for every key still down.
    fn releases(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for code in 0..128u8 {
            if self.plain[0] & (1u128 << code) != 0 {
                out.push(code | 0x80);
            }
            if self.extended[0] & (1u128 << code) != 0 {
                out.extend_from_slice(&[0xe0, code | 0x80]);
            }
        }
        out
    }
}

/// KEY_DOWN/KEY_UP code: up to four bytes, low byte first, ending at a zero.
fn code_bytes(code: u32) -> Vec<u8> {
    code.to_le_bytes()
        .into_iter()
        .take_while(|&b| b != 0)
        .collect()
}

/// The server side of one inputs channel connection.
pub struct InputsChannel {
    sink: Arc<dyn InputSink>,
    pressed: PressedKeys,
    buttons: MouseButtons,
    motions: u32,
    guest_leds: KeyboardLeds,
    mouse_mode: u16,
}

impl InputsChannel {
    /// Queues `INPUTS_INIT` with the guest's LEDs.
    pub fn start(sink: Arc<dyn InputSink>, guest_leds: KeyboardLeds, out: &mut Outbox) -> Self {
        out.push(&InputsInit(guest_leds));
        InputsChannel {
            sink,
            pressed: PressedKeys::default(),
            buttons: MouseButtons::default(),
            motions: 0,
            guest_leds,
            mouse_mode: mouse_mode::SERVER,
        }
    }

    /// The session's mouse mode changed (`mouse_mode::SERVER` or `CLIENT`).
    pub fn set_mouse_mode(&mut self, mode: u16) {
        self.mouse_mode = mode;
    }

    /// The guest changed its keyboard LEDs.
    pub fn set_guest_leds(&mut self, leds: KeyboardLeds, out: &mut Outbox) {
        if leds != self.guest_leds {
            self.guest_leds = leds;
            out.push(&KeyModifiers(leds));
        }
    }

    fn keys(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.pressed.track(bytes);
            self.sink.key(bytes);
        }
    }

    fn motion(&mut self, out: &mut Outbox) {
        self.motions = self.motions.wrapping_add(1);
        if self.motions.is_multiple_of(MOTION_ACK_BUNCH) {
            out.push(&MouseMotionAck);
        }
    }

    pub fn handle(
        &mut self,
        msg_type: u16,
        body: &[u8],
        out: &mut Outbox,
    ) -> Result<(), ChannelError> {
        match InputsMessage::decode(msg_type, body)? {
            InputsMessage::Base(_) => {}
            InputsMessage::KeyDown(code) | InputsMessage::KeyUp(code) => {
                self.keys(&code_bytes(code))
            }
            InputsMessage::KeyScancode(bytes) => self.keys(&bytes),
            InputsMessage::KeyModifiers(flags) => {
                let wanted = KeyboardLeds::from_spice(flags);
                let locks = [
                    (wanted.scroll_lock, self.guest_leds.scroll_lock, SCROLL_LOCK),
                    (wanted.num_lock, self.guest_leds.num_lock, NUM_LOCK),
                    (wanted.caps_lock, self.guest_leds.caps_lock, CAPS_LOCK),
                ];
                for (want, have, key) in locks {
                    if want != have && !self.pressed.is_down(key) {
                        self.sink.key(&[key, key | 0x80]);
                    }
                }
            }
            InputsMessage::MouseMotion { dx, dy, buttons } => {
                if self.mouse_mode == mouse_mode::SERVER {
                    self.buttons = MouseButtons::from_spice(buttons);
                    self.sink.relative_motion(dx, dy, self.buttons);
                }
                self.motion(out);
            }
            InputsMessage::MousePosition {
                x,
                y,
                buttons,
                display,
            } => {
                if self.mouse_mode == mouse_mode::CLIENT {
                    self.buttons = MouseButtons::from_spice(buttons);
                    self.sink.absolute_position(display, x, y, self.buttons);
                }
                self.motion(out);
            }
            InputsMessage::MousePress { button, buttons } => {
                self.buttons = MouseButtons::from_spice(buttons);
                match button {
                    BUTTON_WHEEL_UP => self.sink.wheel(-1, self.buttons),
                    BUTTON_WHEEL_DOWN => self.sink.wheel(1, self.buttons),
                    _ => self.sink.buttons(self.buttons),
                }
            }
            InputsMessage::MouseRelease { button, buttons } => {
                self.buttons = MouseButtons::from_spice(buttons);
                if button != BUTTON_WHEEL_UP && button != BUTTON_WHEEL_DOWN {
                    self.sink.buttons(self.buttons);
                }
            }
        }
        Ok(())
    }

    /// The client is gone: let go of everything it held.
    pub fn release_all(&mut self) {
        let releases = self.pressed.releases();
        if !releases.is_empty() {
            self.sink.key(&releases);
        }
        self.pressed = PressedKeys::default();
        if !self.buttons.is_empty() {
            self.buttons = MouseButtons::default();
            self.sink.buttons(self.buttons);
        }
    }
}

/// The inputs channel kind: one per server.
pub const KIND: ChannelKind = ChannelKind {
    channel_type: channel::INPUTS,
    name: "inputs",
    count: |_| 1,
    caps: || Caps::from_bits(&[inputs_cap::KEY_SCANCODE]),
    open: |o, out| {
        let mut channel = InputsChannel::start(o.server.input.clone(), o.server.guest_leds, out);
        channel.set_mouse_mode(o.session.view.mouse_mode);
        Box::new(channel)
    },
};

impl SpiceChannel for InputsChannel {
    fn receive(
        &mut self,
        msg_type: u16,
        body: &[u8],
        cx: &mut Context,
    ) -> Result<(), ChannelError> {
        self.handle(msg_type, body, cx.out)
    }

    fn update(&mut self, changes: &Changes, out: &mut Outbox) {
        self.set_guest_leds(changes.guest_leds, out);
        if let Some(view) = changes.view {
            self.set_mouse_mode(view.mouse_mode);
        }
    }

    fn closed(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spice::wire::{next_frame, HeaderMode};
    use std::sync::Mutex;

    /// Records what the channel hands to the VMM.
    #[derive(Default)]
    pub struct Recorder(pub Mutex<Vec<String>>);

    impl InputSink for Recorder {
        fn key(&self, s: &[u8]) {
            self.0.lock().unwrap().push(format!("key {s:02x?}"));
        }
        fn relative_motion(&self, dx: i32, dy: i32, b: MouseButtons) {
            self.0
                .lock()
                .unwrap()
                .push(format!("rel {dx} {dy} {}", b.0));
        }
        fn absolute_position(&self, d: u8, x: u32, y: u32, b: MouseButtons) {
            self.0
                .lock()
                .unwrap()
                .push(format!("abs {d} {x} {y} {}", b.0));
        }
        fn buttons(&self, b: MouseButtons) {
            self.0.lock().unwrap().push(format!("buttons {}", b.0));
        }
        fn wheel(&self, dz: i32, b: MouseButtons) {
            self.0.lock().unwrap().push(format!("wheel {dz} {}", b.0));
        }
    }

    fn types(out: &mut Outbox) -> Vec<(u16, Vec<u8>)> {
        let bytes = out.take_bytes();
        let mut at = 0;
        let mut v = Vec::new();
        while let Some((h, b, used)) = next_frame(HeaderMode::Mini, &bytes[at..], u32::MAX).unwrap()
        {
            v.push((h.msg_type, b.to_vec()));
            at += used;
        }
        v
    }

    fn setup() -> (Arc<Recorder>, InputsChannel, Outbox) {
        let rec = Arc::new(Recorder::default());
        let mut out = Outbox::new(HeaderMode::Mini);
        let leds = KeyboardLeds {
            num_lock: true,
            ..Default::default()
        };
        let channel = InputsChannel::start(rec.clone(), leds, &mut out);
        (rec, channel, out)
    }

    fn take(rec: &Recorder) -> Vec<String> {
        std::mem::take(&mut *rec.0.lock().unwrap())
    }

    #[test]
    fn keys_including_extended_and_pause() {
        let (rec, mut ch, mut out) = setup();
        assert_eq!(types(&mut out), vec![(101, vec![2, 0])]);
        ch.handle(101, &0x1eu32.to_le_bytes(), &mut out).unwrap();
        ch.handle(102, &0x9eu32.to_le_bytes(), &mut out).unwrap();
        ch.handle(101, &0x1de0u32.to_le_bytes(), &mut out).unwrap(); // right ctrl
        ch.handle(101, &0x1de1u32.to_le_bytes(), &mut out).unwrap(); // pause, part 1
        ch.handle(101, &0x45u32.to_le_bytes(), &mut out).unwrap();
        ch.handle(104, &[0x10, 0x90], &mut out).unwrap();
        assert_eq!(
            take(&rec),
            vec![
                "key [1e]",
                "key [9e]",
                "key [e0, 1d]",
                "key [e1, 1d]",
                "key [45]",
                "key [10, 90]"
            ]
        );
        // Disconnect releases what is held: num lock (45) and right ctrl.
        ch.release_all();
        assert_eq!(take(&rec), vec!["key [e0, 9d, c5]"]);
        assert!(types(&mut out).is_empty());
    }

    #[test]
    fn mouse_and_motion_acks() {
        let (rec, mut ch, mut out) = setup();
        types(&mut out);
        let motion = |dx: i32, dy: i32, b: u16| {
            let mut w = Writer::new();
            w.i32(dx).i32(dy).u16(b);
            w.into_bytes()
        };
        for i in 0..8 {
            ch.handle(111, &motion(i, -i, 1), &mut out).unwrap();
        }
        assert_eq!(types(&mut out), vec![(111, vec![]), (111, vec![])]);
        let mut pos = Writer::new();
        pos.u32(100).u32(200).u16(0x24).u8(1);
        let pos = pos.into_bytes();
        // Positions count only in client mode, motion only in server mode.
        ch.handle(112, &pos, &mut out).unwrap();
        ch.set_mouse_mode(mouse_mode::CLIENT);
        ch.handle(111, &motion(5, 5, 0), &mut out).unwrap();
        ch.handle(112, &pos, &mut out).unwrap();
        ch.handle(113, &[3, 4, 0], &mut out).unwrap();
        ch.handle(113, &[4, 0, 0], &mut out).unwrap();
        ch.handle(114, &[4, 0, 0], &mut out).unwrap();
        ch.handle(113, &[5, 0, 0], &mut out).unwrap();
        ch.handle(114, &[3, 0, 0], &mut out).unwrap();
        let log = take(&rec);
        assert_eq!(log[0], "rel 0 0 1");
        assert_eq!(log[7], "rel 7 -7 1");
        assert_eq!(
            log[8..],
            [
                "abs 1 100 200 12",
                "buttons 4",
                "wheel -1 0",
                "wheel 1 0",
                "buttons 0"
            ]
        );
        // A button held at disconnect is released.
        ch.handle(113, &[1, 1, 0], &mut out).unwrap();
        take(&rec);
        ch.release_all();
        assert_eq!(take(&rec), vec!["buttons 0"]);
    }

    #[test]
    fn lock_keys_follow_the_client_and_leds_go_back() {
        let (rec, mut ch, mut out) = setup();
        types(&mut out);
        // Guest: num lock on. Client: caps lock on, num off.
        ch.handle(103, &[4, 0], &mut out).unwrap();
        assert_eq!(take(&rec), vec!["key [45, c5]", "key [3a, ba]"]);
        ch.set_guest_leds(
            KeyboardLeds {
                caps_lock: true,
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(types(&mut out), vec![(102, vec![4, 0])]);
        ch.set_guest_leds(
            KeyboardLeds {
                caps_lock: true,
                ..Default::default()
            },
            &mut out,
        );
        assert!(types(&mut out).is_empty());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let (_rec, mut ch, mut out) = setup();
        assert!(ch.handle(101, &[1, 2], &mut out).is_err());
        assert!(ch.handle(111, &[0; 9], &mut out).is_err());
        assert!(ch.handle(112, &[0; 10], &mut out).is_err());
        assert!(ch.handle(113, &[1, 0], &mut out).is_err());
        assert!(ch.handle(103, &[1], &mut out).is_err());
        assert!(matches!(
            ch.handle(120, &[], &mut out),
            Err(ChannelError::UnknownType(120))
        ));
    }
}
