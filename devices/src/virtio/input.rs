//! virtio-input (device type 18): an input device that the guest's
//! virtio_input driver turns into an evdev device. [`VirtioInput::tablet`]
//! is the absolute pointer SPICE's client mouse mode needs.
//!
//! Configuration space is `struct virtio_input_config`: the driver writes
//! `select` and `subsel`, then reads `size` and that many bytes of the
//! 128-byte union: the name, serial, IDs, property bits, the event codes of
//! each event type, the range of each absolute axis. Linux's driver reads
//! exactly these at probe time.
//!
//! Events from the host go into the event queue (0) as 8-byte
//! `virtio_input_event` buffers the driver posted. Events the device did
//! not declare are dropped and absolute values are clamped to their axis.
//! Until the driver has posted buffers, events wait in a bounded queue;
//! when a burst does not fit, what waits is replaced by the device's
//! current state (every button and axis, then SYN_REPORT), so a flood loses
//! intermediate motion and wheel steps but never the last state of a
//! button. The status queue (1) carries LED and sound events from the
//! driver; an input device without LEDs returns those buffers unread.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Arc;

use super::{Queues, VirtioDevice};

pub const DEVICE_TYPE: u16 = 18;
const EVENT_QUEUE: u16 = 0;
const STATUS_QUEUE: u16 = 1;
const QUEUE_SIZES: [u16; 2] = [64, 64];
/// Bytes of configuration space (select, subsel, size, 5 reserved, union).
pub const CONFIG_SIZE: usize = 136;
const UNION_OFFSET: usize = 8;
const UNION_SIZE: usize = 128;
/// Events waiting for guest buffers at most.
pub const PENDING_LIMIT: usize = 256;

// `select` values.
const CFG_ID_NAME: u8 = 0x01;
const CFG_ID_SERIAL: u8 = 0x02;
const CFG_ID_DEVIDS: u8 = 0x03;
const CFG_PROP_BITS: u8 = 0x10;
const CFG_EV_BITS: u8 = 0x11;
const CFG_ABS_INFO: u8 = 0x12;

// Linux input event types and codes (include/uapi/linux/input-event-codes.h).
pub const EV_SYN: u16 = 0x00;
pub const EV_KEY: u16 = 0x01;
pub const EV_REL: u16 = 0x02;
pub const EV_ABS: u16 = 0x03;
pub const SYN_REPORT: u16 = 0;
pub const BTN_LEFT: u16 = 0x110;
pub const BTN_RIGHT: u16 = 0x111;
pub const BTN_MIDDLE: u16 = 0x112;
pub const BTN_SIDE: u16 = 0x113;
pub const BTN_EXTRA: u16 = 0x114;
pub const REL_WHEEL: u16 = 0x08;
pub const ABS_X: u16 = 0x00;
pub const ABS_Y: u16 = 0x01;
pub const BUS_VIRTUAL: u16 = 0x06;

/// The tablet's axes run from 0 to this, whatever the screen size.
pub const TABLET_AXIS_MAX: i32 = 32767;

/// Told when the guest's driver starts or stops using the device (called
/// with the device locked: must not block or call back into it).
pub trait DriverObserver: Send + Sync {
    fn driver_ready(&self, ready: bool);
}

/// One evdev event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

impl InputEvent {
    pub const fn new(kind: u16, code: u16, value: i32) -> Self {
        InputEvent { kind, code, value }
    }

    /// `struct virtio_input_event`: le16 type, le16 code, le32 value.
    fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.kind.to_le_bytes());
        b[2..4].copy_from_slice(&self.code.to_le_bytes());
        b[4..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }
}

/// An absolute axis' range (`struct virtio_input_absinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsInfo {
    pub min: i32,
    pub max: i32,
    pub fuzz: i32,
    pub flat: i32,
    pub resolution: i32,
}

/// What an input device is, as its configuration space tells the driver.
#[derive(Debug, Clone)]
pub struct InputDescription {
    pub name: String,
    pub serial: String,
    /// Bus type, vendor, product, version.
    pub ids: [u16; 4],
    pub properties: Vec<u16>,
    /// Event codes per event type (codes below 1024: 128 bytes of bitmap).
    pub events: Vec<(u16, Vec<u16>)>,
    pub axes: Vec<(u16, AbsInfo)>,
}

impl InputDescription {
    fn declares(&self, kind: u16, code: u16) -> bool {
        self.events
            .iter()
            .any(|(k, codes)| *k == kind && codes.contains(&code))
    }

    fn axis(&self, code: u16) -> Option<AbsInfo> {
        self.axes.iter().find(|(c, _)| *c == code).map(|(_, a)| *a)
    }
}

/// A bitmap of `codes`, trimmed after its last non-zero byte.
fn bitmap(codes: impl IntoIterator<Item = u16>) -> Vec<u8> {
    let mut map = vec![0u8; UNION_SIZE];
    for code in codes {
        if let Some(byte) = map.get_mut(usize::from(code / 8)) {
            *byte |= 1 << (code % 8);
        }
    }
    let used = map.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    map.truncate(used);
    map
}

pub struct VirtioInput {
    description: InputDescription,
    select: u8,
    subsel: u8,
    pending: VecDeque<InputEvent>,
    /// Key and axis values as the guest has them once `pending` is sent.
    state: BTreeMap<(u16, u16), i32>,
    /// Bursts that did not fit and were folded into a state report.
    resyncs: u64,
    /// The driver has set the device up (DRIVER_OK with a live event queue).
    ready: bool,
    observer: Option<Arc<dyn DriverObserver>>,
}

impl VirtioInput {
    pub fn new(description: InputDescription) -> Self {
        VirtioInput {
            description,
            select: 0,
            subsel: 0,
            pending: VecDeque::new(),
            state: BTreeMap::new(),
            resyncs: 0,
            ready: false,
            observer: None,
        }
    }

    /// Who to tell when the guest's driver starts or stops.
    pub fn set_observer(&mut self, observer: Arc<dyn DriverObserver>) {
        self.observer = Some(observer);
    }

    /// Whether the guest's driver is using the device.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    fn set_ready(&mut self, ready: bool) {
        if ready != self.ready {
            self.ready = ready;
            if let Some(observer) = &self.observer {
                observer.driver_ready(ready);
            }
        }
    }

    /// An absolute pointer: X and Y from 0 to [`TABLET_AXIS_MAX`], left,
    /// right, middle, side and extra buttons, and a wheel.
    pub fn tablet() -> Self {
        let axis = AbsInfo {
            min: 0,
            max: TABLET_AXIS_MAX,
            fuzz: 0,
            flat: 0,
            resolution: 0,
        };
        VirtioInput::new(InputDescription {
            name: "Saffron Virtio Tablet".into(),
            serial: "saffron-tablet-0".into(),
            ids: [BUS_VIRTUAL, 0x1af4, 0x0003, 1],
            properties: Vec::new(),
            events: vec![
                (
                    EV_KEY,
                    vec![BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA],
                ),
                (EV_REL, vec![REL_WHEEL]),
                (EV_ABS, vec![ABS_X, ABS_Y]),
            ],
            axes: vec![(ABS_X, axis), (ABS_Y, axis)],
        })
    }

    pub fn description(&self) -> &InputDescription {
        &self.description
    }

    /// Events waiting for guest buffers.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The events waiting for guest buffers, oldest first.
    pub fn pending_events(&self) -> impl Iterator<Item = &InputEvent> {
        self.pending.iter()
    }

    /// Bursts folded into a state report because the guest was behind.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Sends a burst of events (a SYN_REPORT is appended): what the event
    /// queue has buffers for goes now, the rest waits (bounded).
    pub fn send(&mut self, events: &[InputEvent], queues: &mut Queues<'_>) {
        let mut burst = Vec::with_capacity(events.len() + 1);
        for event in events {
            if !self.description.declares(event.kind, event.code) {
                continue;
            }
            let mut event = *event;
            match event.kind {
                EV_ABS => {
                    if let Some(axis) = self.description.axis(event.code) {
                        event.value = event.value.clamp(axis.min, axis.max);
                    }
                    self.state.insert((event.kind, event.code), event.value);
                }
                EV_KEY => {
                    event.value = i32::from(event.value != 0);
                    self.state.insert((event.kind, event.code), event.value);
                }
                _ => {}
            }
            burst.push(event);
        }
        if burst.is_empty() {
            return;
        }
        burst.push(InputEvent::new(EV_SYN, SYN_REPORT, 0));
        if self.pending.len() + burst.len() > PENDING_LIMIT {
            self.resyncs += 1;
            self.pending.clear();
            let state: Vec<InputEvent> = self
                .state
                .iter()
                .map(|(&(kind, code), &value)| InputEvent::new(kind, code, value))
                .collect();
            self.pending.extend(state);
            self.pending
                .push_back(InputEvent::new(EV_SYN, SYN_REPORT, 0));
        } else {
            self.pending.extend(burst);
        }
        self.flush(queues);
    }

    /// Moves waiting events into the buffers the driver posted.
    fn flush(&mut self, queues: &mut Queues<'_>) {
        let mut used = false;
        while let Some(event) = self.pending.front().copied() {
            let Some(chain) = queues.pop(EVENT_QUEUE) else {
                break;
            };
            let head = chain.head_index();
            let memory = queues.memory();
            let written = match chain.writer(memory) {
                Ok(mut writer) if writer.available_bytes() >= 8 => {
                    writer.write_all(&event.to_bytes()).is_ok()
                }
                Ok(_) => {
                    queues.guest_error(format_args!("event buffer {head} is under 8 bytes"));
                    false
                }
                Err(e) => {
                    queues.guest_error(format_args!("event buffer {head}: {e}"));
                    false
                }
            };
            queues.add_used(EVENT_QUEUE, head, if written { 8 } else { 0 });
            used = true;
            if written {
                self.pending.pop_front();
            }
            if queues.failed() {
                break;
            }
        }
        if used {
            queues.notify(EVENT_QUEUE);
        }
    }

    /// The union's bytes for the current select/subsel.
    fn payload(&self) -> Vec<u8> {
        let d = &self.description;
        let mut bytes = match self.select {
            CFG_ID_NAME => d.name.as_bytes().to_vec(),
            CFG_ID_SERIAL => d.serial.as_bytes().to_vec(),
            CFG_ID_DEVIDS => d.ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
            CFG_PROP_BITS => bitmap(d.properties.iter().copied()),
            CFG_EV_BITS => d
                .events
                .iter()
                .find(|(kind, _)| *kind == u16::from(self.subsel))
                .map(|(_, codes)| bitmap(codes.iter().copied()))
                .unwrap_or_default(),
            CFG_ABS_INFO => d
                .axis(u16::from(self.subsel))
                .map(|a| {
                    [a.min, a.max, a.fuzz, a.flat, a.resolution]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        bytes.truncate(UNION_SIZE);
        bytes
    }
}

impl VirtioDevice for VirtioInput {
    fn device_type(&self) -> u16 {
        DEVICE_TYPE
    }

    fn name(&self) -> &'static str {
        "virtio-input"
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let payload = self.payload();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match offset + i {
                0 => self.select,
                1 => self.subsel,
                2 => payload.len() as u8,
                at if at >= UNION_OFFSET => payload.get(at - UNION_OFFSET).copied().unwrap_or(0),
                _ => 0,
            };
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            match offset + i {
                0 => self.select = *byte,
                1 => self.subsel = *byte,
                _ => {} // size and the union are read-only
            }
        }
    }

    fn activate(&mut self, queues: &mut Queues<'_>) {
        self.set_ready(queues.is_live(EVENT_QUEUE));
        self.flush(queues);
    }

    fn queue_notify(&mut self, index: u16, queues: &mut Queues<'_>) {
        match index {
            EVENT_QUEUE => self.flush(queues),
            STATUS_QUEUE => {
                // LED/sound events for devices that have none: give the
                // buffers back.
                let mut used = false;
                while let Some(chain) = queues.pop(STATUS_QUEUE) {
                    let head = chain.head_index();
                    queues.add_used(STATUS_QUEUE, head, 0);
                    used = true;
                    if queues.failed() {
                        break;
                    }
                }
                if used {
                    queues.notify(STATUS_QUEUE);
                }
            }
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.select = 0;
        self.subsel = 0;
        self.pending.clear();
        self.state.clear();
        self.set_ready(false);
    }
}
