//! The VM's disks: one virtio-blk PCI function per `--disk`, each served by
//! its own I/O thread. Images are opened and locked before anything else
//! of the VM exists, so a missing or locked image is a one-line error.

use std::sync::{Arc, Mutex};

use devices::block::{self, DiskImage, DiskOptions};
use devices::interrupt::MsiDelivery;
use devices::pci::SharedPciDevice;
use devices::virtio::block::stats::BlockStats;
use devices::virtio::block::worker::BlockWorker;
use devices::virtio::block::VirtioBlock;
use devices::virtio::pci::VirtioPciDevice;
use serde_json::{json, Value};

use super::interrupts::{virtio_wiring, LevelLines};
use super::{device_err, VmError};

/// The first disk's PCI slot; the next ones follow.
pub const FIRST_SLOT: u8 = 4;
/// Disks per VM.
pub const MAX_DISKS: usize = 16;

/// A disk image, open and locked.
pub struct OpenDisk {
    options: DiskOptions,
    image: Box<dyn DiskImage>,
}

/// Opens and locks every image, in order.
pub fn open(options: &[DiskOptions]) -> Result<Vec<OpenDisk>, VmError> {
    if options.len() > MAX_DISKS {
        return Err(device_err("the disks")(format!(
            "{} disks given, at most {MAX_DISKS} are supported",
            options.len()
        )));
    }
    options
        .iter()
        .map(|o| {
            let image = block::open(o)?;
            check_size(o, image.size())?;
            Ok(OpenDisk {
                options: o.clone(),
                image,
            })
        })
        .collect()
}

fn check_size(options: &DiskOptions, size: u64) -> Result<(), VmError> {
    if size < devices::virtio::block::SECTOR_SIZE {
        return Err(block::DiskError::Invalid {
            path: options.path.display().to_string(),
            reason: format!("{size} bytes is not even one 512-byte sector"),
        }
        .into());
    }
    Ok(())
}

/// The disks on the PCI bus, their I/O threads running.
pub struct Disks {
    /// (slot, device) for the PCI bus.
    pub pci: Vec<(u8, SharedPciDevice)>,
    /// What `status` reports of each.
    pub status: Vec<DiskStatus>,
    /// Dropped at the end: each thread finishes its request and flushes.
    _workers: Vec<BlockWorker>,
}

/// A disk as `status` shows it.
pub struct DiskStatus {
    name: String,
    path: String,
    format: &'static str,
    read_only: bool,
    size: u64,
    serial: Option<String>,
    slot: u8,
    stats: Arc<BlockStats>,
}

impl DiskStatus {
    pub fn to_json(&self) -> Value {
        let c = self.stats.counts();
        json!({
            "device": self.name,
            "path": self.path,
            "format": self.format,
            "read_only": self.read_only,
            "size_bytes": self.size,
            "serial": self.serial,
            "pci_slot": self.slot,
            "reads": c.reads,
            "writes": c.writes,
            "flushes": c.flushes,
            "discards": c.discards,
            "bytes_read": c.bytes_read,
            "bytes_written": c.bytes_written,
            "io_errors": c.io_errors,
            "refused": c.refused,
        })
    }
}

/// Puts each disk in its PCI slot and starts its I/O thread.
pub fn attach(
    disks: Vec<OpenDisk>,
    memory: &devices::virtio::GuestMemory,
    msi: Arc<dyn MsiDelivery>,
    lines: &Arc<LevelLines>,
) -> Result<Disks, VmError> {
    let mut attached = Disks {
        pci: Vec::new(),
        status: Vec::new(),
        _workers: Vec::new(),
    };
    for (index, disk) in disks.into_iter().enumerate() {
        let slot = FIRST_SLOT + index as u8;
        let o = &disk.options;
        let (size, format) = (disk.image.size(), disk.image.format());
        let device = VirtioBlock::new(size, o.read_only, o.serial.as_deref());
        let wiring = virtio_wiring(slot, memory, &msi, lines);
        let transport = Arc::new(Mutex::new(
            VirtioPciDevice::new(device, wiring).map_err(device_err("a disk"))?,
        ));
        let name = format!("disk{index}");
        let worker = BlockWorker::spawn(&name, transport.clone(), disk.image, memory.clone())
            .map_err(device_err("a disk's I/O thread"))?;
        attached.status.push(DiskStatus {
            name,
            path: o.path.display().to_string(),
            format: format.name(),
            read_only: o.read_only,
            size,
            serial: o.serial.clone(),
            slot,
            stats: worker.stats(),
        });
        attached.pci.push((slot, transport as SharedPciDevice));
        attached._workers.push(worker);
    }
    Ok(attached)
}
