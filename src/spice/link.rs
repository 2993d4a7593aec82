//! The link stage: the fixed handshake that opens every SPICE connection.
//!
//! ```text
//! client: SpiceLinkHeader(16) + SpiceLinkMess(18) + caps
//! server: SpiceLinkHeader(16) + SpiceLinkReply(178, our RSA key) + caps
//! client: [u32 auth mechanism, if it advertised AUTH_SELECTION] + ticket(128)
//! server: u32 link result (0 = OK; anything else, then close)
//! ```
//!
//! [`Linker`] is a sans-IO state machine: feed it the bytes received so
//! far and it says what it needs or what happened; the server decides
//! (channel exists? session id valid? ticket right?) and writes replies.

use super::protocol::{common_cap, LinkError};
use super::ticket::{ENCRYPTED_TICKET_LEN, PUBKEY_LEN};
use super::wire::{Caps, Reader, Writer};

pub const MAGIC: [u8; 4] = *b"REDQ";
pub const VERSION_MAJOR: u32 = 2;
pub const VERSION_MINOR: u32 = 2;
pub const LINK_HEADER_LEN: usize = 16;
pub const LINK_MESS_LEN: usize = 18;
pub const LINK_REPLY_LEN: usize = 178;
/// Largest link message accepted (spice-server's limit).
pub const MAX_LINK_MESS: u32 = 4096;
/// Most capability words a client may send per set.
pub const MAX_CAP_WORDS: u32 = 1024;
/// Auth mechanism word for ticket authentication (`SPICE_COMMON_CAP_AUTH_SPICE`).
pub const AUTH_MECHANISM_SPICE: u32 = 1;

/// What a client asks for in its link message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    pub connection_id: u32,
    pub channel_type: u8,
    pub channel_id: u8,
    pub common_caps: Caps,
    pub channel_caps: Caps,
}

impl LinkRequest {
    /// Decodes a SpiceLinkMess with its capability words.
    pub fn decode(bytes: &[u8]) -> Result<LinkRequest, LinkError> {
        let bad = |_| LinkError::InvalidData;
        let mut r = Reader::new(bytes);
        let connection_id = r.u32("connection_id").map_err(bad)?;
        let channel_type = r.u8("channel_type").map_err(bad)?;
        let channel_id = r.u8("channel_id").map_err(bad)?;
        let num_common = r.u32("num_common_caps").map_err(bad)?;
        let num_channel = r.u32("num_channel_caps").map_err(bad)?;
        let caps_offset = r.u32("caps_offset").map_err(bad)?;
        if num_common > MAX_CAP_WORDS || num_channel > MAX_CAP_WORDS {
            return Err(LinkError::InvalidData);
        }
        let words = (num_common + num_channel) as usize;
        let mut caps = Vec::with_capacity(words);
        if words > 0 {
            let start = caps_offset as usize;
            if start < LINK_MESS_LEN || start.saturating_add(4 * words) > bytes.len() {
                return Err(LinkError::InvalidData);
            }
            let mut r = Reader::new(&bytes[start..]);
            for _ in 0..words {
                caps.push(r.u32("caps").map_err(bad)?);
            }
        }
        let channel_caps = caps.split_off(num_common as usize);
        Ok(LinkRequest {
            connection_id,
            channel_type,
            channel_id,
            common_caps: Caps(caps),
            channel_caps: Caps(channel_caps),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.connection_id)
            .u8(self.channel_type)
            .u8(self.channel_id)
            .u32(self.common_caps.0.len() as u32)
            .u32(self.channel_caps.0.len() as u32)
            .u32(LINK_MESS_LEN as u32);
        for word in self.common_caps.0.iter().chain(&self.channel_caps.0) {
            w.u32(*word);
        }
        w.into_bytes()
    }
}

/// A SpiceLinkHeader with `size` bytes following it.
pub fn encode_link_header(size: usize, out: &mut Writer) {
    out.bytes(&MAGIC)
        .u32(VERSION_MAJOR)
        .u32(VERSION_MINOR)
        .u32(size as u32);
}

/// Header + SpiceLinkReply accepting the link, with our key and caps.
pub fn encode_link_reply(
    public_key: &[u8; PUBKEY_LEN],
    common_caps: &Caps,
    channel_caps: &Caps,
) -> Vec<u8> {
    let words = common_caps.0.len() + channel_caps.0.len();
    let mut w = Writer::with_capacity(LINK_HEADER_LEN + LINK_REPLY_LEN + 4 * words);
    encode_link_header(LINK_REPLY_LEN + 4 * words, &mut w);
    w.u32(LinkError::Ok as u32)
        .bytes(public_key)
        .u32(common_caps.0.len() as u32)
        .u32(channel_caps.0.len() as u32)
        .u32(LINK_REPLY_LEN as u32);
    for word in common_caps.0.iter().chain(&channel_caps.0) {
        w.u32(*word);
    }
    w.into_bytes()
}

/// Header + SpiceLinkReply refusing the link (zero key, no caps).
pub fn encode_error_reply(error: LinkError) -> Vec<u8> {
    let mut w = Writer::with_capacity(LINK_HEADER_LEN + LINK_REPLY_LEN);
    encode_link_header(LINK_REPLY_LEN, &mut w);
    w.u32(error as u32)
        .bytes(&[0; PUBKEY_LEN])
        .u32(0)
        .u32(0)
        .u32(0);
    w.into_bytes()
}

/// The 4-byte link result sent after the ticket.
pub fn encode_link_result(result: LinkError) -> [u8; 4] {
    (result as u32).to_le_bytes()
}

/// The common caps every server link reply carries: auth selection, ticket
/// auth and the mini header (never SASL).
pub fn server_common_caps() -> Caps {
    Caps::from_bits(&[
        common_cap::PROTOCOL_AUTH_SELECTION,
        common_cap::AUTH_SPICE,
        common_cap::MINI_HEADER,
    ])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Mess {
        size: usize,
    },
    /// Waiting for the server to accept or refuse the request.
    Deciding,
    AuthMechanism,
    Ticket,
    Done,
}

/// What the link stage needs or produced.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkStep {
    /// Not enough bytes yet.
    NeedMore,
    /// The link message arrived: the server must call [`Linker::accept`]
    /// (and send [`encode_link_reply`]) or refuse.
    Request(LinkRequest),
    /// The encrypted ticket arrived: check it and send the link result.
    Ticket(Vec<u8>),
    /// The client broke the protocol: send this error reply, then close.
    Refuse(LinkError),
}

/// The server side of the link stage for one connection.
#[derive(Debug)]
pub struct Linker {
    stage: Stage,
    client_auth_selection: bool,
}

impl Default for Linker {
    fn default() -> Self {
        Linker {
            stage: Stage::Header,
            client_auth_selection: false,
        }
    }
}

impl Linker {
    pub fn new() -> Self {
        Linker::default()
    }

    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Takes what it needs from the front of `input` (received bytes) and
    /// says what happened. Call again while it returns something other
    /// than `NeedMore` and the connection is still open.
    pub fn step(&mut self, input: &mut Vec<u8>) -> LinkStep {
        match self.stage {
            Stage::Header => {
                if input.len() < LINK_HEADER_LEN {
                    // Reject a wrong magic as soon as it is visible.
                    let n = input.len().min(4);
                    if input[..n] != MAGIC[..n] {
                        return LinkStep::Refuse(LinkError::InvalidMagic);
                    }
                    return LinkStep::NeedMore;
                }
                let mut r = Reader::new(&input[..LINK_HEADER_LEN]);
                let magic = r.bytes(4, "magic").unwrap_or_default();
                let major = r.u32("major").unwrap_or_default();
                let _minor = r.u32("minor");
                let size = r.u32("size").unwrap_or_default();
                if magic != MAGIC {
                    return LinkStep::Refuse(LinkError::InvalidMagic);
                }
                if major != VERSION_MAJOR {
                    return LinkStep::Refuse(LinkError::VersionMismatch);
                }
                if size < LINK_MESS_LEN as u32 || size > MAX_LINK_MESS {
                    return LinkStep::Refuse(LinkError::InvalidData);
                }
                input.drain(..LINK_HEADER_LEN);
                self.stage = Stage::Mess {
                    size: size as usize,
                };
                self.step(input)
            }
            Stage::Mess { size } => {
                if input.len() < size {
                    return LinkStep::NeedMore;
                }
                let request = LinkRequest::decode(&input[..size]);
                input.drain(..size);
                match request {
                    Ok(request) => {
                        self.client_auth_selection =
                            request.common_caps.has(common_cap::PROTOCOL_AUTH_SELECTION);
                        self.stage = Stage::Deciding;
                        LinkStep::Request(request)
                    }
                    Err(e) => LinkStep::Refuse(e),
                }
            }
            Stage::Deciding | Stage::Done => LinkStep::NeedMore,
            Stage::AuthMechanism => {
                if input.len() < 4 {
                    return LinkStep::NeedMore;
                }
                let mechanism = u32::from_le_bytes([input[0], input[1], input[2], input[3]]);
                input.drain(..4);
                if mechanism != AUTH_MECHANISM_SPICE {
                    return LinkStep::Refuse(LinkError::InvalidData);
                }
                self.stage = Stage::Ticket;
                self.step(input)
            }
            Stage::Ticket => {
                if input.len() < ENCRYPTED_TICKET_LEN {
                    return LinkStep::NeedMore;
                }
                let ticket = input.drain(..ENCRYPTED_TICKET_LEN).collect();
                self.stage = Stage::Done;
                LinkStep::Ticket(ticket)
            }
        }
    }

    /// The server accepted the request and sent its reply: expect the
    /// auth mechanism (if the client does auth selection) and the ticket.
    pub fn accept(&mut self) {
        if self.stage == Stage::Deciding {
            self.stage = if self.client_auth_selection {
                Stage::AuthMechanism
            } else {
                Stage::Ticket
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes spice-gtk 0.42 sends to link its main channel (decoded
    /// in docs/spice-protocol.md §1.3).
    const SPICE_GTK_MAIN_LINK: [u8; 42] = [
        0x52, 0x45, 0x44, 0x51, 2, 0, 0, 0, 2, 0, 0, 0, 0x1a, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0,
        0, 1, 0, 0, 0, 0x12, 0, 0, 0, 0x0d, 0, 0, 0, 0x0f, 0, 0, 0,
    ];

    #[test]
    fn parses_spice_gtk_link_in_pieces() {
        let mut linker = Linker::new();
        let mut input = SPICE_GTK_MAIN_LINK[..10].to_vec();
        assert_eq!(linker.step(&mut input), LinkStep::NeedMore);
        input.extend_from_slice(&SPICE_GTK_MAIN_LINK[10..]);
        let LinkStep::Request(request) = linker.step(&mut input) else {
            panic!("no request");
        };
        assert_eq!(request.connection_id, 0);
        assert_eq!((request.channel_type, request.channel_id), (1, 0));
        assert_eq!(request.common_caps, Caps(vec![0x0d]));
        assert_eq!(request.channel_caps, Caps(vec![0x0f]));
        assert!(input.is_empty());
        // Nothing more until the server decides.
        input.extend_from_slice(&[1, 0, 0, 0]);
        assert_eq!(linker.step(&mut input), LinkStep::NeedMore);
        linker.accept();
        input.extend_from_slice(&[7; 100]);
        assert_eq!(linker.step(&mut input), LinkStep::NeedMore);
        input.extend_from_slice(&[7; 30]);
        assert_eq!(linker.step(&mut input), LinkStep::Ticket(vec![7; 128]));
        assert_eq!(input, vec![7, 7]);
        assert!(linker.is_done());
    }

    #[test]
    fn request_round_trips() {
        let request = LinkRequest {
            connection_id: 0x1234,
            channel_type: 2,
            channel_id: 1,
            common_caps: Caps(vec![0x0b]),
            channel_caps: Caps(vec![0x3bf, 1]),
        };
        assert_eq!(LinkRequest::decode(&request.encode()), Ok(request));
    }

    #[test]
    fn without_auth_selection_the_ticket_follows_directly() {
        let mut linker = Linker::new();
        let request = LinkRequest {
            connection_id: 5,
            channel_type: 3,
            channel_id: 0,
            common_caps: Caps(vec![0x08]),
            channel_caps: Caps::default(),
        };
        let mut w = Writer::new();
        let mess = request.encode();
        encode_link_header(mess.len(), &mut w);
        w.bytes(&mess).bytes(&[9; 128]);
        let mut input = w.into_bytes();
        assert_eq!(linker.step(&mut input), LinkStep::Request(request));
        linker.accept();
        assert_eq!(linker.step(&mut input), LinkStep::Ticket(vec![9; 128]));
    }

    #[test]
    fn refusals() {
        let refuse = |bytes: &[u8]| Linker::new().step(&mut bytes.to_vec());
        assert_eq!(
            refuse(b"GET / HTTP/1.1\r\n"),
            LinkStep::Refuse(LinkError::InvalidMagic)
        );
        assert_eq!(refuse(b"RX"), LinkStep::Refuse(LinkError::InvalidMagic));
        assert_eq!(refuse(b"RE"), LinkStep::NeedMore);
        let mut header = SPICE_GTK_MAIN_LINK.to_vec();
        header[4] = 1;
        assert_eq!(
            refuse(&header),
            LinkStep::Refuse(LinkError::VersionMismatch)
        );
        let mut header = SPICE_GTK_MAIN_LINK.to_vec();
        header[12..16].copy_from_slice(&5000u32.to_le_bytes());
        assert_eq!(refuse(&header), LinkStep::Refuse(LinkError::InvalidData));
        header[12..16].copy_from_slice(&17u32.to_le_bytes());
        assert_eq!(refuse(&header), LinkStep::Refuse(LinkError::InvalidData));
        // Caps beyond the message.
        let mut bad_caps = SPICE_GTK_MAIN_LINK.to_vec();
        bad_caps[22..26].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(refuse(&bad_caps), LinkStep::Refuse(LinkError::InvalidData));
        // Caps offset inside the fixed part.
        let mut bad_offset = SPICE_GTK_MAIN_LINK.to_vec();
        bad_offset[30] = 4;
        assert_eq!(
            refuse(&bad_offset),
            LinkStep::Refuse(LinkError::InvalidData)
        );
        // A mechanism other than ticket auth.
        let mut linker = Linker::new();
        let mut input = SPICE_GTK_MAIN_LINK.to_vec();
        assert!(matches!(linker.step(&mut input), LinkStep::Request(_)));
        linker.accept();
        input.extend_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            linker.step(&mut input),
            LinkStep::Refuse(LinkError::InvalidData)
        );
    }

    #[test]
    fn reply_layouts() {
        let key = [0xaa; PUBKEY_LEN];
        let reply = encode_link_reply(&key, &server_common_caps(), &Caps(vec![2]));
        assert_eq!(reply.len(), 16 + 178 + 8);
        assert_eq!(&reply[..4], b"REDQ");
        assert_eq!(&reply[4..16], &[2, 0, 0, 0, 2, 0, 0, 0, 186, 0, 0, 0]);
        assert_eq!(&reply[16..20], &[0; 4]);
        assert_eq!(&reply[20..182], &key);
        assert_eq!(&reply[182..194], &[1, 0, 0, 0, 1, 0, 0, 0, 178, 0, 0, 0]);
        assert_eq!(&reply[194..], &[0x0b, 0, 0, 0, 2, 0, 0, 0]);

        let error = encode_error_reply(LinkError::ChannelNotAvailable);
        assert_eq!(error.len(), 194);
        assert_eq!(&error[12..16], &[178, 0, 0, 0]);
        assert_eq!(&error[16..20], &[9, 0, 0, 0]);
        assert!(error[20..].iter().all(|&b| b == 0));
        assert_eq!(
            encode_link_result(LinkError::PermissionDenied),
            [7, 0, 0, 0]
        );
    }
}
