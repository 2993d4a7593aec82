//! The PS/2 keyboard (an IBM MF-II): scancode sets 1, 2 and 3, LEDs,
//! typematic, identify, echo, reset, and set-3 key types, as Linux's atkbd
//! and Windows' i8042prt drive it.
//!
//! Keys arrive as PC AT set-1 scancodes (what SPICE clients send) and are
//! parsed into [`KeyEvent`]s; unknown codes are dropped. The keyboard emits
//! bytes in the scancode set the guest selected (set 2 after reset); the
//! controller translates them to set 1 when its translation bit is on (see
//! [`translate`]), which is what PC operating systems use.
//!
//! The output queue is bounded. A sequence is never cut: a make code that
//! does not fit is dropped, and a break code that does not fit is owed and
//! sent as soon as there is room, so a flood can lose key presses but never
//! leave a key stuck down in the guest.

use std::collections::VecDeque;

use super::DEVICE_QUEUE_LIMIT;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
/// The command asking the keyboard to send its last byte again.
const RESEND_COMMAND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;
const ECHO: u8 = 0xee;
const BREAK_PREFIX: u8 = 0xf0;
/// Power-on typematic setting: 10.9 characters/s after 500 ms.
const DEFAULT_TYPEMATIC: u8 = 0x2b;

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

/// A key, named by its set-1 make code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// A one-byte code, 0x01..=0x7f.
    Plain(u8),
    /// An `E0`-prefixed code, 0x01..=0x7f.
    Extended(u8),
    /// Pause/Break (`E1 1D 45`): make only.
    Pause,
}

impl Key {
    /// The key's set-1 make or break bytes.
    pub fn set1(self, pressed: bool) -> Vec<u8> {
        let flag = if pressed { 0 } else { 0x80 };
        match self {
            Key::Plain(code) => vec![code | flag],
            Key::Extended(code) => vec![0xe0, code | flag],
            Key::Pause => vec![0xe1, 0x1d | flag, 0x45 | flag],
        }
    }

    /// Whether the key exists on the keyboard we emulate.
    pub fn is_known(self) -> bool {
        match self {
            // The main block, keypad, F1-F12, the 102nd key, F13-F16 and the
            // Japanese/Brazilian keys; other codes have no key (and some of
            // their break codes would look like ACK or RESEND).
            Key::Plain(code) => matches!(code, 0x01..=0x5f | 0x70 | 0x73 | 0x79 | 0x7b | 0x7d),
            Key::Extended(code) => code < 0x80 && EXTENDED_KEYS.contains(&code),
            Key::Pause => true,
        }
    }
}

/// A key going down (make) or up (break).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEvent {
    pub key: Key,
    pub pressed: bool,
}

/// Parses set-1 scancode bytes (as SPICE clients send them) into key
/// events. Unknown codes, stray prefixes and truncated sequences are
/// dropped; what follows them is still parsed.
pub fn parse_set1(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut events = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let (key, pressed, used) = match byte {
            0xe0 => match bytes.get(i + 1) {
                Some(&next) if next != 0xe0 && next != 0xe1 => {
                    (Key::Extended(next & 0x7f), next & 0x80 == 0, 2)
                }
                _ => {
                    i += 1;
                    continue;
                }
            },
            0xe1 => match bytes.get(i + 1..i + 3) {
                Some([0x1d, 0x45]) => (Key::Pause, true, 3),
                // The break half of Pause carries no information.
                Some([0x9d, 0xc5]) => {
                    i += 3;
                    continue;
                }
                _ => {
                    i += 1;
                    continue;
                }
            },
            _ => (Key::Plain(byte & 0x7f), byte & 0x80 == 0, 1),
        };
        i += used;
        if key.is_known() {
            events.push(KeyEvent { key, pressed });
        }
    }
    events
}

/// The set of keys (plain and extended) some state applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct KeySet {
    plain: u128,
    extended: u128,
}

impl KeySet {
    fn bit(key: Key) -> Option<(bool, u128)> {
        match key {
            Key::Plain(code) => Some((false, 1u128 << (code & 0x7f))),
            Key::Extended(code) => Some((true, 1u128 << (code & 0x7f))),
            Key::Pause => None,
        }
    }

    fn contains(&self, key: Key) -> bool {
        match Self::bit(key) {
            Some((false, bit)) => self.plain & bit != 0,
            Some((true, bit)) => self.extended & bit != 0,
            None => false,
        }
    }

    fn set(&mut self, key: Key, on: bool) {
        let Some((extended, bit)) = Self::bit(key) else {
            return;
        };
        let word = if extended {
            &mut self.extended
        } else {
            &mut self.plain
        };
        if on {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }

    fn is_empty(&self) -> bool {
        self.plain == 0 && self.extended == 0
    }

    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        (0..128u8)
            .filter(|c| self.plain & (1u128 << c) != 0)
            .map(Key::Plain)
            .chain(
                (0..128u8)
                    .filter(|c| self.extended & (1u128 << c) != 0)
                    .map(Key::Extended),
            )
    }
}

/// A command waiting for its parameter byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Leds,
    Typematic,
    ScancodeSet,
    /// Set-3 key-type commands (0xfb/0xfc/0xfd) take a list of keys,
    /// ended by the next command.
    KeyTypes(KeyType),
}

/// What a set-3 key sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    MakeOnly,
    MakeBreak,
}

/// A byte waiting to be sent, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// A reply to a command.
    Reply(u8),
    /// Part of a key's sequence: whether it is the sequence's first byte,
    /// and on the last byte the event, which the guest has once it reads
    /// that byte.
    Key(u8, bool, Option<KeyEvent>),
}

impl Queued {
    fn byte(self) -> u8 {
        match self {
            Queued::Reply(b) | Queued::Key(b, ..) => b,
        }
    }

    fn kind(self) -> ByteKind {
        match self {
            Queued::Reply(_) => ByteKind::Reply,
            Queued::Key(_, true, _) => ByteKind::KeyStart,
            Queued::Key(_, false, _) => ByteKind::KeyRest,
        }
    }
}

/// What a byte the keyboard sends is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteKind {
    /// A reply to a command.
    Reply,
    /// The first byte of a key's sequence.
    KeyStart,
    /// A later byte of a key's sequence (after `E0`, `F0`, …).
    KeyRest,
}

#[derive(Debug)]
pub struct Keyboard {
    queue: VecDeque<Queued>,
    scanning: bool,
    scancode_set: u8,
    leds: Leds,
    typematic: u8,
    pending: Option<Pending>,
    /// Bumped each time the guest changes the LEDs, so observers can poll.
    led_generation: u64,
    /// Set-3 codes that send a break code (bit per code).
    set3_breaks: [u128; 2],
    /// Keys the user holds down (as the client said).
    user_down: KeySet,
    /// Keys the guest has seen go down and not up (bytes sent).
    guest_down: KeySet,
    /// Keys that are down once the queue is sent.
    queued_down: KeySet,
    /// Break codes that did not fit in the queue, sent when there is room.
    owed: KeySet,
    /// The last byte the guest read, for the resend command.
    last_sent: u8,
    /// What the byte in the controller's output buffer was made of (a
    /// translated `F0 xx` is two). A key counts as sent once the guest
    /// reads the byte that ends its sequence.
    in_output: Vec<Queued>,
    /// The rest of a sequence the guest has begun to read, set aside while
    /// a command is answered.
    resume: Vec<Queued>,
}

impl Default for Keyboard {
    fn default() -> Self {
        Keyboard {
            queue: VecDeque::new(),
            scanning: true,
            scancode_set: 2,
            leds: Leds::default(),
            typematic: DEFAULT_TYPEMATIC,
            pending: None,
            led_generation: 0,
            set3_breaks: SET3_DEFAULT_BREAKS,
            user_down: KeySet::default(),
            guest_down: KeySet::default(),
            queued_down: KeySet::default(),
            owed: KeySet::default(),
            last_sent: 0,
            in_output: Vec::new(),
            resume: Vec::new(),
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

    /// The scancode set selected (1, 2 or 3).
    pub fn scancode_set(&self) -> u8 {
        self.scancode_set
    }

    /// The typematic rate/delay byte the guest set (we do not repeat keys
    /// ourselves: clients send repeated presses).
    pub fn typematic(&self) -> u8 {
        self.typematic
    }

    pub fn is_scanning(&self) -> bool {
        self.scanning
    }

    /// The next byte for the controller's output buffer, and whether it is
    /// part of a key (not a reply). The key counts as sent once the guest
    /// reads its last byte ([`Self::byte_read`]).
    /// The next byte for the controller's output buffer, and whether it is
    /// part of a key (not a reply). Say [`Self::byte_read`] when the guest
    /// has read it.
    pub(super) fn pop(&mut self) -> Option<(u8, bool)> {
        let entry = self.queue.pop_front()?;
        if self.in_output.len() >= 4 {
            // Only a translated `F0` is absorbed, and never twice in a row;
            // stay bounded whatever happens.
            self.in_output.clear();
        }
        self.in_output.push(entry);
        self.pay_owed();
        Some((entry.byte(), entry.kind() != ByteKind::Reply))
    }

    /// The guest read the keyboard's byte in the controller's output buffer.
    pub(super) fn byte_read(&mut self) {
        for entry in self.in_output.drain(..) {
            if let Queued::Key(_, _, Some(event)) = entry {
                self.guest_down.set(event.key, event.pressed);
            }
            self.last_sent = entry.byte();
        }
    }

    /// The key byte in the controller's output buffer was taken back
    /// unread (see `I8042::write_data`); a command follows.
    pub(super) fn byte_withdrawn(&mut self) {
        for entry in self.in_output.drain(..).rev() {
            self.queue.push_front(entry);
        }
    }

    fn room(&self) -> usize {
        DEVICE_QUEUE_LIMIT.saturating_sub(self.queue.len())
    }

    /// A reply to a command (always fits: a command first drops the key
    /// bytes not sent yet, and the guest reads replies before it sends more).
    fn reply(&mut self, byte: u8) {
        if self.queue.len() < DEVICE_QUEUE_LIMIT + 8 {
            self.queue.push_back(Queued::Reply(byte));
        }
    }

    /// Drops the key bytes not sent yet, as a keyboard does when it gets a
    /// command, except the rest of a sequence the guest has begun to read:
    /// that is set aside to follow the command's reply (cut, an `E0` would
    /// turn the guest's next key into another; and drivers drop what comes
    /// before the ACK). Keys left down that the user has released since are
    /// owed a break code, so none stays down.
    fn discard_keys(&mut self) {
        let started = self
            .queue
            .iter()
            .take_while(|q| q.kind() == ByteKind::KeyRest)
            .count();
        self.resume.extend(self.queue.drain(..started));
        self.queue.retain(|q| q.kind() == ByteKind::Reply);
        self.queued_down = self.guest_down;
        for entry in &self.resume {
            if let Queued::Key(_, _, Some(event)) = entry {
                self.queued_down.set(event.key, event.pressed);
            }
        }
        self.owed = KeySet {
            plain: self.queued_down.plain & !self.user_down.plain,
            extended: self.queued_down.extended & !self.user_down.extended,
        };
    }

    fn set_leds(&mut self, leds: Leds) {
        if self.leds != leds {
            self.leds = leds;
            self.led_generation += 1;
        }
    }

    /// Set Default (0xf6) values; Disable (0xf5) and reset load them too.
    fn load_defaults(&mut self) {
        self.scancode_set = 2;
        self.typematic = DEFAULT_TYPEMATIC;
        self.set3_breaks = SET3_DEFAULT_BREAKS;
    }

    /// A byte the guest wrote to the keyboard.
    pub(super) fn command(&mut self, byte: u8) {
        self.discard_keys();
        self.answer(byte);
        let resume = std::mem::take(&mut self.resume);
        self.queue.extend(resume);
        self.pay_owed();
    }

    fn answer(&mut self, byte: u8) {
        if let Some(pending) = self.pending {
            // A command byte cancels a pending parameter (as keyboards do).
            if byte < 0xed {
                self.parameter(pending, byte);
                return;
            }
            self.pending = None;
        }
        match byte {
            0xed => self.expect(Pending::Leds),
            0xee => self.reply(ECHO),
            0xf0 => self.expect(Pending::ScancodeSet),
            0xf2 => {
                self.reply(ACK);
                self.reply(0xab);
                self.reply(0x83);
            }
            0xf3 => self.expect(Pending::Typematic),
            0xf4 => {
                self.scanning = true;
                self.reply(ACK);
            }
            0xf5 => {
                self.load_defaults();
                self.scanning = false;
                self.reply(ACK);
            }
            0xf6 => {
                self.load_defaults();
                self.scanning = true;
                self.reply(ACK);
            }
            // Set-3 key types for every key: typematic (make only), make/break,
            // make only, typematic/make/break.
            0xf7 | 0xf9 => {
                self.set3_breaks = [0; 2];
                self.reply(ACK);
            }
            0xf8 | 0xfa => {
                self.set3_breaks = [u128::MAX; 2];
                self.reply(ACK);
            }
            0xfb | 0xfd => self.expect(Pending::KeyTypes(KeyType::MakeOnly)),
            0xfc => self.expect(Pending::KeyTypes(KeyType::MakeBreak)),
            RESEND_COMMAND => {
                let last = self.last_sent;
                self.reply(last);
            }
            0xff => {
                self.load_defaults();
                self.scanning = true;
                self.set_leds(Leds::default());
                self.reply(ACK);
                self.reply(BAT_OK);
            }
            _ => self.reply(RESEND),
        }
    }

    fn expect(&mut self, pending: Pending) {
        self.pending = Some(pending);
        self.reply(ACK);
    }

    fn parameter(&mut self, pending: Pending, byte: u8) {
        match pending {
            Pending::Leds => {
                self.pending = None;
                self.set_leds(Leds(byte & 0x7));
                self.reply(ACK);
            }
            Pending::Typematic => {
                self.pending = None;
                self.typematic = byte & 0x7f;
                self.reply(ACK);
            }
            Pending::ScancodeSet => {
                self.pending = None;
                match byte {
                    0 => {
                        self.reply(ACK);
                        self.reply(self.scancode_set);
                    }
                    1..=3 => {
                        self.scancode_set = byte;
                        self.reply(ACK);
                    }
                    _ => self.reply(RESEND),
                }
            }
            Pending::KeyTypes(kind) => {
                // The list goes on until the next command byte.
                let bit = 1u128 << (byte & 0x7f);
                let word = &mut self.set3_breaks[usize::from(byte >> 7)];
                match kind {
                    KeyType::MakeOnly => *word &= !bit,
                    KeyType::MakeBreak => *word |= bit,
                }
                self.reply(ACK);
            }
        }
    }

    /// Keys pressed or released, as set-1 scancode bytes.
    pub(super) fn key_event(&mut self, set1: &[u8]) {
        for event in parse_set1(set1) {
            self.key(event);
        }
    }

    /// One key pressed or released.
    pub fn key(&mut self, event: KeyEvent) {
        let KeyEvent { key, pressed } = event;
        self.user_down.set(key, pressed);
        if !self.scanning {
            return;
        }
        if pressed {
            // While breaks are owed the queue is congested: drop presses, so
            // nothing overtakes the owed releases.
            if self.owed.is_empty() {
                self.queue_key(event);
            }
        } else if self.queued_down.contains(key) && !self.queue_key(event) {
            self.owed.set(key, true);
        }
    }

    /// Queues a key's whole sequence if it fits and no break is owed.
    fn queue_key(&mut self, event: KeyEvent) -> bool {
        if !self.owed.is_empty() && event.pressed {
            return false;
        }
        let bytes = self.encode(event.key, event.pressed);
        if bytes.len() > self.room() {
            return false;
        }
        if bytes.is_empty() {
            // No code in this set (a set-3 make-only key's release).
            if !event.pressed {
                self.queued_down.set(event.key, false);
                self.guest_down.set(event.key, false);
            }
            return true;
        }
        self.push_sequence(bytes, event);
        self.queued_down.set(event.key, event.pressed);
        true
    }

    fn push_sequence(&mut self, bytes: Vec<u8>, event: KeyEvent) {
        let last = bytes.len().saturating_sub(1);
        for (i, byte) in bytes.into_iter().enumerate() {
            self.queue
                .push_back(Queued::Key(byte, i == 0, (i == last).then_some(event)));
        }
    }

    /// Sends owed break codes that now fit.
    fn pay_owed(&mut self) {
        if self.owed.is_empty() || !self.scanning || self.pending.is_some() {
            return;
        }
        let owed: Vec<Key> = self.owed.keys().collect();
        for key in owed {
            if self.queued_down.contains(key) {
                let release = KeyEvent {
                    key,
                    pressed: false,
                };
                let bytes = self.encode(key, false);
                if bytes.len() > self.room() {
                    return;
                }
                if bytes.is_empty() {
                    // No break code in this set (set-3 make-only keys).
                    self.queued_down.set(key, false);
                    self.guest_down.set(key, false);
                } else {
                    self.push_sequence(bytes, release);
                    self.queued_down.set(key, false);
                }
            }
            self.owed.set(key, false);
        }
    }

    /// The bytes for a key in the current scancode set.
    fn encode(&self, key: Key, pressed: bool) -> Vec<u8> {
        match self.scancode_set {
            1 => key.set1(pressed),
            3 => {
                let Some(code) = set3_code(key) else {
                    return Vec::new();
                };
                if pressed {
                    vec![code]
                } else if self.set3_breaks[usize::from(code >> 7)] & (1u128 << (code & 0x7f)) != 0 {
                    vec![BREAK_PREFIX, code]
                } else {
                    Vec::new()
                }
            }
            _ => set2_sequence(key, pressed),
        }
    }
}

/// A key's set-2 make or break bytes.
pub fn set2_sequence(key: Key, pressed: bool) -> Vec<u8> {
    let code = |c: u8| match c {
        0x41 => 0x83, // F7
        0x54 => 0x84, // Alt+SysRq
        c => SET1_TO_SET2[usize::from(c & 0x7f)],
    };
    match (key, pressed) {
        (Key::Plain(c), true) => vec![code(c)],
        (Key::Plain(c), false) => vec![BREAK_PREFIX, code(c)],
        (Key::Extended(c), true) => vec![0xe0, code(c)],
        (Key::Extended(c), false) => vec![0xe0, BREAK_PREFIX, code(c)],
        (Key::Pause, true) => vec![0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77],
        (Key::Pause, false) => Vec::new(),
    }
}

/// The i8042's translation of one keyboard byte to set 1, as the
/// controller applies it when its configuration byte says so. `F0` (break
/// prefix) yields nothing and sets `break_pending`, which sets bit 7 of the
/// next byte.
pub fn translate(byte: u8, break_pending: &mut bool) -> Option<u8> {
    if byte == BREAK_PREFIX {
        *break_pending = true;
        return None;
    }
    let translated = match byte {
        0x00..=0x7f => SET2_TO_SET1[usize::from(byte)],
        0x83 => 0x41,
        0x84 => 0x54,
        other => other,
    };
    let flag = if std::mem::take(break_pending) {
        0x80
    } else {
        0
    };
    Some(translated | flag)
}

/// Set-1 code → set-2 code, byte for byte: the inverse of the i8042's
/// translation table (which is a permutation of 0x00..=0x7f). Extended
/// keys use the same table after their `E0`.
#[rustfmt::skip]
const SET1_TO_SET2: [u8; 128] = [
    0x00, 0x76, 0x16, 0x1e, 0x26, 0x25, 0x2e, 0x36, 0x3d, 0x3e, 0x46, 0x45, 0x4e, 0x55, 0x66, 0x0d, // 0x00
    0x15, 0x1d, 0x24, 0x2d, 0x2c, 0x35, 0x3c, 0x43, 0x44, 0x4d, 0x54, 0x5b, 0x5a, 0x14, 0x1c, 0x1b, // 0x10
    0x23, 0x2b, 0x34, 0x33, 0x3b, 0x42, 0x4b, 0x4c, 0x52, 0x0e, 0x12, 0x5d, 0x1a, 0x22, 0x21, 0x2a, // 0x20
    0x32, 0x31, 0x3a, 0x41, 0x49, 0x4a, 0x59, 0x7c, 0x11, 0x29, 0x58, 0x05, 0x06, 0x04, 0x0c, 0x03, // 0x30
    0x0b, 0x02, 0x0a, 0x01, 0x09, 0x77, 0x7e, 0x6c, 0x75, 0x7d, 0x7b, 0x6b, 0x73, 0x74, 0x79, 0x69, // 0x40
    0x72, 0x7a, 0x70, 0x71, 0x7f, 0x60, 0x61, 0x78, 0x07, 0x0f, 0x17, 0x1f, 0x27, 0x2f, 0x37, 0x3f, // 0x50
    0x47, 0x4f, 0x56, 0x5e, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0x40, 0x48, 0x50, 0x57, 0x6f, // 0x60
    0x13, 0x19, 0x39, 0x51, 0x53, 0x5c, 0x5f, 0x62, 0x63, 0x64, 0x65, 0x67, 0x68, 0x6a, 0x6d, 0x6e, // 0x70
];

/// The i8042 translation table: set-2 byte → set-1 byte.
const SET2_TO_SET1: [u8; 128] = invert(&SET1_TO_SET2);

const fn invert(table: &[u8; 128]) -> [u8; 128] {
    let mut inverse = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        inverse[table[i] as usize] = i as u8;
        i += 1;
    }
    inverse
}

/// Set-1 codes that follow `E0` on our keyboard: keypad Enter and `/`,
/// right Ctrl/Alt, the navigation block, Windows and Menu keys, Print
/// Screen, Ctrl+Break, ACPI power keys and the common multimedia keys.
const EXTENDED_KEYS: [u8; 37] = [
    0x10, 0x19, 0x1c, 0x1d, 0x20, 0x21, 0x22, 0x24, 0x2e, 0x30, 0x32, 0x35, 0x37, 0x38, 0x46, 0x47,
    0x48, 0x49, 0x4b, 0x4d, 0x4f, 0x50, 0x51, 0x52, 0x53, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f, 0x63, 0x65,
    0x66, 0x67, 0x68, 0x69, 0x6a,
];

/// Set-3 make codes of the plain set-1 keys (0: the key has none).
#[rustfmt::skip]
const SET3_PLAIN: [u8; 0x59] = [
    0x00, 0x08, 0x16, 0x1e, 0x26, 0x25, 0x2e, 0x36, 0x3d, 0x3e, 0x46, 0x45, 0x4e, 0x55, 0x66, 0x0d, // 0x00
    0x15, 0x1d, 0x24, 0x2d, 0x2c, 0x35, 0x3c, 0x43, 0x44, 0x4d, 0x54, 0x5b, 0x5a, 0x11, 0x1c, 0x1b, // 0x10
    0x23, 0x2b, 0x34, 0x33, 0x3b, 0x42, 0x4b, 0x4c, 0x52, 0x0e, 0x12, 0x5c, 0x1a, 0x22, 0x21, 0x2a, // 0x20
    0x32, 0x31, 0x3a, 0x41, 0x49, 0x4a, 0x59, 0x7e, 0x19, 0x29, 0x14, 0x07, 0x0f, 0x17, 0x1f, 0x27, // 0x30
    0x2f, 0x37, 0x3f, 0x47, 0x4f, 0x76, 0x5f, 0x6c, 0x75, 0x7d, 0x84, 0x6b, 0x73, 0x74, 0x7c, 0x69, // 0x40
    0x72, 0x7a, 0x70, 0x71, 0x57, 0x00, 0x13, 0x56, 0x5e,                                           // 0x50
];

/// Set-3 make codes of the extended keys that have one.
const SET3_EXTENDED: [(u8, u8); 18] = [
    (0x1c, 0x79), // keypad Enter
    (0x1d, 0x58), // right Ctrl
    (0x35, 0x77), // keypad /
    (0x37, 0x57), // Print Screen
    (0x38, 0x39), // right Alt
    (0x47, 0x6e), // Home
    (0x48, 0x63), // Up
    (0x49, 0x6f), // Page Up
    (0x4b, 0x61), // Left
    (0x4d, 0x6a), // Right
    (0x4f, 0x65), // End
    (0x50, 0x60), // Down
    (0x51, 0x6d), // Page Down
    (0x52, 0x67), // Insert
    (0x53, 0x64), // Delete
    (0x5b, 0x8b), // left Windows
    (0x5c, 0x8c), // right Windows
    (0x5d, 0x8d), // Menu
];

/// Set-3 Pause.
const SET3_PAUSE: u8 = 0x62;

/// Set-3 keys that send break codes after a reset: the modifiers (Shift,
/// Ctrl, Alt, Windows); every other key is typematic (make only) until the
/// guest says otherwise (Linux sends 0xfa, all keys make/break).
const SET3_DEFAULT_BREAKS: [u128; 2] = {
    let low: u128 =
        (1 << 0x12) | (1 << 0x59) | (1 << 0x11) | (1 << 0x58) | (1 << 0x19) | (1 << 0x39);
    let high: u128 = (1 << (0x8b - 0x80)) | (1 << (0x8c - 0x80));
    [low, high]
};

fn set3_code(key: Key) -> Option<u8> {
    let code = match key {
        Key::Plain(c) => SET3_PLAIN.get(usize::from(c)).copied().unwrap_or(0),
        Key::Extended(c) => SET3_EXTENDED
            .iter()
            .find(|(set1, _)| *set1 == c)
            .map_or(0, |(_, set3)| *set3),
        Key::Pause => SET3_PAUSE,
    };
    (code != 0).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything queued, each byte read by the guest.
    fn drain(k: &mut Keyboard) -> Vec<u8> {
        std::iter::from_fn(|| {
            let (byte, _) = k.pop()?;
            k.byte_read();
            Some(byte)
        })
        .collect()
    }

    fn translated(bytes: &[u8]) -> Vec<u8> {
        let mut pending = false;
        bytes
            .iter()
            .filter_map(|b| translate(*b, &mut pending))
            .collect()
    }

    #[test]
    fn parsing_keeps_known_keys_and_drops_junk() {
        let e = |key, pressed| KeyEvent { key, pressed };
        assert_eq!(
            parse_set1(&[0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8]),
            vec![
                e(Key::Plain(0x1e), true),
                e(Key::Plain(0x1e), false),
                e(Key::Extended(0x48), true),
                e(Key::Extended(0x48), false)
            ]
        );
        // Pause, its break half, unknown codes, a lone prefix at the end.
        assert_eq!(
            parse_set1(&[0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5, 0x00, 0x80, 0x7e, 0xe0, 0x01, 0xe0]),
            vec![e(Key::Pause, true)]
        );
        assert_eq!(parse_set1(&[0xe1, 0x1d]), vec![e(Key::Plain(0x1d), true)]);
        assert_eq!(
            parse_set1(&[0xe0, 0xe0, 0x1c]),
            vec![e(Key::Extended(0x1c), true)]
        );
    }

    #[test]
    fn set2_codes_are_a_permutation_and_translate_back() {
        let mut seen = [false; 128];
        for &c in SET1_TO_SET2.iter() {
            assert!(!seen[usize::from(c)], "{c:#x} twice");
            seen[usize::from(c)] = true;
        }
        // Every known key, make and break, goes through set 2 and the
        // controller's translation back to its set-1 bytes.
        for code in 1..0x80u8 {
            for key in [Key::Plain(code), Key::Extended(code)] {
                if !key.is_known() {
                    continue;
                }
                for pressed in [true, false] {
                    assert_eq!(
                        translated(&set2_sequence(key, pressed)),
                        key.set1(pressed),
                        "{key:?} {pressed}"
                    );
                }
            }
        }
        assert_eq!(
            translated(&set2_sequence(Key::Pause, true)),
            vec![0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]
        );
    }

    #[test]
    fn well_known_set2_codes() {
        assert_eq!(set2_sequence(Key::Plain(0x1e), true), vec![0x1c]); // A
        assert_eq!(set2_sequence(Key::Plain(0x1e), false), vec![0xf0, 0x1c]);
        assert_eq!(set2_sequence(Key::Extended(0x48), true), vec![0xe0, 0x75]); // Up
        assert_eq!(
            set2_sequence(Key::Extended(0x48), false),
            vec![0xe0, 0xf0, 0x75]
        );
        assert_eq!(set2_sequence(Key::Extended(0x5b), true), vec![0xe0, 0x1f]); // left Windows
        assert_eq!(set2_sequence(Key::Plain(0x41), true), vec![0x83]); // F7
        assert_eq!(set2_sequence(Key::Plain(0x01), true), vec![0x76]); // Esc
        assert_eq!(set2_sequence(Key::Plain(0x3a), true), vec![0x58]); // Caps Lock
    }

    #[test]
    fn set3_codes_are_unique_and_known() {
        let mut seen = std::collections::HashSet::new();
        for code in 1..0x80u8 {
            for key in [Key::Plain(code), Key::Extended(code)] {
                if let Some(c) = set3_code(key) {
                    assert!(key.is_known(), "{key:?}");
                    // Print Screen and Alt+SysRq are one key in set 3.
                    if key != Key::Plain(0x54) {
                        assert!(seen.insert(c), "{c:#x} twice ({key:?})");
                    }
                }
            }
        }
        assert_eq!(set3_code(Key::Plain(0x01)), Some(0x08)); // Esc
        assert_eq!(set3_code(Key::Plain(0x3b)), Some(0x07)); // F1
        assert_eq!(set3_code(Key::Extended(0x48)), Some(0x63)); // Up
    }

    #[test]
    fn set3_breaks_follow_key_types() {
        let mut k = Keyboard::default();
        k.command(0xf0);
        k.command(0x03);
        k.command(0xf4);
        drain(&mut k);
        // After selecting set 3, only modifiers break.
        k.key_event(&[0x1e, 0x9e, 0x2a, 0xaa]);
        assert_eq!(drain(&mut k), vec![0x1c, 0x12, 0xf0, 0x12]);
        // Linux: all keys make/break.
        k.command(0xfa);
        drain(&mut k);
        k.key_event(&[0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8]);
        assert_eq!(drain(&mut k), vec![0x1c, 0xf0, 0x1c, 0x63, 0xf0, 0x63]);
        // Per-key: A make only, list ended by the next command.
        k.command(0xfd);
        k.command(0x1c);
        k.command(0xf4);
        drain(&mut k);
        k.key_event(&[0x1e, 0x9e]);
        assert_eq!(drain(&mut k), vec![0x1c]);
    }

    #[test]
    fn commands_and_replies() {
        let mut k = Keyboard::default();
        k.command(0xf2);
        assert_eq!(drain(&mut k), vec![0xfa, 0xab, 0x83]);
        k.command(0xee);
        assert_eq!(drain(&mut k), vec![0xee]);
        k.command(0xf0);
        k.command(0x00);
        assert_eq!(drain(&mut k), vec![0xfa, 0xfa, 0x02]);
        k.command(0xf0);
        k.command(0x01);
        k.command(0xf0);
        k.command(0x00);
        assert_eq!(drain(&mut k), vec![0xfa, 0xfa, 0xfa, 0xfa, 0x01]);
        k.command(0xf0);
        k.command(0x07);
        assert_eq!(drain(&mut k), vec![0xfa, 0xfe]);
        k.command(0xf3);
        k.command(0x20);
        assert_eq!(k.typematic(), 0x20);
        assert_eq!(drain(&mut k), vec![0xfa, 0xfa]);
        k.command(0xfe);
        assert_eq!(drain(&mut k), vec![0xfa], "resend of the last byte");
        k.command(0x42);
        assert_eq!(drain(&mut k), vec![0xfe], "unknown command");
        // Set Default loads set 2 and the default typematic.
        k.command(0xf6);
        assert_eq!((k.scancode_set(), k.typematic()), (2, DEFAULT_TYPEMATIC));
        // Disable: no scanning until enabled.
        k.command(0xf5);
        drain(&mut k);
        k.key_event(&[0x1e]);
        assert!(drain(&mut k).is_empty());
        k.command(0xf4);
        drain(&mut k);
        k.key_event(&[0x1e]);
        assert_eq!(drain(&mut k), vec![0x1c]);
    }

    #[test]
    fn leds_and_a_command_cancelling_a_parameter() {
        let mut k = Keyboard::default();
        k.command(0xed);
        k.command(0x04);
        assert!(k.leds().caps_lock());
        assert_eq!(k.led_generation(), 1);
        k.command(0xed);
        k.command(0x04);
        assert_eq!(k.led_generation(), 1, "no change, no new generation");
        drain(&mut k);
        k.command(0xed);
        k.command(0xf2); // a command instead of the LED byte
        assert_eq!(drain(&mut k), vec![0xfa, 0xfa, 0xab, 0x83]);
        assert!(k.leds().caps_lock());
        k.command(0xff);
        assert_eq!(drain(&mut k), vec![0xfa, 0xaa]);
        assert_eq!(k.leds(), Leds(0));
        assert_eq!(k.led_generation(), 2);
    }

    #[test]
    fn a_full_queue_never_leaves_a_key_down() {
        let mut k = Keyboard::default();
        // Fill the queue with presses of A (never released by the guest's
        // reading yet), then press and release many keys.
        for _ in 0..DEVICE_QUEUE_LIMIT {
            k.key_event(&[0x1e]);
        }
        assert_eq!(k.queue.len(), DEVICE_QUEUE_LIMIT);
        k.key_event(&[0x30]); // B: dropped, the queue is full
        k.key_event(&[0xb0]); // its release: never seen, dropped
        k.key_event(&[0x9e]); // A up: owed
        k.key_event(&[0x2e]); // C: dropped while a release is owed
        let out = drain(&mut k);
        assert_eq!(out.len(), DEVICE_QUEUE_LIMIT + 2);
        assert_eq!(&out[DEVICE_QUEUE_LIMIT..], &[0xf0, 0x1c]);
        assert!(k.owed.is_empty() && k.guest_down.is_empty() && k.queued_down.is_empty());
    }

    #[test]
    fn a_command_drops_unsent_keys_but_not_releases() {
        let mut k = Keyboard::default();
        k.key_event(&[0x2a, 0x1e]); // shift, A down
        assert_eq!(drain(&mut k), vec![0x12, 0x1c]);
        k.key_event(&[0x9e, 0x30]); // A up, B down: not read yet
        k.command(0xed); // the guest sets its LEDs
        k.command(0x02);
        // B's press is gone; A's release is sent after the replies; shift,
        // still held, stays down.
        assert_eq!(drain(&mut k), vec![0xfa, 0xfa, 0xf0, 0x1c]);
        k.key_event(&[0xb0]); // B up: the guest never saw it go down
        k.key_event(&[0xaa]); // shift up
        assert_eq!(drain(&mut k), vec![0xf0, 0x12]);
    }

    #[test]
    fn sequences_are_never_cut() {
        let mut k = Keyboard::default();
        for _ in 0..DEVICE_QUEUE_LIMIT - 1 {
            k.key_event(&[0x1e]);
        }
        k.key_event(&[0xe0, 0x48]); // two bytes, one free slot: dropped
        assert_eq!(k.queue.len(), DEVICE_QUEUE_LIMIT - 1);
        k.key_event(&[0x1e]);
        assert_eq!(k.queue.len(), DEVICE_QUEUE_LIMIT);
    }
}
