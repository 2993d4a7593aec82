//! The virtio PCI transport for modern (virtio 1.x) devices.
//!
//! Everything lives in BAR 0 (32-bit memory, 32 KiB, trapped), found
//! through vendor capabilities in configuration space:
//!
//! ```text
//! 0x0000  common configuration   features, status, queue set-up
//! 0x1000  ISR status             read to acknowledge (INTx)
//! 0x2000  device configuration   the device's own (virtio-input: 136 bytes)
//! 0x3000  notifications          4 bytes per queue: write to kick queue n
//! 0x4000  MSI-X table            one vector per queue, plus configuration
//! 0x5000  MSI-X pending bits
//! ```
//!
//! plus the PCI configuration access capability (a window into BAR 0
//! through configuration space). Queue kicks are trapped writes (they are
//! rare for input devices). Interrupts go through MSI-X when the driver
//! enables it, else through the INTx line (with the ISR register).
//!
//! The driver is not trusted: queue set-up is only accepted before the
//! queue is enabled, enabling checks that the rings lie in guest RAM,
//! feature negotiation refuses features we did not offer, and every access
//! outside a register is ignored.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::msix::{self, MsixTable, NO_VECTOR};
use super::{
    status, GuestErrors, GuestMemory, QueueInterrupt, Queues, VirtioDevice, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::interrupt::{LevelInterrupt, MsiDelivery};
use crate::pci::{
    Bar, BarKind, ConfigError, PciConfig, PciDevice, PciIdentity, COMMAND_INTX_DISABLE,
};

/// Red Hat's PCI vendor ID, which virtio devices use.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Modern virtio PCI device IDs are 0x1040 + the virtio device type.
pub const DEVICE_ID_BASE: u16 = 0x1040;

pub const BAR_SIZE: u64 = 0x8000;
pub const COMMON_OFFSET: u64 = 0x0000;
pub const COMMON_LEN: u64 = 0x38;
pub const ISR_OFFSET: u64 = 0x1000;
pub const DEVICE_OFFSET: u64 = 0x2000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Bytes between two queues' notification addresses.
pub const NOTIFY_MULTIPLIER: u32 = 4;
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
pub const MSIX_PBA_OFFSET: u64 = 0x5000;
const REGION_LEN: u64 = 0x1000;

/// Capability type numbers (`cfg_type`).
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;
const CAP_PCI_CFG: u8 = 5;
const CAP_VENDOR: u8 = 0x09;

const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;

/// Features the transport offers for every device.
const TRANSPORT_FEATURES: u64 =
    VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC;

/// Common configuration registers (offsets).
mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC_LO: u64 = 0x20;
    pub const QUEUE_DESC_HI: u64 = 0x24;
    pub const QUEUE_DRIVER_LO: u64 = 0x28;
    pub const QUEUE_DRIVER_HI: u64 = 0x2c;
    pub const QUEUE_DEVICE_LO: u64 = 0x30;
    pub const QUEUE_DEVICE_HI: u64 = 0x34;

    /// Every register as (offset, size).
    pub const FIELDS: [(u64, u64); 19] = [
        (DEVICE_FEATURE_SELECT, 4),
        (DEVICE_FEATURE, 4),
        (DRIVER_FEATURE_SELECT, 4),
        (DRIVER_FEATURE, 4),
        (CONFIG_MSIX_VECTOR, 2),
        (NUM_QUEUES, 2),
        (DEVICE_STATUS, 1),
        (CONFIG_GENERATION, 1),
        (QUEUE_SELECT, 2),
        (QUEUE_SIZE, 2),
        (QUEUE_MSIX_VECTOR, 2),
        (QUEUE_ENABLE, 2),
        (QUEUE_NOTIFY_OFF, 2),
        (QUEUE_DESC_LO, 4),
        (QUEUE_DESC_HI, 4),
        (QUEUE_DRIVER_LO, 4),
        (QUEUE_DRIVER_HI, 4),
        (QUEUE_DEVICE_LO, 4),
        (QUEUE_DEVICE_HI, 4),
    ];
}

/// How the device interrupts the driver.
struct Interrupts {
    msix: MsixTable,
    msi: Arc<dyn MsiDelivery>,
    intx: Arc<dyn LevelInterrupt>,
    intx_disabled: bool,
    isr: u8,
    config_vector: u16,
    queue_vectors: Vec<u16>,
}

impl Interrupts {
    fn signal(&mut self, vector: u16, isr_bit: u8) {
        if self.msix.is_enabled() {
            if vector != NO_VECTOR {
                self.msix.signal(vector, &*self.msi);
            }
        } else {
            self.isr |= isr_bit;
            self.update_intx();
        }
    }

    fn update_intx(&self) {
        self.intx
            .set_level(self.isr != 0 && !self.intx_disabled && !self.msix.is_enabled());
    }

    fn signal_config(&mut self) {
        self.signal(self.config_vector, ISR_CONFIG);
    }
}

impl QueueInterrupt for Interrupts {
    fn signal_queue(&mut self, queue: u16) {
        let vector = self
            .queue_vectors
            .get(usize::from(queue))
            .copied()
            .unwrap_or(NO_VECTOR);
        self.signal(vector, ISR_QUEUE);
    }
}

/// The lines a virtio PCI function is wired to.
pub struct Wiring {
    /// Guest RAM, where the rings and buffers are.
    pub memory: GuestMemory,
    /// Where MSI-X messages go.
    pub msi: Arc<dyn MsiDelivery>,
    /// The INTA line, for drivers without MSI-X.
    pub intx: Arc<dyn LevelInterrupt>,
    /// The interrupt line number firmware would report (config register 0x3c).
    pub intx_line: u8,
}

pub struct VirtioPciDevice<D: VirtioDevice> {
    config: PciConfig,
    device: D,
    memory: GuestMemory,
    queues: Vec<Queue>,
    interrupts: Interrupts,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    queue_select: u16,
    msix_cap: usize,
    pci_cfg_cap: usize,
    errors: GuestErrors,
}

impl<D: VirtioDevice> VirtioPciDevice<D> {
    pub fn new(device: D, wiring: Wiring) -> Result<Self, ConfigError> {
        let max_sizes = device.queue_max_sizes().to_vec();
        let queues: Vec<Queue> = max_sizes
            .iter()
            .map(|&size| {
                // Queue::new refuses sizes that are not powers of two or too
                // big; devices declare sane constants.
                Queue::new(size)
                    .or_else(|_| Queue::new(256))
                    .unwrap_or_default()
            })
            .collect();
        let vectors = queues.len() as u16 + 1;
        let mut config = PciConfig::new(PciIdentity {
            vendor: VIRTIO_VENDOR,
            device: DEVICE_ID_BASE + device.device_type(),
            revision: 1,
            class: device_class(device.device_type()),
            subsystem_vendor: VIRTIO_VENDOR,
            subsystem: 0x1100,
        });
        config.add_bar(
            0,
            Bar {
                size: BAR_SIZE,
                kind: BarKind::Memory32,
                prefetchable: false,
            },
        )?;
        config.set_interrupt(1, wiring.intx_line);
        let region = |cfg_type: u8, offset: u64, length: u64| {
            let mut body = vec![16, cfg_type, 0, 0, 0, 0];
            body.extend_from_slice(&(offset as u32).to_le_bytes());
            body.extend_from_slice(&(length as u32).to_le_bytes());
            body
        };
        config.add_capability(
            CAP_VENDOR,
            &region(CAP_COMMON, COMMON_OFFSET, COMMON_LEN),
            &[],
        )?;
        config.add_capability(CAP_VENDOR, &region(CAP_ISR, ISR_OFFSET, 4), &[])?;
        let device_len = device.config_size().max(4) as u64;
        config.add_capability(
            CAP_VENDOR,
            &region(CAP_DEVICE, DEVICE_OFFSET, device_len),
            &[],
        )?;
        let mut notify = region(
            CAP_NOTIFY,
            NOTIFY_OFFSET,
            u64::from(NOTIFY_MULTIPLIER) * queues.len() as u64,
        );
        notify[0] = 20;
        notify.extend_from_slice(&NOTIFY_MULTIPLIER.to_le_bytes());
        config.add_capability(CAP_VENDOR, &notify, &[])?;
        let mut pci_cfg = region(CAP_PCI_CFG, 0, 0);
        pci_cfg[0] = 20;
        pci_cfg.extend_from_slice(&[0; 4]);
        // bar, offset and length are the driver's to set.
        let pci_cfg_cap = config.add_capability(
            CAP_VENDOR,
            &pci_cfg,
            &[(2, 0xff), (6, 0xffff_ffff), (10, 0xffff_ffff)],
        )?;
        let msix_table = MsixTable::new(vectors);
        let msix_cap = config.add_capability(
            msix::CAPABILITY_ID,
            &msix_table.capability_body(0, MSIX_TABLE_OFFSET as u32, 0, MSIX_PBA_OFFSET as u32),
            &msix::WRITABLE,
        )?;
        let queue_count = queues.len();
        Ok(VirtioPciDevice {
            config,
            device,
            memory: wiring.memory,
            queues,
            interrupts: Interrupts {
                msix: msix_table,
                msi: wiring.msi,
                intx: wiring.intx,
                intx_disabled: false,
                isr: 0,
                config_vector: NO_VECTOR,
                queue_vectors: vec![NO_VECTOR; queue_count],
            },
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            msix_cap,
            pci_cfg_cap,
            errors: GuestErrors::default(),
        })
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The device status the driver set.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// How many driver errors were seen.
    pub fn guest_errors(&self) -> u64 {
        self.errors.count()
    }

    fn is_live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::DEVICE_NEEDS_RESET == 0
    }

    /// Runs `f` with the device and its queues (for input that arrives
    /// from outside the guest, e.g. a tablet's events).
    pub fn with_device<R>(&mut self, f: impl FnOnce(&mut D, &mut Queues<'_>) -> R) -> R {
        let live = self.is_live();
        let name = self.device.name();
        let mut queues = Queues::new(
            &mut self.queues,
            &self.memory,
            live,
            &mut self.interrupts,
            &mut self.errors,
            name,
        );
        let result = f(&mut self.device, &mut queues);
        let failed = queues.failed();
        if failed {
            self.needs_reset();
        }
        result
    }

    /// Tells the driver the device's configuration changed (e.g. a
    /// network card's link state).
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.is_live() {
            self.interrupts.signal_config();
        }
    }

    fn needs_reset(&mut self) {
        if self.status & status::DEVICE_NEEDS_RESET == 0 {
            self.status |= status::DEVICE_NEEDS_RESET;
            self.interrupts.signal_config();
        }
    }

    fn offered_features(&self) -> u64 {
        self.device.device_features() | TRANSPORT_FEATURES
    }

    fn guest_error(&mut self, what: std::fmt::Arguments<'_>) {
        self.errors.report(self.device.name(), what);
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        self.interrupts.isr = 0;
        self.interrupts.config_vector = NO_VECTOR;
        self.interrupts.queue_vectors.fill(NO_VECTOR);
        self.interrupts.update_intx();
    }

    fn selected_queue(&self) -> Option<&Queue> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// The common configuration registers as bytes.
    fn common_image(&self) -> [u8; COMMON_LEN as usize] {
        let mut image = [0u8; COMMON_LEN as usize];
        let mut put = |offset: u64, bytes: &[u8]| {
            let at = offset as usize;
            image[at..at + bytes.len()].copy_from_slice(bytes);
        };
        let feature_word = |features: u64, select: u32| match select {
            0 => features as u32,
            1 => (features >> 32) as u32,
            _ => 0,
        };
        put(
            common::DEVICE_FEATURE_SELECT,
            &self.device_feature_select.to_le_bytes(),
        );
        put(
            common::DEVICE_FEATURE,
            &feature_word(self.offered_features(), self.device_feature_select).to_le_bytes(),
        );
        put(
            common::DRIVER_FEATURE_SELECT,
            &self.driver_feature_select.to_le_bytes(),
        );
        put(
            common::DRIVER_FEATURE,
            &feature_word(self.driver_features, self.driver_feature_select).to_le_bytes(),
        );
        put(
            common::CONFIG_MSIX_VECTOR,
            &self.interrupts.config_vector.to_le_bytes(),
        );
        put(
            common::NUM_QUEUES,
            &(self.queues.len() as u16).to_le_bytes(),
        );
        put(common::DEVICE_STATUS, &[self.status]);
        put(common::CONFIG_GENERATION, &[self.config_generation]);
        put(common::QUEUE_SELECT, &self.queue_select.to_le_bytes());
        if let Some(q) = self.selected_queue() {
            let vector = self.interrupts.queue_vectors[usize::from(self.queue_select)];
            put(common::QUEUE_SIZE, &q.size().to_le_bytes());
            put(common::QUEUE_MSIX_VECTOR, &vector.to_le_bytes());
            put(common::QUEUE_ENABLE, &u16::from(q.ready()).to_le_bytes());
            put(common::QUEUE_NOTIFY_OFF, &self.queue_select.to_le_bytes());
            put(common::QUEUE_DESC_LO, &q.desc_table().to_le_bytes());
            put(common::QUEUE_DRIVER_LO, &q.avail_ring().to_le_bytes());
            put(common::QUEUE_DEVICE_LO, &q.used_ring().to_le_bytes());
        } else {
            put(common::QUEUE_MSIX_VECTOR, &NO_VECTOR.to_le_bytes());
        }
        image
    }

    fn read_common(&self, offset: u64, data: &mut [u8]) {
        let image = self.common_image();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = image.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    /// Applies a write to the registers it touches (any width: the bytes
    /// are merged into the register's current value first).
    fn write_common(&mut self, offset: u64, data: &[u8]) {
        let mut image = self.common_image();
        let end = offset + data.len() as u64;
        for (i, byte) in data.iter().enumerate() {
            if let Some(slot) = image.get_mut(offset as usize + i) {
                *slot = *byte;
            }
        }
        for (field, size) in common::FIELDS {
            if field < end && offset < field + size {
                let bytes = &image[field as usize..(field + size) as usize];
                let mut value = [0u8; 4];
                value[..bytes.len()].copy_from_slice(bytes);
                self.write_register(field, u32::from_le_bytes(value));
            }
        }
    }

    fn vector_ok(&self, vector: u16) -> u16 {
        if vector < self.interrupts.msix.vectors() {
            vector
        } else {
            NO_VECTOR
        }
    }

    fn write_register(&mut self, field: u64, value: u32) {
        let select = usize::from(self.queue_select);
        match field {
            common::DEVICE_FEATURE_SELECT => self.device_feature_select = value,
            common::DRIVER_FEATURE_SELECT => self.driver_feature_select = value,
            common::DRIVER_FEATURE => {
                if self.status & status::FEATURES_OK != 0 {
                    self.guest_error(format_args!("features written after FEATURES_OK"));
                    return;
                }
                match self.driver_feature_select {
                    0 => {
                        self.driver_features =
                            (self.driver_features & !0xffff_ffff) | u64::from(value)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                    }
                    _ => {}
                }
            }
            common::CONFIG_MSIX_VECTOR => {
                self.interrupts.config_vector = self.vector_ok(value as u16);
            }
            common::DEVICE_STATUS => self.write_status(value as u8),
            common::QUEUE_SELECT => self.queue_select = value as u16,
            common::QUEUE_MSIX_VECTOR => {
                let vector = self.vector_ok(value as u16);
                if let Some(v) = self.interrupts.queue_vectors.get_mut(select) {
                    *v = vector;
                }
            }
            common::QUEUE_ENABLE => self.enable_queue(value as u16),
            common::QUEUE_SIZE
            | common::QUEUE_DESC_LO
            | common::QUEUE_DESC_HI
            | common::QUEUE_DRIVER_LO
            | common::QUEUE_DRIVER_HI
            | common::QUEUE_DEVICE_LO
            | common::QUEUE_DEVICE_HI => self.set_up_queue(field, value),
            // Read-only registers.
            _ => {}
        }
    }

    fn set_up_queue(&mut self, field: u64, value: u32) {
        let select = self.queue_select;
        let Some(queue) = self.queues.get_mut(usize::from(select)) else {
            self.guest_error(format_args!(
                "set-up of queue {select}, which does not exist"
            ));
            return;
        };
        if queue.ready() {
            // Writing back the value it has is harmless (a wide write that
            // covers a neighbouring register does that).
            let unchanged = match field {
                common::QUEUE_SIZE => u32::from(queue.size()) == value,
                common::QUEUE_DESC_LO => queue.desc_table() as u32 == value,
                common::QUEUE_DESC_HI => (queue.desc_table() >> 32) as u32 == value,
                common::QUEUE_DRIVER_LO => queue.avail_ring() as u32 == value,
                common::QUEUE_DRIVER_HI => (queue.avail_ring() >> 32) as u32 == value,
                common::QUEUE_DEVICE_LO => queue.used_ring() as u32 == value,
                _ => (queue.used_ring() >> 32) as u32 == value,
            };
            if !unchanged {
                self.guest_error(format_args!("queue {select} changed while enabled"));
            }
            return;
        }
        match field {
            common::QUEUE_SIZE => {
                if queue.try_set_size(value as u16).is_err() {
                    self.guest_error(format_args!("queue {select}: bad size {value}"));
                }
            }
            common::QUEUE_DESC_LO => queue.set_desc_table_address(Some(value), None),
            common::QUEUE_DESC_HI => queue.set_desc_table_address(None, Some(value)),
            common::QUEUE_DRIVER_LO => queue.set_avail_ring_address(Some(value), None),
            common::QUEUE_DRIVER_HI => queue.set_avail_ring_address(None, Some(value)),
            common::QUEUE_DEVICE_LO => queue.set_used_ring_address(Some(value), None),
            _ => queue.set_used_ring_address(None, Some(value)),
        }
    }

    fn enable_queue(&mut self, value: u16) {
        let select = self.queue_select;
        let Some(queue) = self.queues.get_mut(usize::from(select)) else {
            return;
        };
        if value != 1 || queue.ready() {
            return;
        }
        queue.set_ready(true);
        // The rings must lie in guest RAM and be aligned.
        let aligned = queue.desc_table() % 16 == 0
            && queue.avail_ring() % 2 == 0
            && queue.used_ring() % 4 == 0;
        if !aligned || !queue.is_valid(&self.memory) {
            queue.set_ready(false);
            self.guest_error(format_args!(
                "queue {select}: rings outside RAM or misaligned; refused"
            ));
            self.needs_reset();
        }
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let mut new = value | (old & status::DEVICE_NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let unoffered = self.driver_features & !self.offered_features();
            if unoffered != 0 || self.driver_features & VIRTIO_F_VERSION_1 == 0 {
                let (wanted, offered) = (self.driver_features, self.offered_features());
                self.guest_error(format_args!(
                    "features {wanted:#x} refused (offered {offered:#x})"
                ));
                new &= !status::FEATURES_OK;
            }
        }
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            if new & status::FEATURES_OK == 0 {
                self.guest_error(format_args!("DRIVER_OK without FEATURES_OK"));
                new &= !status::DRIVER_OK;
                self.status = new;
                return;
            }
            let event_idx = self.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
            for q in &mut self.queues {
                q.set_event_idx(event_idx);
            }
            self.status = new;
            self.with_device(|device, queues| device.activate(queues));
            return;
        }
        self.status = new;
    }

    fn notify(&mut self, offset: u64) {
        let index = offset / u64::from(NOTIFY_MULTIPLIER);
        if index >= self.queues.len() as u64 {
            self.guest_error(format_args!(
                "notification for queue {index}, which does not exist"
            ));
            return;
        }
        if !self.is_live() {
            return;
        }
        self.with_device(|device, queues| device.queue_notify(index as u16, queues));
    }

    fn read_isr(&mut self, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = self.interrupts.isr;
        }
        self.interrupts.isr = 0;
        self.interrupts.update_intx();
    }

    /// The PCI configuration access window: (bar, offset, length).
    fn pci_cfg_window(&self) -> (u8, u64, usize) {
        let reg = |at: usize| self.config.read_reg((self.pci_cfg_cap + at) / 4);
        let bar = reg(4) as u8;
        let offset = u64::from(reg(8));
        let length = reg(12) as usize;
        (bar, offset, length)
    }

    fn pci_cfg_data_reg(&self) -> usize {
        (self.pci_cfg_cap + 16) / 4
    }

    /// Follows what the guest wrote to configuration space: MSI-X enable
    /// and mask, the INTx disable bit.
    fn config_written(&mut self) {
        let control = (self.config.read_reg(self.msix_cap / 4) >> 16) as u16;
        let was_enabled = self.interrupts.msix.is_enabled();
        self.interrupts
            .msix
            .set_message_control(control, &*self.interrupts.msi);
        self.interrupts.intx_disabled = self.config.command() & COMMAND_INTX_DISABLE != 0;
        if was_enabled != self.interrupts.msix.is_enabled() {
            // Interrupts pending on the old path are dropped with it.
            self.interrupts.isr = 0;
        }
        self.interrupts.update_intx();
    }
}

impl<D: VirtioDevice> PciDevice for VirtioPciDevice<D> {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_config(&mut self, reg: usize) -> u32 {
        if reg == self.pci_cfg_data_reg() {
            let (bar, offset, length) = self.pci_cfg_window();
            let mut bytes = [0u8; 4];
            if bar == 0 && matches!(length, 1 | 2 | 4) {
                self.read_bar(0, offset, &mut bytes[..length]);
            }
            return u32::from_le_bytes(bytes);
        }
        let value = self.config.read_reg(reg);
        if reg == 1 {
            // Status bit 3: an INTx interrupt is pending.
            let pending = self.interrupts.isr != 0 && !self.interrupts.msix.is_enabled();
            return (value & !(1 << 19)) | (u32::from(pending) << 19);
        }
        value
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        if offset / 4 == self.pci_cfg_data_reg() {
            let (bar, bar_offset, length) = self.pci_cfg_window();
            if bar == 0 && length == data.len() && offset.is_multiple_of(4) {
                self.write_bar(0, bar_offset, data);
            }
            return;
        }
        self.config.write(offset, data);
        self.config_written();
    }

    /// The notify register of each queue whose device has its own event.
    fn bar_events(&self, bar: usize) -> Vec<(u64, Arc<EventFd>)> {
        if bar != 0 {
            return Vec::new();
        }
        let stride = u64::from(NOTIFY_MULTIPLIER);
        self.device
            .notify_events()
            .into_iter()
            .map(|(queue, event)| (NOTIFY_OFFSET + u64::from(queue) * stride, event))
            .collect()
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let len = data.len() as u64;
        if bar != 0 || offset.checked_add(len).is_none_or(|end| end > BAR_SIZE) {
            return;
        }
        let (region, at) = (offset / REGION_LEN * REGION_LEN, offset % REGION_LEN);
        if at + len > REGION_LEN {
            return; // straddles two regions
        }
        match region {
            COMMON_OFFSET => self.read_common(at, data),
            ISR_OFFSET => self.read_isr(data),
            DEVICE_OFFSET if at + len <= self.device.config_size() as u64 => {
                self.device.read_config(at as usize, data);
            }
            MSIX_TABLE_OFFSET => self.interrupts.msix.read_table(at, data),
            MSIX_PBA_OFFSET => self.interrupts.msix.read_pba(at, data),
            _ => {}
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let len = data.len() as u64;
        if bar != 0 || offset.checked_add(len).is_none_or(|end| end > BAR_SIZE) {
            return;
        }
        let (region, at) = (offset / REGION_LEN * REGION_LEN, offset % REGION_LEN);
        if at + len > REGION_LEN {
            return;
        }
        match region {
            COMMON_OFFSET => self.write_common(at, data),
            DEVICE_OFFSET if at + len <= self.device.config_size() as u64 => {
                self.device.write_config(at as usize, data);
            }
            NOTIFY_OFFSET => self.notify(at),
            MSIX_TABLE_OFFSET => {
                let msi = self.interrupts.msi.clone();
                self.interrupts.msix.write_table(at, data, &*msi);
            }
            _ => {}
        }
    }
}

/// The PCI class code a virtio device type gets.
fn device_class(device_type: u16) -> u32 {
    match device_type {
        18 => 0x09_80_00, // input device controller, other
        3 => 0x07_80_00,  // console: communication controller, other
        2 => 0x01_80_00,  // block: mass storage controller, other
        1 => 0x02_00_00,  // network: Ethernet controller
        _ => 0xff_00_00,
    }
}

#[cfg(test)]
mod tests;
