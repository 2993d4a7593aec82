//! Raw images: the guest's disk is the file (or host block device) byte for
//! byte. Holes come from `fallocate`.

use nix::fcntl::{fallocate, FallocateFlags};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::{CacheMode, DiskError, DiskImage, DiskOptions, QCOW2_MAGIC};

/// Zeroes are written in pieces of this size where no `fallocate` helps.
const ZERO_CHUNK: usize = 1 << 20;

pub struct RawImage {
    file: File,
    size: u64,
    cache: CacheMode,
    /// The format was guessed: refuse writes that would make the image look
    /// like another format (a guest could otherwise turn its raw disk into a
    /// qcow2 naming a host file as its backing file at the next start).
    guard_first_sector: bool,
    /// A flush failed once: the host may have dropped written data, so no
    /// later flush may say it is durable (as QEMU's file driver does).
    flush_failed: bool,
}

impl RawImage {
    pub fn new(
        mut file: File,
        options: &DiskOptions,
        guard_first_sector: bool,
    ) -> Result<Self, DiskError> {
        // A block device's metadata says 0 bytes; its end is its size.
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| DiskError::open(&options.path, e))?;
        if guard_first_sector {
            tracing::warn!(
                "disk {}: no format= given, so it is taken as raw; writes that would make it \
                 look like a qcow2 image are refused (say format=raw to lift this)",
                options.path.display()
            );
        }
        Ok(RawImage {
            file,
            size,
            cache: options.cache,
            guard_first_sector,
            flush_failed: false,
        })
    }

    fn fallocate(&self, mode: FallocateFlags, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        Ok(fallocate(&self.file, mode, offset, len)?)
    }

    fn write_zero_chunks(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let zeroes = vec![0u8; ZERO_CHUNK.min(len as usize)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZERO_CHUNK as u64) as usize;
            self.file.write_all_at(&zeroes[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    fn after_write(&mut self) -> io::Result<()> {
        match self.cache {
            CacheMode::Writethrough => self.sync(),
            _ => Ok(()),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.flush_failed {
            return Err(io::Error::other("an earlier flush of this disk failed"));
        }
        let result = self.file.sync_data();
        self.flush_failed = result.is_err();
        result
    }
}

fn unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL | libc::ENODEV)
    )
}

impl DiskImage for RawImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn format(&self) -> super::Format {
        super::Format::Raw
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.guard_first_sector && offset == 0 && buf.starts_with(&QCOW2_MAGIC) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a qcow2 header written to a disk whose format was guessed",
            ));
        }
        self.file.write_all_at(buf, offset)?;
        self.after_write()
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.cache {
            CacheMode::Unsafe => Ok(()),
            _ => self.sync(),
        }
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match self.fallocate(punch, offset, len) {
            // Discarding is a hint: a file system without holes keeps the data.
            Err(e) if unsupported(&e) => Ok(()),
            other => other,
        }
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        let keep = FallocateFlags::FALLOC_FL_KEEP_SIZE;
        let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | keep;
        let zero = FallocateFlags::FALLOC_FL_ZERO_RANGE | keep;
        let modes: &[FallocateFlags] = if unmap { &[punch, zero] } else { &[zero] };
        for &mode in modes {
            match self.fallocate(mode, offset, len) {
                Ok(()) => return self.after_write(),
                Err(e) if unsupported(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        self.write_zero_chunks(offset, len)?;
        self.after_write()
    }
}
