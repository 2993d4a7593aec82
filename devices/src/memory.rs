//! Host memory that a device shares with the guest (memory BARs).

use std::sync::Arc;

use vm_memory::MmapRegion;

/// Anonymous host memory a device owns and the VMM maps into the guest as a
/// KVM memory slot; the device reads it in place.
pub type DeviceMemory = Arc<MmapRegion>;

/// Allocates `size` bytes of zeroed, shared device memory.
pub fn allocate(size: usize) -> std::io::Result<DeviceMemory> {
    MmapRegion::new(size)
        .map(Arc::new)
        .map_err(|e| std::io::Error::other(e.to_string()))
}
