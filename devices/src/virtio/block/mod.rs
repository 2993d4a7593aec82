//! virtio-blk: a disk for the guest (virtio device type 2).
//!
//! The device model ([`VirtioBlock`]) answers the transport: its features,
//! its configuration space (capacity, limits), and queue kicks, which only
//! wake the disk's I/O thread ([`worker`]). That thread takes the requests
//! from the queue, checks them ([`request`]), does the I/O on the
//! [`DiskImage`](crate::block::DiskImage) without holding any lock a vCPU
//! needs, and returns them. A flush completes only once the image says the
//! data is durable.
//!
//! Requests: read, write, flush, GET_ID (the serial number), discard and
//! write-zeroes (holes in the image). A read-only disk offers neither of
//! the last two and fails writes with IOERR.

pub mod request;
pub mod stats;
pub mod worker;

use std::sync::{Arc, Condvar, Mutex};

use super::{Queues, VirtioDevice};
use crate::bus::lock;

/// The virtio device type of a block device.
pub const DEVICE_TYPE: u16 = 2;
pub const SECTOR_SIZE: u64 = 512;

/// Request types.
pub const TYPE_IN: u32 = 0;
pub const TYPE_OUT: u32 = 1;
pub const TYPE_FLUSH: u32 = 4;
pub const TYPE_GET_ID: u32 = 8;
pub const TYPE_DISCARD: u32 = 11;
pub const TYPE_WRITE_ZEROES: u32 = 13;

/// Request status.
pub const STATUS_OK: u8 = 0;
pub const STATUS_IOERR: u8 = 1;
pub const STATUS_UNSUPP: u8 = 2;

/// Feature bits.
pub mod features {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// What the device announces, and so what it enforces.
pub mod limits {
    /// Entries in the request queue.
    pub const QUEUE_SIZE: u16 = 256;
    /// Data buffers in one request (`seg_max`).
    pub const SEG_MAX: u32 = 126;
    /// Bytes in one data buffer (`size_max`).
    pub const SIZE_MAX: u32 = 256 << 10;
    /// Data bytes in one request: no more than the driver can build.
    pub const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
    /// Ranges in one discard or write-zeroes.
    pub const MAX_RANGES: u32 = 32;
    /// Sectors in one range (1 GiB).
    pub const MAX_RANGE_SECTORS: u32 = 1 << 21;
}

/// Bytes of configuration space (up to `write_zeroes_may_unmap` and its
/// padding).
pub const CONFIG_SIZE: usize = 60;

/// The kick the vCPU gives the I/O thread, the reset generation, and
/// whether the thread is serving requests (a reset waits for that).
#[derive(Default)]
pub struct Kick {
    state: Mutex<KickState>,
    wake: Condvar,
    idle: Condvar,
}

#[derive(Default)]
struct KickState {
    pending: bool,
    stop: bool,
    /// Bumped at every device reset: requests taken before it are not
    /// returned to the new driver.
    generation: u64,
    /// The I/O thread holds requests it took from the queue and may still
    /// touch their buffers in guest memory.
    busy: bool,
}

impl Kick {
    fn kick(&self) {
        lock(&self.state).pending = true;
        self.wake.notify_one();
    }

    /// A device reset: once this returns, the I/O thread no longer touches
    /// the buffers of requests taken before it (it finishes at most the
    /// request in hand, then drops the rest), so the driver may reuse them.
    /// The caller may hold the transport lock: the thread serves requests
    /// without it.
    fn reset(&self) {
        let mut state = lock(&self.state);
        state.generation += 1;
        state.pending = false;
        while state.busy {
            state = self
                .idle
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The I/O thread is taking requests (under the transport lock, so no
    /// reset runs meanwhile); the generation they belong to.
    fn begin_batch(&self) -> u64 {
        let mut state = lock(&self.state);
        state.busy = true;
        state.generation
    }

    /// The I/O thread is done with the guest memory of its requests.
    fn end_batch(&self) {
        lock(&self.state).busy = false;
        self.idle.notify_all();
    }

    /// Asks the I/O thread to finish.
    pub fn stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_one();
    }

    /// Waits for a kick; `None` once stopped.
    fn wait(&self) -> Option<()> {
        let mut state = lock(&self.state);
        while !state.pending && !state.stop {
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.stop {
            return None;
        }
        state.pending = false;
        Some(())
    }

    fn generation(&self) -> u64 {
        lock(&self.state).generation
    }

    fn stopping(&self) -> bool {
        lock(&self.state).stop
    }
}

/// The disk as the guest driver sees it.
pub struct VirtioBlock {
    config: [u8; CONFIG_SIZE],
    features: u64,
    read_only: bool,
    serial: [u8; request::ID_SIZE as usize],
    kick: Arc<Kick>,
}

impl VirtioBlock {
    /// A disk of `size` bytes (rounded down to whole sectors).
    pub fn new(size: u64, read_only: bool, serial: Option<&str>) -> Self {
        let mut features =
            features::SIZE_MAX | features::SEG_MAX | features::BLK_SIZE | features::FLUSH;
        features |= if read_only {
            features::RO
        } else {
            features::DISCARD | features::WRITE_ZEROES
        };
        let mut id = [0u8; request::ID_SIZE as usize];
        if let Some(serial) = serial {
            let bytes = serial.as_bytes();
            let n = bytes.len().min(id.len());
            id[..n].copy_from_slice(&bytes[..n]);
        }
        VirtioBlock {
            config: config_space(size / SECTOR_SIZE),
            features,
            read_only,
            serial: id,
            kick: Arc::new(Kick::default()),
        }
    }

    /// Bytes of the disk the guest sees.
    pub fn size(&self) -> u64 {
        u64::from_le_bytes(self.config[0..8].try_into().unwrap_or_default()) * SECTOR_SIZE
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// GET_ID's answer.
    pub fn serial(&self) -> &[u8; request::ID_SIZE as usize] {
        &self.serial
    }

    /// The handle the I/O thread waits on.
    pub fn kick_handle(&self) -> Arc<Kick> {
        self.kick.clone()
    }
}

/// The configuration space: capacity, limits, block size, discard and
/// write-zeroes limits.
fn config_space(sectors: u64) -> [u8; CONFIG_SIZE] {
    let mut c = [0u8; CONFIG_SIZE];
    let mut put = |at: usize, bytes: &[u8]| c[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &sectors.to_le_bytes());
    put(8, &limits::SIZE_MAX.to_le_bytes());
    put(12, &limits::SEG_MAX.to_le_bytes());
    put(20, &(SECTOR_SIZE as u32).to_le_bytes());
    put(34, &1u16.to_le_bytes()); // num_queues
    put(36, &limits::MAX_RANGE_SECTORS.to_le_bytes()); // max_discard_sectors
    put(40, &limits::MAX_RANGES.to_le_bytes()); // max_discard_seg
    put(44, &1u32.to_le_bytes()); // discard_sector_alignment
    put(48, &limits::MAX_RANGE_SECTORS.to_le_bytes()); // max_write_zeroes_sectors
    put(52, &limits::MAX_RANGES.to_le_bytes()); // max_write_zeroes_seg
    put(56, &[1]); // write_zeroes_may_unmap
    c
}

impl VirtioDevice for VirtioBlock {
    fn device_type(&self) -> u16 {
        DEVICE_TYPE
    }

    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[limits::QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        if let Some(bytes) = self.config.get(offset..offset + data.len()) {
            data.copy_from_slice(bytes);
        }
    }

    fn write_config(&mut self, _offset: usize, _data: &[u8]) {
        // Nothing is writable (no VIRTIO_BLK_F_CONFIG_WCE).
    }

    fn activate(&mut self, _queues: &mut Queues<'_>) {
        self.kick.kick();
    }

    fn queue_notify(&mut self, _index: u16, _queues: &mut Queues<'_>) {
        self.kick.kick();
    }

    fn reset(&mut self) {
        self.kick.reset();
    }
}

#[cfg(test)]
mod tests;
