//! virtio-blk requests from a hostile guest driver: the fuzz input becomes
//! guest memory (headers, ranges, data) and a list of descriptors (address,
//! length, direction) served as one chain. The device must never panic,
//! touch memory outside guest RAM or the disk outside its size, or allocate
//! without bound; the disk is an in-memory image that checks every access.
#![no_main]

use std::io;

use devices::block::DiskImage;
use devices::virtio::block::request::{DiskShape, ID_SIZE};
use devices::virtio::block::worker::RequestServer;
use devices::virtio::GuestMemory;
use libfuzzer_sys::fuzz_target;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

const RAM: u64 = 1 << 20;
const DISK: u64 = 256 << 10;

/// A disk in memory that fails the fuzz run on any access past its end.
struct MemDisk(Vec<u8>);

impl MemDisk {
    fn range(&self, offset: u64, len: u64) -> std::ops::Range<usize> {
        let end = offset.checked_add(len).expect("offset + len overflows");
        assert!(
            end <= self.0.len() as u64,
            "access {offset}+{len} past the disk"
        );
        offset as usize..end as usize
    }
}

impl DiskImage for MemDisk {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn format(&self) -> devices::block::Format {
        devices::block::Format::Raw
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = self.range(offset, buf.len() as u64);
        buf.copy_from_slice(&self.0[r]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let r = self.range(offset, buf.len() as u64);
        self.0[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len, true)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, _: bool) -> io::Result<()> {
        let r = self.range(offset, len);
        self.0[r].fill(0);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let (memory_bytes, descriptors) = data.split_at(data.len().min(4096));
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
    memory.write_slice(memory_bytes, GuestAddress(0)).unwrap();
    // Each descriptor: 4 bytes of address (scaled to reach past RAM), 3 of
    // length, 1 of flags.
    let chain: Vec<Descriptor> = descriptors
        .chunks_exact(8)
        .take(300)
        .map(|d| {
            let addr = u64::from(u32::from_le_bytes([d[0], d[1], d[2], d[3]])) << (d[7] >> 4);
            let len = u32::from_le_bytes([d[4], d[5], d[6], 0]);
            Descriptor::new(addr, len, u16::from(d[7] & 2), 0)
        })
        .collect();
    let shape = DiskShape {
        size: DISK,
        read_only: data.first().is_some_and(|b| b & 1 == 1),
    };
    let disk = Box::new(MemDisk(vec![0x5a; DISK as usize]));
    let mut server = RequestServer::new("fuzz", disk, memory, shape, [b'f'; ID_SIZE as usize]);
    server.serve(&chain);
});
