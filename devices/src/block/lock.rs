//! Opening image files under locks, never waiting; the locks live as long as
//! the file stays open:
//! - an `flock`, exclusive for a writer and shared for readers;
//! - QEMU's byte-range locks (open file description locks, `F_OFD_SETLK`),
//!   so that saffron and QEMU (or `qemu-img`) keep each other out of an
//!   image the same way two QEMUs do (see `docs/disk-locking.md`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use super::DiskError;

/// Opens `path` for reading (and writing unless `read_only`) and locks it.
/// Fails when another process holds a conflicting lock, or when the path is
/// neither a regular file nor a block device.
pub fn open_locked(path: &Path, read_only: bool) -> Result<File, DiskError> {
    // Looked at before opening: opening a FIFO would block.
    let kind = std::fs::metadata(path)
        .map_err(|e| DiskError::open(path, e))?
        .file_type();
    if !kind.is_file() && !kind.is_block_device() {
        return Err(DiskError::NotAFile {
            path: path.display().to_string(),
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|e| DiskError::open(path, e))?;
    let locked = if read_only {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(DiskError::Locked {
                path: path.display().to_string(),
                by_writer: read_only,
            })
        }
        Err(TryLockError::Error(e)) => return Err(DiskError::open(path, e)),
    }
    qemu_locks(&file, read_only).map_err(|e| match e {
        LockError::Conflict => DiskError::Locked {
            path: path.display().to_string(),
            by_writer: read_only,
        },
        LockError::Io(e) => DiskError::open(path, e),
    })?;
    Ok(file)
}

/// QEMU's lock bytes: `PERM_BASE + p` for a permission its holder uses,
/// `SHARED_BASE + p` for one its holder does not let others have.
const PERM_BASE: i64 = 100;
const SHARED_BASE: i64 = 200;
/// The permissions (QEMU's bit numbers) that matter here.
const CONSISTENT_READ: i64 = 0;
const WRITE: i64 = 1;

enum LockError {
    Conflict,
    Io(io::Error),
}

/// Takes the bytes a reader (consistent read; no other writer) or a writer
/// (consistent read and write; no other writer) takes, then checks that no
/// other holder's bytes conflict. Taking before checking, as QEMU does, means
/// two racing openers see each other.
fn qemu_locks(file: &File, read_only: bool) -> Result<(), LockError> {
    let mut used = vec![PERM_BASE + CONSISTENT_READ];
    if !read_only {
        used.push(PERM_BASE + WRITE);
    }
    for &byte in used.iter().chain(&[SHARED_BASE + WRITE]) {
        ofd(file, false, byte, libc::F_RDLCK).map_err(|e| match e {
            Errno::EAGAIN | Errno::EACCES => LockError::Conflict,
            e => LockError::Io(e.into()),
        })?;
    }
    // Someone refuses what we use, or (since nobody else may write) writes.
    let mut conflicts: Vec<i64> = used.iter().map(|b| b - PERM_BASE + SHARED_BASE).collect();
    conflicts.push(PERM_BASE + WRITE);
    for byte in conflicts {
        if ofd(file, true, byte, libc::F_WRLCK).map_err(|e| LockError::Io(e.into()))?
            != libc::F_UNLCK as i16
        {
            return Err(LockError::Conflict);
        }
    }
    Ok(())
}

/// One `F_OFD_SETLK` (or, with `get`, `F_OFD_GETLK`) on one byte; the lock
/// type it reports (for `F_OFD_GETLK`).
fn ofd(file: &File, get: bool, byte: i64, kind: libc::c_int) -> Result<i16, Errno> {
    let mut lock = libc::flock {
        l_type: kind as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: byte,
        l_len: 1,
        l_pid: 0,
    };
    if get {
        fcntl(file, FcntlArg::F_OFD_GETLK(&mut lock))?;
    } else {
        fcntl(file, FcntlArg::F_OFD_SETLK(&lock))?;
    }
    Ok(lock.l_type)
}
