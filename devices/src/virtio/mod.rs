//! Virtio 1.x devices and their PCI transport.
//!
//! A device ([`VirtioDevice`]) says what it is (type, queues, features,
//! configuration space) and serves its queues; the transport
//! ([`pci::VirtioPciDevice`]) does the rest: feature negotiation, the
//! status state machine, queue set-up, notifications and interrupts
//! (MSI-X, or INTx when the driver does not enable MSI-X). Split
//! virtqueues come from the `virtio-queue` crate; devices reach them
//! through [`Queues`], which only hands out chains of live queues and
//! reports what a misbehaving driver does without flooding the log.
//!
//! Devices: [`input`] (virtio-input: the absolute tablet), [`block`]
//! (virtio-blk: disks), [`console`] (virtio-serial: named ports such as
//! the SPICE agent's), [`net`] (virtio-net: the network card).

pub mod block;
pub mod console;
pub mod input;
pub mod msix;
pub mod net;
pub mod pci;
/// A driver for tests and fuzz targets (feature `test-driver`).
#[cfg(any(test, feature = "test-driver"))]
pub mod test_driver;

use std::num::Wrapping;
use std::sync::atomic::Ordering;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};

/// Guest RAM as devices see it.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// A modern (virtio 1.x) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Descriptors may point at tables of descriptors.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// Used/available event index notification suppression.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// What a virtio device implements; the transport calls it with its lock
/// held.
pub trait VirtioDevice: Send {
    /// The virtio device ID (18 = input).
    fn device_type(&self) -> u16;
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// The largest size of each queue; the number of queues is its length.
    fn queue_max_sizes(&self) -> &[u16];
    /// Device-specific feature bits (the transport adds VERSION_1 and the
    /// ring features).
    fn device_features(&self) -> u64 {
        0
    }
    /// Bytes of device configuration space.
    fn config_size(&self) -> usize;
    /// Reads device configuration (`offset + data.len() <= config_size()`).
    fn read_config(&self, offset: usize, data: &mut [u8]);
    /// Writes device configuration (same bounds).
    fn write_config(&mut self, offset: usize, data: &[u8]);
    /// The driver set DRIVER_OK: the queues it enabled are live.
    fn activate(&mut self, _queues: &mut Queues<'_>) {}
    /// The driver made buffers available in queue `index`.
    fn queue_notify(&mut self, index: u16, queues: &mut Queues<'_>);
    /// The driver reset the device: forget all negotiated state.
    fn reset(&mut self);
    /// Queues whose kicks only wake the device's own thread, with the
    /// event to signal: the VMM may have the hypervisor signal it instead
    /// of exiting to the transport (KVM ioeventfd). Such a kick then
    /// skips [`queue_notify`](VirtioDevice::queue_notify).
    fn notify_events(&self) -> Vec<(u16, std::sync::Arc<vmm_sys_util::eventfd::EventFd>)> {
        Vec::new()
    }
}

/// How a device's used-buffer notifications reach the driver.
pub trait QueueInterrupt {
    fn signal_queue(&mut self, queue: u16);
}

/// Counts and logs what a guest driver does wrong: the first few and then
/// every power of two, so a hostile driver cannot flood the log.
#[derive(Debug, Default)]
pub struct GuestErrors {
    count: u64,
}

impl GuestErrors {
    pub fn report(&mut self, device: &str, what: std::fmt::Arguments<'_>) {
        self.count += 1;
        if self.count <= 8 || self.count.is_power_of_two() {
            tracing::warn!("{device}: guest driver error #{}: {what}", self.count);
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A device's view of its queues while the transport lends them.
pub struct Queues<'a> {
    queues: &'a mut [Queue],
    memory: &'a GuestMemory,
    /// The driver set DRIVER_OK (and the device does not need a reset).
    live: bool,
    interrupt: &'a mut dyn QueueInterrupt,
    errors: &'a mut GuestErrors,
    name: &'a str,
    /// Set when the device cannot go on: the transport asks for a reset.
    failed: bool,
    /// Queues (bit per index) whose driver must hear of chains returned by
    /// [`add_used_together`](Queues::add_used_together) at the next notify.
    notify_pending: u64,
}

impl<'a> Queues<'a> {
    pub fn new(
        queues: &'a mut [Queue],
        memory: &'a GuestMemory,
        live: bool,
        interrupt: &'a mut dyn QueueInterrupt,
        errors: &'a mut GuestErrors,
        name: &'a str,
    ) -> Self {
        Queues {
            queues,
            memory,
            live,
            interrupt,
            errors,
            name,
            failed: false,
            notify_pending: 0,
        }
    }

    pub fn memory(&self) -> &'a GuestMemory {
        self.memory
    }

    /// The size the driver gave queue `index` (0 for no such queue).
    pub fn size(&self, index: u16) -> u16 {
        self.queues.get(usize::from(index)).map_or(0, |q| q.size())
    }

    /// Whether queue `index` is set up and the driver is running.
    pub fn is_live(&self, index: u16) -> bool {
        self.live
            && self
                .queues
                .get(usize::from(index))
                .is_some_and(|q| q.ready())
    }

    /// The next available descriptor chain of a live queue.
    pub fn pop(&mut self, index: u16) -> Option<DescriptorChain<&'a GuestMemory>> {
        if !self.is_live(index) {
            return None;
        }
        let memory = self.memory;
        let queue = &mut self.queues[usize::from(index)];
        let chain = queue.pop_descriptor_chain(memory);
        if chain.is_none() {
            // Nothing popped: fine when the driver has posted nothing new (or
            // posts it just now), but an available index more than a queue
            // ahead of ours, or an unreadable ring, means it is broken. The
            // device gives up (NEEDS_RESET) rather than look again forever.
            let claimed = queue
                .avail_idx(memory, std::sync::atomic::Ordering::Acquire)
                .map(|idx| idx.0)
                .ok();
            let next = queue.next_avail();
            let bogus = claimed.is_none_or(|idx| idx.wrapping_sub(next) > queue.size());
            if bogus {
                self.guest_error(format_args!(
                    "queue {index}: available index {claimed:?} is invalid (next {next})"
                ));
                self.failed = true;
            }
        }
        chain
    }

    /// The next available chain; when there is none, asks the driver to
    /// kick queue `index` for the next one (with EVENT_IDX a driver kicks
    /// only when the device asked) and looks once more.
    pub fn pop_or_arm(&mut self, index: u16) -> Option<DescriptorChain<&'a GuestMemory>> {
        if let Some(chain) = self.pop(index) {
            return Some(chain);
        }
        if self.failed || !self.enable_notification(index) {
            return None;
        }
        self.pop(index)
    }

    /// Asks the driver not to kick queue `index` (a device that is about to
    /// look at the queue anyway).
    pub fn disable_notification(&mut self, index: u16) {
        if !self.is_live(index) {
            return;
        }
        let memory = self.memory;
        if let Err(e) = self.queues[usize::from(index)].disable_notification(memory) {
            self.guest_error(format_args!("queue {index}: used ring unreachable: {e}"));
            self.failed = true;
        }
    }

    /// Asks the driver to kick queue `index` again for new buffers; whether
    /// buffers arrived meanwhile (then the caller must look again).
    pub fn enable_notification(&mut self, index: u16) -> bool {
        if !self.is_live(index) {
            return false;
        }
        let memory = self.memory;
        match self.queues[usize::from(index)].enable_notification(memory) {
            Ok(more) => more,
            Err(e) => {
                self.guest_error(format_args!("queue {index}: rings unreachable: {e}"));
                self.failed = true;
                false
            }
        }
    }

    /// Gives back the chain popped last from queue `index`: the next `pop`
    /// returns it again (a device that found it could not use it yet).
    pub fn unpop(&mut self, index: u16) {
        if let Some(queue) = self.queues.get_mut(usize::from(index)) {
            queue.go_to_previous_position();
        }
    }

    /// Returns a chain to the driver with `len` bytes written into it.
    pub fn add_used(&mut self, index: u16, head: u16, len: u32) {
        let memory = self.memory;
        let Some(queue) = self.queues.get_mut(usize::from(index)) else {
            return;
        };
        if let Err(e) = queue.add_used(memory, head, len) {
            self.guest_error(format_args!(
                "queue {index}: cannot return chain {head}: {e}"
            ));
            self.failed = true;
        }
    }

    /// Returns several chains to the driver at once: it sees all of them
    /// used or none (one index update). A frame spread over several receive
    /// buffers must arrive whole: Linux's virtio-net driver drops a frame
    /// whose later buffers it does not find used yet
    /// (docs/virtio-net.md §4). Queues past the 64th take them one by one.
    pub fn add_used_together(&mut self, index: u16, used: &[(u16, u32)]) {
        if used.len() == 1 || index >= 64 {
            return used
                .iter()
                .for_each(|&(head, len)| self.add_used(index, head, len));
        }
        let memory = self.memory;
        let Some(queue) = self.queues.get_mut(usize::from(index)) else {
            return;
        };
        // The queue counts chains for its own notification decision only
        // when they go through its add_used: settle what it counted so far.
        let earlier = queue.needs_notification(memory);
        let result = earlier
            .map_err(|_| "used ring unreachable")
            .and_then(|earlier| {
                let (start, end) = publish_together(queue, memory, used)?;
                Ok(earlier || batch_crosses_used_event(queue, memory, start, end)?)
            });
        if result != Ok(false) {
            self.notify_pending |= 1 << index;
        }
        if let Err(e) = result {
            self.guest_error(format_args!("queue {index}: cannot return chains: {e}"));
            self.failed = true;
        }
    }

    /// Interrupts the driver if it wants to hear about used buffers.
    pub fn notify(&mut self, index: u16) {
        let memory = self.memory;
        let Some(queue) = self.queues.get_mut(usize::from(index)) else {
            return;
        };
        let bit = 1u64.checked_shl(u32::from(index)).unwrap_or(0);
        let pending = self.notify_pending & bit != 0;
        self.notify_pending &= !bit;
        match queue.needs_notification(memory) {
            Ok(need) if need || pending => self.interrupt.signal_queue(index),
            Ok(_) => {}
            Err(e) => {
                self.guest_error(format_args!("queue {index}: used ring unreachable: {e}"));
                self.failed = true;
            }
        }
    }

    /// Logs a guest driver error (rate-limited).
    pub fn guest_error(&mut self, what: std::fmt::Arguments<'_>) {
        self.errors.report(self.name, what);
    }

    /// Whether the device gave up (the transport then sets NEEDS_RESET).
    pub fn failed(&self) -> bool {
        self.failed
    }
}

/// Writes the used ring's element at position `at` (not yet published).
fn used_element(
    queue: &Queue,
    memory: &GuestMemory,
    at: Wrapping<u16>,
    head: u16,
    len: u32,
) -> Result<(), &'static str> {
    if head >= queue.size() {
        return Err("a chain index outside the queue");
    }
    // The ring: flags and index (4 bytes), then 8-byte elements (id, len).
    let offset = 4 + 8 * u64::from(at.0 % queue.size());
    let addr = queue
        .used_ring()
        .checked_add(offset)
        .ok_or("used ring address")?;
    let mut element = [0u8; 8];
    element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
    element[4..].copy_from_slice(&len.to_le_bytes());
    memory
        .write_slice(&element, GuestAddress(addr))
        .map_err(|_| "used ring outside RAM")
}

/// Writes `used`'s entries after the queue's last, then moves the used
/// index past all of them in one store: (old index, new index).
fn publish_together(
    queue: &mut Queue,
    memory: &GuestMemory,
    used: &[(u16, u32)],
) -> Result<(Wrapping<u16>, Wrapping<u16>), &'static str> {
    if used.len() > usize::from(queue.size()) {
        return Err("more chains than the queue holds");
    }
    let start = Wrapping(queue.next_used());
    for (i, &(head, len)) in used.iter().enumerate() {
        used_element(queue, memory, start + Wrapping(i as u16), head, len)?;
    }
    let end = start + Wrapping(used.len() as u16);
    let at = queue
        .used_ring()
        .checked_add(2)
        .ok_or("used ring address")?;
    memory
        .store(end.0.to_le(), GuestAddress(at), Ordering::Release)
        .map_err(|_| "used index outside RAM")?;
    queue.set_next_used(end.0);
    Ok((start, end))
}

/// Whether the driver asked to hear of the entries from `start` to `end`
/// (always without EVENT_IDX): its `used_event` lies among them, the rule
/// the queue applies to chains added one by one.
fn batch_crosses_used_event(
    queue: &Queue,
    memory: &GuestMemory,
    start: Wrapping<u16>,
    end: Wrapping<u16>,
) -> Result<bool, &'static str> {
    if !queue.event_idx_enabled() {
        return Ok(true);
    }
    std::sync::atomic::fence(Ordering::SeqCst);
    // used_event follows the available ring's entries.
    let offset = 4 + 2 * u64::from(queue.size());
    let addr = queue
        .avail_ring()
        .checked_add(offset)
        .ok_or("available ring address")?;
    let event = memory
        .load::<u16>(GuestAddress(addr), Ordering::Acquire)
        .map_err(|_| "available ring outside RAM")?;
    let event = Wrapping(u16::from_le(event));
    Ok(end - event - Wrapping(1) < end - start)
}
