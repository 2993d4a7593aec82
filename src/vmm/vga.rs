//! The VGA fallback display in the machine: its legacy window at 0xA0000
//! as a KVM slot with dirty logging, its ports on the I/O bus, the
//! `screen_info` that tells a directly booted kernel about it, and the
//! refresh thread that turns dirty pages into display damage.
//!
//! Its linear framebuffer is, as in QEMU's qxl-vga, the start of QXL's
//! BAR 0 ([`Framebuffer::QxlBar0`]: the `vgamem` area, dirty-logged through
//! the BAR's slot, drawn into QXL's display and handed over with QXL's
//! [`ScanoutSwitch`]). Without QXL (`--display none --vga ...`) it is a
//! standalone 16 MiB region at [`layout::VGA_STANDALONE_FRAMEBUFFER`] (the
//! top of the 32-bit PCI window, kept out of BAR assignment) with a display
//! of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::bus::{lock, Bus};
use devices::display::Display;
use devices::display::ScanoutSwitch;
use devices::memory::DeviceMemory;
use devices::qxl::VgaLink;
use devices::thread_layer::ThreadLayer;
use devices::vga::{self, Dirty, RefreshReport, ScanoutMemory, Vga, VgaMemory, VgaPorts};
use firmware::layout;
use kvm_ioctls::VmFd;
use linux_loader::loader::bootparam::screen_info;

use super::memory::{MemorySlots, SlotMapping};
use super::VmError;

/// Bytes of the standalone framebuffer VBE modes may use (the size of QXL's
/// default "vgamem"; with QXL, its `vgamem`).
pub const VBE_SIZE: usize = 16 << 20;
/// Refreshes per second. Each refresh re-arms KVM's write protection on
/// the pages written since the last one, so the guest takes one extra fault
/// per page it writes per refresh interval: 30 Hz halves that cost against
/// 60 Hz (see the numbers in tests/e2e/test_vga.py's output).
pub const REFRESH_HZ: u32 = 30;

/// What the VGA shows when the kernel starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VgaMode {
    /// 80x25 text (vgacon).
    Text,
    /// A 32-bit linear framebuffer (vesafb / efifb).
    Linear { width: u16, height: u16 },
}

/// How the refresher learns which pages the guest wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirtyTracking {
    /// KVM's dirty page log: no work while nothing changes, but the guest
    /// takes a write fault on the first write to each page after each refresh.
    #[default]
    Kvm,
    /// Comparing the shown memory with a copy of it: no cost to the guest,
    /// the refresh thread reads the visible memory every time.
    Compare,
}

/// Where a memory's dirty page bitmap comes from.
pub trait DirtyLogSource: Send + Sync {
    /// Pages written since the last call (bit `i` = page `i`); `None` when
    /// unknown. `visible` is the part of the memory shown now: sources that
    /// must look at memory only look there.
    fn fetch(&self, visible: std::ops::Range<usize>) -> Option<Vec<u64>>;
}

/// Finds written pages by comparing memory with a copy kept from the last
/// fetch, page by page, inside the visible range.
pub struct CompareDirtyLog {
    memory: DeviceMemory,
    shadow: Mutex<Vec<u8>>,
}

impl CompareDirtyLog {
    /// Watches the first `size` bytes of `memory` (at most all of it).
    pub fn new(memory: DeviceMemory, size: usize) -> Self {
        let shadow = Mutex::new(vec![0; size.min(memory.size())]);
        CompareDirtyLog { memory, shadow }
    }
}

impl DirtyLogSource for CompareDirtyLog {
    fn fetch(&self, visible: std::ops::Range<usize>) -> Option<Vec<u64>> {
        use vm_memory::VolatileMemory;
        const PAGE: usize = vga::DIRTY_PAGE_SIZE;
        let mut shadow = lock(&self.shadow);
        let size = shadow.len();
        let mut bitmap = vec![0u64; size.div_ceil(PAGE * 64)];
        let mut page = vec![0u8; PAGE];
        let first = visible.start.min(size) / PAGE;
        let end = visible.end.min(size).div_ceil(PAGE);
        for index in first..end {
            let at = index * PAGE;
            let len = PAGE.min(size - at);
            let Ok(slice) = self.memory.get_slice(at, len) else {
                return None;
            };
            slice.copy_to(&mut page[..len]);
            if page[..len] != shadow[at..at + len] {
                shadow[at..at + len].copy_from_slice(&page[..len]);
                bitmap[index / 64] |= 1 << (index % 64);
            }
        }
        Some(bitmap)
    }
}

/// A KVM memory slot mapped with dirty logging.
pub struct SlotDirtyLog {
    pub vm: Arc<VmFd>,
    pub slots: Arc<MemorySlots>,
    pub slot: u32,
    pub size: u64,
}

impl DirtyLogSource for SlotDirtyLog {
    fn fetch(&self, _visible: std::ops::Range<usize>) -> Option<Vec<u64>> {
        match self.slots.dirty_log(&self.vm, self.slot, self.size) {
            Ok(bitmap) => Some(bitmap),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }
}

/// A memory-backed PCI BAR mapped with `log_dirty` (QXL's BAR 0, whose
/// start is the VBE framebuffer). While the BAR is not
/// mapped the log is unknown (`None`: the VGA redraws everything). When the
/// guest moves the BAR, KVM starts a fresh log for the new slot, so pages
/// written between the last fetch and the move are not reported; BARs only
/// move during PCI enumeration, before anything draws there.
pub struct BarDirtyLog {
    pub mapper: Arc<super::pci_mapper::KvmBarMapper>,
    pub pci_slot: u8,
    pub bar: usize,
}

impl DirtyLogSource for BarDirtyLog {
    fn fetch(&self, _visible: std::ops::Range<usize>) -> Option<Vec<u64>> {
        match self.mapper.dirty_log(self.pci_slot, self.bar)? {
            Ok(bitmap) => Some(bitmap),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }
}

/// Counters of the refresh loop (for `status` and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Refreshes run.
    pub refreshes: u64,
    /// Refreshes that changed the picture.
    pub frames: u64,
    /// Refreshes that redrew everything (mode changes, scrolling text).
    pub full_frames: u64,
    /// Visible dirty pages reported, in total and at most in one refresh.
    pub dirty_pages: u64,
    pub max_dirty_pages: u32,
    pub rects: u64,
    pub pixels: u64,
    /// Time spent in refreshes (dirty log included), in total and at most once.
    pub busy: Duration,
    pub max_busy: Duration,
    /// Time spent in refreshes that found nothing to do.
    pub idle_busy: Duration,
}

/// Runs refreshes of the VGA: fetches the dirty log of the memory its mode
/// shows and hands it over. Called by its thread and by screendumps.
pub struct VgaRefresher {
    vga: Arc<Mutex<Vga>>,
    window_log: Box<dyn DirtyLogSource>,
    framebuffer_log: Box<dyn DirtyLogSource>,
    /// Also serialises refreshes, so no dirty log is fetched twice at once.
    stats: Mutex<RefreshStats>,
}

impl VgaRefresher {
    pub fn refresh(&self) -> RefreshReport {
        let mut stats = lock(&self.stats);
        let started = Instant::now();
        let region = lock(&self.vga).scanned_region();
        let memory = region.as_ref().map(|(memory, _)| *memory);
        let bitmap = match region {
            Some((ScanoutMemory::Window, visible)) => self.window_log.fetch(visible),
            Some((ScanoutMemory::Framebuffer, visible)) => self.framebuffer_log.fetch(visible),
            None => None,
        };
        let dirty = match (memory, &bitmap) {
            (None, _) => Dirty::Clean,
            (Some(_), Some(bitmap)) => Dirty::Pages(bitmap),
            (Some(_), None) => Dirty::All,
        };
        let report = lock(&self.vga).refresh(dirty, Instant::now());
        let busy = started.elapsed();
        stats.refreshes += 1;
        if report.rects > 0 {
            stats.frames += 1;
        } else {
            stats.idle_busy += busy;
        }
        stats.full_frames += u64::from(report.full);
        stats.dirty_pages += u64::from(report.dirty_pages);
        stats.max_dirty_pages = stats.max_dirty_pages.max(report.dirty_pages);
        stats.rects += u64::from(report.rects);
        stats.pixels += report.pixels;
        stats.busy += busy;
        stats.max_busy = stats.max_busy.max(busy);
        report
    }

    pub fn stats(&self) -> RefreshStats {
        *lock(&self.stats)
    }
}

/// The VGA as attached to a machine.
pub struct VgaAttachment {
    /// The display it scans out to (QXL's, when it has QXL's BAR 0).
    pub display: Arc<Display>,
    /// Who shows head 0 of that display.
    pub switch: Arc<ScanoutSwitch>,
    pub refresher: Arc<VgaRefresher>,
    /// For the boot parameters.
    pub screen: screen_info,
}

/// Where the VGA's linear framebuffer is.
pub enum Framebuffer {
    /// QXL's BAR 0, assigned at `base`; its dirty log (with `kvm` tracking,
    /// BAR 0 must have been set to log dirty pages before BAR assignment).
    QxlBar0 {
        link: VgaLink,
        base: u64,
        log: BarDirtyLog,
    },
    /// A framebuffer of its own at [`layout::VGA_STANDALONE_FRAMEBUFFER`].
    Standalone,
}

fn device_err(e: impl Into<super::Cause>) -> VmError {
    VmError::Device {
        what: "the VGA",
        source: e.into(),
    }
}

/// Creates the VGA in `mode` on `framebuffer`, maps its memory and ports.
pub fn attach(
    vm: &Arc<VmFd>,
    slots: &Arc<MemorySlots>,
    io_bus: &Bus,
    mode: VgaMode,
    tracking: DirtyTracking,
    framebuffer: Framebuffer,
) -> Result<VgaAttachment, VmError> {
    let map = |guest_addr: u64,
               memory: &DeviceMemory|
     -> Result<Box<dyn DirtyLogSource>, VmError> {
        let size = memory.size() as u64;
        let slot = slots.map(
            vm,
            SlotMapping {
                guest_addr,
                size,
                host_addr: memory.as_ptr() as u64,
                read_only: false,
                log_dirty: tracking == DirtyTracking::Kvm,
            },
        )?;
        Ok(match tracking {
            DirtyTracking::Kvm => Box::new(SlotDirtyLog {
                vm: vm.clone(),
                slots: slots.clone(),
                slot,
                size,
            }),
            DirtyTracking::Compare => Box::new(CompareDirtyLog::new(memory.clone(), memory.size())),
        })
    };

    let window = devices::memory::allocate(vga::WINDOW_SIZE).map_err(device_err)?;
    let (memory, base, display, switch, framebuffer_log): (_, _, _, _, Box<dyn DirtyLogSource>) =
        match framebuffer {
            Framebuffer::QxlBar0 { link, base, log } => {
                if link.framebuffer_offset != 0 {
                    return Err(device_err("QXL's VGA memory must start at BAR 0's start"));
                }
                let vbe_size = usize::try_from(link.framebuffer_size).map_err(device_err)?;
                let log: Box<dyn DirtyLogSource> = match tracking {
                    DirtyTracking::Kvm => Box::new(log),
                    DirtyTracking::Compare => {
                        Box::new(CompareDirtyLog::new(link.framebuffer.clone(), vbe_size))
                    }
                };
                let memory = VgaMemory {
                    window: window.clone(),
                    framebuffer: link.framebuffer,
                    vbe_size,
                };
                (memory, base, link.display, link.switch, log)
            }
            Framebuffer::Standalone => {
                let base = layout::VGA_STANDALONE_FRAMEBUFFER.start;
                let framebuffer = devices::memory::allocate(VBE_SIZE).map_err(device_err)?;
                let log = map(base, &framebuffer)?;
                let memory = VgaMemory {
                    window: window.clone(),
                    framebuffer,
                    vbe_size: VBE_SIZE,
                };
                (memory, base, Display::new(), ScanoutSwitch::new(), log)
            }
        };
    let vbe_size = memory.vbe_size;
    let mut device = Vga::new(memory, display.clone(), switch.clone()).map_err(device_err)?;
    let screen = match mode {
        VgaMode::Text => {
            device.preset_text_mode();
            text_screen_info()
        }
        VgaMode::Linear { width, height } => {
            let vbe = device
                .preset_linear_framebuffer(width, height)
                .map_err(device_err)?;
            linear_screen_info(&vbe, base, vbe_size)
        }
    };
    let window_log = map(vga::WINDOW_BASE, &window)?;

    let device = Arc::new(Mutex::new(device));
    for (base, len) in [
        (vga::VGA_PORTS_BASE, vga::VGA_PORTS_LEN),
        (vga::VBE_PORTS_BASE, vga::VBE_PORTS_LEN),
    ] {
        let ports = VgaPorts {
            vga: device.clone(),
            switch: switch.clone(),
            base,
        };
        io_bus
            .insert(u64::from(base), u64::from(len), Arc::new(ports))
            .map_err(device_err)?;
    }
    let refresher = Arc::new(VgaRefresher {
        vga: device,
        window_log,
        framebuffer_log,
        stats: Mutex::new(RefreshStats::default()),
    });
    // The first picture, before the guest runs.
    refresher.refresh();
    Ok(VgaAttachment {
        display,
        switch,
        refresher,
        screen,
    })
}

/// The refresh thread sleeps at least this many times as long as a refresh
/// took, so it never uses more than a quarter of a CPU (a slow host, or
/// `compare` tracking of a large framebuffer, lowers the frame rate instead).
const MAX_BUSY_SHARE: u32 = 4;

/// When the next refresh starts, given when this one started and how long it took.
fn next_refresh(started: Instant, busy: Duration, period: Duration) -> Instant {
    let pause = (busy * (MAX_BUSY_SHARE - 1)).max(period.saturating_sub(busy));
    started + busy + pause
}

/// Refreshes at [`REFRESH_HZ`] (or slower, see [`MAX_BUSY_SHARE`]) until the process ends.
pub fn spawn_refresh_thread(refresher: Arc<VgaRefresher>) -> std::io::Result<()> {
    let period = Duration::from_secs(1) / REFRESH_HZ;
    std::thread::Builder::new()
        .name("vga-refresh".into())
        .spawn(move || {
            let mut layer = ThreadLayer::default();
            loop {
                layer.before_work();
                let started = Instant::now();
                refresher.refresh();
                let next = next_refresh(started, started.elapsed(), period);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
        .map(|_| ())
}

/// `screen_info` for text mode 3: what vgacon needs.
pub fn text_screen_info() -> screen_info {
    screen_info {
        orig_video_mode: 3,
        orig_video_cols: 80,
        orig_video_lines: 25,
        orig_video_ega_bx: 0x0003,
        orig_video_isVGA: 1,
        orig_video_points: 16,
        ..Default::default()
    }
}

/// `VIDEO_TYPE_VLFB`: a VESA linear framebuffer (vesafb).
const VIDEO_TYPE_VLFB: u8 = 0x23;

/// `screen_info` for a 32-bit linear framebuffer at `base` (below 4 GiB),
/// matching the VBE mode the VGA was preset to.
pub fn linear_screen_info(mode: &vga::VbeMode, base: u64, vbe_size: usize) -> screen_info {
    screen_info {
        orig_video_isVGA: VIDEO_TYPE_VLFB,
        lfb_width: mode.width as u16,
        lfb_height: mode.height as u16,
        lfb_depth: 32,
        lfb_base: base as u32,
        // VLFB counts in 64 KiB units.
        lfb_size: (vbe_size >> 16) as u32,
        lfb_linelength: mode.line_length as u16,
        red_size: 8,
        red_pos: 16,
        green_size: 8,
        green_pos: 8,
        blue_size: 8,
        blue_pos: 0,
        rsvd_size: 8,
        rsvd_pos: 24,
        pages: 1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_screen_info_describes_the_mode() {
        let mode = vga::VbeMode {
            width: 1024,
            height: 768,
            bpp: 32,
            line_length: 4096,
            start: 0,
        };
        let info = linear_screen_info(&mode, 0xdf00_0000, VBE_SIZE);
        let bytes: [u8; 64] = screen_bytes(&info);
        assert_eq!(bytes[0x0f], 0x23, "orig_video_isVGA = VIDEO_TYPE_VLFB");
        assert_eq!(u16::from_le_bytes([bytes[0x12], bytes[0x13]]), 1024);
        assert_eq!(u16::from_le_bytes([bytes[0x14], bytes[0x15]]), 768);
        assert_eq!(u16::from_le_bytes([bytes[0x16], bytes[0x17]]), 32);
        assert_eq!(
            u32::from_le_bytes(bytes[0x18..0x1c].try_into().unwrap()),
            0xdf00_0000
        );
        assert_eq!(
            u32::from_le_bytes(bytes[0x1c..0x20].try_into().unwrap()),
            256
        );
        assert_eq!(u16::from_le_bytes([bytes[0x24], bytes[0x25]]), 4096);
        assert_eq!(&bytes[0x26..0x2e], &[8, 16, 8, 8, 8, 0, 8, 24]);
    }

    #[test]
    fn text_screen_info_is_vga_mode_3() {
        let bytes = screen_bytes(&text_screen_info());
        assert_eq!(
            (bytes[0x06], bytes[0x07], bytes[0x0e], bytes[0x0f]),
            (3, 80, 25, 1)
        );
        assert_eq!(bytes[0x10], 16);
    }

    /// A dirty log that reports what the test says and counts fetches.
    struct FakeLog {
        pages: Mutex<Option<Vec<u64>>>,
        fetches: Arc<std::sync::atomic::AtomicU32>,
    }

    impl DirtyLogSource for FakeLog {
        fn fetch(&self, _visible: std::ops::Range<usize>) -> Option<Vec<u64>> {
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            lock(&self.pages).clone()
        }
    }

    #[test]
    fn refresher_fetches_the_log_of_the_scanned_memory_only() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let display = Display::new();
        let switch = ScanoutSwitch::new();
        let framebuffer = devices::memory::allocate(VBE_SIZE).unwrap();
        let mut device = Vga::new(
            VgaMemory {
                window: devices::memory::allocate(vga::WINDOW_SIZE).unwrap(),
                framebuffer: framebuffer.clone(),
                vbe_size: VBE_SIZE,
            },
            display.clone(),
            switch.clone(),
        )
        .unwrap();
        device.preset_linear_framebuffer(1024, 768).unwrap();
        let window_fetches = Arc::new(AtomicU32::new(0));
        let fb_fetches = Arc::new(AtomicU32::new(0));
        let mut row_5 = vec![0u64; VBE_SIZE / 4096 / 64];
        row_5[0] = 1 << 5;
        let refresher = VgaRefresher {
            vga: Arc::new(Mutex::new(device)),
            window_log: Box::new(FakeLog {
                pages: Mutex::new(Some(vec![u64::MAX])),
                fetches: window_fetches.clone(),
            }),
            framebuffer_log: Box::new(FakeLog {
                pages: Mutex::new(Some(row_5)),
                fetches: fb_fetches.clone(),
            }),
            stats: Mutex::new(RefreshStats::default()),
        };
        let first = refresher.refresh();
        assert!(first.full);
        let second = refresher.refresh();
        assert_eq!(
            (second.dirty_pages, second.rects, second.pixels),
            (1, 1, 1024)
        );
        assert_eq!(fb_fetches.load(Ordering::SeqCst), 2);
        assert_eq!(window_fetches.load(Ordering::SeqCst), 0);
        // While a native device owns the screen no log is fetched at all.
        switch.enter_native();
        assert_eq!(refresher.refresh(), RefreshReport::default());
        assert_eq!(fb_fetches.load(Ordering::SeqCst), 2);
        let stats = refresher.stats();
        assert_eq!(
            (stats.refreshes, stats.frames, stats.full_frames),
            (3, 2, 1)
        );
        assert_eq!(stats.dirty_pages, 1);
    }

    #[test]
    fn refresh_thread_paces_itself() {
        let t0 = Instant::now();
        let period = Duration::from_millis(33);
        let ms = Duration::from_millis;
        assert_eq!(
            next_refresh(t0, ms(1), period),
            t0 + period,
            "fast: full rate"
        );
        assert_eq!(
            next_refresh(t0, ms(20), period),
            t0 + ms(80),
            "slow: 25 % busy"
        );
        assert_eq!(next_refresh(t0, ms(100), period), t0 + ms(400));
    }

    #[test]
    fn compare_log_reports_changed_visible_pages() {
        use vm_memory::{Bytes, VolatileMemory};
        let memory = devices::memory::allocate(64 * 4096).unwrap();
        let log = CompareDirtyLog::new(memory.clone(), memory.size());
        assert_eq!(
            log.fetch(0..64 * 4096),
            Some(vec![0]),
            "zeroed memory: no change"
        );
        let write = |at: usize| memory.as_volatile_slice().write_slice(&[1], at).unwrap();
        write(3 * 4096 + 17);
        write(40 * 4096);
        write(63 * 4096 + 4095);
        // Page 63 is not visible: not looked at, so still reported later.
        assert_eq!(log.fetch(0..63 * 4096), Some(vec![(1 << 3) | (1 << 40)]));
        assert_eq!(log.fetch(0..64 * 4096), Some(vec![1 << 63]));
        assert_eq!(log.fetch(0..64 * 4096), Some(vec![0]));
        // Ranges past the end are clipped.
        write(5);
        assert_eq!(log.fetch(0..usize::MAX), Some(vec![1]));
    }

    /// The 64 bytes of the structure, as they land at the start of the zero
    /// page (through `boot_params`, which is `ByteValued`).
    fn screen_bytes(info: &screen_info) -> [u8; 64] {
        use linux_loader::loader::bootparam::boot_params;
        use vm_memory::ByteValued;
        let params = boot_params {
            screen_info: *info,
            ..Default::default()
        };
        let mut out = [0u8; 64];
        out.copy_from_slice(&params.as_slice()[..64]);
        out
    }
}
