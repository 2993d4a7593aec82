//! Turning a descriptor chain into a block request, trusting nothing.
//!
//! A request is laid out as a byte stream (virtio 1.x does not promise any
//! framing): the device-readable part starts with the 16-byte header
//! (`type: u32, reserved: u32, sector: u64`), followed by the data of a
//! write, or the segments of a discard or write-zeroes; the device-writable
//! part holds the data of a read or GET_ID and ends with the status byte.
//!
//! [`parse`] checks everything before any I/O: readable descriptors come
//! first, every buffer lies in guest RAM, the header and status are there,
//! data lengths are whole sectors, sectors lie inside the disk, totals stay
//! within the limits the device announced. What it refuses comes back as a
//! [`Refusal`] with the status to report (when there is a status byte).

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory as _, Permissions};

use super::{
    limits, SECTOR_SIZE, TYPE_DISCARD, TYPE_FLUSH, TYPE_GET_ID, TYPE_IN, TYPE_OUT,
    TYPE_WRITE_ZEROES,
};
use crate::virtio::GuestMemory;

/// Bytes of the request header.
pub const HEADER_SIZE: u32 = 16;
/// Bytes of one discard / write-zeroes segment.
pub const RANGE_SIZE: u32 = 16;
/// Bytes of GET_ID's answer.
pub const ID_SIZE: u32 = 20;
/// `flags` bit of a write-zeroes segment: holes are fine.
pub const RANGE_FLAG_UNMAP: u32 = 1;

/// A guest buffer: `len` bytes at `addr`, checked to lie in guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A discard or write-zeroes range, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub offset: u64,
    pub len: u64,
    pub unmap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Read into `data` from byte `offset`.
    Read {
        offset: u64,
    },
    /// Write `data` at byte `offset`.
    Write {
        offset: u64,
    },
    Flush,
    /// Write the serial number into `data`.
    GetId,
    Discard(Vec<Range>),
    WriteZeroes(Vec<Range>),
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub operation: Operation,
    /// The data buffers, in order: device-readable for writes,
    /// device-writable for reads and GET_ID (without the status byte).
    pub data: Vec<Segment>,
    /// Bytes in `data`.
    pub data_len: u64,
    pub status: GuestAddress,
}

/// A request that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Where to write `status`; `None` when the chain has no status byte.
    pub status_addr: Option<GuestAddress>,
    pub status: u8,
    pub reason: String,
}

/// What the device answers for, besides the chain itself.
#[derive(Debug, Clone, Copy)]
pub struct DiskShape {
    /// Bytes of the disk.
    pub size: u64,
    pub read_only: bool,
}

/// The chain's buffers split by direction.
struct Parts {
    readable: Vec<Segment>,
    writable: Vec<Segment>,
}

/// Checks a chain and makes a request of it.
pub fn parse(
    descriptors: &[Descriptor],
    memory: &GuestMemory,
    disk: DiskShape,
) -> Result<Request, Refusal> {
    let parts = split(descriptors, memory)?;
    let (status, writable) = take_status(&parts.writable)?;
    let refuse = |code: u8, reason: String| Refusal {
        status_addr: Some(status),
        status: code,
        reason,
    };
    let (header, readable) = take_bytes::<16>(&parts.readable, memory)
        .ok_or_else(|| refuse(super::STATUS_IOERR, "no 16-byte request header".into()))?;
    let kind = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
    let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    let operation = match kind {
        TYPE_IN | TYPE_OUT => sectors(kind, sector, &readable, &writable, disk),
        TYPE_FLUSH => Ok(Operation::Flush),
        TYPE_GET_ID => Ok(Operation::GetId),
        TYPE_DISCARD | TYPE_WRITE_ZEROES => ranges(kind, &readable, memory, disk),
        other => Err((super::STATUS_UNSUPP, format!("request type {other}"))),
    }
    .map_err(|(code, reason)| refuse(code, reason))?;
    let data = match operation {
        Operation::Read { .. } | Operation::GetId => writable,
        Operation::Write { .. } => readable,
        _ => Vec::new(),
    };
    let data_len = total(&data);
    Ok(Request {
        operation,
        data,
        data_len,
        status,
    })
}

/// Splits the chain into its readable and writable buffers, checking that
/// each lies in guest RAM and that no readable buffer follows a writable one.
fn split(descriptors: &[Descriptor], memory: &GuestMemory) -> Result<Parts, Refusal> {
    let mut parts = Parts {
        readable: Vec::new(),
        writable: Vec::new(),
    };
    let mut error = None;
    for d in descriptors {
        let segment = Segment {
            addr: d.addr(),
            len: d.len(),
        };
        let access = if d.is_write_only() {
            Permissions::Write
        } else {
            Permissions::Read
        };
        if !memory.check_range(segment.addr, segment.len as usize, access) {
            error.get_or_insert(format!(
                "buffer {:#x}+{:#x} is not in guest RAM",
                segment.addr.0, segment.len
            ));
        } else if d.is_write_only() {
            parts.writable.push(segment);
        } else if !parts.writable.is_empty() {
            error.get_or_insert("a device-readable buffer after a writable one".into());
        } else {
            parts.readable.push(segment);
        }
    }
    match error {
        None => Ok(parts),
        Some(reason) => Err(Refusal {
            status_addr: last_byte(descriptors, memory),
            status: super::STATUS_IOERR,
            reason,
        }),
    }
}

/// The chain's last byte, if the chain ends in a writable buffer in RAM.
fn last_byte(descriptors: &[Descriptor], memory: &GuestMemory) -> Option<GuestAddress> {
    let last = descriptors.last()?;
    let addr = last
        .addr()
        .checked_add(u64::from(last.len().checked_sub(1)?))?;
    (last.is_write_only() && memory.check_range(addr, 1, Permissions::Write)).then_some(addr)
}

/// The status byte (the last writable byte) and the writable buffers before it.
fn take_status(writable: &[Segment]) -> Result<(GuestAddress, Vec<Segment>), Refusal> {
    let no_status = || Refusal {
        status_addr: None,
        status: super::STATUS_IOERR,
        reason: "no device-writable status byte".into(),
    };
    let mut rest = writable.to_vec();
    while rest.last().is_some_and(|s| s.len == 0) {
        rest.pop();
    }
    let last = rest.last_mut().ok_or_else(no_status)?;
    last.len -= 1;
    let status = GuestAddress(last.addr.0 + u64::from(last.len));
    if last.len == 0 {
        rest.pop();
    }
    Ok((status, rest))
}

/// The first `N` bytes of `segments` and the segments after them.
fn take_bytes<const N: usize>(
    segments: &[Segment],
    memory: &GuestMemory,
) -> Option<([u8; N], Vec<Segment>)> {
    let mut bytes = [0u8; N];
    let mut filled = 0;
    let mut rest = Vec::new();
    for s in segments {
        let want = (N - filled).min(s.len as usize);
        if want > 0 {
            memory
                .read_slice(&mut bytes[filled..filled + want], s.addr)
                .ok()?;
            filled += want;
        }
        if (want as u32) < s.len {
            rest.push(Segment {
                addr: GuestAddress(s.addr.0 + want as u64),
                len: s.len - want as u32,
            });
        }
    }
    (filled == N).then_some((bytes, rest))
}

fn total(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| u64::from(s.len)).sum()
}

type Checked<T> = Result<T, (u8, String)>;

/// A read or write of whole sectors inside the disk.
fn sectors(
    kind: u32,
    sector: u64,
    readable: &[Segment],
    writable: &[Segment],
    disk: DiskShape,
) -> Checked<Operation> {
    let ioerr = |reason: String| Err((super::STATUS_IOERR, reason));
    let len = total(if kind == TYPE_IN { writable } else { readable });
    if kind == TYPE_OUT && disk.read_only {
        return ioerr("write to a read-only disk".into());
    }
    if !len.is_multiple_of(SECTOR_SIZE) {
        return ioerr(format!("data of {len} bytes is not whole sectors"));
    }
    if len > limits::MAX_REQUEST_BYTES {
        return ioerr(format!("{len} bytes in one request"));
    }
    let offset = in_disk(sector, len, disk).map_err(|r| (super::STATUS_IOERR, r))?;
    Ok(if kind == TYPE_IN {
        Operation::Read { offset }
    } else {
        Operation::Write { offset }
    })
}

/// The byte offset of `len` bytes at `sector`, if they lie inside the disk.
fn in_disk(sector: u64, len: u64, disk: DiskShape) -> Result<u64, String> {
    let capacity = disk.size / SECTOR_SIZE;
    let end = sector.checked_add(len / SECTOR_SIZE);
    match end {
        Some(end) if end <= capacity => Ok(sector * SECTOR_SIZE),
        _ => Err(format!(
            "sectors {sector}+{} beyond the disk's {capacity}",
            len / SECTOR_SIZE
        )),
    }
}

/// The ranges of a discard or write-zeroes.
fn ranges(
    kind: u32,
    readable: &[Segment],
    memory: &GuestMemory,
    disk: DiskShape,
) -> Checked<Operation> {
    if disk.read_only {
        // Not offered on a read-only disk: an unsupported request.
        return Err((
            super::STATUS_UNSUPP,
            "discard or zeroes on a read-only disk".into(),
        ));
    }
    let len = total(readable);
    let count = len / u64::from(RANGE_SIZE);
    if !len.is_multiple_of(u64::from(RANGE_SIZE))
        || count == 0
        || count > u64::from(limits::MAX_RANGES)
    {
        return Err((
            super::STATUS_UNSUPP,
            format!(
                "{len} bytes of ranges (whole 16-byte ranges, 1 to {})",
                limits::MAX_RANGES
            ),
        ));
    }
    let mut rest = readable.to_vec();
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (bytes, after) = take_bytes::<16>(&rest, memory)
            .ok_or((super::STATUS_IOERR, "range unreadable".to_string()))?;
        rest = after;
        out.push(range(kind, &bytes, disk)?);
    }
    Ok(if kind == TYPE_DISCARD {
        Operation::Discard(out)
    } else {
        Operation::WriteZeroes(out)
    })
}

fn range(kind: u32, bytes: &[u8; 16], disk: DiskShape) -> Checked<Range> {
    let sector = u64::from_le_bytes(bytes[0..8].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    let flags = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    let unsupp = |reason: String| Err((super::STATUS_UNSUPP, reason));
    let allowed = if kind == TYPE_DISCARD {
        0
    } else {
        RANGE_FLAG_UNMAP
    };
    if flags & !allowed != 0 {
        return unsupp(format!("range flags {flags:#x}"));
    }
    if count == 0 || count > limits::MAX_RANGE_SECTORS {
        return unsupp(format!("a range of {count} sectors"));
    }
    let len = u64::from(count) * SECTOR_SIZE;
    let offset = in_disk(sector, len, disk).map_err(|r| (super::STATUS_IOERR, r))?;
    Ok(Range {
        offset,
        len,
        unmap: flags & RANGE_FLAG_UNMAP != 0,
    })
}
