//! Frames written to a backend's fd straight from guest memory (one
//! `writev`), so a transmitted frame is copied once, by the kernel, as
//! QEMU does. The only place in `src/net` that hands the kernel pointers.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use devices::virtio::net::GuestPiece;
use devices::virtio::GuestMemory;
use vm_memory::GuestMemoryBackend;

/// Writes `prefixes` and then `pieces` of guest memory to `fd` in one
/// call: the bytes written.
pub fn writev(
    fd: BorrowedFd<'_>,
    prefixes: &[&[u8]],
    pieces: &[GuestPiece],
    memory: &GuestMemory,
) -> io::Result<usize> {
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(prefixes.len() + pieces.len() + 2);
    for p in prefixes.iter().filter(|p| !p.is_empty()) {
        iov.push(libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        });
    }
    let mut guards = Vec::with_capacity(pieces.len());
    for piece in pieces {
        for slice in GuestMemoryBackend::get_slices(memory, piece.addr, piece.len) {
            let slice = slice.map_err(io::Error::other)?;
            let guard = slice.ptr_guard();
            iov.push(libc::iovec {
                iov_base: guard.as_ptr() as *mut libc::c_void,
                iov_len: slice.len(),
            });
            guards.push(guard);
        }
    }
    let count = libc::c_int::try_from(iov.len()).map_err(io::Error::other)?;
    // SAFETY: each iovec describes memory valid for reads for the whole
    // call: the prefixes are borrowed slices, and the guest pieces are
    // slices of guest RAM, which stays mapped while `memory` lives (and
    // `guards` hold the slices' pointers). The kernel only reads them; the
    // guest may change them meanwhile, which only changes the bytes sent.
    let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), count) };
    drop(guards);
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Appends what [`writev`] did not write of the same frame (its bytes
/// from `skip` on) to `out`.
pub fn append_rest(
    prefixes: &[&[u8]],
    pieces: &[GuestPiece],
    memory: &GuestMemory,
    mut skip: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    for p in prefixes {
        if skip >= p.len() {
            skip -= p.len();
            continue;
        }
        out.extend_from_slice(&p[skip..]);
        skip = 0;
    }
    for piece in pieces {
        if skip >= piece.len {
            skip -= piece.len;
            continue;
        }
        let at = out.len();
        out.resize(at + piece.len - skip, 0);
        let addr = vm_memory::GuestAddress(piece.addr.0 + skip as u64);
        vm_memory::Bytes::read_slice(memory, &mut out[at..], addr).map_err(io::Error::other)?;
        skip = 0;
    }
    Ok(())
}
