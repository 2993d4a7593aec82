//! SPICE protocol numbers: channel types, link errors, capability bits and
//! message types (from spice-protocol's `enums.h` / `protocol.h`, as
//! documented in docs/spice-protocol.md: capabilities §1.5, link errors
//! §1.7, channel types §2.3, messages §2.4 and §3-§9, mouse modes §3.4).

/// Channel types (`SPICE_CHANNEL_*`).
pub mod channel {
    pub const MAIN: u8 = 1;
    pub const DISPLAY: u8 = 2;
    pub const INPUTS: u8 = 3;
    pub const CURSOR: u8 = 4;
    pub const PLAYBACK: u8 = 5;
    pub const RECORD: u8 = 6;
}

/// Link results (`SPICE_LINK_ERR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LinkError {
    Ok = 0,
    Error = 1,
    InvalidMagic = 2,
    InvalidData = 3,
    VersionMismatch = 4,
    NeedSecured = 5,
    NeedUnsecured = 6,
    PermissionDenied = 7,
    BadConnectionId = 8,
    ChannelNotAvailable = 9,
}

/// Common capabilities (every channel).
pub mod common_cap {
    pub const PROTOCOL_AUTH_SELECTION: u32 = 0;
    pub const AUTH_SPICE: u32 = 1;
    pub const AUTH_SASL: u32 = 2;
    pub const MINI_HEADER: u32 = 3;
}

pub mod main_cap {
    pub const NAME_AND_UUID: u32 = 1;
    pub const AGENT_CONNECTED_TOKENS: u32 = 2;
}

pub mod display_cap {
    pub const MONITORS_CONFIG: u32 = 1;
    pub const STREAM_REPORT: u32 = 4;
    pub const LZ4_COMPRESSION: u32 = 5;
    pub const PREF_COMPRESSION: u32 = 6;
    pub const MULTI_CODEC: u32 = 8;
    pub const CODEC_MJPEG: u32 = 9;
}

pub mod inputs_cap {
    pub const KEY_SCANCODE: u32 = 0;
}

/// Playback and record capabilities (the same bit on both channels).
pub mod audio_cap {
    pub const VOLUME: u32 = 1;
    pub const PLAYBACK_OPUS: u32 = 3;
    pub const RECORD_OPUS: u32 = 2;
}

pub mod playback_msg {
    // server -> client
    pub const DATA: u16 = 101;
    pub const MODE: u16 = 102;
    pub const START: u16 = 103;
    pub const STOP: u16 = 104;
    pub const VOLUME: u16 = 105;
    pub const MUTE: u16 = 106;
}

pub mod record_msg {
    // server -> client
    pub const START: u16 = 101;
    pub const STOP: u16 = 102;
    pub const VOLUME: u16 = 103;
    pub const MUTE: u16 = 104;
    // client -> server
    pub const DATA: u16 = 101;
    pub const MODE: u16 = 102;
    pub const START_MARK: u16 = 103;
}

/// `SpiceAudioDataMode` and `SpiceAudioFmt`.
pub mod audio {
    pub const MODE_RAW: u16 = 1;
    pub const MODE_OPUS: u16 = 3;
    pub const FORMAT_S16: u16 = 1;
}

/// Messages valid on every channel.
pub mod base {
    // server -> client
    pub const SET_ACK: u16 = 3;
    pub const PING: u16 = 4;
    pub const DISCONNECTING: u16 = 6;
    pub const NOTIFY: u16 = 7;
    // client -> server
    pub const ACK_SYNC: u16 = 1;
    pub const ACK: u16 = 2;
    pub const PONG: u16 = 3;
    pub const MIGRATE_FLUSH_MARK: u16 = 4;
    pub const MIGRATE_DATA: u16 = 5;
    pub const CLIENT_DISCONNECTING: u16 = 6;
}

pub mod main_msg {
    // server -> client
    pub const INIT: u16 = 103;
    pub const CHANNELS_LIST: u16 = 104;
    pub const MOUSE_MODE: u16 = 105;
    pub const AGENT_CONNECTED: u16 = 107;
    pub const AGENT_DISCONNECTED: u16 = 108;
    /// Server to client (the client's own is [`AGENT_DATA`]).
    pub const AGENT_DATA_TO_CLIENT: u16 = 109;
    pub const AGENT_TOKEN: u16 = 110;
    // client -> server
    pub const CLIENT_INFO: u16 = 101;
    pub const MIGRATE_CONNECTED: u16 = 102;
    pub const MIGRATE_CONNECT_ERROR: u16 = 103;
    pub const ATTACH_CHANNELS: u16 = 104;
    pub const MOUSE_MODE_REQUEST: u16 = 105;
    pub const AGENT_START: u16 = 106;
    pub const AGENT_DATA: u16 = 107;
    pub const CLIENT_AGENT_TOKEN: u16 = 108;
    pub const MIGRATE_END: u16 = 109;
    pub const MIGRATE_DST_DO_SEAMLESS: u16 = 110;
    pub const MIGRATE_CONNECTED_SEAMLESS: u16 = 111;
    pub const QUALITY_INDICATOR: u16 = 112;
}

pub mod display_msg {
    // server -> client
    pub const MARK: u16 = 102;
    pub const RESET: u16 = 103;
    pub const INVAL_LIST: u16 = 105;
    pub const INVAL_ALL_PIXMAPS: u16 = 106;
    pub const INVAL_ALL_PALETTES: u16 = 108;
    pub const STREAM_CREATE: u16 = 122;
    pub const STREAM_DATA: u16 = 123;
    pub const STREAM_CLIP: u16 = 124;
    pub const STREAM_DESTROY: u16 = 125;
    pub const STREAM_DESTROY_ALL: u16 = 126;
    pub const DRAW_COPY: u16 = 304;
    pub const SURFACE_CREATE: u16 = 314;
    pub const SURFACE_DESTROY: u16 = 315;
    pub const MONITORS_CONFIG: u16 = 317;
    pub const STREAM_ACTIVATE_REPORT: u16 = 319;
    // client -> server
    pub const INIT: u16 = 101;
    pub const STREAM_REPORT: u16 = 102;
    pub const PREFERRED_COMPRESSION: u16 = 103;
    pub const GL_DRAW_DONE: u16 = 104;
    pub const PREFERRED_VIDEO_CODEC_TYPE: u16 = 105;
}

pub mod cursor_msg {
    pub const INIT: u16 = 101;
    pub const RESET: u16 = 102;
    pub const SET: u16 = 103;
    pub const MOVE: u16 = 104;
    pub const HIDE: u16 = 105;
    pub const INVAL_ONE: u16 = 107;
}

pub mod inputs_msg {
    // server -> client
    pub const INIT: u16 = 101;
    pub const KEY_MODIFIERS: u16 = 102;
    pub const MOUSE_MOTION_ACK: u16 = 111;
    // client -> server
    pub const KEY_DOWN: u16 = 101;
    pub const KEY_UP: u16 = 102;
    pub const CLIENT_KEY_MODIFIERS: u16 = 103;
    pub const KEY_SCANCODE: u16 = 104;
    pub const MOUSE_MOTION: u16 = 111;
    pub const MOUSE_POSITION: u16 = 112;
    pub const MOUSE_PRESS: u16 = 113;
    pub const MOUSE_RELEASE: u16 = 114;
}

/// `SpiceMouseMode` flags.
pub mod mouse_mode {
    pub const SERVER: u16 = 1;
    pub const CLIENT: u16 = 2;
}
