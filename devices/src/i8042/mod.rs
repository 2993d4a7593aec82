//! The i8042 PS/2 controller (ports 0x60/0x64, IRQ 1 and 12) with a keyboard
//! and a mouse behind it.
//!
//! The controller owns one output byte; it refills it from its own replies
//! first, then the keyboard, then the mouse, raising IRQ 1 or 12 for each byte
//! when the configuration byte enables it. Keyboard bytes pass through the
//! set-2 → set-1 translation while the configuration byte's translate bit is
//! set (the default). Pulsing the reset line (command 0xfe, or clearing bit 0
//! of the output port) asks the VMM to reset. When the guest changes the
//! keyboard LEDs, the [`LedObserver`] is told.

mod keyboard;
mod mouse;

use std::collections::VecDeque;
use std::sync::Arc;

pub use keyboard::{parse_set1, set2_sequence, translate, Key, KeyEvent, Keyboard, Leds};
pub use mouse::{Mouse, MouseButtons, MOTION_PACKETS_QUEUED};

/// Told when the guest changes the keyboard LEDs (called on a vCPU thread,
/// with the controller locked: must not block or call back into it).
pub trait LedObserver: Send + Sync {
    fn leds_changed(&self, leds: Leds);
}

use crate::bus::BusDeviceMut;
use crate::interrupt::EdgeInterrupt;
use crate::system::{SystemEvent, SystemEvents};

pub const DATA_PORT: u64 = 0x60;
pub const COMMAND_PORT: u64 = 0x64;
pub const KEYBOARD_IRQ: u32 = 1;
pub const MOUSE_IRQ: u32 = 12;

/// Most bytes a PS/2 device holds for the guest; more input is dropped.
pub const DEVICE_QUEUE_LIMIT: usize = 256;
/// Most controller replies waiting to be read (a guest that sends
/// commands without reading the answers loses the newest).
const CONTROLLER_REPLY_LIMIT: usize = 16;

// Status register bits.
const STS_OBF: u8 = 0x01;
const STS_SYS: u8 = 0x04;
const STS_CMD: u8 = 0x08;
const STS_UNLOCKED: u8 = 0x10;
const STS_AUX_OBF: u8 = 0x20;

// Configuration ("command byte") bits.
const CFG_KBD_INT: u8 = 0x01;
const CFG_AUX_INT: u8 = 0x02;
const CFG_SYS: u8 = 0x04;
const CFG_KBD_DISABLED: u8 = 0x10;
const CFG_AUX_DISABLED: u8 = 0x20;
const CFG_TRANSLATE: u8 = 0x40;

// Output port bits.
const OUT_RESET_LINE: u8 = 0x01;
const OUT_A20: u8 = 0x02;

/// Where the byte in the output buffer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Controller,
    /// A keyboard's reply to a command.
    Keyboard,
    /// A byte of a key's scancode sequence.
    Key,
    Mouse,
}

pub struct I8042 {
    config: u8,
    output_port: u8,
    last_write_was_command: bool,
    /// A controller command waiting for its data byte.
    pending: Option<u8>,
    output: Option<(u8, Source)>,
    replies: VecDeque<(u8, Source)>,
    keyboard: Keyboard,
    mouse: Mouse,
    /// A translated `F0` waits to set bit 7 of the next keyboard byte.
    translate_break: bool,
    keyboard_irq: Arc<dyn EdgeInterrupt>,
    mouse_irq: Arc<dyn EdgeInterrupt>,
    events: Arc<dyn SystemEvents>,
    led_observer: Option<Arc<dyn LedObserver>>,
}

impl I8042 {
    pub fn new(
        keyboard_irq: Arc<dyn EdgeInterrupt>,
        mouse_irq: Arc<dyn EdgeInterrupt>,
        events: Arc<dyn SystemEvents>,
    ) -> Self {
        I8042 {
            config: CFG_KBD_INT | CFG_SYS | CFG_AUX_DISABLED | CFG_TRANSLATE,
            output_port: OUT_RESET_LINE | OUT_A20,
            last_write_was_command: false,
            pending: None,
            output: None,
            replies: VecDeque::new(),
            keyboard: Keyboard::default(),
            mouse: Mouse::default(),
            translate_break: false,
            keyboard_irq,
            mouse_irq,
            events,
            led_observer: None,
        }
    }

    pub fn keyboard(&self) -> &Keyboard {
        &self.keyboard
    }

    pub fn mouse(&self) -> &Mouse {
        &self.mouse
    }

    /// Who to tell when the guest changes the keyboard LEDs.
    pub fn set_led_observer(&mut self, observer: Arc<dyn LedObserver>) {
        self.led_observer = Some(observer);
    }

    /// Types keys given as PC AT set-1 scancode bytes (e.g. `[0xe0, 0x48]`);
    /// unknown codes are dropped.
    pub fn key_event(&mut self, set1: &[u8]) {
        self.keyboard.key_event(set1);
        self.refill();
    }

    /// One key pressed or released.
    pub fn key(&mut self, event: KeyEvent) {
        self.keyboard.key(event);
        self.refill();
    }

    /// Relative mouse motion (dy positive = down, as screens count), wheel
    /// steps (positive = towards the user) and the buttons now held.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: MouseButtons) {
        self.mouse.motion(dx, dy, dz, buttons);
        self.refill();
    }

    /// A keyboard byte as the guest reads it (translated if enabled).
    fn next_keyboard_byte(&mut self) -> Option<(u8, Source)> {
        while let Some((byte, key)) = self.keyboard.pop() {
            let source = if key { Source::Key } else { Source::Keyboard };
            if self.config & CFG_TRANSLATE == 0 {
                return Some((byte, source));
            }
            if let Some(byte) = keyboard::translate(byte, &mut self.translate_break) {
                return Some((byte, source));
            }
        }
        None
    }

    fn status(&self) -> u8 {
        let mut status = STS_UNLOCKED;
        if self.config & CFG_SYS != 0 {
            status |= STS_SYS;
        }
        if self.last_write_was_command {
            status |= STS_CMD;
        }
        match self.output {
            Some((_, Source::Mouse)) => status |= STS_OBF | STS_AUX_OBF,
            Some(_) => status |= STS_OBF,
            None => {}
        }
        status
    }

    fn reply(&mut self, byte: u8) {
        self.push_reply(byte, Source::Controller);
    }

    fn push_reply(&mut self, byte: u8, source: Source) {
        if self.replies.len() < CONTROLLER_REPLY_LIMIT {
            self.replies.push_back((byte, source));
        }
    }

    /// Loads the next byte into the output buffer if it is empty, and raises
    /// the interrupt for it.
    fn refill(&mut self) {
        if self.output.is_some() {
            return;
        }
        let mut next = self.replies.pop_front();
        if next.is_none() && self.config & CFG_KBD_DISABLED == 0 {
            next = self.next_keyboard_byte();
        }
        if next.is_none() && self.config & CFG_AUX_DISABLED == 0 {
            next = self.mouse.pop().map(|b| (b, Source::Mouse));
        }
        let Some((byte, source)) = next else { return };
        self.output = Some((byte, source));
        self.raise_irq();
    }

    /// Raises the interrupt for the byte in the output buffer, if enabled.
    fn raise_irq(&self) {
        let Some((_, source)) = self.output else {
            return;
        };
        match source {
            Source::Mouse if self.config & CFG_AUX_INT != 0 => self.mouse_irq.trigger(),
            Source::Keyboard | Source::Key | Source::Controller
                if self.config & CFG_KBD_INT != 0 =>
            {
                self.keyboard_irq.trigger()
            }
            _ => {}
        }
    }

    fn read_data(&mut self) -> u8 {
        let byte = match self.output.take() {
            Some((byte, source)) => {
                if matches!(source, Source::Keyboard | Source::Key) {
                    self.keyboard.byte_read();
                }
                byte
            }
            None => 0,
        };
        self.refill();
        byte
    }

    fn write_command(&mut self, command: u8) {
        self.pending = None;
        match command {
            0x20 => self.reply(self.config),
            0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4 => self.pending = Some(command),
            0xa7 => self.config |= CFG_AUX_DISABLED,
            0xa8 => self.config &= !CFG_AUX_DISABLED,
            0xa9 | 0xab => self.reply(0x00), // interface tests pass
            0xa1 => {} // controller version: not implemented by many, no reply
            0xa4 => self.reply(0xf1), // no password installed
            0xaa => {
                self.config |= CFG_SYS;
                self.reply(0x55);
            }
            0xad => self.config |= CFG_KBD_DISABLED,
            0xae => self.config &= !CFG_KBD_DISABLED,
            0xc0 => self.reply(0x00),
            0xc1..=0xc3 => {}         // input port polling
            0xca => self.reply(0x01), // controller mode: PS/2
            0xcb => self.pending = Some(command),
            0xd0 => self.reply(self.output_port),
            0xdd => self.output_port &= !OUT_A20,
            0xdf => self.output_port |= OUT_A20,
            0xe0 => self.reply(0x00),
            // Pulse output lines; bit 0 low pulses the CPU reset line.
            0xf0..=0xff if command & 0x01 == 0 => {
                tracing::info!("reset requested through the i8042 (command {command:#x})");
                self.events.request(SystemEvent::Reset)
            }
            0xf0..=0xff => {}
            other => tracing::debug!("i8042: unknown controller command {other:#x}"),
        }
        self.refill();
    }

    fn write_data(&mut self, byte: u8) {
        match self.pending.take() {
            Some(0x60) => {
                let enabled_before = self.config & (CFG_KBD_INT | CFG_AUX_INT);
                self.config = byte;
                // A byte already waiting gets its interrupt once enabled.
                if self.config & (CFG_KBD_INT | CFG_AUX_INT) & !enabled_before != 0 {
                    self.raise_irq();
                }
            }
            Some(0xcb) => {}
            Some(0xd1) => {
                self.output_port = byte;
                if byte & OUT_RESET_LINE == 0 {
                    tracing::info!("reset requested through the i8042 output port");
                    self.events.request(SystemEvent::Reset);
                }
            }
            Some(0xd2) => self.push_reply(byte, Source::Keyboard),
            Some(0xd3) => self.push_reply(byte, Source::Mouse),
            Some(0xd4) => self.mouse.command(byte),
            _ => {
                // A key byte the guest has not read is taken back: the
                // keyboard drops its unsent keys on a command, and drivers
                // discard what arrives before the command's ACK (Linux's
                // libps2 does), so the guest would lose it unseen while the
                // keyboard believed it sent. (A release that follows a lost
                // press looks like a self-test result, BAT, to a translating
                // driver, which then resets the keyboard.) The rest of a
                // sequence the guest has begun follows the command's reply.
                if self.output.is_some_and(|(_, source)| source == Source::Key) {
                    self.output = None;
                    self.keyboard.byte_withdrawn();
                }
                self.config &= !CFG_KBD_DISABLED;
                let generation = self.keyboard.led_generation();
                self.keyboard.command(byte);
                if self.keyboard.led_generation() != generation {
                    if let Some(observer) = &self.led_observer {
                        observer.leds_changed(self.keyboard.leds());
                    }
                }
            }
        }
        self.refill();
    }
}

impl BusDeviceMut for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            0 => self.read_data(),
            // Offsets are from the data port: the command/status port is 4 further.
            4 => self.status(),
            _ => 0xff,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&byte) = data.first() else { return };
        match offset {
            0 => {
                self.last_write_was_command = false;
                self.write_data(byte);
            }
            4 => {
                self.last_write_was_command = true;
                self.write_command(byte);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Counter(AtomicUsize);
    impl EdgeInterrupt for Counter {
        fn trigger(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    #[derive(Default)]
    struct Events(Mutex<Vec<SystemEvent>>);
    impl SystemEvents for Events {
        fn request(&self, e: SystemEvent) {
            self.0.lock().unwrap().push(e);
        }
    }

    struct Rig {
        dev: I8042,
        kbd_irq: Arc<Counter>,
        aux_irq: Arc<Counter>,
        events: Arc<Events>,
    }

    fn rig() -> Rig {
        let kbd_irq = Arc::new(Counter::default());
        let aux_irq = Arc::new(Counter::default());
        let events = Arc::new(Events::default());
        let dev = I8042::new(kbd_irq.clone(), aux_irq.clone(), events.clone());
        Rig {
            dev,
            kbd_irq,
            aux_irq,
            events,
        }
    }

    /// A rig whose keyboard the guest has enabled (`F4`, its ACK read).
    fn scanning_rig() -> Rig {
        let mut r = rig();
        r.data(0xf4);
        r.drain();
        r
    }

    /// A xorshift64 generator: the same numbers for the same seed.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    impl Rig {
        fn cmd(&mut self, b: u8) {
            self.dev.write(4, &[b]);
        }
        fn data(&mut self, b: u8) {
            self.dev.write(0, &[b]);
        }
        fn status(&mut self) -> u8 {
            let mut s = [0];
            self.dev.read(4, &mut s);
            s[0]
        }
        fn drain(&mut self) -> Vec<u8> {
            let mut out = vec![];
            while self.status() & STS_OBF != 0 {
                let mut b = [0];
                self.dev.read(0, &mut b);
                out.push(b[0]);
            }
            out
        }
    }

    #[test]
    fn self_test_and_config_byte() {
        let mut r = rig();
        r.cmd(0xaa);
        assert_eq!(r.drain(), vec![0x55]);
        r.cmd(0x20);
        let config = r.drain()[0];
        r.cmd(0x60);
        r.data(config | CFG_AUX_INT);
        r.cmd(0x20);
        assert_eq!(r.drain(), vec![config | CFG_AUX_INT]);
    }

    #[test]
    fn reset_by_pulse_and_output_port() {
        let mut r = rig();
        r.cmd(0xfe);
        r.cmd(0xd1);
        r.data(0x00);
        assert_eq!(
            *r.events.0.lock().unwrap(),
            vec![SystemEvent::Reset, SystemEvent::Reset]
        );
    }

    #[test]
    fn keyboard_reset_and_identify() {
        let mut r = rig();
        r.data(0xff);
        assert_eq!(r.drain(), vec![0xfa, 0xaa]);
        r.data(0xf2);
        assert_eq!(r.drain(), vec![0xfa, 0xab, 0x41], "translated id");
        assert!(r.kbd_irq.0.load(Ordering::SeqCst) >= 5);
    }

    #[test]
    fn aux_loopback_raises_irq12() {
        let mut r = rig();
        r.cmd(0xa8);
        r.cmd(0x60);
        r.data(CFG_KBD_INT | CFG_AUX_INT | CFG_SYS | CFG_TRANSLATE);
        r.cmd(0xd3);
        r.data(0x5a);
        assert_eq!(r.status() & STS_AUX_OBF, STS_AUX_OBF);
        assert_eq!(r.drain(), vec![0x5a]);
        assert_eq!(r.aux_irq.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn mouse_reset_and_intellimouse_detection() {
        let mut r = rig();
        r.cmd(0xa8);
        r.cmd(0xd4);
        r.data(0xff);
        assert_eq!(r.drain(), vec![0xfa, 0xaa, 0x00]);
        for rate in [200, 100, 80] {
            r.cmd(0xd4);
            r.data(0xf3);
            r.cmd(0xd4);
            r.data(rate);
        }
        r.cmd(0xd4);
        r.data(0xf2);
        assert_eq!(
            r.drain(),
            vec![0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0x03]
        );
    }

    #[test]
    fn disabled_keyboard_holds_its_bytes() {
        let mut r = scanning_rig();
        r.cmd(0xad);
        r.dev.key_event(&[0x1e]);
        assert_eq!(r.drain(), Vec::<u8>::new());
        r.cmd(0xae);
        assert_eq!(r.drain(), vec![0x1e]);
    }

    #[derive(Default)]
    struct LedLog(Mutex<Vec<u8>>);
    impl LedObserver for LedLog {
        fn leds_changed(&self, leds: Leds) {
            self.0.lock().unwrap().push(leds.0);
        }
    }

    #[test]
    fn leds_reach_the_observer() {
        let mut r = rig();
        let log = Arc::new(LedLog::default());
        r.dev.set_led_observer(log.clone());
        r.data(0xed);
        r.data(0x04);
        r.data(0xed);
        r.data(0x04);
        r.data(0xed);
        r.data(0x06);
        r.data(0xff);
        assert_eq!(*log.0.lock().unwrap(), vec![4, 6, 0]);
    }

    #[test]
    fn translation_follows_the_configuration_byte() {
        let mut r = rig();
        r.dev.key_event(&[0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8]);
        assert_eq!(r.drain(), vec![0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8]);
        // Translation off: the guest sees set 2 (as atkbd with i8042.direct).
        r.cmd(0x60);
        r.data(CFG_KBD_INT | CFG_SYS);
        r.dev.key_event(&[0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8]);
        assert_eq!(
            r.drain(),
            vec![0x1c, 0xf0, 0x1c, 0xe0, 0x75, 0xe0, 0xf0, 0x75]
        );
        r.data(0xf2);
        assert_eq!(r.drain(), vec![0xfa, 0xab, 0x83], "untranslated id");
        // Set 3, untranslated (atkbd.set=3 with i8042.direct).
        r.data(0xf0);
        r.data(0x03);
        r.data(0xfa);
        r.data(0xf0);
        r.data(0x00);
        assert_eq!(r.drain(), vec![0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0x03]);
        r.dev.key_event(&[0xe0, 0x48, 0xe0, 0xc8]);
        assert_eq!(r.drain(), vec![0x63, 0xf0, 0x63]);
        // The scancode set reads back translated when translation is on.
        r.cmd(0x60);
        r.data(CFG_KBD_INT | CFG_SYS | CFG_TRANSLATE);
        r.data(0xf0);
        r.data(0x00);
        assert_eq!(r.drain(), vec![0xfa, 0xfa, 0x3f]);
    }

    #[test]
    fn enabling_interrupts_raises_one_for_a_waiting_byte() {
        let mut r = rig();
        r.cmd(0x60);
        r.data(CFG_SYS | CFG_TRANSLATE);
        r.dev.key_event(&[0x1e]);
        let before = r.kbd_irq.0.load(Ordering::SeqCst);
        r.cmd(0x60);
        r.data(CFG_KBD_INT | CFG_SYS | CFG_TRANSLATE);
        assert_eq!(r.kbd_irq.0.load(Ordering::SeqCst), before + 1);
        assert_eq!(r.drain(), vec![0x1e]);
    }

    #[test]
    fn mouse_through_the_controller() {
        let mut r = rig();
        r.cmd(0xa8);
        r.cmd(0x60);
        r.data(CFG_KBD_INT | CFG_AUX_INT | CFG_SYS | CFG_TRANSLATE);
        r.cmd(0xd4);
        r.data(0xf4);
        assert_eq!(r.drain(), vec![0xfa]);
        r.dev.mouse_event(
            -2,
            1,
            0,
            MouseButtons {
                left: true,
                ..Default::default()
            },
        );
        assert_eq!(r.status() & STS_AUX_OBF, STS_AUX_OBF);
        assert_eq!(r.drain(), vec![0x08 | 0x01 | 0x10 | 0x20, 0xfe, 0xff]);
        // Keyboard and mouse bytes interleave, each with its own IRQ.
        let (k, m) = (
            r.kbd_irq.0.load(Ordering::SeqCst),
            r.aux_irq.0.load(Ordering::SeqCst),
        );
        r.dev.key_event(&[0x1e]);
        r.dev.mouse_event(1, 0, 0, MouseButtons::default());
        assert_eq!(r.drain().len(), 4);
        assert_eq!(r.kbd_irq.0.load(Ordering::SeqCst), k + 1);
        assert_eq!(r.aux_irq.0.load(Ordering::SeqCst), m + 3);
    }

    #[test]
    fn linux_probe_sequence() {
        // What Linux's i8042 driver does at boot: flush, self-test, read
        // and write the configuration byte, the AUX loopback test (the MUX
        // probe sees its bytes come back unchanged: no multiplexer).
        let mut r = rig();
        r.drain();
        r.cmd(0xaa);
        assert_eq!(r.drain(), vec![0x55]);
        r.cmd(0x20);
        let ctr = r.drain()[0];
        assert_eq!(ctr & CFG_TRANSLATE, CFG_TRANSLATE);
        for byte in [0xf0, 0x56, 0xa4] {
            r.cmd(0xd3);
            r.data(byte);
            assert_eq!(r.drain(), vec![byte]);
        }
        r.cmd(0xa9);
        assert_eq!(r.drain(), vec![0x00]);
        r.cmd(0xa4);
        assert_eq!(r.drain(), vec![0xf1]);
        r.cmd(0x42); // unknown: ignored
        assert!(r.drain().is_empty());
    }

    #[test]
    fn random_guest_and_client_traffic_is_survived() {
        // Random port accesses and random input: no panic, bounded queues.
        let mut r = rig();
        let mut next = xorshift(0x1234_5678_9abc_def1);
        for _ in 0..200_000 {
            let v = next();
            let byte = (v >> 8) as u8;
            match v % 7 {
                0 => r.dev.write(4, &[byte]),
                1 => r.dev.write(0, &[byte]),
                2 | 3 => {
                    let mut b = [0u8; 1];
                    r.dev.read(v % 5, &mut b);
                }
                4 => r
                    .dev
                    .key_event(&(v >> 16).to_le_bytes()[..(v % 5) as usize]),
                5 => r.dev.mouse_event(
                    (v >> 16) as i16 as i32,
                    (v >> 32) as i16 as i32,
                    (v >> 48) as i8 as i32,
                    MouseButtons {
                        left: v & 1 << 60 != 0,
                        ..Default::default()
                    },
                ),
                _ => r.dev.write(4, &[0xd4]),
            }
            assert!(r.dev.replies.len() <= CONTROLLER_REPLY_LIMIT);
        }
        assert!(r.drain().len() <= 3 * DEVICE_QUEUE_LIMIT + 16);
    }

    #[test]
    fn unread_controller_replies_are_bounded() {
        let mut r = rig();
        for _ in 0..100_000 {
            r.cmd(0x20);
            r.cmd(0xd2);
            r.data(0x55);
        }
        assert!(r.dev.replies.len() <= CONTROLLER_REPLY_LIMIT);
        assert!(r.drain().len() <= CONTROLLER_REPLY_LIMIT + 1);
    }

    /// What Linux's atkbd makes of translated (set-1) bytes. It tells a
    /// left-shift release (0xaa) from the keyboard's self-test result (BAT,
    /// also 0xaa) only by having seen the shift press first; a BAT makes it
    /// reset the keyboard. `E0` makes the next byte an extended key.
    #[derive(Default)]
    struct TranslatedReader {
        extended: bool,
        shift_seen_down: bool,
        bats: usize,
        down: std::collections::BTreeSet<(bool, u8)>,
    }

    impl TranslatedReader {
        fn take(&mut self, byte: u8) {
            if byte == 0xe0 {
                self.extended = true;
                return;
            }
            let extended = std::mem::take(&mut self.extended);
            if !extended && byte == 0xaa && !self.shift_seen_down {
                self.bats += 1;
                return;
            }
            if !extended && byte & 0x7f == 0x2a {
                self.shift_seen_down = byte & 0x80 == 0;
            }
            if byte & 0x80 == 0 {
                self.down.insert((extended, byte));
            } else {
                self.down.remove(&(extended, byte & 0x7f));
            }
        }

        fn read_all(&mut self, r: &mut Rig) {
            for b in r.drain() {
                self.take(b);
            }
        }
    }

    /// Set-1 press and release of: left shift, A, arrow up (extended).
    const FLOOD_KEYS: [(&[u8], &[u8]); 3] = [
        (&[0x2a], &[0xaa]),
        (&[0x1e], &[0x9e]),
        (&[0xe0, 0x48], &[0xe0, 0xc8]),
    ];

    #[test]
    fn a_key_flood_with_led_commands_leaves_the_guest_in_step() {
        let mut r = scanning_rig();
        let mut guest = TranslatedReader::default();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut key = 0;
        for i in 0..300_000u32 {
            let v = next();
            // Press and release, as a flooding client sends them.
            if i % 2 == 0 {
                key = (v >> 40) as usize % FLOOD_KEYS.len();
                r.dev.key_event(FLOOD_KEYS[key].0);
            } else {
                r.dev.key_event(FLOOD_KEYS[key].1);
            }
            // The guest reads some of what is waiting.
            for _ in 0..v % 3 {
                if r.status() & STS_OBF != 0 {
                    let mut b = [0];
                    r.dev.read(0, &mut b);
                    guest.take(b[0]);
                }
            }
            if v.is_multiple_of(997) {
                // Set LEDs, as libps2 does: command, ACK, parameter, ACK.
                // Bytes read while waiting for the command's ACK are
                // dropped unseen; before the parameter's they are keys.
                for (byte, swallow) in [(0xed, true), ((v >> 32) as u8 & 7, false)] {
                    r.data(byte);
                    loop {
                        let mut b = [0];
                        assert!(r.status() & STS_OBF != 0, "no ACK");
                        r.dev.read(0, &mut b);
                        if b[0] == 0xfa {
                            break;
                        }
                        if !swallow {
                            guest.take(b[0]);
                        }
                    }
                }
            }
        }
        guest.read_all(&mut r);
        assert_eq!(guest.bats, 0, "a shift release without its press");
        assert!(guest.down.is_empty(), "keys left down: {:x?}", guest.down);
        // The keyboard still types.
        r.dev.key_event(&[0x1e, 0x9e]);
        assert_eq!(r.drain(), vec![0x1e, 0x9e]);
    }

    #[test]
    fn a_resend_command_repeats_an_unread_key_without_losing_its_release() {
        let mut r = scanning_rig();
        let mut guest = TranslatedReader::default();
        r.dev.key_event(&[0x1e]);
        r.data(0xfe);
        guest.read_all(&mut r);
        r.dev.key_event(&[0x9e]);
        guest.read_all(&mut r);
        assert!(guest.down.is_empty(), "keys left down: {:x?}", guest.down);
    }

    #[test]
    fn a_command_does_not_cut_an_extended_key_the_guest_began_to_read() {
        let mut r = scanning_rig();
        let mut guest = TranslatedReader::default();
        r.dev.key_event(&[0xe0, 0x48]);
        let mut b = [0];
        r.dev.read(0, &mut b);
        guest.take(b[0]);
        assert_eq!(b[0], 0xe0);
        r.data(0xed);
        let bytes = r.drain();
        // The ACK first (libps2 drops what comes before it), then the rest
        // of the key, which the driver passes on once the ACK is in.
        assert_eq!(bytes, vec![0xfa, 0x48]);
        guest.take(0x48);
        r.data(0x00);
        assert_eq!(r.drain(), vec![0xfa]);
        r.dev.key_event(&[0xe0, 0xc8]);
        guest.read_all(&mut r);
        assert!(
            guest.down.is_empty() && !guest.extended,
            "{:x?}",
            guest.down
        );
    }

    #[test]
    fn queues_are_bounded() {
        let mut r = scanning_rig();
        for _ in 0..10_000 {
            r.dev.key_event(&[0x1e]);
            r.dev.key_event(&[0x9e]);
        }
        let out = r.drain();
        assert!(out.len() <= DEVICE_QUEUE_LIMIT + 1);
        // Whole keys: presses and releases alternate, the last is a release.
        assert!(out.chunks(2).all(|p| p == [0x1e, 0x9e]), "{out:x?}");
    }
}
