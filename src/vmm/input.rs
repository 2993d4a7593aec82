//! The VM's keyboard and pointers, as SPICE clients and scripts drive them.
//!
//! [`InputController`] owns nothing but handles: the i8042 (PS/2 keyboard
//! and mouse), the virtio-input tablet and the displays. It is the SPICE
//! server's [`InputSink`] and the API the control socket calls
//! (`send_keys`, `pointer_*`).
//!
//! * Keys: set-1 scancodes into the PS/2 keyboard (unknown codes dropped,
//!   its queue bounded). Key presses are rate-limited (256 a second, bursts
//!   of 64; far above any typist) so a flooding client cannot keep the
//!   guest in its keyboard interrupt handler; releases always pass.
//! * Relative motion (SPICE server mouse mode): the PS/2 mouse.
//! * Absolute positions (client mouse mode): the tablet. A position `p` on
//!   a screen `W` pixels wide becomes `round(p × 32767 / (W − 1))` on the
//!   tablet's 0..32767 axis, so both usual guest mappings, `v × W / 32768`
//!   (libinput, X) and `v × (W − 1) / 32767`, land within a pixel of `p`.
//!   Positions beyond the screen are clamped to its edge; positions for a
//!   display that does not exist (or shows nothing) are dropped. With
//!   several displays, they are taken to sit side by side, left to right
//!   in display order, top-aligned (the guest's default arrangement).
//! * Buttons and the wheel go to the pointer in use: the tablet in client
//!   mode, the PS/2 mouse in server mode (for scripts: the device that
//!   moved last). Switching releases what the other device held.
//!
//! [`SpiceLink`] carries the other direction: keyboard LEDs the guest sets
//! and whether the tablet's driver runs (which offers client mouse mode).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use devices::bus::lock;
use devices::display::Display;
use devices::i8042::{self, parse_set1, KeyEvent, LedObserver, Leds, I8042};
use devices::virtio::input::{
    DriverObserver, InputEvent, VirtioInput, ABS_X, ABS_Y, BTN_EXTRA, BTN_LEFT, BTN_MIDDLE,
    BTN_RIGHT, BTN_SIDE, EV_ABS, EV_KEY, EV_REL, REL_WHEEL, TABLET_AXIS_MAX,
};
use devices::virtio::pci::VirtioPciDevice;
use saffron::spice::{InputSink, KeyboardLeds, MouseButtons, SpiceNotifier};

use super::keys::{self, KeyNameError};

/// The virtio-input tablet on the PCI bus.
pub type Tablet = Arc<Mutex<VirtioPciDevice<VirtioInput>>>;

/// The tablet's PCI slot.
pub const TABLET_SLOT: u8 = 3;

/// Makes the tablet: MSI-X through `msi`, INTx on `intx` (wired to GSI
/// `gsi`), telling `observer` when the guest's driver starts and stops.
pub fn create_tablet(
    memory: devices::virtio::GuestMemory,
    msi: Arc<dyn devices::interrupt::MsiDelivery>,
    intx: Arc<dyn devices::interrupt::LevelInterrupt>,
    gsi: u32,
    observer: Arc<dyn DriverObserver>,
) -> Result<Tablet, devices::pci::ConfigError> {
    let mut device = VirtioInput::tablet();
    device.set_observer(observer);
    let wiring = devices::virtio::pci::Wiring {
        memory,
        msi,
        intx,
        intx_line: gsi as u8,
    };
    Ok(Arc::new(Mutex::new(VirtioPciDevice::new(device, wiring)?)))
}

/// The head of each display that clients see (SPICE shows head 0).
const SHOWN_HEAD: u32 = 0;
/// Relative motion larger than this in one event is clamped.
const MAX_RELATIVE_MOTION: i32 = 4096;
/// Wheel steps larger than this in one event are clamped.
const MAX_WHEEL_STEPS: i32 = 16;
/// Key presses let through per second, sustained …
pub const KEY_PRESSES_PER_SECOND: f64 = 256.0;
/// … and in a burst.
pub const KEY_PRESS_BURST: f64 = 64.0;

/// A token bucket.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
    dropped: u64,
}

impl RateLimit {
    fn new(rate: f64, burst: f64) -> Self {
        RateLimit {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
            dropped: 0,
        }
    }

    /// Whether one more event may pass now.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            if self.dropped <= 4 || self.dropped.is_power_of_two() {
                tracing::warn!(
                    "input: key presses beyond {} a second dropped ({} so far)",
                    self.rate,
                    self.dropped
                );
            }
            false
        }
    }
}

/// Why a scripted input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    KeyName(#[from] KeyNameError),
    #[error("display {0} does not exist or shows nothing")]
    NoSuchDisplay(u8),
    #[error("this VM has no tablet")]
    NoTablet,
}

/// A pointer button, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointerButton {
    Left,
    Middle,
    Right,
    Side,
    Extra,
}

impl PointerButton {
    fn bit(self) -> u8 {
        match self {
            PointerButton::Left => MouseButtons::LEFT,
            PointerButton::Middle => MouseButtons::MIDDLE,
            PointerButton::Right => MouseButtons::RIGHT,
            PointerButton::Side => MouseButtons::SIDE,
            PointerButton::Extra => MouseButtons::EXTRA,
        }
    }
}

/// Which device buttons and the wheel go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pointer {
    Ps2,
    Tablet,
}

#[derive(Debug)]
struct PointerState {
    active: Pointer,
    ps2_buttons: MouseButtons,
    tablet_buttons: MouseButtons,
}

pub struct InputController {
    ps2: Arc<Mutex<I8042>>,
    tablet: Option<Tablet>,
    displays: Vec<Arc<Display>>,
    state: Mutex<PointerState>,
    key_presses: Mutex<RateLimit>,
    /// The SPICE session's mouse mode is client (absolute positions).
    client_mouse: AtomicBool,
}

/// SPICE button bits → PS/2 buttons.
fn ps2_buttons(b: MouseButtons) -> i8042::MouseButtons {
    i8042::MouseButtons {
        left: b.0 & MouseButtons::LEFT != 0,
        middle: b.0 & MouseButtons::MIDDLE != 0,
        right: b.0 & MouseButtons::RIGHT != 0,
        side: b.0 & MouseButtons::SIDE != 0,
        extra: b.0 & MouseButtons::EXTRA != 0,
    }
}

const TABLET_BUTTONS: [(u8, u16); 5] = [
    (MouseButtons::LEFT, BTN_LEFT),
    (MouseButtons::MIDDLE, BTN_MIDDLE),
    (MouseButtons::RIGHT, BTN_RIGHT),
    (MouseButtons::SIDE, BTN_SIDE),
    (MouseButtons::EXTRA, BTN_EXTRA),
];

/// Evdev key events for the tablet buttons that changed.
fn button_events(from: MouseButtons, to: MouseButtons) -> Vec<InputEvent> {
    TABLET_BUTTONS
        .iter()
        .filter(|(bit, _)| (from.0 ^ to.0) & bit != 0)
        .map(|(bit, code)| InputEvent::new(EV_KEY, *code, i32::from(to.0 & bit != 0)))
        .collect()
}

/// A pixel position on a `extent`-pixel axis → the tablet's 0..32767.
pub fn scale_to_axis(position: u64, extent: u64) -> i32 {
    if extent <= 1 {
        return 0;
    }
    let last = extent - 1;
    let p = position.min(last);
    ((p * TABLET_AXIS_MAX as u64 + last / 2) / last) as i32
}

impl InputController {
    pub fn new(
        ps2: Arc<Mutex<I8042>>,
        tablet: Option<Tablet>,
        displays: Vec<Arc<Display>>,
    ) -> Self {
        InputController {
            ps2,
            tablet,
            displays,
            state: Mutex::new(PointerState {
                active: Pointer::Ps2,
                ps2_buttons: MouseButtons::default(),
                tablet_buttons: MouseButtons::default(),
            }),
            key_presses: Mutex::new(RateLimit::new(KEY_PRESSES_PER_SECOND, KEY_PRESS_BURST)),
            client_mouse: AtomicBool::new(false),
        }
    }

    /// Whether SPICE's mouse mode is client (the tablet) rather than server
    /// (the PS/2 mouse), as the session last chose.
    pub fn client_mouse_mode(&self) -> bool {
        self.client_mouse.load(Ordering::SeqCst)
    }
}

/// The control socket's API (`send-key`, pointer commands).
impl InputController {
    /// Presses the named keys in order and releases them in reverse
    /// (`["ctrl", "alt", "delete"]`), as one burst into the PS/2 keyboard.
    pub fn send_keys(&self, names: &[&str]) -> Result<(), InputError> {
        self.press_and_release(&keys::keys_by_names(names)?);
        Ok(())
    }

    /// [`Self::send_keys`] for a combination written `ctrl-alt-delete`.
    pub fn send_key_combo(&self, combo: &str) -> Result<(), InputError> {
        self.press_and_release(&keys::parse_combo(combo)?);
        Ok(())
    }

    fn press_and_release(&self, keys: &[devices::i8042::Key]) {
        let mut ps2 = lock(&self.ps2);
        for &key in keys {
            ps2.key(KeyEvent { key, pressed: true });
        }
        for &key in keys.iter().rev() {
            ps2.key(KeyEvent {
                key,
                pressed: false,
            });
        }
    }

    /// Moves the PS/2 mouse (dy positive = down).
    pub fn pointer_motion(&self, dx: i32, dy: i32) {
        self.use_pointer(Pointer::Ps2);
        let buttons = lock(&self.state).ps2_buttons;
        self.ps2_motion(dx, dy, 0, buttons);
    }

    /// Puts the tablet's pointer at pixel (x, y) of display `display`.
    pub fn pointer_position(&self, display: u8, x: u32, y: u32) -> Result<(), InputError> {
        if self.tablet.is_none() {
            return Err(InputError::NoTablet);
        }
        let (ax, ay) = self
            .tablet_axes(display, x, y)
            .ok_or(InputError::NoSuchDisplay(display))?;
        self.use_pointer(Pointer::Tablet);
        self.tablet_send(&[
            InputEvent::new(EV_ABS, ABS_X, ax),
            InputEvent::new(EV_ABS, ABS_Y, ay),
        ]);
        Ok(())
    }

    /// Presses or releases a button of the pointer that moved last.
    pub fn pointer_button(&self, button: PointerButton, pressed: bool) {
        let (active, held) = {
            let state = lock(&self.state);
            let held = match state.active {
                Pointer::Ps2 => state.ps2_buttons,
                Pointer::Tablet => state.tablet_buttons,
            };
            (state.active, held)
        };
        let bits = if pressed {
            held.0 | button.bit()
        } else {
            held.0 & !button.bit()
        };
        self.set_buttons(active, MouseButtons(bits));
    }

    /// Turns the wheel of the pointer that moved last (negative = up).
    pub fn pointer_wheel(&self, dz: i32) {
        let active = lock(&self.state).active;
        self.wheel_on(active, dz);
    }
}

impl InputController {
    /// Makes `pointer` the one buttons go to, releasing the other's.
    fn use_pointer(&self, pointer: Pointer) {
        let mut state = lock(&self.state);
        if state.active != pointer {
            state.active = pointer;
            let released = MouseButtons::default();
            match pointer {
                Pointer::Tablet if !state.ps2_buttons.is_empty() => {
                    state.ps2_buttons = released;
                    drop(state);
                    self.ps2_motion(0, 0, 0, released);
                }
                Pointer::Ps2 if !state.tablet_buttons.is_empty() => {
                    let events = button_events(state.tablet_buttons, released);
                    state.tablet_buttons = released;
                    drop(state);
                    self.tablet_send(&events);
                }
                _ => {}
            }
        }
    }

    fn set_buttons(&self, pointer: Pointer, buttons: MouseButtons) {
        match pointer {
            Pointer::Ps2 => {
                lock(&self.state).ps2_buttons = buttons;
                self.ps2_motion(0, 0, 0, buttons);
            }
            Pointer::Tablet => {
                let events = {
                    let mut state = lock(&self.state);
                    let events = button_events(state.tablet_buttons, buttons);
                    state.tablet_buttons = buttons;
                    events
                };
                if !events.is_empty() {
                    self.tablet_send(&events);
                }
            }
        }
    }

    fn wheel_on(&self, pointer: Pointer, dz: i32) {
        let dz = dz.clamp(-MAX_WHEEL_STEPS, MAX_WHEEL_STEPS);
        if dz == 0 {
            return;
        }
        match pointer {
            Pointer::Ps2 => {
                let buttons = lock(&self.state).ps2_buttons;
                self.ps2_motion(0, 0, dz, buttons);
            }
            // REL_WHEEL counts positive upwards.
            Pointer::Tablet => self.tablet_send(&[InputEvent::new(EV_REL, REL_WHEEL, -dz)]),
        }
    }

    fn ps2_motion(&self, dx: i32, dy: i32, dz: i32, buttons: MouseButtons) {
        let clamp = |v: i32| v.clamp(-MAX_RELATIVE_MOTION, MAX_RELATIVE_MOTION);
        lock(&self.ps2).mouse_event(clamp(dx), clamp(dy), dz, ps2_buttons(buttons));
    }

    fn tablet_send(&self, events: &[InputEvent]) {
        if let Some(tablet) = &self.tablet {
            lock(tablet).with_device(|device, queues| device.send(events, queues));
        }
    }

    /// Where pixel (x, y) of display `display` is on the tablet's axes.
    fn tablet_axes(&self, display: u8, x: u32, y: u32) -> Option<(i32, i32)> {
        let (display, x, y) = self.surface_point(display, x, y)?;
        let sizes: Vec<Option<(u32, u32)>> =
            self.displays.iter().map(|d| pointer_area(d)).collect();
        desktop_position(&sizes, display, x, y)
    }
}

/// The part of a display's shown surface that the guest's pointer spans:
/// the bounding box of its monitors when the guest laid them out (Linux
/// may keep the surface larger than they need, and its desktop spans the
/// monitors), else the whole surface; `None` when blank.
fn pointer_area(display: &Display) -> Option<(u32, u32)> {
    let layout = display.layout();
    let size = display
        .heads()
        .into_iter()
        .find(|(head, _, _)| *head == SHOWN_HEAD)
        .map(|(_, w, h)| (w, h));
    if layout.guest.is_empty() {
        return size;
    }
    let on: Vec<_> = layout
        .monitors(size)
        .into_iter()
        .filter(|m| m.is_on())
        .collect();
    let width = on.iter().map(|m| m.x + m.width).max()?;
    let height = on.iter().map(|m| m.y + m.height).max()?;
    Some((width, height))
}

impl InputController {
    /// The display device and the pixel of its shown surface that a SPICE
    /// display id and (x, y) name. When the first device shows several
    /// monitors, clients number those (and a position is inside its
    /// monitor), as they do; otherwise the id is the device's.
    fn surface_point(&self, display: u8, x: u32, y: u32) -> Option<(u8, u32, u32)> {
        let Some(first) = self.displays.first() else {
            return Some((display, x, y));
        };
        if first.layout().guest.len() <= 1 {
            return Some((display, x, y));
        }
        let monitor = first
            .monitors()
            .into_iter()
            .find(|m| m.id == u32::from(display) && m.is_on())?;
        Some((
            0,
            monitor.x.saturating_add(x.min(monitor.width - 1)),
            monitor.y.saturating_add(y.min(monitor.height - 1)),
        ))
    }
}

/// Maps a position on one display to the tablet, the displays (their shown
/// sizes, `None` when blank) laid side by side left to right.
fn desktop_position(
    sizes: &[Option<(u32, u32)>],
    display: u8,
    x: u32,
    y: u32,
) -> Option<(i32, i32)> {
    let (width, height) = (*sizes.get(usize::from(display))?)?;
    let left: u64 = sizes[..usize::from(display)]
        .iter()
        .flatten()
        .map(|(w, _)| u64::from(*w))
        .sum();
    let total_width: u64 = sizes.iter().flatten().map(|(w, _)| u64::from(*w)).sum();
    let total_height = sizes.iter().flatten().map(|(_, h)| *h).max()?;
    let x = left + u64::from(x.min(width.saturating_sub(1)));
    let y = u64::from(y.min(height.saturating_sub(1)));
    Some((
        scale_to_axis(x, total_width),
        scale_to_axis(y, u64::from(total_height)),
    ))
}

impl InputSink for InputController {
    fn key(&self, scancodes: &[u8]) {
        let events = parse_set1(scancodes);
        let now = Instant::now();
        let mut limit = lock(&self.key_presses);
        let mut ps2 = lock(&self.ps2);
        for event in events {
            if !event.pressed || limit.take(now) {
                ps2.key(event);
            }
        }
    }

    fn relative_motion(&self, dx: i32, dy: i32, buttons: MouseButtons) {
        self.use_pointer(Pointer::Ps2);
        lock(&self.state).ps2_buttons = buttons;
        self.ps2_motion(dx, dy, 0, buttons);
    }

    fn absolute_position(&self, display: u8, x: u32, y: u32, buttons: MouseButtons) {
        if self.tablet.is_none() {
            return;
        }
        let Some((ax, ay)) = self.tablet_axes(display, x, y) else {
            return;
        };
        self.use_pointer(Pointer::Tablet);
        let mut events = {
            let mut state = lock(&self.state);
            let events = button_events(state.tablet_buttons, buttons);
            state.tablet_buttons = buttons;
            events
        };
        events.push(InputEvent::new(EV_ABS, ABS_X, ax));
        events.push(InputEvent::new(EV_ABS, ABS_Y, ay));
        self.tablet_send(&events);
    }

    fn buttons(&self, buttons: MouseButtons) {
        let active = lock(&self.state).active;
        self.set_buttons(active, buttons);
    }

    fn wheel(&self, dz: i32, _buttons: MouseButtons) {
        let active = lock(&self.state).active;
        self.wheel_on(active, dz);
    }

    fn mouse_mode(&self, client: bool) {
        self.client_mouse.store(client, Ordering::SeqCst);
        let pointer = if client && self.tablet.is_some() {
            Pointer::Tablet
        } else {
            Pointer::Ps2
        };
        self.use_pointer(pointer);
    }
}

/// Carries what the guest's input devices tell the outside to the SPICE
/// server: keyboard LEDs, and whether the tablet's driver runs. Devices
/// may report before the server exists; the last state is kept and sent
/// when it connects.
#[derive(Default)]
pub struct SpiceLink {
    notifier: OnceLock<SpiceNotifier>,
    state: Mutex<(Leds, bool)>,
}

fn spice_leds(leds: Leds) -> KeyboardLeds {
    KeyboardLeds {
        scroll_lock: leds.scroll_lock(),
        num_lock: leds.num_lock(),
        caps_lock: leds.caps_lock(),
    }
}

impl SpiceLink {
    /// Whether the guest's tablet driver runs.
    pub fn tablet_driver_ready(&self) -> bool {
        lock(&self.state).1
    }

    /// From now on, tell this server.
    pub fn connect(&self, notifier: SpiceNotifier) {
        let (leds, ready) = *lock(&self.state);
        notifier.set_keyboard_leds(spice_leds(leds));
        notifier.set_client_mouse_allowed(ready);
        let _ = self.notifier.set(notifier);
    }
}

impl LedObserver for SpiceLink {
    fn leds_changed(&self, leds: Leds) {
        lock(&self.state).0 = leds;
        if let Some(n) = self.notifier.get() {
            n.set_keyboard_leds(spice_leds(leds));
        }
    }
}

impl DriverObserver for SpiceLink {
    fn driver_ready(&self, ready: bool) {
        lock(&self.state).1 = ready;
        if let Some(n) = self.notifier.get() {
            n.set_client_mouse_allowed(ready);
        }
    }
}

#[cfg(test)]
mod tests;
