//! QXL interrupts (docs/qxl.md §6): cause bits in `int_pending` (RAM header,
//! set by the device, cleared by the guest with an atomic exchange), enabled
//! by `int_mask`; the INTx line is `(int_pending & int_mask) != 0`, evaluated
//! whenever the device raises a cause and when the guest writes
//! `QXL_IO_UPDATE_IRQ`.
//!
//! Both the display worker and vCPU threads use it; evaluating and setting
//! the level happen under one lock so the last evaluation always wins.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::defs::ram;
use super::memory::{Backing, BarMemory};
use crate::bus::lock;
use crate::interrupt::LevelInterrupt;

pub struct IrqLine {
    memory: Arc<BarMemory>,
    header: u64,
    line: Arc<dyn LevelInterrupt>,
    /// Serialises evaluate-and-set; holds the level last set.
    level: Mutex<bool>,
    /// PCI command register bit 10 (INTx disable).
    disabled: AtomicBool,
    raised: AtomicU64,
}

impl IrqLine {
    pub fn new(memory: Arc<BarMemory>, header: u64, line: Arc<dyn LevelInterrupt>) -> Self {
        IrqLine {
            memory,
            header,
            line,
            level: Mutex::new(false),
            disabled: AtomicBool::new(false),
            raised: AtomicU64::new(0),
        }
    }

    /// Sets cause bits; updates the line if any of them is new.
    pub fn raise(&self, bits: u32) {
        let old = self
            .memory
            .fetch_or_ram_u32(self.header + ram::INT_PENDING, bits);
        self.raised.fetch_add(1, Ordering::Relaxed);
        if old & bits != bits {
            self.update();
        }
    }

    /// Re-evaluates the line from `int_pending` and `int_mask`.
    pub fn update(&self) {
        let mut level = lock(&self.level);
        let pending = self
            .memory
            .u32_at(Backing::Ram, self.header + ram::INT_PENDING);
        let mask = self
            .memory
            .u32_at(Backing::Ram, self.header + ram::INT_MASK);
        let asserted = pending & mask != 0 && !self.disabled.load(Ordering::SeqCst);
        if asserted != *level {
            *level = asserted;
            self.line.set_level(asserted);
        }
    }

    /// Lowers the line (reset) regardless of memory.
    pub fn deassert(&self) {
        let mut level = lock(&self.level);
        if *level {
            *level = false;
            self.line.set_level(false);
        }
    }

    pub fn set_disabled(&self, disabled: bool) {
        if self.disabled.swap(disabled, Ordering::SeqCst) != disabled {
            self.update();
        }
    }

    pub fn level(&self) -> bool {
        *lock(&self.level)
    }

    /// How many causes were raised so far.
    pub fn raised(&self) -> u64 {
        self.raised.load(Ordering::Relaxed)
    }
}
