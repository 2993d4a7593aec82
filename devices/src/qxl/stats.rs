//! Counters of what the QXL device did, for benchmarks and debugging
//! (`saffron` prints them with its stats dump).

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters; read them with [`QxlStats::snapshot`].
#[derive(Debug, Default)]
pub struct QxlStats {
    /// Port writes from the guest (all ports).
    pub port_writes: AtomicU64,
    /// `QXL_IO_NOTIFY_CMD` / `QXL_IO_NOTIFY_CURSOR` writes.
    pub notifies: AtomicU64,
    /// Commands taken from the command and cursor rings.
    pub commands: AtomicU64,
    pub drawables: AtomicU64,
    pub cursor_commands: AtomicU64,
    /// Commands handed back through the release ring.
    pub releases: AtomicU64,
    /// Interrupt causes raised.
    pub interrupts: AtomicU64,
    /// Commands refused as malformed, and guest-bug latches.
    pub bad_commands: AtomicU64,
    pub guest_bugs: AtomicU64,
    /// Drawables dropped without an error (bounding box outside the surface,
    /// as spice-server does).
    pub dropped_drawables: AtomicU64,
    /// Destination pixels the renderer drew.
    pub pixels_drawn: AtomicU64,
    /// Bytes of surface data copied between guest memory and host buffers
    /// beyond drawing itself: primary contents loaded on create (KEEP_DATA),
    /// written back on UPDATE_AREA / destroy, off-screen draw buffers.
    pub surface_copy_bytes: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QxlStatsSnapshot {
    pub port_writes: u64,
    pub notifies: u64,
    pub commands: u64,
    pub drawables: u64,
    pub cursor_commands: u64,
    pub releases: u64,
    pub interrupts: u64,
    pub bad_commands: u64,
    pub guest_bugs: u64,
    pub dropped_drawables: u64,
    pub pixels_drawn: u64,
    pub surface_copy_bytes: u64,
}

impl QxlStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> QxlStatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QxlStatsSnapshot {
            port_writes: g(&self.port_writes),
            notifies: g(&self.notifies),
            commands: g(&self.commands),
            drawables: g(&self.drawables),
            cursor_commands: g(&self.cursor_commands),
            releases: g(&self.releases),
            interrupts: g(&self.interrupts),
            bad_commands: g(&self.bad_commands),
            guest_bugs: g(&self.guest_bugs),
            dropped_drawables: g(&self.dropped_drawables),
            pixels_drawn: g(&self.pixels_drawn),
            surface_copy_bytes: g(&self.surface_copy_bytes),
        }
    }
}

impl QxlStatsSnapshot {
    /// `key=value` pairs on one line.
    pub fn to_line(&self) -> String {
        format!(
            "port_writes={} notifies={} commands={} drawables={} cursor_commands={} releases={} \
             interrupts={} bad_commands={} guest_bugs={} dropped_drawables={} pixels_drawn={} \
             surface_copy_bytes={}",
            self.port_writes,
            self.notifies,
            self.commands,
            self.drawables,
            self.cursor_commands,
            self.releases,
            self.interrupts,
            self.bad_commands,
            self.guest_bugs,
            self.dropped_drawables,
            self.pixels_drawn,
            self.surface_copy_bytes
        )
    }
}
