//! The kernel's buffer space on a Unix stream socket. passt reads a frame
//! that the socket holds only in part with one more read, and loses it when
//! that read comes back short (docs/virtio-net.md §5.1), so frames go to it
//! whole: one write, and only when the socket has room for all of it.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{getsockopt, setsockopt, sockopt};

/// What we ask for; the kernel caps it at `net.core.wmem_max` and
/// `rmem_max` and doubles it. passt asks for `INT_MAX / 2` on a socket it
/// accepts (`--socket`); we stop at 4 MiB, so that what a socket holds
/// (under 8 MiB as the kernel counts it) always fits in one read of passt's
/// (8 323 069 bytes): a read that ended inside a frame's length would lose
/// the stream's framing.
const WANTED: usize = 4 << 20;

/// Asks for up to [`WANTED`] of buffer space each way (what the kernel
/// allows without privileges); failing is harmless, so it is only logged.
pub fn enlarge(socket: &impl AsFd) {
    let send = setsockopt(socket, sockopt::SndBuf, &WANTED);
    let recv = setsockopt(socket, sockopt::RcvBuf, &WANTED);
    if let Err(e) = send.and(recv) {
        tracing::debug!("net: cannot enlarge a socket's buffers: {e}");
    }
}

/// The socket's send buffer in bytes, as the kernel accounts it.
pub fn send_buffer(socket: &impl AsFd) -> io::Result<usize> {
    getsockopt(socket, sockopt::SndBuf).map_err(io::Error::from)
}

/// Bytes the socket holds that the peer has not read (SIOCOUTQ), counted
/// as the kernel counts them against the send buffer.
pub fn queued(socket: &impl AsFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ's number) writes one int to the pointer,
    // which points at `n`, alive for the call.
    let rc = unsafe { libc::ioctl(socket.as_fd().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn queued_bytes_grow_with_writes_and_fit_the_buffer() {
        let (mut a, _b) = UnixStream::pair().unwrap();
        enlarge(&a);
        let buffer = send_buffer(&a).unwrap();
        assert!(buffer >= 4096, "{buffer}");
        assert_eq!(queued(&a).unwrap(), 0);
        a.write_all(&[0u8; 1000]).unwrap();
        let q = queued(&a).unwrap();
        assert!((1000..buffer).contains(&q), "{q} of {buffer}");
    }
}
