//! The virtio-net header that starts every frame in the queues
//! (`struct virtio_net_hdr_v1`, 12 bytes with VERSION_1), and the checks a
//! transmitted frame's header must pass (docs/virtio-net.md §3).

use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::features;

/// Bytes of the header.
pub const SIZE: usize = 12;

/// `flags`: the checksum from `csum_start` on is still to be computed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
/// Bit of `gso_type`: the segments carry ECN.
pub const GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr_v1`.
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug, Default)]
pub struct NetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: U16,
    pub gso_size: U16,
    pub csum_start: U16,
    pub csum_offset: U16,
    /// Receive chains a mergeable frame takes.
    pub num_buffers: U16,
}

const _: () = assert!(std::mem::size_of::<NetHeader>() == SIZE);

/// Why a transmitted frame is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header flags {0:#x} not negotiated")]
    Flags(u8),
    #[error("GSO type {0:#x} not negotiated")]
    Gso(u8),
    #[error("GSO without a segment size")]
    NoSegmentSize,
    #[error("checksum at {start}+{offset} past the {len}-byte frame")]
    Checksum { start: u16, offset: u16, len: usize },
}

impl NetHeader {
    /// Checks the header of a transmitted frame of `len` bytes (after the
    /// header) against the `negotiated` features.
    pub fn check_tx(&self, negotiated: u64, len: usize) -> Result<(), HeaderError> {
        let has = |f| negotiated & f != 0;
        if self.flags & !F_NEEDS_CSUM != 0
            || (self.flags & F_NEEDS_CSUM != 0 && !has(features::CSUM))
        {
            return Err(HeaderError::Flags(self.flags));
        }
        if self.flags & F_NEEDS_CSUM != 0 {
            let (start, offset) = (self.csum_start.get(), self.csum_offset.get());
            if usize::from(start) + usize::from(offset) + 2 > len {
                return Err(HeaderError::Checksum { start, offset, len });
            }
        }
        let ecn = self.gso_type & GSO_ECN != 0;
        let allowed = match self.gso_type & !GSO_ECN {
            GSO_NONE => !ecn,
            GSO_TCPV4 => has(features::HOST_TSO4) && (!ecn || has(features::HOST_ECN)),
            GSO_TCPV6 => has(features::HOST_TSO6) && (!ecn || has(features::HOST_ECN)),
            _ => false,
        };
        if !allowed {
            return Err(HeaderError::Gso(self.gso_type));
        }
        if self.gso_type != GSO_NONE && self.gso_size.get() == 0 {
            return Err(HeaderError::NoSegmentSize);
        }
        Ok(())
    }
}
