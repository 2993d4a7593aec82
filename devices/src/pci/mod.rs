//! PCI: the root complex (config space through ports 0xcf8/0xcfc and ECAM),
//! the device trait, and BAR placement.
//!
//! Whenever the guest changes a BAR or the decode bits of the command
//! register, the root asks a [`BarMapper`] (the VMM) to move the BAR: trapped
//! BARs move on the I/O or MMIO bus, memory-backed BARs move their KVM memory
//! slot. Devices never learn how.

mod config;
pub mod host_bridge;
pub mod msi;

use std::ops::Range;
use std::sync::{Arc, Mutex};

pub use config::{
    Bar, BarKind, ConfigError, PciConfig, PciIdentity, BAR_COUNT, COMMAND_BUS_MASTER,
    COMMAND_INTX_DISABLE, COMMAND_IO, COMMAND_MEMORY, CONFIG_SPACE_SIZE,
};

use crate::bus::{lock, BusDevice, BusDeviceMut};
use crate::memory::DeviceMemory;
use vmm_sys_util::eventfd::EventFd;

pub const CONFIG_ADDRESS_PORT: u64 = 0xcf8;
pub const CONFIG_PORTS_LEN: u64 = 8;
pub const SLOTS: usize = 32;

/// How a BAR's accesses are served.
#[derive(Clone)]
pub enum BarBacking {
    /// Every access exits to the VMM and reaches [`PciDevice::read_bar`] /
    /// [`PciDevice::write_bar`].
    Trapped,
    /// Host memory mapped straight into the guest: accesses never exit
    /// (writes do, when `read_only`).
    Memory {
        memory: DeviceMemory,
        read_only: bool,
        log_dirty: bool,
    },
}

pub trait PciDevice: Send {
    fn config(&self) -> &PciConfig;
    fn config_mut(&mut self) -> &mut PciConfig;

    fn read_config(&mut self, reg: usize) -> u32 {
        self.config().read_reg(reg)
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config_mut().write(offset, data)
    }

    fn bar_backing(&self, _bar: usize) -> BarBacking {
        BarBacking::Trapped
    }

    /// Offsets in a trapped BAR where a guest write only means "wake up":
    /// the VMM may have the hypervisor signal the event instead of exiting
    /// to [`PciDevice::write_bar`] (KVM ioeventfd). The device must handle
    /// such writes through `write_bar` too, in case the VMM cannot.
    fn bar_events(&self, _bar: usize) -> Vec<(u64, Arc<EventFd>)> {
        Vec::new()
    }

    fn read_bar(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write_bar(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}

pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// A BAR as placed in the guest's address space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarRegion {
    pub slot: u8,
    pub bar: usize,
    pub kind: BarKind,
    pub range: Range<u64>,
}

/// Puts BARs where the guest programmed them.
pub trait BarMapper: Send + Sync {
    fn map(
        &self,
        region: &BarRegion,
        device: &SharedPciDevice,
        backing: &BarBacking,
    ) -> Result<(), String>;
    fn unmap(&self, region: &BarRegion, backing: &BarBacking);
}

/// Routes bus accesses in a trapped BAR to its device.
pub struct BarAccess {
    pub device: SharedPciDevice,
    pub bar: usize,
}

impl BusDevice for BarAccess {
    fn read(&self, offset: u64, data: &mut [u8]) {
        lock(&self.device).read_bar(self.bar, offset, data)
    }
    fn write(&self, offset: u64, data: &[u8]) {
        lock(&self.device).write_bar(self.bar, offset, data)
    }
}

struct Slot {
    device: SharedPciDevice,
    mapped: [Option<BarRegion>; BAR_COUNT],
}

/// Address windows BARs are placed in before boot.
#[derive(Debug, Clone)]
pub struct BarWindows {
    pub io: Range<u64>,
    pub mmio32: Range<u64>,
    pub mmio64: Range<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    #[error("PCI slot {0} is out of range or taken")]
    SlotTaken(u8),
    #[error("no room for BAR {bar} of slot {slot} ({size:#x} bytes) in its window")]
    NoRoom { slot: u8, bar: usize, size: u64 },
}

pub struct PciRoot {
    address: u32,
    slots: Vec<Option<Slot>>,
    mapper: Arc<dyn BarMapper>,
}

impl PciRoot {
    pub fn new(mapper: Arc<dyn BarMapper>) -> Self {
        PciRoot {
            address: 0,
            slots: (0..SLOTS).map(|_| None).collect(),
            mapper,
        }
    }

    /// Plugs a device into `slot` (function 0 of bus 0).
    pub fn add_device(&mut self, slot: u8, device: SharedPciDevice) -> Result<(), PciError> {
        match self.slots.get_mut(usize::from(slot)) {
            Some(entry @ None) => {
                *entry = Some(Slot {
                    device,
                    mapped: Default::default(),
                });
                Ok(())
            }
            _ => Err(PciError::SlotTaken(slot)),
        }
    }

    /// Places every BAR in its window and turns decoding on, as firmware
    /// would; the guest may move them later.
    pub fn assign_bars(&mut self, windows: &BarWindows) -> Result<(), PciError> {
        let mut next_io = windows.io.start;
        let mut next32 = windows.mmio32.start;
        let mut next64 = windows.mmio64.start;
        // Largest BARs first keeps natural alignment from wasting space.
        let mut bars = Vec::new();
        for (slot, entry) in self.slots.iter().enumerate() {
            if let Some(s) = entry {
                let dev = lock(&s.device);
                for index in 0..BAR_COUNT {
                    if let Some(bar) = dev.config().bar(index) {
                        bars.push((slot as u8, index, bar));
                    }
                }
            }
        }
        bars.sort_by_key(|(slot, index, bar)| (std::cmp::Reverse(bar.size), *slot, *index));
        for (slot, index, bar) in bars {
            let (next, window) = match bar.kind {
                BarKind::Io => (&mut next_io, &windows.io),
                BarKind::Memory32 => (&mut next32, &windows.mmio32),
                BarKind::Memory64 => (&mut next64, &windows.mmio64),
            };
            let start = next.next_multiple_of(bar.size);
            if start
                .checked_add(bar.size)
                .is_none_or(|end| end > window.end)
            {
                return Err(PciError::NoRoom {
                    slot,
                    bar: index,
                    size: bar.size,
                });
            }
            *next = start + bar.size;
            if let Some(Some(s)) = self.slots.get(usize::from(slot)) {
                lock(&s.device).config_mut().set_bar_address(index, start);
            }
        }
        for slot in 0..SLOTS {
            if let Some(s) = &self.slots[slot] {
                let mut dev = lock(&s.device);
                let command =
                    dev.config().command() | COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER;
                dev.config_mut().set_command(command);
            }
            self.update_bars(slot);
        }
        Ok(())
    }

    /// Reconciles where each BAR of `slot` is mapped with its config space.
    fn update_bars(&mut self, slot: usize) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        for index in 0..BAR_COUNT {
            let (wanted, backing) = {
                let dev = lock(&s.device);
                let wanted = dev.config().bar_range(index).map(|range| BarRegion {
                    slot: slot as u8,
                    bar: index,
                    kind: dev
                        .config()
                        .bar(index)
                        .map_or(BarKind::Memory32, |b| b.kind),
                    range,
                });
                (wanted, dev.bar_backing(index))
            };
            if wanted == s.mapped[index] {
                continue;
            }
            if let Some(old) = s.mapped[index].take() {
                self.mapper.unmap(&old, &backing);
            }
            if let Some(new) = wanted {
                match self.mapper.map(&new, &s.device, &backing) {
                    Ok(()) => s.mapped[index] = Some(new),
                    Err(e) => tracing::warn!(
                        "PCI {slot:02x}.0 BAR {index} at {:#x}: not mapped: {e}",
                        new.range.start
                    ),
                }
            }
        }
    }

    /// Where a device's BAR is mapped now.
    pub fn bar_region(&self, slot: u8, bar: usize) -> Option<BarRegion> {
        self.slots
            .get(usize::from(slot))?
            .as_ref()?
            .mapped
            .get(bar)?
            .clone()
    }

    fn device(&self, bus: u8, slot: u8, function: u8) -> Option<&Slot> {
        if bus != 0 || function != 0 {
            return None;
        }
        self.slots.get(usize::from(slot))?.as_ref()
    }

    /// A configuration read of `data.len()` bytes at `offset` (all ones where
    /// there is no device).
    pub fn config_read(&self, bus: u8, slot: u8, function: u8, offset: usize, data: &mut [u8]) {
        let value = match self.device(bus, slot, function) {
            Some(s) if offset < CONFIG_SPACE_SIZE => lock(&s.device).read_config(offset / 4),
            _ => u32::MAX,
        };
        let shift = (offset % 4) * 8;
        for (i, b) in data.iter_mut().enumerate() {
            *b = value
                .checked_shr((shift + 8 * i) as u32)
                .map_or(0xff, |v| v as u8);
        }
    }

    pub fn config_write(&mut self, bus: u8, slot: u8, function: u8, offset: usize, data: &[u8]) {
        let Some(s) = self.device(bus, slot, function) else {
            return;
        };
        if offset + data.len() > CONFIG_SPACE_SIZE || (offset % 4) + data.len() > 4 {
            return;
        }
        lock(&s.device).write_config(offset, data);
        self.update_bars(usize::from(slot));
    }

    fn latched(&self) -> Option<(u8, u8, u8, usize)> {
        if self.address & 0x8000_0000 == 0 {
            return None;
        }
        let bus = (self.address >> 16) as u8;
        let slot = ((self.address >> 11) & 0x1f) as u8;
        let function = ((self.address >> 8) & 0x7) as u8;
        let offset = (self.address & 0xfc) as usize;
        Some((bus, slot, function, offset))
    }
}

/// Ports 0xcf8 (address) and 0xcfc..0xcff (data).
impl BusDeviceMut for PciRoot {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            4..=7 => match self.latched() {
                Some((bus, slot, function, reg)) => {
                    self.config_read(bus, slot, function, reg + (offset as usize - 4), data)
                }
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                self.address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            }
            4..=7 => {
                if let Some((bus, slot, function, reg)) = self.latched() {
                    self.config_write(bus, slot, function, reg + (offset as usize - 4), data)
                }
            }
            _ => {}
        }
    }
}

/// Ports 0xcf8..0xcff as chipsets decode them: the PCI configuration
/// mechanism, except byte accesses to 0xcf9, which reach the reset control
/// register.
pub struct ConfigPorts {
    pub root: Arc<Mutex<PciRoot>>,
    pub reset_register: Arc<dyn BusDevice>,
}

impl BusDevice for ConfigPorts {
    fn read(&self, offset: u64, data: &mut [u8]) {
        if offset == 1 && data.len() == 1 {
            self.reset_register.read(0, data)
        } else {
            lock(&self.root).read(offset, data)
        }
    }
    fn write(&self, offset: u64, data: &[u8]) {
        if offset == 1 && data.len() == 1 {
            self.reset_register.write(0, data)
        } else {
            lock(&self.root).write(offset, data)
        }
    }
}

/// ECAM: configuration space as memory, 4 KiB per function.
pub struct Ecam(pub Arc<Mutex<PciRoot>>);

impl Ecam {
    fn decode(offset: u64) -> (u8, u8, u8, usize) {
        (
            (offset >> 20) as u8,
            ((offset >> 15) & 0x1f) as u8,
            ((offset >> 12) & 0x7) as u8,
            (offset & 0xfff) as usize,
        )
    }
}

impl BusDevice for Ecam {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let (bus, slot, function, reg) = Self::decode(offset);
        if (reg % 4) + data.len() > 4 {
            data.fill(0xff);
            return;
        }
        lock(&self.0).config_read(bus, slot, function, reg, data)
    }
    fn write(&self, offset: u64, data: &[u8]) {
        let (bus, slot, function, reg) = Self::decode(offset);
        lock(&self.0).config_write(bus, slot, function, reg, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestDevice {
        config: PciConfig,
        writes: Vec<(usize, u64, Vec<u8>)>,
    }

    impl PciDevice for TestDevice {
        fn config(&self) -> &PciConfig {
            &self.config
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.config
        }
        fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.writes.push((bar, offset, data.to_vec()));
        }
    }

    #[derive(Default)]
    struct RecordingMapper(Mutex<Vec<String>>);

    impl BarMapper for RecordingMapper {
        fn map(&self, r: &BarRegion, _: &SharedPciDevice, _: &BarBacking) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push(format!("map {}:{} {:#x}", r.slot, r.bar, r.range.start));
            Ok(())
        }
        fn unmap(&self, r: &BarRegion, _: &BarBacking) {
            self.0
                .lock()
                .unwrap()
                .push(format!("unmap {}:{} {:#x}", r.slot, r.bar, r.range.start));
        }
    }

    fn rig() -> (PciRoot, Arc<RecordingMapper>) {
        let mapper = Arc::new(RecordingMapper::default());
        let mut root = PciRoot::new(mapper.clone());
        let mut config = PciConfig::new(PciIdentity {
            vendor: 0x1234,
            device: 0x5678,
            revision: 1,
            class: 0x030000,
            subsystem_vendor: 0,
            subsystem: 0,
        });
        config
            .add_bar(
                0,
                Bar {
                    size: 0x100_0000,
                    kind: BarKind::Memory32,
                    prefetchable: false,
                },
            )
            .unwrap();
        config
            .add_bar(
                1,
                Bar {
                    size: 0x1000,
                    kind: BarKind::Memory32,
                    prefetchable: false,
                },
            )
            .unwrap();
        config
            .add_bar(
                2,
                Bar {
                    size: 0x20,
                    kind: BarKind::Io,
                    prefetchable: false,
                },
            )
            .unwrap();
        let dev = Arc::new(Mutex::new(TestDevice {
            config,
            writes: vec![],
        }));
        root.add_device(2, dev).unwrap();
        root.assign_bars(&BarWindows {
            io: 0xc000..0x10000,
            mmio32: 0xc000_0000..0xe000_0000,
            mmio64: 0x1_0000_0000..0x2_0000_0000,
        })
        .unwrap();
        (root, mapper)
    }

    fn cf8(root: &mut PciRoot, slot: u32, reg: u32) {
        root.write(0, &(0x8000_0000 | (slot << 11) | reg).to_le_bytes());
    }

    #[test]
    fn bars_are_assigned_and_mapped() {
        let (root, mapper) = rig();
        assert_eq!(
            root.bar_region(2, 0).unwrap().range,
            0xc000_0000..0xc100_0000
        );
        assert_eq!(root.bar_region(2, 1).unwrap().range.start, 0xc100_0000);
        assert_eq!(root.bar_region(2, 2).unwrap().range.start, 0xc000);
        assert_eq!(mapper.0.lock().unwrap().len(), 3);
    }

    #[test]
    fn config_through_ports() {
        let (mut root, _) = rig();
        cf8(&mut root, 2, 0);
        let mut id = [0u8; 4];
        root.read(4, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x5678_1234);
        cf8(&mut root, 3, 0);
        root.read(4, &mut id);
        assert_eq!(id, [0xff; 4], "empty slot");
        // Byte read of the class code's top byte at 0x0b.
        cf8(&mut root, 2, 8);
        let mut b = [0u8];
        root.read(7, &mut b);
        assert_eq!(b, [0x03]);
    }

    #[test]
    fn guest_moves_a_bar() {
        let (mut root, mapper) = rig();
        mapper.0.lock().unwrap().clear();
        // Disable decoding, size, reprogram, re-enable: as Linux does.
        cf8(&mut root, 2, 4);
        root.write(4, &[0x00, 0x00]);
        cf8(&mut root, 2, 0x14);
        root.write(4, &u32::MAX.to_le_bytes());
        let mut v = [0u8; 4];
        root.read(4, &mut v);
        assert_eq!(u32::from_le_bytes(v), 0xffff_f000);
        root.write(4, &0xd000_0000u32.to_le_bytes());
        cf8(&mut root, 2, 4);
        root.write(4, &[0x03, 0x00]);
        let log = mapper.0.lock().unwrap().clone();
        assert_eq!(
            log,
            vec![
                "unmap 2:0 0xc0000000",
                "unmap 2:1 0xc1000000",
                "unmap 2:2 0xc000",
                "map 2:0 0xc0000000",
                "map 2:1 0xd0000000",
                "map 2:2 0xc000",
            ]
        );
    }

    #[test]
    fn ecam_reaches_the_same_space() {
        let (root, _) = rig();
        let ecam = Ecam(Arc::new(Mutex::new(root)));
        let mut id = [0u8; 2];
        ecam.read(2 << 15 | 2, &mut id);
        assert_eq!(u16::from_le_bytes(id), 0x5678);
        let mut v = [0u8; 4];
        ecam.read(1 << 20, &mut v);
        assert_eq!(v, [0xff; 4], "bus 1 does not exist");
        ecam.read(2 << 15 | 0x102, &mut v);
        assert_eq!(v, [0xff; 4], "straddling access");
    }
}
