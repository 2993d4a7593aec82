//! What the control socket can do to a running VM: report its state, take a
//! screendump of display head 0, press the power button, reset or stop it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use devices::acpi_pm::AcpiPm;
use devices::bus::lock;
use devices::display::{Display, BYTES_PER_PIXEL};
use serde_json::{json, Value};

use super::exit::{ExitSignal, VmExit};
use super::vga::{VgaRefresher, REFRESH_HZ};

pub struct VmControl {
    pub started: Instant,
    pub cpus: u8,
    pub memory: u64,
    pub exit: Arc<ExitSignal>,
    pub power: Arc<Mutex<AcpiPm>>,
    pub display: Option<Arc<Display>>,
    pub refresher: Option<Arc<VgaRefresher>>,
}

impl crate::api::Machine for VmControl {
    fn status(&self) -> Value {
        let display = self.display.as_ref().and_then(|d| {
            let head = d.head(0)?;
            Some(json!({"width": head.width, "height": head.height}))
        });
        let vga = self.refresher.as_ref().map(|r| {
            let s = r.stats();
            json!({
                "refresh_hz": REFRESH_HZ,
                "refreshes": s.refreshes,
                "frames": s.frames,
                "full_frames": s.full_frames,
                "dirty_pages": s.dirty_pages,
                "max_dirty_pages": s.max_dirty_pages,
                "rects": s.rects,
                "pixels": s.pixels,
                "busy_us": s.busy.as_micros() as u64,
                "max_busy_us": s.max_busy.as_micros() as u64,
                "idle_busy_us": s.idle_busy.as_micros() as u64,
            })
        });
        json!({
            "state": "running",
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "vcpus": self.cpus,
            "memory_bytes": self.memory,
            "display": display,
            "vga": vga,
        })
    }

    fn screen(&self) -> Option<(u32, u32, Vec<u8>)> {
        if let Some(refresher) = &self.refresher {
            refresher.refresh();
        }
        let head = self.display.as_ref()?.head(0)?;
        let row = head.width as usize * BYTES_PER_PIXEL;
        let mut pixels = Vec::with_capacity(row * head.height as usize);
        for y in 0..head.height {
            pixels.extend_from_slice(&head.row(y)[..row]);
        }
        Some((head.width, head.height, pixels))
    }

    fn press_power_button(&self) {
        lock(&self.power).press_power_button();
    }

    fn reset(&self) {
        self.exit.request(VmExit::Reset);
    }

    fn quit(&self) {
        self.exit.request(VmExit::Stopped);
    }
}
