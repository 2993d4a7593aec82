//! SPICE marshalling: little-endian writers and bounds-checked readers, and
//! message framing (the 6-byte mini header or the 18-byte full header).
//!
//! Everything on the SPICE wire is packed little-endian with no padding.
//! Pointers inside a message body are u32 offsets from the start of the
//! body; [`Writer::pointer_slot`] / [`Writer::patch_pointer`] build them.
//! [`Reader`] never panics: every read past the end is a [`WireError`].

use std::fmt;

use devices::display::Rect;

/// A client message that does not fit the layout it claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The body ended before a field did.
    Truncated { what: &'static str },
    /// A field holds a value the protocol does not allow.
    Invalid { what: &'static str, value: u64 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { what } => write!(f, "message too short for {what}"),
            WireError::Invalid { what, value } => write!(f, "invalid {what}: {value}"),
        }
    }
}

impl std::error::Error for WireError {}

/// A bounds-checked little-endian cursor over a client message.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated { what });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
}

/// Builds a message body (or any packed structure).
#[derive(Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            bytes: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A rectangle as the wire has it: top, left, bottom, right.
    pub fn rect(&mut self, r: &Rect) -> &mut Self {
        self.i32(r.top).i32(r.left).i32(r.bottom).i32(r.right)
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(v);
        self
    }

    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.bytes.resize(self.bytes.len() + n, 0);
        self
    }

    /// Writes a zero pointer and returns where it is, for [`Self::patch_pointer`].
    pub fn pointer_slot(&mut self) -> usize {
        let at = self.bytes.len();
        self.u32(0);
        at
    }

    /// Points the slot at the current end of the body (where the pointee
    /// is about to be written).
    pub fn patch_pointer(&mut self, slot: usize) {
        let target = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.bytes[slot..slot + 4].copy_from_slice(&target.to_le_bytes());
    }
}

/// Size of the mini data header: `u16 type, u32 size`.
pub const MINI_HEADER_LEN: usize = 6;
/// Size of the full data header: `u64 serial, u16 type, u32 size, u32 sub_list`.
pub const FULL_HEADER_LEN: usize = 18;

/// Which data header a connection uses (fixed after the link stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    Mini,
    Full,
}

impl HeaderMode {
    pub fn header_len(self) -> usize {
        match self {
            HeaderMode::Mini => MINI_HEADER_LEN,
            HeaderMode::Full => FULL_HEADER_LEN,
        }
    }
}

/// A decoded data header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub msg_type: u16,
    pub size: u32,
}

impl DataHeader {
    /// Decodes a header from the first `mode.header_len()` bytes; `None` if fewer.
    pub fn decode(mode: HeaderMode, bytes: &[u8]) -> Option<DataHeader> {
        let mut r = Reader::new(bytes);
        match mode {
            HeaderMode::Mini => Some(DataHeader {
                msg_type: r.u16("type").ok()?,
                size: r.u32("size").ok()?,
            }),
            HeaderMode::Full => {
                let _serial = r.u64("serial").ok()?;
                let msg_type = r.u16("type").ok()?;
                let size = r.u32("size").ok()?;
                // A client sub-message list would be an offset into the body;
                // clients never send one and we do not read it.
                let _sub_list = r.u32("sub_list").ok()?;
                Some(DataHeader { msg_type, size })
            }
        }
    }

    /// Appends this header (with `serial` in full mode) to `out`.
    pub fn encode(&self, mode: HeaderMode, serial: u64, out: &mut Vec<u8>) {
        if mode == HeaderMode::Full {
            out.extend_from_slice(&serial.to_le_bytes());
        }
        out.extend_from_slice(&self.msg_type.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        if mode == HeaderMode::Full {
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }
}

/// A framing problem: the connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    TooLarge {
        msg_type: u16,
        size: u32,
        limit: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge {
                msg_type,
                size,
                limit,
            } => write!(
                f,
                "message type {msg_type} claims {size} bytes (this channel accepts at most {limit})"
            ),
        }
    }
}

/// One message cut from a byte stream: its header, its body, and how many
/// bytes of the stream it used.
pub type Frame<'a> = (DataHeader, &'a [u8], usize);

/// Splits a byte stream from a client into messages.
///
/// The caller appends received bytes to its buffer and calls
/// [`next_frame`] repeatedly; each call returns the next complete message
/// (type and body) and how many bytes it used, `Ok(None)` if the buffer
/// holds only part of one, or an error if a header announces a body larger
/// than `max_body` (which is checked before any body byte is awaited, so a
/// client cannot make us buffer more than `max_body` bytes).
pub fn next_frame(
    mode: HeaderMode,
    buffer: &[u8],
    max_body: u32,
) -> Result<Option<Frame<'_>>, FrameError> {
    let Some(header) = DataHeader::decode(mode, buffer) else {
        return Ok(None);
    };
    if header.size > max_body {
        return Err(FrameError::TooLarge {
            msg_type: header.msg_type,
            size: header.size,
            limit: max_body,
        });
    }
    let start = mode.header_len();
    let end = start + header.size as usize;
    if buffer.len() < end {
        return Ok(None);
    }
    Ok(Some((header, &buffer[start..end], end)))
}

/// Capability bits, as exchanged in the link stage: cap `n` is bit `n % 32`
/// of word `n / 32`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps(pub Vec<u32>);

impl Caps {
    pub fn from_bits(bits: &[u32]) -> Caps {
        let mut caps = Caps::default();
        for &bit in bits {
            caps.set(bit);
        }
        caps
    }

    pub fn set(&mut self, bit: u32) {
        let word = (bit / 32) as usize;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (bit % 32);
    }

    pub fn has(&self, bit: u32) -> bool {
        self.0
            .get((bit / 32) as usize)
            .is_some_and(|w| w & (1 << (bit % 32)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation() {
        let mut r = Reader::new(&[1, 0, 0]);
        assert_eq!(r.u16("a"), Ok(1));
        assert_eq!(r.u16("b"), Err(WireError::Truncated { what: "b" }));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.rest(), &[0]);
    }

    #[test]
    fn pointers_are_body_offsets() {
        let mut w = Writer::new();
        w.u32(7);
        let slot = w.pointer_slot();
        w.u8(1);
        w.patch_pointer(slot);
        w.u16(0xabcd);
        assert_eq!(w.into_bytes(), vec![7, 0, 0, 0, 9, 0, 0, 0, 1, 0xcd, 0xab]);
    }

    #[test]
    fn headers_round_trip() {
        let h = DataHeader {
            msg_type: 304,
            size: 0x81,
        };
        let mut mini = Vec::new();
        h.encode(HeaderMode::Mini, 5, &mut mini);
        assert_eq!(mini, [0x30, 0x01, 0x81, 0, 0, 0]);
        let mut full = Vec::new();
        h.encode(HeaderMode::Full, 5, &mut full);
        assert_eq!(
            full,
            [5, 0, 0, 0, 0, 0, 0, 0, 0x30, 0x01, 0x81, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(DataHeader::decode(HeaderMode::Mini, &mini), Some(h));
        assert_eq!(DataHeader::decode(HeaderMode::Full, &full), Some(h));
        assert_eq!(DataHeader::decode(HeaderMode::Full, &mini), None);
    }

    #[test]
    fn frames_split_and_bound() {
        let mut stream = vec![2, 0, 1, 0, 0, 0, 0xaa, 3, 0];
        let (h, body, used) = next_frame(HeaderMode::Mini, &stream, 16).unwrap().unwrap();
        assert_eq!((h.msg_type, body, used), (2, &[0xaa][..], 7));
        assert_eq!(next_frame(HeaderMode::Mini, &stream[used..], 16), Ok(None));
        stream = vec![1, 0, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            next_frame(HeaderMode::Mini, &stream, 4096),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn caps_bits() {
        let caps = Caps::from_bits(&[0, 3, 33]);
        assert_eq!(caps.0, vec![0b1001, 0b10]);
        assert!(caps.has(33) && caps.has(0) && !caps.has(1) && !caps.has(64));
    }
}
