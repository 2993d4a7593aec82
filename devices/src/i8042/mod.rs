//! The i8042 PS/2 controller (ports 0x60/0x64, IRQ 1 and 12) with a keyboard
//! and a mouse behind it.
//!
//! The controller owns one output byte; it refills it from its own replies
//! first, then the keyboard, then the mouse, raising IRQ 1 or 12 for each byte
//! when the configuration byte enables it. Pulsing the reset line (command
//! 0xfe, or clearing bit 0 of the output port) asks the VMM to reset.

mod keyboard;
mod mouse;

use std::collections::VecDeque;
use std::sync::Arc;

pub use keyboard::Keyboard;
pub use mouse::{Mouse, MouseButtons};

use crate::bus::BusDeviceMut;
use crate::interrupt::EdgeInterrupt;
use crate::system::{SystemEvent, SystemEvents};

pub const DATA_PORT: u64 = 0x60;
pub const COMMAND_PORT: u64 = 0x64;
pub const KEYBOARD_IRQ: u32 = 1;
pub const MOUSE_IRQ: u32 = 12;

/// Most bytes a PS/2 device holds for the guest; more input is dropped.
pub const DEVICE_QUEUE_LIMIT: usize = 256;

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
    Keyboard,
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
    keyboard_irq: Arc<dyn EdgeInterrupt>,
    mouse_irq: Arc<dyn EdgeInterrupt>,
    events: Arc<dyn SystemEvents>,
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
            keyboard_irq,
            mouse_irq,
            events,
        }
    }

    pub fn keyboard(&self) -> &Keyboard {
        &self.keyboard
    }

    /// Types a key given as PC AT set-1 scancode bytes (e.g. `[0xe0, 0x48]`).
    pub fn key_event(&mut self, set1: &[u8]) {
        let translate = self.config & CFG_TRANSLATE != 0;
        self.keyboard.key_event(set1, translate);
        self.refill();
    }

    /// Relative mouse motion (dy positive = down, as screens count), wheel
    /// steps (positive = towards the user) and the buttons now held.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: MouseButtons) {
        self.mouse.motion(dx, dy, dz, buttons);
        self.refill();
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
        self.replies.push_back((byte, Source::Controller));
    }

    /// Loads the next byte into the output buffer if it is empty, and raises
    /// the interrupt for it.
    fn refill(&mut self) {
        if self.output.is_some() {
            return;
        }
        let next = if let Some(reply) = self.replies.pop_front() {
            Some(reply)
        } else if self.config & CFG_KBD_DISABLED == 0 && self.keyboard.has_output() {
            self.keyboard.pop().map(|b| (b, Source::Keyboard))
        } else if self.config & CFG_AUX_DISABLED == 0 && self.mouse.has_output() {
            self.mouse.pop().map(|b| (b, Source::Mouse))
        } else {
            None
        };
        let Some((byte, source)) = next else { return };
        self.output = Some((byte, source));
        match source {
            Source::Mouse if self.config & CFG_AUX_INT != 0 => self.mouse_irq.trigger(),
            Source::Keyboard | Source::Controller if self.config & CFG_KBD_INT != 0 => {
                self.keyboard_irq.trigger()
            }
            _ => {}
        }
    }

    fn read_data(&mut self) -> u8 {
        let byte = match self.output.take() {
            Some((byte, _)) => byte,
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
            0xaa => {
                self.config |= CFG_SYS;
                self.reply(0x55);
            }
            0xad => self.config |= CFG_KBD_DISABLED,
            0xae => self.config &= !CFG_KBD_DISABLED,
            0xc0 => self.reply(0x00),
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
            Some(0x60) => self.config = byte,
            Some(0xd1) => {
                self.output_port = byte;
                if byte & OUT_RESET_LINE == 0 {
                    tracing::info!("reset requested through the i8042 output port");
                    self.events.request(SystemEvent::Reset);
                }
            }
            Some(0xd2) => self.replies.push_back((byte, Source::Keyboard)),
            Some(0xd3) => self.replies.push_back((byte, Source::Mouse)),
            Some(0xd4) => self.mouse.command(byte),
            _ => {
                self.config &= !CFG_KBD_DISABLED;
                let translate = self.config & CFG_TRANSLATE != 0;
                self.keyboard.command(byte, translate);
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

/// Pushes a byte unless the queue is full (a full PS/2 device drops input).
fn push_bounded(queue: &mut VecDeque<u8>, byte: u8) -> bool {
    if queue.len() >= DEVICE_QUEUE_LIMIT {
        return false;
    }
    queue.push_back(byte);
    true
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
        let mut r = rig();
        r.data(0xf4);
        r.drain();
        r.cmd(0xad);
        r.dev.key_event(&[0x1e]);
        assert_eq!(r.drain(), Vec::<u8>::new());
        r.cmd(0xae);
        assert_eq!(r.drain(), vec![0x1e]);
    }

    #[test]
    fn queues_are_bounded() {
        let mut r = rig();
        r.data(0xf4);
        r.drain();
        for _ in 0..10_000 {
            r.dev.key_event(&[0x1e]);
            r.dev.key_event(&[0x9e]);
        }
        assert!(r.drain().len() <= DEVICE_QUEUE_LIMIT + 1);
    }
}
