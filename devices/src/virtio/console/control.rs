//! The control messages of virtio-serial's control queues
//! (`struct virtio_console_control`, docs/virtio-serial.md §3).

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Bytes of a control message (a name follows PORT_NAME's).
pub const SIZE: usize = 8;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct ControlMessage {
    /// The port (DEVICE_READY: unused).
    pub id: U32,
    pub event: U16,
    pub value: U16,
}

impl ControlMessage {
    pub fn new(id: u32, event: Event, value: u16) -> Self {
        ControlMessage {
            id: id.into(),
            event: (event as u16).into(),
            value: value.into(),
        }
    }

    pub fn parse(bytes: &[u8; SIZE]) -> Self {
        // An 8-byte array always holds one.
        ControlMessage::read_from_bytes(bytes).expect("sizes match")
    }
}

/// What a control message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Event {
    /// Driver: it is ready (value 1) or failed (0).
    DeviceReady = 0,
    /// Device: a port exists.
    DeviceAdd = 1,
    /// Device: a port went away.
    DeviceRemove = 2,
    /// Driver: it set a port up (1) or could not (0).
    PortReady = 3,
    /// Device: this port is a console.
    ConsolePort = 4,
    /// Device: a console's size changed.
    Resize = 5,
    /// Both: the sender's side of the port opened (1) or closed (0).
    PortOpen = 6,
    /// Device: the port's name follows the message.
    PortName = 7,
}

impl Event {
    pub fn from_number(n: u16) -> Option<Event> {
        Some(match n {
            0 => Event::DeviceReady,
            1 => Event::DeviceAdd,
            2 => Event::DeviceRemove,
            3 => Event::PortReady,
            4 => Event::ConsolePort,
            5 => Event::Resize,
            6 => Event::PortOpen,
            7 => Event::PortName,
            _ => return None,
        })
    }
}
