//! Disk images behind the block devices.
//!
//! [`open`] turns a `--disk` description ([`DiskOptions`]) into a
//! [`DiskImage`]: a raw file or block device ([`raw`]), or a qcow2 image
//! with its backing chain ([`qcow2`]). Every file is locked with `flock`
//! before it is used (exclusively when written, shared when only read), so
//! two VMs never write one image and no VM writes an image another reads.
//!
//! Offsets and lengths are in bytes; the device model checks them against
//! [`DiskImage::size`] before calling, and the images check them again.

pub mod lock;
pub mod options;
pub mod qcow2;
pub mod raw;

pub use options::{CacheMode, DiskOptions, Format};

use std::fs::File;
use std::io;
use std::path::Path;

/// A disk as the guest sees it: `size` bytes that can be read and written.
pub trait DiskImage: Send {
    /// Bytes the guest sees.
    fn size(&self) -> u64;
    /// The image's format.
    fn format(&self) -> Format;
    /// Fills `buf` from `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (on the host's storage).
    fn flush(&mut self) -> io::Result<()>;
    /// The guest no longer needs `len` bytes at `offset` (their contents
    /// become unspecified; a raw file gets a hole).
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Zeroes `len` bytes at `offset`; `unmap` allows a hole instead.
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()>;
}

/// Why a disk could not be opened (one line each).
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("disk {path} is in use by another process (it is locked{})", if *.by_writer { " by a writer" } else { "" })]
    Locked { path: String, by_writer: bool },
    #[error("disk {path}: not a regular file or block device")]
    NotAFile { path: String },
    #[error("disk {path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl DiskError {
    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        DiskError::Invalid {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn open(path: &Path, source: io::Error) -> Self {
        DiskError::Open {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The first bytes of a qcow2 file.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// The format a file's first bytes announce: qcow2 by its magic, else raw.
pub fn probe(file: &File) -> io::Result<Format> {
    let mut magic = [0u8; 4];
    let read = read_prefix(file, &mut magic)?;
    Ok(if read == 4 && magic == QCOW2_MAGIC {
        Format::Qcow2
    } else {
        Format::Raw
    })
}

/// Reads what there is of the first `buf.len()` bytes; how many there were.
fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Opens and locks the image `options` describe. Nothing is written to it.
pub fn open(options: &DiskOptions) -> Result<Box<dyn DiskImage>, DiskError> {
    let file = lock::open_locked(&options.path, options.read_only)?;
    let format = match options.format {
        Some(format) => format,
        None => probe(&file).map_err(|e| DiskError::open(&options.path, e))?,
    };
    match format {
        Format::Raw => {
            let guard = options.format.is_none();
            Ok(Box::new(raw::RawImage::new(file, options, guard)?))
        }
        Format::Qcow2 => Ok(Box::new(qcow2::Qcow2Image::open(file, options)?)),
    }
}

#[cfg(test)]
mod tests;
