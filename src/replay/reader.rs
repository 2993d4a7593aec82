//! A strict, streaming reader of libspice's `SPICE_REPLAY 1` recordings
//! (libspice-server's record format, docs/replay-format.md §3–§5;
//! errors and skipped events §7.1).
//!
//! The file is untrusted. Lines are read with a hard length cap, every
//! keyword is checked at its position of the grammar, numbers are range
//! checked for their field's real width, and blob sizes are only believed
//! as far as bytes actually arrive (a lying size never allocates). Each
//! event's blobs together are capped ([`Limits`]).
//!
//! Two kinds of trouble:
//! * the framing is broken (wrong keyword, bad number, truncated file): a
//!   [`ReadError`] — nothing after it can be trusted, reading stops;
//! * the event is well-formed but contradicts itself (a bitmap whose data
//!   is not `y * stride` bytes, a clip whose rectangles do not add up, an
//!   event larger than the cap, ...): [`Item::Skipped`] with the reason,
//!   and reading goes on with the next event.
//!
//! What the values *mean* for the device (surface ids, bounding boxes,
//! formats) is checked by the QXL device itself when the event is replayed.

use std::io::{self, Read};

use super::model::*;

/// Caps on what one recording may make us hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest text line, newline included.
    pub max_line: usize,
    /// Blob bytes kept for one event (primary dumps included).
    pub max_event_bytes: u64,
    /// Chunks in one chunk list.
    pub max_chunks: u32,
    /// Palette entries.
    pub max_palette: u32,
    /// Bytes of a guest debug message.
    pub max_message: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 256,
            max_event_bytes: 256 << 20,
            max_chunks: 65536,
            max_palette: 256,
            max_message: 64 << 10,
        }
    }
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a SPICE recording (the first line must be 'SPICE_REPLAY 1')")]
    NotARecording,
    #[error("recording version {0} is not supported (only 1 exists)")]
    Version(String),
    #[error(
        "truncated at byte {offset}, inside event {event}{blob} (the events before it are complete)"
    )]
    Truncated {
        offset: u64,
        event: u64,
        /// Empty, or which blob ended early and the size it declared.
        blob: String,
    },
    #[error("byte {offset}, event {event}: {message}")]
    Format {
        offset: u64,
        event: u64,
        message: String,
    },
    #[error("cannot read the recording: {0}")]
    Io(#[from] io::Error),
}

/// One step of reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event(Event),
    /// A well-framed event that cannot be replayed.
    Skipped {
        counter: u32,
        timestamp: u64,
        reason: String,
    },
}

/// Streams events out of a recording.
pub struct Reader<R: Read> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[pos]`.
    offset: u64,
    limits: Limits,
    /// Events started so far (1-based number of the current one).
    events: u64,
    last_counter: Option<u32>,
    counter_warned: bool,
    last_timestamp: u64,
    /// Blob bytes of the current event.
    event_bytes: u64,
    /// First reason the current event cannot be replayed.
    reject: Option<String>,
    /// The blob being read (prefix, declared size), for truncation reports.
    blob: Option<(String, u64)>,
}

const BUFFER: usize = 64 << 10;

type Result<T> = std::result::Result<T, ReadError>;

impl<R: Read> Reader<R> {
    /// Checks the header.
    pub fn new(src: R, limits: Limits) -> Result<Self> {
        let mut r = Reader {
            src,
            buf: vec![0; BUFFER.max(limits.max_line + 1)],
            pos: 0,
            end: 0,
            eof: false,
            offset: 0,
            limits,
            events: 0,
            last_counter: None,
            counter_warned: false,
            last_timestamp: 0,
            event_bytes: 0,
            reject: None,
            blob: None,
        };
        let line = match r.line() {
            Ok(l) => l,
            Err(ReadError::Io(e)) => return Err(ReadError::Io(e)),
            Err(_) => return Err(ReadError::NotARecording),
        };
        match line.strip_prefix("SPICE_REPLAY ") {
            Some("1") => Ok(r),
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                Err(ReadError::Version(v.to_string()))
            }
            _ => Err(ReadError::NotARecording),
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next event; `Ok(None)` at a clean end of file.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.available(1)? == 0 {
            return Ok(None);
        }
        self.events += 1;
        self.event_bytes = 0;
        self.reject = None;
        let line = self.line()?;
        let f = fields(&line, "event", 4).map_err(|m| self.format(m))?;
        let counter = self.u32_field(&f[0], "event counter", false)?;
        let what = self.int(&f[1], "event kind")?;
        let kind = self.u32_field(&f[2], "event type", false)?;
        let timestamp = self.u64_field(&f[3], "event timestamp")?;
        if let Some(last) = self.last_counter {
            if counter != last.wrapping_add(1) && !self.counter_warned {
                self.counter_warned = true;
                tracing::warn!(
                    "replay: event counter jumps from {last} to {counter} (events missing?)"
                );
            }
        }
        self.last_counter = Some(counter);
        // Timestamps never go backwards in a real recording; a crafted one
        // must not make pacing wait: clamp.
        let timestamp = timestamp.max(self.last_timestamp);
        self.last_timestamp = timestamp;
        let kind = match what {
            0 => EventKind::Command(self.command(kind)?),
            1 => {
                if kind > message::LAST {
                    self.reject(format!("unknown device message {kind}"));
                }
                let create = matches!(
                    kind,
                    message::CREATE_PRIMARY_SURFACE | message::CREATE_PRIMARY_SURFACE_ASYNC
                );
                // A create the server refused has no body (the next event
                // follows); at the end of the file we cannot tell, and
                // report truncation.
                if create && self.available(1)? == 0 {
                    return Err(self.truncated());
                }
                let primary = if create && !self.at_event_or_eof()? {
                    Some(self.primary()?)
                } else {
                    None
                };
                EventKind::Device {
                    message: kind,
                    primary,
                }
            }
            other => return Err(self.format(format!("event kind {other} (must be 0 or 1)"))),
        };
        Ok(Some(match self.reject.take() {
            Some(reason) => Item::Skipped {
                counter,
                timestamp,
                reason,
            },
            None => Item::Event(Event {
                counter,
                timestamp,
                kind,
            }),
        }))
    }

    // ---- errors -----------------------------------------------------------------------

    fn format(&self, message: impl Into<String>) -> ReadError {
        ReadError::Format {
            offset: self.offset,
            event: self.events,
            message: message.into(),
        }
    }

    fn truncated(&self) -> ReadError {
        ReadError::Truncated {
            offset: self.offset,
            event: self.events,
            blob: match &self.blob {
                Some((prefix, size)) => format!(", in its {prefix} blob of {size} bytes"),
                None => String::new(),
            },
        }
    }

    /// Marks the current event as not replayable (the first reason wins).
    fn reject(&mut self, reason: impl Into<String>) {
        if self.reject.is_none() {
            self.reject = Some(reason.into());
        }
    }

    // ---- bytes ------------------------------------------------------------------------

    /// Makes at least `want` bytes available unless the file ends first;
    /// returns how many are.
    fn available(&mut self, want: usize) -> Result<usize> {
        while self.end - self.pos < want && !self.eof {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.end == self.buf.len() {
                break;
            }
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        Ok(self.end - self.pos)
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Whether the next line is an event line (or the file ends).
    fn at_event_or_eof(&mut self) -> Result<bool> {
        let n = self.available(6)?;
        Ok(n == 0 || self.buf[self.pos..self.pos + n.min(6)] == b"event "[..n.min(6)])
    }

    /// One text line without its newline: printable ASCII, at most
    /// `max_line` bytes with the newline.
    fn line(&mut self) -> Result<String> {
        let cap = self.limits.max_line;
        let n = self.available(cap)?;
        let window = &self.buf[self.pos..self.pos + n.min(cap)];
        let Some(len) = window.iter().position(|&b| b == b'\n') else {
            return Err(if n < cap && self.eof {
                self.truncated()
            } else {
                self.format(format!("line longer than {cap} bytes"))
            });
        };
        let text = &window[..len];
        if let Some(bad) = text.iter().find(|&&b| !(0x20..0x7f).contains(&b)) {
            return Err(self.format(format!("byte {bad:#04x} in a text line")));
        }
        let text = String::from_utf8_lossy(text).into_owned();
        self.consume(len + 1);
        Ok(text)
    }

    /// Reads exactly `size` bytes (keeping them only if `keep`); fewer
    /// bytes in the file is truncation.
    fn bytes(&mut self, size: u64, keep: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut left = size;
        while left > 0 {
            let n = self.available(1)?;
            if n == 0 {
                return Err(self.truncated());
            }
            let take = (n as u64).min(left) as usize;
            if keep {
                out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            }
            self.consume(take);
            left -= take as u64;
        }
        Ok(out)
    }

    /// `binary Z PREFIX SIZE:` + data + `\n`. The data is kept unless it
    /// would exceed the event's cap (then the event is rejected).
    fn blob(&mut self, prefix: &str) -> Result<Vec<u8>> {
        // The header ends at ':' and is followed by raw bytes, not a newline.
        let cap = self.limits.max_line;
        let n = self.available(cap)?;
        let window = &self.buf[self.pos..self.pos + n.min(cap)];
        let Some(colon) = window.iter().position(|&b| b == b':') else {
            return Err(if n < cap && self.eof {
                self.truncated()
            } else {
                self.format(format!("expected 'binary 0 {prefix} SIZE:'"))
            });
        };
        let header = String::from_utf8_lossy(&window[..colon]).into_owned();
        self.consume(colon + 1);
        let parts: Vec<&str> = header
            .strip_prefix("binary ")
            .map(|h| h.split(' ').collect())
            .unwrap_or_default();
        if parts.len() != 3 || parts[1] != prefix {
            return Err(self.format(format!(
                "expected 'binary 0 {prefix} SIZE:', found '{}'",
                printable(&header)
            )));
        }
        let zlib = match parts[0] {
            "0" => false,
            "1" => true,
            other => return Err(self.format(format!("blob compression flag '{other}'"))),
        };
        let size = parse_number(parts[2])
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| self.format(format!("blob size '{}'", printable(parts[2]))))?;
        let stored = if zlib {
            let n = self.available(24)?;
            let window = &self.buf[self.pos..self.pos + n.min(24)];
            let colon = window
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| self.format("zlib blob without its compressed size"))?;
            let text = String::from_utf8_lossy(&window[..colon]).into_owned();
            self.consume(colon + 1);
            parse_number(&text)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| self.format(format!("zlib size '{}'", printable(&text))))?
        } else {
            size
        };
        let keep = match self.event_bytes.checked_add(size.max(stored)) {
            Some(total) if total <= self.limits.max_event_bytes => {
                self.event_bytes = total;
                true
            }
            _ => {
                let cap = self.limits.max_event_bytes;
                self.reject(format!("event holds more than {cap} bytes of data"));
                false
            }
        };
        self.blob = Some((prefix.to_string(), stored));
        let raw = self.bytes(stored, keep);
        self.blob = None;
        let raw = raw?;
        if self.available(1)? == 0 {
            return Err(self.truncated());
        }
        if self.buf[self.pos] != b'\n' {
            return Err(self.format(format!("no newline after the {prefix} blob")));
        }
        self.consume(1);
        if !keep {
            return Ok(Vec::new());
        }
        if zlib {
            match inflate_exact(&raw, size) {
                Some(data) => Ok(data),
                None => {
                    self.reject(format!(
                        "{prefix}: zlib data does not inflate to exactly {size} bytes"
                    ));
                    Ok(Vec::new())
                }
            }
        } else {
            Ok(raw)
        }
    }

    /// `data_chunks EXTRA TOTAL` + EXTRA+1 blobs.
    fn chunks(&mut self, prefix: &str) -> Result<Chunks> {
        let line = self.line()?;
        let f = fields(&line, "data_chunks", 2).map_err(|m| self.format(m))?;
        let extra = self.int(&f[0], "chunk count")?;
        let total = self.int(&f[1], "chunk total")?;
        let extra = u32::try_from(extra)
            .ok()
            .filter(|&e| e < self.limits.max_chunks)
            .ok_or_else(|| {
                self.format(format!(
                    "{extra} extra chunks (at most {})",
                    self.limits.max_chunks - 1
                ))
            })?;
        let total =
            u64::try_from(total).map_err(|_| self.format(format!("chunk total {total}")))?;
        let mut chunks = Vec::new();
        let mut sum = 0u64;
        for _ in 0..=extra {
            let blob = self.blob(prefix)?;
            sum += blob.len() as u64;
            chunks.push(blob);
        }
        if self.reject.is_none() && sum != total {
            self.reject(format!(
                "{prefix}: chunks hold {sum} bytes, the list says {total}"
            ));
        }
        Ok(chunks)
    }

    // ---- numbers ----------------------------------------------------------------------

    fn int(&self, text: &str, what: &str) -> Result<i64> {
        parse_number(text).ok_or_else(|| self.format(format!("{what}: '{}'", printable(text))))
    }

    /// A 32-bit field printed with `%d` or `%u`: both spellings accepted
    /// when `signed_ok`, the value is the field's bit pattern.
    fn u32_field(&self, text: &str, what: &str, signed_ok: bool) -> Result<u32> {
        let v = self.int(text, what)?;
        let low = if signed_ok { i64::from(i32::MIN) } else { 0 };
        if v < low || v > i64::from(u32::MAX) {
            return Err(self.format(format!("{what}: {v} does not fit 32 bits")));
        }
        Ok(v as u32)
    }

    fn i32_field(&self, text: &str, what: &str) -> Result<i32> {
        let v = self.int(text, what)?;
        i32::try_from(v).map_err(|_| self.format(format!("{what}: {v} out of range")))
    }

    fn u64_field(&self, text: &str, what: &str) -> Result<u64> {
        let bad = || self.format(format!("{what}: '{}'", printable(text)));
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        text.parse::<u64>().map_err(|_| bad())
    }

    fn small<T: TryFrom<i64>>(&self, text: &str, what: &str) -> Result<T> {
        let v = self.int(text, what)?;
        T::try_from(v).map_err(|_| self.format(format!("{what}: {v} out of range")))
    }

    // ---- lines ------------------------------------------------------------------------

    fn expect(&mut self, keyword: &str) -> Result<()> {
        let line = self.line()?;
        if line != keyword {
            return Err(self.format(format!(
                "expected '{keyword}', found '{}'",
                printable(&line)
            )));
        }
        Ok(())
    }

    /// `KEY v`, one integer.
    fn value(&mut self, key: &str) -> Result<String> {
        let line = self.line()?;
        let mut f = fields(&line, key, 1).map_err(|m| self.format(m))?;
        Ok(f.remove(0))
    }

    fn key_u32(&mut self, key: &str) -> Result<u32> {
        let v = self.value(key)?;
        self.u32_field(&v, key, true)
    }

    fn key_i32(&mut self, key: &str) -> Result<i32> {
        let v = self.value(key)?;
        self.i32_field(&v, key)
    }

    fn key_u64(&mut self, key: &str) -> Result<u64> {
        let v = self.value(key)?;
        self.u64_field(&v, key)
    }

    fn key_small<T: TryFrom<i64>>(&mut self, key: &str) -> Result<T> {
        let v = self.value(key)?;
        self.small(&v, key)
    }

    fn flag(&mut self, key: &str) -> Result<bool> {
        match self.key_small::<u8>(key)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.format(format!("{key} {v} (must be 0 or 1)"))),
        }
    }

    /// `rect NAME top left bottom right`.
    fn rect(&mut self, name: &str) -> Result<QRect> {
        let line = self.line()?;
        let f = fields(&line, "rect", 5).map_err(|m| self.format(m))?;
        if f[0] != name {
            return Err(self.format(format!(
                "expected 'rect {name}', found '{}'",
                printable(&line)
            )));
        }
        Ok(QRect {
            top: self.i32_field(&f[1], name)?,
            left: self.i32_field(&f[2], name)?,
            bottom: self.i32_field(&f[3], name)?,
            right: self.i32_field(&f[4], name)?,
        })
    }

    /// `KEY x y` with i32 (or, `narrow`, i16) coordinates.
    fn point(&mut self, key: &str, narrow: bool) -> Result<QPoint> {
        let line = self.line()?;
        let f = fields(&line, key, 2).map_err(|m| self.format(m))?;
        let (x, y) = if narrow {
            (
                i32::from(self.small::<i16>(&f[0], key)?),
                i32::from(self.small::<i16>(&f[1], key)?),
            )
        } else {
            (self.i32_field(&f[0], key)?, self.i32_field(&f[1], key)?)
        };
        Ok(QPoint { x, y })
    }

    // ---- device messages --------------------------------------------------------------

    fn primary(&mut self) -> Result<PrimaryCreate> {
        let line = self.line()?;
        let a = bare_fields(&line, 4).map_err(|m| self.format(format!("primary surface: {m}")))?;
        let line = self.line()?;
        let b = bare_fields(&line, 4).map_err(|m| self.format(format!("primary surface: {m}")))?;
        let p = PrimaryCreate {
            width: self.u32_field(&a[0], "primary width", true)?,
            height: self.u32_field(&a[1], "primary height", true)?,
            stride: self.i32_field(&a[2], "primary stride")?,
            format: self.u32_field(&a[3], "primary format", true)?,
            position: self.u32_field(&b[0], "primary position", true)?,
            mouse_mode: self.u32_field(&b[1], "primary mouse mode", true)?,
            flags: self.u32_field(&b[2], "primary flags", true)?,
            kind: self.u32_field(&b[3], "primary type", true)?,
            data: self.blob("data")?,
        };
        let expected = u64::from(p.stride.unsigned_abs()) * u64::from(p.height);
        if self.reject.is_none() && p.data.len() as u64 != expected {
            self.reject(format!(
                "primary {}x{} stride {}: {} bytes of data, expected {expected}",
                p.width,
                p.height,
                p.stride,
                p.data.len()
            ));
        }
        Ok(p)
    }

    // ---- commands ---------------------------------------------------------------------

    fn command(&mut self, kind: u32) -> Result<Command> {
        Ok(match kind {
            command::DRAW => Command::Draw(Box::new(self.drawable()?)),
            command::UPDATE => {
                self.expect("update")?;
                Command::Update(UpdateCmd {
                    area: self.rect("area")?,
                    update_id: self.key_u32("update_id")?,
                    surface_id: self.key_u32("surface_id")?,
                })
            }
            command::CURSOR => Command::Cursor(self.cursor()?),
            command::MESSAGE => {
                let text = self.blob("message")?;
                if text.len() as u64 > self.limits.max_message {
                    self.reject(format!("guest message of {} bytes", text.len()));
                }
                Command::Message(text)
            }
            command::SURFACE => Command::Surface(self.surface()?),
            other => {
                // NOP and unknown types have no body.
                if !self.at_event_or_eof()? {
                    return Err(self.format(format!("command type {other} followed by a body")));
                }
                if other != command::NOP {
                    self.reject(format!("unknown command type {other}"));
                }
                Command::Empty(other)
            }
        })
    }

    fn surface(&mut self) -> Result<SurfaceCmd> {
        self.expect("surface_cmd")?;
        let surface_id = self.key_u32("surface_id")?;
        let kind: u8 = self.key_small("type")?;
        let flags = self.key_u32("flags")?;
        let kind = match kind {
            0 => {
                let format = self.key_u32("u.surface_create.format")?;
                let width = self.key_u32("u.surface_create.width")?;
                let height = self.key_u32("u.surface_create.height")?;
                let stride = self.key_i32("u.surface_create.stride")?;
                let data = if flags & 1 != 0 {
                    let data = self.blob("data")?;
                    let expected = u64::from(height) * u64::from(stride.unsigned_abs());
                    if self.reject.is_none() && data.len() as u64 != expected {
                        self.reject(format!(
                            "surface {surface_id}: {} bytes of data, {width}x{height} stride {stride} needs {expected}",
                            data.len()
                        ));
                    }
                    Some(data)
                } else {
                    None
                };
                SurfaceCmdKind::Create {
                    format,
                    width,
                    height,
                    stride,
                    data,
                }
            }
            1 => SurfaceCmdKind::Destroy,
            other => {
                self.reject(format!("surface command type {other}"));
                SurfaceCmdKind::Destroy
            }
        };
        Ok(SurfaceCmd {
            surface_id,
            flags,
            kind,
        })
    }

    fn cursor(&mut self) -> Result<CursorCmd> {
        self.expect("cursor_cmd")?;
        let kind: u8 = self.key_small("type")?;
        Ok(match kind {
            0 => {
                let pos = self.point("point16", true)?;
                let visible = self.key_small("u.set.visible")?;
                let unique = self.key_u64("header.unique")?;
                let kind = self.key_small("header.type")?;
                let width = self.key_small("header.width")?;
                let height = self.key_small("header.height")?;
                let hot_x = self.key_small("header.hot_spot_x")?;
                let hot_y = self.key_small("header.hot_spot_y")?;
                let data_size = self.key_u32("data_size")?;
                let chunks = self.chunks("cursor")?;
                CursorCmd::Set {
                    pos,
                    visible,
                    shape: CursorShape {
                        unique,
                        kind,
                        width,
                        height,
                        hot_x,
                        hot_y,
                        data_size,
                        chunks,
                    },
                }
            }
            1 => CursorCmd::Move {
                pos: self.point("point16", true)?,
            },
            2 => CursorCmd::Hide,
            3 => CursorCmd::Trail {
                length: self.key_small("u.trail.length")?,
                frequency: self.key_small("u.trail.frequency")?,
            },
            other => {
                self.reject(format!("cursor command type {other}"));
                CursorCmd::Hide
            }
        })
    }

    fn drawable(&mut self) -> Result<Drawable> {
        self.expect("drawable")?;
        let bbox = self.rect("bbox")?;
        let clip = match self.key_u32("type")? {
            0 => None,
            1 => {
                let num_rects = self.key_u32("num_rects")?;
                let chunks = self.chunks("clip_rects")?;
                if self.reject.is_none() && u64::from(num_rects) * 16 != chunks_len(&chunks) {
                    self.reject(format!(
                        "clip of {num_rects} rectangles with {} bytes of them",
                        chunks_len(&chunks)
                    ));
                }
                Some((num_rects, chunks))
            }
            other => {
                self.reject(format!("clip type {other}"));
                None
            }
        };
        let effect = self.key_small("effect")?;
        let mm_time = self.key_u32("mm_time")?;
        // Native and compat drawables differ from here on.
        let line = self.line()?;
        let layout = if let Ok(f) = fields(&line, "self_bitmap", 1) {
            let self_bitmap = self.small(&f[0], "self_bitmap")?;
            let self_bitmap_area = self.rect("self_bitmap_area")?;
            let surface_id = self.key_u32("surface_id")?;
            let mut surfaces_dest = [0i32; 3];
            let mut surfaces_rects = [QRect::default(); 3];
            for i in 0..3 {
                surfaces_dest[i] = self.key_u32("surfaces_dest")? as i32;
                surfaces_rects[i] = self.rect("surfaces_rects")?;
            }
            DrawableLayout::Native {
                self_bitmap,
                self_bitmap_area,
                surface_id,
                surfaces_dest,
                surfaces_rects,
            }
        } else if let Ok(f) = fields(&line, "bitmap_offset", 1) {
            let bitmap_offset = self.u32_field(&f[0], "bitmap_offset", true)?;
            DrawableLayout::Compat {
                bitmap_offset,
                bitmap_area: self.rect("bitmap_area")?,
            }
        } else {
            return Err(self.format(format!(
                "expected 'self_bitmap' or 'bitmap_offset', found '{}'",
                printable(&line)
            )));
        };
        let compat = matches!(layout, DrawableLayout::Compat { .. });
        let kind: u8 = self.key_small("type")?;
        let op = self.draw_op(kind, compat)?;
        Ok(Drawable {
            bbox,
            clip,
            effect,
            mm_time,
            layout,
            op,
        })
    }

    fn draw_op(&mut self, kind: u8, compat: bool) -> Result<DrawOp> {
        Ok(match kind {
            draw::NOP => DrawOp::Nop,
            draw::FILL => DrawOp::Fill {
                brush: self.brush()?,
                rop_descriptor: self.key_small("rop_descriptor")?,
                mask: self.qmask()?,
            },
            draw::OPAQUE => DrawOp::Opaque {
                src: self.image()?,
                src_area: self.rect("src_area")?,
                brush: self.brush()?,
                rop_descriptor: self.key_small("rop_descriptor")?,
                scale_mode: self.key_small("scale_mode")?,
                mask: self.qmask()?,
            },
            draw::COPY => DrawOp::Copy(self.blit()?),
            draw::BLEND => DrawOp::Blend(self.blit()?),
            draw::COPY_BITS => DrawOp::CopyBits {
                src_pos: self.point("point", false)?,
            },
            draw::BLACKNESS => DrawOp::Blackness(self.qmask()?),
            draw::WHITENESS => DrawOp::Whiteness(self.qmask()?),
            draw::INVERS => DrawOp::Invers(self.qmask()?),
            draw::ROP3 => DrawOp::Rop3 {
                src: self.image()?,
                src_area: self.rect("src_area")?,
                brush: self.brush()?,
                rop3: self.key_small("rop3")?,
                scale_mode: self.key_small("scale_mode")?,
                mask: self.qmask()?,
            },
            draw::STROKE => {
                let path = self.chunks("path")?;
                let attr_flags: u8 = self.key_small("attr.flags")?;
                let style = if attr_flags & 8 != 0 {
                    let nseg: u8 = self.key_small("attr.style_nseg")?;
                    let bytes = self.blob("style")?;
                    if self.reject.is_none() && bytes.len() != usize::from(nseg) * 4 {
                        self.reject(format!(
                            "line style of {nseg} segments with {} bytes",
                            bytes.len()
                        ));
                    }
                    Some((nseg, bytes))
                } else {
                    None
                };
                DrawOp::Stroke {
                    path,
                    attr_flags,
                    style,
                    brush: self.brush()?,
                    fore_mode: self.key_small("fore_mode")?,
                    back_mode: self.key_small("back_mode")?,
                }
            }
            draw::TEXT => {
                let data_size = self.key_u32("data_size")?;
                let length = self.key_small("length")?;
                let flags = self.key_small("flags")?;
                let chunks = self.chunks("string")?;
                if self.reject.is_none() && u64::from(data_size) != chunks_len(&chunks) {
                    self.reject(format!(
                        "glyph string of {data_size} bytes holds {}",
                        chunks_len(&chunks)
                    ));
                }
                DrawOp::Text {
                    string: GlyphString {
                        data_size,
                        length,
                        flags,
                        chunks,
                    },
                    back_area: self.rect("back_area")?,
                    fore_brush: self.brush()?,
                    back_brush: self.brush()?,
                    fore_mode: self.key_small("fore_mode")?,
                    back_mode: self.key_small("back_mode")?,
                }
            }
            draw::TRANSPARENT => DrawOp::Transparent {
                src: self.image()?,
                src_area: self.rect("src_area")?,
                src_color: self.key_u32("src_color")?,
                true_color: self.key_u32("true_color")?,
            },
            draw::ALPHA_BLEND => DrawOp::AlphaBlend {
                alpha_flags: if compat {
                    None
                } else {
                    Some(self.key_small("alpha_flags")?)
                },
                alpha: self.key_small("alpha")?,
                src: self.image()?,
                src_area: self.rect("src_area")?,
            },
            draw::COMPOSITE if !compat => {
                let flags = self.key_u32("flags")?;
                let src = self.image()?;
                let src_transform = if self.flag("src_transform")? {
                    Some(self.transform()?)
                } else {
                    None
                };
                let mask = if self.flag("mask")? {
                    self.image()?
                } else {
                    None
                };
                let mask_transform = if self.flag("mask_transform")? {
                    Some(self.transform()?)
                } else {
                    None
                };
                DrawOp::Composite(Box::new(Composite {
                    flags,
                    src,
                    src_transform,
                    mask,
                    mask_transform,
                    src_origin: self.point("src_origin", true)?,
                    mask_origin: self.point("mask_origin", true)?,
                }))
            }
            // The recorder aborts on unknown draw types: nothing can follow.
            other => return Err(self.format(format!("draw type {other}"))),
        })
    }

    fn transform(&mut self) -> Result<Vec<u8>> {
        let t = self.blob("transform")?;
        if self.reject.is_none() && t.len() != 24 {
            self.reject(format!("transform of {} bytes (must be 24)", t.len()));
        }
        Ok(t)
    }

    fn blit(&mut self) -> Result<Blit> {
        Ok(Blit {
            src: self.image()?,
            src_area: self.rect("src_area")?,
            rop_descriptor: self.key_small("rop_descriptor")?,
            scale_mode: self.key_small("scale_mode")?,
            mask: self.qmask()?,
        })
    }

    fn brush(&mut self) -> Result<Brush> {
        Ok(match self.key_u32("type")? {
            0 => Brush::None,
            1 => Brush::Solid(self.key_u32("u.color")?),
            2 => Brush::Pattern {
                image: self.image()?,
                pos: self.point("point", false)?,
            },
            other => {
                self.reject(format!("brush type {other}"));
                Brush::None
            }
        })
    }

    fn qmask(&mut self) -> Result<QMask> {
        Ok(QMask {
            flags: self.key_small("flags")?,
            pos: self.point("point", false)?,
            bitmap: self.image()?,
        })
    }

    fn image(&mut self) -> Result<Option<Image>> {
        if !self.flag("image")? {
            return Ok(None);
        }
        let id = self.key_u64("descriptor.id")?;
        let kind: u8 = self.key_small("descriptor.type")?;
        let flags = self.key_small("descriptor.flags")?;
        let width = self.key_u32("descriptor.width")?;
        let height = self.key_u32("descriptor.height")?;
        let body = match kind {
            image_type::BITMAP => ImageBody::Bitmap(self.bitmap()?),
            image_type::QUIC => {
                let data_size = self.key_u32("quic.data_size")?;
                let chunks = self.chunks("quic.data")?;
                if self.reject.is_none() && u64::from(data_size) != chunks_len(&chunks) {
                    self.reject(format!(
                        "QUIC image of {data_size} bytes holds {}",
                        chunks_len(&chunks)
                    ));
                }
                ImageBody::Quic { data_size, chunks }
            }
            image_type::SURFACE => ImageBody::Surface(self.key_u32("surface_image.surface_id")?),
            // The recorder aborts on other types: nothing can follow.
            other => return Err(self.format(format!("image type {other}"))),
        };
        Ok(Some(Image {
            id,
            flags,
            width,
            height,
            body,
        }))
    }

    fn bitmap(&mut self) -> Result<Bitmap> {
        let format = self.key_small("bitmap.format")?;
        let flags: u8 = self.key_small("bitmap.flags")?;
        let x = self.key_u32("bitmap.x")?;
        let y = self.key_u32("bitmap.y")?;
        let stride = self.key_u32("bitmap.stride")?;
        let palette = if self.flag("has_palette")? {
            let count: u16 = self.key_small("qp.num_ents")?;
            let unique = self.key_u64("unique")?;
            let mut ents = Vec::with_capacity(usize::from(count).min(256));
            for _ in 0..count {
                ents.push(self.key_u32("ents")?);
            }
            if u32::from(count) > self.limits.max_palette {
                self.reject(format!(
                    "palette of {count} entries (at most {})",
                    self.limits.max_palette
                ));
            }
            Some(Palette { unique, ents })
        } else {
            None
        };
        let data = if flags & BITMAP_DIRECT != 0 {
            vec![self.blob("image_data_flat")?]
        } else {
            self.chunks("bitmap.data")?
        };
        let expected = u64::from(y) * u64::from(stride);
        if self.reject.is_none() && chunks_len(&data) != expected {
            self.reject(format!(
                "bitmap {x}x{y} stride {stride}: {} bytes of pixels, expected {expected}",
                chunks_len(&data)
            ));
        }
        Ok(Bitmap {
            format,
            flags,
            x,
            y,
            stride,
            palette,
            data,
        })
    }
}

/// A decimal integer as the recorder prints it: optional '-', digits, no
/// '+', no spaces, no leading zeros beyond "0", at most 20 digits.
fn parse_number(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || digits.len() > 20
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    text.parse::<i64>().ok()
}

/// `KEY v1 … vn` split on single spaces.
fn fields(line: &str, key: &str, n: usize) -> std::result::Result<Vec<String>, String> {
    let mut parts = line.split(' ');
    if parts.next() != Some(key) {
        return Err(format!("expected '{key}', found '{}'", printable(line)));
    }
    let values: Vec<String> = parts.map(str::to_string).collect();
    if values.len() != n || values.iter().any(String::is_empty) {
        return Err(format!("'{key}' needs {n} value(s): '{}'", printable(line)));
    }
    Ok(values)
}

/// `v1 … vn` (the primary-create lines have no keyword).
fn bare_fields(line: &str, n: usize) -> std::result::Result<Vec<String>, String> {
    let values: Vec<String> = line.split(' ').map(str::to_string).collect();
    if values.len() != n || values.iter().any(|v| parse_number(v).is_none()) {
        return Err(format!("expected {n} numbers, found '{}'", printable(line)));
    }
    Ok(values)
}

/// At most 60 characters of untrusted text, for messages.
fn printable(text: &str) -> String {
    let mut s: String = text
        .chars()
        .take(60)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().count() > 60 {
        s.push('…');
    }
    s
}

/// Inflates a zlib stream into exactly `size` bytes (no more are produced).
fn inflate_exact(raw: &[u8], size: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::ZlibDecoder::new(raw).take(size.saturating_add(1));
    decoder.read_to_end(&mut out).ok()?;
    (out.len() as u64 == size).then_some(out)
}
