//! The platform devices a guest reaches with port I/O and MMIO, driven by
//! any sequence of accesses: the i8042 (keyboard and mouse controller),
//! the RTC/CMOS, ACPI PM (PM1, GPE, the reset register), the 16550 serial
//! port, and PCI configuration space through the 0xCF8/0xCFC ports and
//! ECAM, with a host bridge and a virtio device whose BARs the guest may
//! move anywhere (the mapper checks every placement). Nothing may panic.
#![no_main]

use std::sync::{Arc, Mutex};

use devices::acpi_pm::{AcpiPm, ResetControl};
use devices::bus::BusDevice;
use devices::i8042::I8042;
use devices::interrupt::{EdgeInterrupt, LevelInterrupt, MsiDelivery};
use devices::pci::host_bridge::HostBridge;
use devices::pci::{BarBacking, BarMapper, BarRegion, ConfigPorts, Ecam, PciRoot, SharedPciDevice};
use devices::rtc::Rtc;
use devices::serial::Serial;
use devices::system::{SystemEvent, SystemEvents};
use devices::virtio::console::VirtioConsole;
use devices::virtio::pci::{VirtioPciDevice, Wiring};
use devices::virtio::GuestMemory;
use libfuzzer_sys::fuzz_target;
use vm_memory::GuestAddress;

struct Nothing;
impl EdgeInterrupt for Nothing {
    fn trigger(&self) {}
}
impl LevelInterrupt for Nothing {
    fn set_level(&self, _: bool) {}
}
impl MsiDelivery for Nothing {
    fn deliver(&self, _: u64, _: u32) {}
}
impl SystemEvents for Nothing {
    fn request(&self, _: SystemEvent) {}
}

/// Accepts any BAR placement a real mapper would (checks it is sane).
struct CheckingMapper;
impl BarMapper for CheckingMapper {
    fn map(&self, region: &BarRegion, _: &SharedPciDevice, _: &BarBacking) -> Result<(), String> {
        assert!(region.range.start < region.range.end, "{region:?}");
        Ok(())
    }
    fn unmap(&self, _: &BarRegion, _: &BarBacking) {}
}

fn devices() -> Vec<Box<dyn BusDevice>> {
    let n = Arc::new(Nothing);
    let mut root = PciRoot::new(Arc::new(CheckingMapper));
    root.add_device(0, Arc::new(Mutex::new(HostBridge::i440fx())))
        .unwrap();
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let wiring = Wiring {
        memory,
        msi: n.clone(),
        intx: n.clone(),
        intx_line: 5,
    };
    let console = VirtioConsole::new(&["com.redhat.spice.0"]).unwrap();
    let virtio = VirtioPciDevice::new(console, wiring).unwrap();
    root.add_device(3, Arc::new(Mutex::new(virtio))).unwrap();
    let root = Arc::new(Mutex::new(root));
    let reset: Arc<dyn BusDevice> = Arc::new(Mutex::new(ResetControl::new(6, n.clone())));
    vec![
        Box::new(Mutex::new(I8042::new(n.clone(), n.clone(), n.clone()))),
        Box::new(Mutex::new(Rtc::default())),
        Box::new(Mutex::new(AcpiPm::new(n.clone(), n.clone(), 5))),
        Box::new(Mutex::new(
            Serial::new(n.clone(), Box::new(std::io::sink())).unwrap(),
        )),
        Box::new(ConfigPorts {
            root: root.clone(),
            reset_register: reset,
        }),
        Box::new(Ecam(root)),
    ]
}

fuzz_target!(|data: &[u8]| {
    let devices = devices();
    // Each access: device, offset (16 bits), size (1, 2, 4 or 8), read or
    // write, and 8 bytes of value.
    for access in data.chunks_exact(12) {
        let device = &devices[usize::from(access[0]) % devices.len()];
        let mut offset = u64::from(u16::from_le_bytes([access[1], access[2]]));
        if access[0] & 0x80 != 0 {
            offset <<= 12; // ECAM: reach other functions and devices
        }
        let size = 1 << (access[3] & 3);
        let value = &access[4..4 + size];
        if access[3] & 4 != 0 {
            device.write(offset, value);
        } else {
            let mut out = [0u8; 8];
            device.read(offset, &mut out[..size]);
        }
    }
});
