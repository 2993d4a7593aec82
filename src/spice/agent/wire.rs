//! The guest agent's wire format (spice-protocol's `vd_agent.h`,
//! docs/spice-agent.md §2): chunks on the virtio-serial port, the messages
//! they carry, and the few message bodies the server reads or writes.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Chunk ports: messages between client and agent, and the server's own.
pub const CLIENT_PORT: u32 = 1;
pub const SERVER_PORT: u32 = 2;
/// `VDAgentMessage.protocol`.
pub const PROTOCOL: u32 = 1;
/// Bytes of one `AGENT_DATA` message, and of a chunk written to the agent.
pub const MAX_DATA_SIZE: usize = 2048;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct ChunkHeader {
    pub port: U32,
    pub size: U32,
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct MessageHeader {
    pub protocol: U32,
    pub kind: U32,
    pub opaque: U64,
    pub size: U32,
}

pub const CHUNK_HEADER_SIZE: usize = size_of::<ChunkHeader>();
pub const MESSAGE_HEADER_SIZE: usize = size_of::<MessageHeader>();

/// `VD_AGENT_*` message types.
pub mod kind {
    pub const MOUSE_STATE: u32 = 1;
    pub const MONITORS_CONFIG: u32 = 2;
    pub const REPLY: u32 = 3;
    pub const CLIPBOARD: u32 = 4;
    pub const DISPLAY_CONFIG: u32 = 5;
    pub const ANNOUNCE_CAPABILITIES: u32 = 6;
    pub const CLIPBOARD_GRAB: u32 = 7;
    pub const CLIPBOARD_REQUEST: u32 = 8;
    pub const CLIPBOARD_RELEASE: u32 = 9;
    pub const FILE_XFER_START: u32 = 10;
    pub const FILE_XFER_STATUS: u32 = 11;
    pub const FILE_XFER_DATA: u32 = 12;
    pub const CLIENT_DISCONNECTED: u32 = 13;
    pub const MAX_CLIPBOARD: u32 = 14;
    pub const AUDIO_VOLUME_SYNC: u32 = 15;
    pub const GRAPHICS_DEVICE_INFO: u32 = 16;
    /// One past the last known type.
    pub const END: u32 = 17;

    pub fn is_clipboard(kind: u32) -> bool {
        matches!(
            kind,
            CLIPBOARD | CLIPBOARD_GRAB | CLIPBOARD_REQUEST | CLIPBOARD_RELEASE
        )
    }

    pub fn is_file_transfer(kind: u32) -> bool {
        matches!(kind, FILE_XFER_START | FILE_XFER_STATUS | FILE_XFER_DATA)
    }
}

/// `VD_AGENT_CAP_*` bits.
pub mod cap {
    pub const MOUSE_STATE: u32 = 0;
    pub const MONITORS_CONFIG: u32 = 1;
    pub const CLIPBOARD: u32 = 3;
    pub const CLIPBOARD_BY_DEMAND: u32 = 5;
    pub const CLIPBOARD_SELECTION: u32 = 6;
    pub const FILE_XFER_DISABLED: u32 = 13;
}

/// `VDAgentMouseState`.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct MouseState {
    pub x: U32,
    pub y: U32,
    pub buttons: U32,
    pub display_id: u8,
}

/// `VDAgentMonConfig` (one head of a monitors config).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct MonConfig {
    pub height: U32,
    pub width: U32,
    pub depth: U32,
    pub x: zerocopy::little_endian::I32,
    pub y: zerocopy::little_endian::I32,
}

/// Bytes before the heads of `VDAgentMonitorsConfig` (count, flags).
pub const MONITORS_CONFIG_HEADER: usize = 8;
/// Heads a monitors config may name (libspice's limit).
pub const MAX_MONITORS: usize = 256;

/// A whole message to the agent on the server's port: chunk header,
/// message header, body.
pub fn server_message(kind: u32, body: &[u8]) -> Vec<u8> {
    let size = (MESSAGE_HEADER_SIZE + body.len()) as u32;
    let chunk = ChunkHeader {
        port: SERVER_PORT.into(),
        size: size.into(),
    };
    let message = MessageHeader {
        protocol: PROTOCOL.into(),
        kind: kind.into(),
        opaque: 0.into(),
        size: (body.len() as u32).into(),
    };
    let mut bytes = chunk.as_bytes().to_vec();
    bytes.extend_from_slice(message.as_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// One client message for the agent, framed as a chunk.
pub fn client_chunk(data: &[u8]) -> Vec<u8> {
    let chunk = ChunkHeader {
        port: CLIENT_PORT.into(),
        size: (data.len() as u32).into(),
    };
    let mut bytes = chunk.as_bytes().to_vec();
    bytes.extend_from_slice(data);
    bytes
}
