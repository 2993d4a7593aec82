//! A TAP device as the card's backend (docs/virtio-net.md §5.3): opened
//! through `/dev/net/tun` with `IFF_VNET_HDR`, so every frame carries the
//! 12-byte virtio-net header and offloads (checksums, TSO) pass between the
//! guest and the host's network stack; `TUNSETOFFLOAD` tells the kernel
//! which offloads the guest takes. An existing device is attached; a
//! missing one is created when saffron may (CAP_NET_ADMIN) and goes away
//! when saffron ends.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use devices::virtio::net::{header, GuestPiece, NetBackend, Offloads, Sent};
use devices::virtio::GuestMemory;

use super::NetError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: u16 = 0x0002;
const IFF_NO_PI: u16 = 0x1000;
const IFF_VNET_HDR: u16 = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

/// `struct ifreq` with the `ifr_flags` member of its union.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: u16,
    _rest: [u8; 22],
}

/// An open TAP device.
pub struct Tap {
    file: File,
    name: String,
    dropped: u64,
}

impl Tap {
    /// Opens (or creates) the TAP device `name`.
    pub fn open(name: &str) -> Result<Tap, NetError> {
        let err = |reason: String| NetError::Tap {
            name: name.to_string(),
            reason,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| err(format!("cannot open /dev/net/tun: {e}")))?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _rest: [0; 22],
        };
        req.name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req`
        // is (40 bytes, the name NUL-terminated), on a tun fd we own.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) => format!(
                    " (create it for this user first: ip tuntap add dev {name} mode tap user $USER)"
                ),
                Some(libc::EBUSY) => " (another program has it open)".into(),
                Some(libc::EINVAL) => {
                    " (it exists but is not a TAP device with these flags)".into()
                }
                _ => String::new(),
            };
            return Err(err(format!("cannot attach: {e}{hint}")));
        }
        let size = header::SIZE as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ, &size) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(err(format!("cannot set the virtio-net header size: {e}")));
        }
        let tap = Tap {
            file,
            name: name.to_string(),
            dropped: 0,
        };
        tap.offload(0)
            .map_err(|e| err(format!("cannot set offloads: {e}")))?;
        Ok(tap)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a write of one frame came to: `None` to try again.
    fn sent(&mut self, written: io::Result<usize>) -> io::Result<Option<Sent>> {
        match written {
            // A TAP device takes whole frames.
            Ok(_) => Ok(Some(Sent::Done)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(Sent::Full)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            // The kernel refused this frame (a header it does not take,
            // the device down, no memory): dropped, as a network would.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::EIO | libc::EMSGSIZE | libc::ENOBUFS | libc::EFAULT)
                ) =>
            {
                self.dropped += 1;
                if self.dropped <= 8 || self.dropped.is_power_of_two() {
                    tracing::warn!("tap {}: frame #{} dropped: {e}", self.name, self.dropped);
                }
                Ok(Some(Sent::Done))
            }
            Err(e) => Err(e),
        }
    }

    fn offload(&self, flags: libc::c_uint) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value, not a pointer.
        let rc =
            unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl NetBackend for Tap {
    fn vnet_header(&self) -> bool {
        true
    }

    fn set_offloads(&mut self, o: Offloads) -> io::Result<()> {
        let mut flags = 0;
        for (on, flag) in [
            (o.csum, TUN_F_CSUM),
            (o.tso4, TUN_F_TSO4),
            (o.tso6, TUN_F_TSO6),
            (o.ecn, TUN_F_TSO_ECN),
        ] {
            if on {
                flags |= flag;
            }
        }
        self.offload(flags)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.file.read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<Sent> {
        loop {
            let written = self.file.write(frame);
            if let Some(sent) = self.sent(written)? {
                return Ok(sent);
            }
        }
    }

    fn send_from_guest(
        &mut self,
        prefix: &[u8],
        pieces: &[GuestPiece],
        memory: &GuestMemory,
    ) -> Option<io::Result<Sent>> {
        loop {
            let written = super::guest_io::writev(self.file.as_fd(), &[prefix], pieces, memory);
            match self.sent(written) {
                Ok(None) => continue,
                Ok(Some(sent)) => return Some(Ok(sent)),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
