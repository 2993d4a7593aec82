//! qcow2 images through the `imago` crate, with their backing chain.
//!
//! Every file of the chain is opened by us and locked: the image itself
//! like a raw one, each backing file shared (it is only read, and may be
//! the base of other VMs' overlays at the same time). A chain longer than
//! [`MAX_CHAIN`] (or a loop) is refused.
//!
//! Before handing a file to imago its header is checked against the file's
//! size ([`check_header`]): imago reads metadata past the end of a file as
//! zeroes, and a truncated image opened for writing would send its cluster
//! allocator into endless recursion.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use imago::file::File as ImagoFile;
use imago::format::gate::ImplicitOpenGate;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatDriverBuilder, StorageOpenOptions};

use super::{lock, CacheMode, DiskError, DiskImage, DiskOptions, QCOW2_MAGIC};

/// Images in one chain, the top one included.
pub const MAX_CHAIN: usize = 16;
/// Bytes of the version 2 header (version 3 adds to it).
const HEADER_V2: usize = 72;
/// Refcount tables up to this size have each entry checked.
const MAX_CHECKED_TABLE: u64 = 32 << 20;

pub struct Qcow2Image {
    access: FormatAccess<ImagoFile>,
    cache: CacheMode,
    /// A flush failed once: no later flush may say data is durable.
    flush_failed: bool,
}

impl Qcow2Image {
    /// Opens the (already locked) `file` as qcow2 with its backing chain.
    pub fn open(file: File, options: &DiskOptions) -> Result<Self, DiskError> {
        let path = &options.path;
        check_header(&file).map_err(|reason| DiskError::invalid(path, reason))?;
        let storage = ImagoFile::from_open_file(
            file,
            StorageOpenOptions::new()
                .filename(path)
                .write(!options.read_only),
        )
        .map_err(|e| DiskError::open(path, e))?;
        let driver = Qcow2::<ImagoFile>::builder(storage)
            .write(!options.read_only)
            .open(LockingGate { opened: 1 })
            .map_err(|e| DiskError::invalid(path, format!("not a usable qcow2 image: {e}")))?;
        Ok(Qcow2Image {
            access: FormatAccess::new(driver),
            cache: options.cache,
            flush_failed: false,
        })
    }

    fn durable(&mut self) -> io::Result<()> {
        if self.flush_failed {
            return Err(io::Error::other("an earlier flush of this disk failed"));
        }
        let result = self.access.flush().and_then(|()| self.access.sync());
        self.flush_failed = result.is_err();
        result
    }
}

impl DiskImage for Qcow2Image {
    fn size(&self) -> u64 {
        self.access.size()
    }

    fn format(&self) -> super::Format {
        super::Format::Qcow2
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.access.read(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.access.write(buf, offset)?;
        if self.cache == CacheMode::Writethrough {
            self.durable()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.cache {
            // Metadata still goes to the file, so a clean exit loses nothing.
            CacheMode::Unsafe => self.access.flush(),
            _ => self.durable(),
        }
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.access.discard_to_any(offset, len)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        if unmap {
            self.access.discard_to_zero(offset, len)?;
        } else {
            self.access.write_zeroes(offset, len)?;
        }
        if self.cache == CacheMode::Writethrough {
            self.durable()?;
        }
        Ok(())
    }
}

/// Opens the backing files imago finds named in headers: each locked
/// shared and read-only, checked like the top image, at most [`MAX_CHAIN`].
struct LockingGate {
    opened: usize,
}

impl ImplicitOpenGate<ImagoFile> for LockingGate {
    fn open_format<F: FormatDriverBuilder<ImagoFile>>(
        &mut self,
        builder: F,
    ) -> io::Result<FormatAccess<ImagoFile>> {
        let gate = LockingGate {
            opened: self.opened,
        };
        Ok(FormatAccess::new(builder.open(gate)?))
    }

    fn open_storage(&mut self, options: StorageOpenOptions) -> io::Result<ImagoFile> {
        self.opened += 1;
        if self.opened > MAX_CHAIN {
            return Err(io::Error::other(format!(
                "backing chain longer than {MAX_CHAIN} images (or a loop)"
            )));
        }
        let path = options
            .get_filename()
            .ok_or_else(|| io::Error::other("a backing file without a name"))?
            .to_path_buf();
        let file = lock::open_locked(&path, true).map_err(|e| io::Error::other(e.to_string()))?;
        if is_qcow2(&file)? {
            check_header(&file).map_err(|reason| {
                io::Error::other(format!("backing file {}: {reason}", path.display()))
            })?;
        }
        ImagoFile::from_open_file(file, options.write(false))
    }
}

fn is_qcow2(file: &File) -> io::Result<bool> {
    Ok(super::probe(file)? == super::Format::Qcow2)
}

fn be32(header: &[u8], at: usize) -> u64 {
    u64::from(u32::from_be_bytes(
        header[at..at + 4].try_into().unwrap_or_default(),
    ))
}

fn be64(header: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(header[at..at + 8].try_into().unwrap_or_default())
}

/// Checks that the tables a qcow2 header names lie inside the file.
pub fn check_header(file: &File) -> Result<(), String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut header = [0u8; HEADER_V2];
    let read = super::read_prefix(file, &mut header).map_err(|e| e.to_string())?;
    if read < HEADER_V2 || header[..4] != QCOW2_MAGIC {
        return Err("truncated or not a qcow2 image (no complete header)".into());
    }
    let cluster_bits = be32(&header, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(format!(
            "cluster size 2^{cluster_bits} is not 512 B to 2 MiB"
        ));
    }
    let within = |what: &str, offset: u64, bytes: Option<u64>| match bytes
        .and_then(|b| offset.checked_add(b))
    {
        Some(end) if end <= len => Ok(()),
        _ => Err(format!(
            "its {what} lies beyond the end of the file (truncated?)"
        )),
    };
    within(
        "L1 table",
        be64(&header, 40),
        be32(&header, 36).checked_mul(8),
    )?;
    let refcount_offset = be64(&header, 48);
    let refcount_bytes = be32(&header, 56).checked_shl(cluster_bits as u32);
    within("refcount table", refcount_offset, refcount_bytes)?;
    match refcount_bytes {
        Some(bytes) if bytes <= MAX_CHECKED_TABLE => {
            check_refcount_blocks(file, refcount_offset, bytes, cluster_bits, len)
        }
        _ => Ok(()),
    }
}

/// Every refcount block the table names lies inside the file.
fn check_refcount_blocks(
    file: &File,
    offset: u64,
    bytes: u64,
    cluster_bits: u64,
    len: u64,
) -> Result<(), String> {
    let mut table = vec![0u8; bytes as usize];
    file.read_exact_at(&mut table, offset)
        .map_err(|e| format!("cannot read its refcount table: {e}"))?;
    let cluster = 1u64 << cluster_bits;
    for entry in table.chunks_exact(8) {
        let block = be64(entry, 0) & 0x00ff_ffff_ffff_fe00;
        if block != 0 && block.checked_add(cluster).is_none_or(|end| end > len) {
            return Err("a refcount block lies beyond the end of the file (truncated?)".into());
        }
    }
    Ok(())
}

/// Whether `path` starts like a qcow2 image (for messages and tests).
pub fn looks_like_qcow2(path: &Path) -> bool {
    File::open(path).and_then(|f| is_qcow2(&f)).unwrap_or(false)
}
