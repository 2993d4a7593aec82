//! Opening image files under an `flock`: exclusive for a writer, shared for
//! readers, never waiting. The lock lives as long as the file stays open.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

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
    let how = if read_only {
        libc::LOCK_SH
    } else {
        libc::LOCK_EX
    };
    // SAFETY: flock on a descriptor we own; it touches no memory of ours.
    if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(DiskError::Locked {
                path: path.display().to_string(),
                by_writer: read_only,
            });
        }
        return Err(DiskError::open(path, error));
    }
    Ok(file)
}
