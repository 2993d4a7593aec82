//! The VMM core: builds a KVM virtual machine (memory, interrupt
//! controllers, vCPUs, platform devices, PCI), boots a kernel in it and
//! reports how it ended.

mod bios;
mod boot;
mod console;
mod control;
mod cpu;
mod disks;
pub mod display_server;
mod exit;
pub mod host;
pub mod input;
mod interrupts;
pub mod keys;
mod memory;
mod pci_mapper;
mod stats;
mod vcpu;
mod vga;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use devices::acpi_pm::{AcpiPm, GpeBlock, ResetControl, GPE_BLOCK_LEN, PM_BLOCK_LEN};
use devices::bus::{lock, Bus};
use devices::i8042::{self, I8042};
use devices::pci::{self, host_bridge::HostBridge, BarWindows, Ecam, PciRoot, SharedPciDevice};
use devices::qxl::{Qxl, QxlConfig};
use devices::serial::{self, Serial};
use firmware::layout::{self, MemoryLayout};
use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, GuestAddress};

pub use exit::VmExit;
pub use vga::{DirtyTracking, VgaMode, VBE_SIZE as VGA_FRAMEBUFFER_SIZE};

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialMode {
    /// Our stdin/stdout (raw mode when stdin is a terminal).
    Stdio,
    /// Output to a file; no input.
    File(PathBuf),
    /// Nowhere.
    None,
}

/// What the VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootSource {
    /// A Linux kernel, loaded directly (64-bit boot protocol, no BIOS).
    Kernel(LinuxKernel),
    /// A BIOS image (SeaBIOS), which boots the kernel when there is one
    /// (through QEMU's linuxboot option ROM), else from the disks.
    Firmware {
        bios: PathBuf,
        kernel: Option<LinuxKernel>,
    },
}

/// A Linux kernel with its initrd and command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxKernel {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub boot: BootSource,
    /// With a BIOS: show its boot menu prompt for this many milliseconds.
    pub boot_menu: Option<u16>,
    pub memory: u64,
    pub cpus: u8,
    pub serial: SerialMode,
    pub allow_pvm: bool,
    /// A VGA display, and what it shows at boot.
    pub vga: Option<VgaMode>,
    /// How the VGA finds the memory the guest changed.
    pub vga_dirty_tracking: DirtyTracking,
    /// Where to serve the control socket.
    pub api_socket: Option<PathBuf>,
    /// The built-in SPICE server (`--spice`); `None` opens no port.
    pub spice: Option<saffron::spice::SpiceConfig>,
    /// The QXL display device (`--display qxl`, the default; `--qxl` sizes).
    pub qxl: Option<QxlConfig>,
    /// Record the QXL device's commands to this file (`--record`).
    pub record: Option<PathBuf>,
    /// Disk images (`--disk`), the first is /dev/vda.
    pub disks: Vec<devices::block::DiskOptions>,
}

pub const MAX_CPUS: u8 = 8;
/// The PCI slot of the QXL display device.
pub const QXL_SLOT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Host(#[from] host::HostError),
    #[error("{0}")]
    Layout(#[from] firmware::layout::LayoutError),
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    #[error("KVM: cannot {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("cannot set up {what}: {reason}")]
    Device { what: &'static str, reason: String },
    #[error("cannot open the serial output file {path}: {source}")]
    SerialFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{requested} vCPUs requested, but this host's KVM allows at most {max}")]
    TooManyCpus { requested: u8, max: usize },
    #[error("{} of guest memory requested, but this host has only {} of RAM", human_size(*requested), human_size(*available))]
    NotEnoughHostMemory { requested: u64, available: u64 },
    #[error("cannot read {path}: {reason}")]
    Input { path: String, reason: String },
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    #[error(transparent)]
    Spice(#[from] saffron::spice::SpiceError),
    #[error(transparent)]
    Disk(#[from] devices::block::DiskError),
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

fn device_err(what: &'static str) -> impl Fn(String) -> VmError {
    move |reason| VmError::Device { what, reason }
}

/// `5368709120` → `5 GiB`, `1536 MiB` → `1.5 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The kernel and initrd, or the firmware, must be readable files of their
/// kind: say so before touching KVM.
fn check_inputs(config: &VmConfig) -> Result<(), VmError> {
    let (LinuxKernel { kernel, initrd, .. }, through_bios) = match &config.boot {
        BootSource::Kernel(linux) => (linux, false),
        BootSource::Firmware { bios, kernel } => {
            firmware::bios::BiosImage::load(bios).map_err(|e| VmError::Input {
                path: bios.display().to_string(),
                reason: e.to_string(),
            })?;
            match kernel {
                Some(linux) => (linux, true),
                None => return Ok(()),
            }
        }
    };
    for path in std::iter::once(kernel).chain(initrd.as_ref()) {
        let error = |reason: String| VmError::Input {
            path: path.display().to_string(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
        let meta = file.metadata().map_err(|e| error(e.to_string()))?;
        if !meta.is_file() {
            return Err(error("not a regular file".into()));
        }
    }
    if through_bios {
        let bytes = std::fs::read(kernel).map_err(|e| VmError::Input {
            path: kernel.display().to_string(),
            reason: e.to_string(),
        })?;
        firmware::linuxboot::check(&bytes).map_err(|e| VmError::Input {
            path: kernel.display().to_string(),
            reason: e.to_string(),
        })?;
    } else {
        boot::probe_kernel(kernel)?;
    }
    Ok(())
}

/// Total RAM of this host, from /proc/meminfo.
fn host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Builds the VM, boots it, and blocks until it ends.
pub fn run(config: &VmConfig) -> Result<VmExit, VmError> {
    check_inputs(config)?;
    let images = disks::open(&config.disks)?;
    // Before any thread starts: only the stats thread takes SIGUSR2.
    stats::block_dump_signal();
    if let Some(available) = host_memory() {
        if config.memory > available {
            return Err(VmError::NotEnoughHostMemory {
                requested: config.memory,
                available,
            });
        }
    }
    let kvm = host::open_kvm(config.allow_pvm)?;
    let max_cpus = kvm.get_max_vcpus();
    if usize::from(config.cpus) > max_cpus {
        return Err(VmError::TooManyCpus {
            requested: config.cpus,
            max: max_cpus,
        });
    }
    let supported_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("read the supported CPUID"))?;
    let layout = MemoryLayout::new(config.memory, cpu::phys_bits(&supported_cpuid))?;

    let vm = Arc::new(kvm.create_vm().map_err(kvm_err("create a VM"))?);
    vm.set_identity_map_address(layout::KVM_IDENTITY_MAP)
        .map_err(kvm_err("set the identity map address"))?;
    vm.set_tss_address(layout::KVM_TSS as usize)
        .map_err(kvm_err("set the TSS address"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("create the in-kernel interrupt controllers"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit)
        .map_err(kvm_err("create the in-kernel PIT"))?;

    let ram = memory::allocate_ram(&layout)?;
    let slots = Arc::new(memory::MemorySlots::new(kvm.get_nr_memslots()));
    memory::map_ram(&vm, &slots, &ram)?;

    let exit = Arc::new(exit::ExitSignal::default());
    let io_bus = Arc::new(Bus::new());
    let mmio_bus = Arc::new(Bus::new());
    let platform = Platform::new(&vm, config, &exit, &io_bus)?;
    // Input: the PS/2 keyboard and mouse (on the platform) and the tablet;
    // what they report (LEDs, tablet driver) goes to the SPICE server.
    let spice_link = Arc::new(input::SpiceLink::default());
    lock(&platform.i8042).set_led_observer(spice_link.clone());
    let tablet_gsi = layout::pci_irq_for(input::TABLET_SLOT, 0);
    let tablet = input::create_tablet(
        ram.clone(),
        interrupts::KvmMsi::new(vm.clone()),
        platform.level_lines.source(tablet_gsi),
        tablet_gsi,
        spice_link.clone(),
    )
    .map_err(|e| device_err("the tablet")(e.to_string()))?;

    // The display: QXL in slot 2 with the VGA fallback on its BAR 0 (as
    // QEMU's qxl-vga), or a VGA of its own (`--display none --vga ...`).
    let mut qxl = match config.qxl {
        Some(qxl_config) => {
            let gsi = layout::pci_irq_for(QXL_SLOT, 0);
            let interrupt = platform.level_lines.source(gsi);
            let qxl = Qxl::new(qxl_config, interrupt, gsi as u8)
                .map_err(|e| device_err("the QXL display")(e.to_string()))?;
            if config.vga.is_some() {
                // Read when BAR 0 is mapped, i.e. before BAR assignment.
                qxl.set_bar0_dirty_logging(config.vga_dirty_tracking == DirtyTracking::Kvm);
            }
            Some(qxl)
        }
        None => None,
    };
    if let (Some(path), Some(q)) = (&config.record, &qxl) {
        let recorder = saffron::replay::Recorder::create(
            path,
            devices::qxl::memory::BarMemory::new(q.memory.ram().clone(), q.memory.vram().clone()),
        )
        .map_err(|e| device_err("the recording")(format!("{}: {e}", path.display())))?;
        q.control.set_observer(Some(Box::new(recorder)));
    }
    let mut disks = disks::attach(
        images,
        &ram,
        interrupts::KvmMsi::new(vm.clone()),
        &platform.level_lines,
    )?;
    let mut pci_devices: Vec<(u8, SharedPciDevice)> =
        vec![(input::TABLET_SLOT, tablet.clone() as SharedPciDevice)];
    pci_devices.extend(disks.pci.iter().cloned());
    if let Some(q) = &qxl {
        pci_devices.push((QXL_SLOT, q.pci.clone()));
    }
    let pci = attach_pci(
        &vm,
        &slots,
        &io_bus,
        &mmio_bus,
        &layout,
        platform.reset_register.clone(),
        PciPlan {
            devices: pci_devices,
            standalone_vga: qxl.is_none() && config.vga.is_some(),
            bios: matches!(config.boot, BootSource::Firmware { .. }),
        },
    )?;
    let vga = match config.vga {
        Some(mode) => {
            let framebuffer = match &qxl {
                Some(q) => vga::Framebuffer::QxlBar0 {
                    link: q.vga.clone(),
                    // A BIOS places BAR 0 itself; the base only matters to
                    // a kernel booted directly.
                    base: match config.boot {
                        BootSource::Kernel(_) => qxl_bar0_base(&pci.root)?,
                        BootSource::Firmware { .. } => 0,
                    },
                    log: vga::BarDirtyLog {
                        mapper: pci.mapper.clone(),
                        pci_slot: QXL_SLOT,
                        bar: 0,
                    },
                },
                None => vga::Framebuffer::Standalone,
            };
            Some(vga::attach(
                &vm,
                &slots,
                &io_bus,
                mode,
                config.vga_dirty_tracking,
                framebuffer,
            )?)
        }
        None => None,
    };
    if let Some(q) = qxl.as_mut() {
        q.spawn_worker()
            .map_err(|e| device_err("the QXL display worker")(e.to_string()))?;
    }
    // The machine's display: head 0 is what the user sees (QXL's picture
    // or the VGA's, whichever owns it now).
    let display = match (&qxl, &vga) {
        (Some(q), _) => Some(q.display.clone()),
        (None, Some(v)) => Some(v.display.clone()),
        (None, None) => None,
    };

    let (entry, _bios) = match &config.boot {
        BootSource::Kernel(linux) => {
            let spec = KernelBoot {
                kernel: &linux.kernel,
                initrd: linux.initrd.as_deref(),
                cmdline: &linux.cmdline,
                cpus: config.cpus,
                layout: &layout,
                screen: vga.as_ref().map(|v| v.screen),
            };
            (Some(load_kernel(&ram, &spec)?), None)
        }
        BootSource::Firmware { bios, kernel } => {
            let setup = bios::BiosSetup {
                path: bios,
                kernel: kernel.as_ref(),
                cpus: config.cpus,
                layout: &layout,
                qxl: qxl.is_some(),
                boot_menu: config.boot_menu,
            };
            let rtc = &platform.rtc;
            let installed = bios::install(&vm, &slots, &ram, &io_bus, rtc, &setup)?;
            (None, Some(installed))
        }
    };

    // Keys and pointers from SPICE clients and the control socket.
    let displays: Vec<Arc<devices::display::Display>> = display.iter().cloned().collect();
    let input_controller = Arc::new(input::InputController::new(
        platform.i8042.clone(),
        Some(tablet),
        displays.clone(),
    ));

    let totals = Arc::new(stats::ExitTotals::default());
    let ctx = Arc::new(vcpu::VcpuContext {
        io_bus,
        mmio_bus,
        exit: exit.clone(),
        totals: totals.clone(),
    });
    stats::spawn_dump_thread(stats::VmStats {
        exits: totals,
        qxl: qxl.as_ref().map(|q| q.control.clone()),
    })
    .map_err(|e| device_err("the stats thread")(e.to_string()))?;
    let mut vcpus = Vec::new();
    for id in 0..config.cpus {
        let vcpu = vm
            .create_vcpu(u64::from(id))
            .map_err(kvm_err("create a vCPU"))?;
        cpu::configure_common(
            &vcpu,
            id,
            &cpu::topology_cpuid(&supported_cpuid, id, config.cpus),
        )?;
        // Without a kernel entry the boot CPU starts at the reset vector.
        if let (0, Some(entry)) = (id, &entry) {
            cpu::configure_boot_cpu(&vcpu, entry)?;
        }
        vcpus.push(vcpu);
    }

    // One display channel: the machine's display.
    let _spice = display_server::start(
        config.spice.as_ref(),
        display_server::DisplayDevices {
            displays,
            input: input_controller.clone(),
            // Client mouse mode is offered once the tablet's driver runs.
            tablet: false,
        },
    )?;
    if let Some(server) = &_spice {
        spice_link.connect(server.notifier());
    }

    let started = std::time::Instant::now();
    let _api = match &config.api_socket {
        Some(path) => Some(crate::api::start(
            path,
            Arc::new(control::VmControl {
                started,
                cpus: config.cpus,
                memory: config.memory,
                exit: exit.clone(),
                power: platform.pm.clone(),
                display: display.clone(),
                scanout: control::Scanout {
                    qxl: qxl.is_some(),
                    vga: vga.as_ref().map(|v| v.switch.clone()),
                },
                refresher: vga.as_ref().map(|v| v.refresher.clone()),
                input: input_controller.clone(),
                input_devices: spice_link.clone(),
                spice: _spice.as_ref().map(|s| s.control()),
                disks: std::mem::take(&mut disks.status),
            }),
        )?),
        None => None,
    };

    let _raw_terminal = match config.serial {
        SerialMode::Stdio => {
            let raw = console::RawTerminal::enter();
            console::spawn_input(platform.serial.clone(), exit.clone())
                .map_err(|e| device_err("the console")(e.to_string()))?;
            Some(raw)
        }
        _ => None,
    };
    if let Some(vga) = &vga {
        vga::spawn_refresh_thread(vga.refresher.clone())
            .map_err(|e| device_err("the VGA refresh thread")(e.to_string()))?;
    }
    vcpu::install_debug_signal();
    for (id, vcpu) in vcpus.into_iter().enumerate() {
        vcpu::spawn(id as u8, vcpu, ctx.clone())
            .map_err(|e| device_err("a vCPU thread")(e.to_string()))?;
    }

    let reason = exit.wait();
    let _ = lock(&platform.serial).flush_output();
    if let Some(q) = &qxl {
        q.control.stop();
    }
    // Each disk's I/O thread finishes its request and flushes the image.
    drop(disks);
    // Keep guest memory alive until here: vCPU threads may still be running.
    drop(ram);
    Ok(reason)
}

/// A kernel to boot directly.
struct KernelBoot<'a> {
    kernel: &'a std::path::Path,
    initrd: Option<&'a std::path::Path>,
    cmdline: &'a str,
    cpus: u8,
    layout: &'a MemoryLayout,
    screen: Option<linux_loader::loader::bootparam::screen_info>,
}

/// Writes the ACPI tables where a kernel finds them and loads the kernel.
fn load_kernel(ram: &memory::GuestRam, spec: &KernelBoot) -> Result<boot::BootEntry, VmError> {
    let acpi = firmware::acpi::build(&firmware::acpi::AcpiConfig {
        cpus: spec.cpus,
        layout: spec.layout,
    });
    ram.write_slice(&acpi.bytes, GuestAddress(acpi.base))
        .map_err(|e| device_err("the ACPI tables")(e.to_string()))?;
    let e820 = firmware::e820::memory_map(spec.layout);
    Ok(boot::load(
        ram,
        &boot::BootSpec {
            kernel: spec.kernel,
            initrd: spec.initrd,
            cmdline: spec.cmdline,
            e820: &e820,
            rsdp_addr: acpi.rsdp_addr,
            layout: spec.layout,
            screen: spec.screen,
        },
    )?)
}

/// Where the firmware put QXL's BAR 0 (the VGA's linear framebuffer):
/// below 4 GiB, as `screen_info` needs.
fn qxl_bar0_base(root: &Mutex<PciRoot>) -> Result<u64, VmError> {
    let region = lock(root)
        .bar_region(QXL_SLOT, 0)
        .ok_or_else(|| device_err("the VGA")("QXL's BAR 0 was not assigned".into()))?;
    let base = region.range.start;
    if region.range.end > 1 << 32 {
        return Err(device_err("the VGA")(format!(
            "QXL's BAR 0 at {base:#x} is not below 4 GiB"
        )));
    }
    Ok(base)
}

/// The legacy platform devices on the I/O bus.
struct Platform {
    serial: Arc<Mutex<Serial>>,
    /// The PS/2 controller with the keyboard and mouse.
    i8042: Arc<Mutex<I8042>>,
    /// Level-triggered lines (PCI INTx, the SCI).
    level_lines: Arc<interrupts::LevelLines>,
    /// Port 0xcf9, which shares its ports with PCI configuration.
    reset_register: Arc<Mutex<ResetControl>>,
    /// ACPI power management (the power button).
    pm: Arc<Mutex<AcpiPm>>,
    /// The RTC and its CMOS memory (which a BIOS reads).
    rtc: Arc<Mutex<devices::rtc::Rtc>>,
}

impl Platform {
    fn new(
        vm: &Arc<VmFd>,
        config: &VmConfig,
        exit: &Arc<exit::ExitSignal>,
        io_bus: &Bus,
    ) -> Result<Self, VmError> {
        let edge =
            |gsi| interrupts::IrqfdInterrupt::new(vm, gsi).map_err(kvm_err("register an irqfd"));
        let level_lines = interrupts::LevelLines::new(vm.clone());
        let insert =
            |base: u64, len: u64, dev: Arc<dyn devices::bus::BusDevice>, what: &'static str| {
                io_bus
                    .insert(base, len, dev)
                    .map_err(|e| device_err(what)(e.to_string()))
            };

        let output: Box<dyn Write + Send> =
            match &config.serial {
                SerialMode::Stdio => Box::new(console::Stdout),
                SerialMode::File(path) => Box::new(std::fs::File::create(path).map_err(
                    |source| VmError::SerialFile {
                        path: path.display().to_string(),
                        source,
                    },
                )?),
                SerialMode::None => Box::new(std::io::sink()),
            };
        let serial = Arc::new(Mutex::new(
            Serial::new(edge(serial::COM1_IRQ)?, output)
                .map_err(|e| device_err("the serial port")(e.to_string()))?,
        ));
        insert(
            serial::COM1_PORT,
            serial::PORT_COUNT,
            serial.clone(),
            "the serial port",
        )?;

        let i8042 = Arc::new(Mutex::new(I8042::new(
            edge(i8042::KEYBOARD_IRQ)?,
            edge(i8042::MOUSE_IRQ)?,
            exit.clone(),
        )));
        // One range for 0x60..=0x64: port 0x61 is KVM's (the PIT speaker) and never exits.
        insert(
            i8042::DATA_PORT,
            i8042::COMMAND_PORT - i8042::DATA_PORT + 1,
            i8042.clone(),
            "the i8042",
        )?;
        let rtc = Arc::new(Mutex::new(devices::rtc::Rtc::default()));
        insert(
            devices::rtc::PORT,
            devices::rtc::PORT_COUNT,
            rtc.clone(),
            "the RTC",
        )?;

        let pm = Arc::new(Mutex::new(AcpiPm::new(
            level_lines.source(layout::SCI_IRQ),
            exit.clone(),
            layout::SLP_TYP_S5,
        )));
        insert(
            u64::from(layout::ACPI_PM1A_EVT),
            PM_BLOCK_LEN,
            pm.clone(),
            "ACPI power management",
        )?;
        insert(
            u64::from(layout::ACPI_GPE0),
            GPE_BLOCK_LEN,
            Arc::new(GpeBlock(pm.clone())),
            "ACPI GPEs",
        )?;
        let reset_register = Arc::new(Mutex::new(ResetControl::new(
            layout::RESET_CONTROL_VALUE,
            exit.clone(),
        )));

        Ok(Platform {
            serial,
            i8042,
            level_lines,
            reset_register,
            pm,
            rtc,
        })
    }
}

/// The PCI root complex as attached.
struct AttachedPci {
    root: Arc<Mutex<PciRoot>>,
    /// Where memory BARs are mapped (their dirty logs).
    mapper: Arc<pci_mapper::KvmBarMapper>,
}

/// What goes on the PCI bus besides the host bridge.
struct PciPlan {
    /// Devices and their slots.
    devices: Vec<(u8, pci::SharedPciDevice)>,
    /// The standalone VGA framebuffer occupies the top of the 32-bit window.
    standalone_vga: bool,
    /// A BIOS boots the VM: it wants an i440fx host bridge (SeaBIOS uses
    /// fw_cfg only behind a host bridge it knows) and assigns BARs itself,
    /// so they start as after a reset (unassigned, decoding off).
    bios: bool,
}

/// The PCI root complex: config ports, ECAM, the host bridge, and
/// `devices` in their slots (BARs placed as firmware would).
fn attach_pci(
    vm: &Arc<VmFd>,
    slots: &Arc<memory::MemorySlots>,
    io_bus: &Arc<Bus>,
    mmio_bus: &Arc<Bus>,
    layout: &MemoryLayout,
    reset_register: Arc<Mutex<ResetControl>>,
    plan: PciPlan,
) -> Result<AttachedPci, VmError> {
    let PciPlan {
        devices,
        standalone_vga,
        bios,
    } = plan;
    let host_bridge = if bios {
        HostBridge::i440fx()
    } else {
        HostBridge::default()
    };
    let mapper = Arc::new(pci_mapper::KvmBarMapper::new(
        vm.clone(),
        slots.clone(),
        io_bus.clone(),
        mmio_bus.clone(),
        layout::PCI_IO,
        vec![layout::PCI_MMIO32, layout.pci_mmio64.clone()],
    ));
    let mut root = PciRoot::new(mapper.clone());
    root.add_device(0, Arc::new(Mutex::new(host_bridge)))
        .map_err(|e| device_err("the PCI host bridge")(e.to_string()))?;
    for (slot, device) in devices {
        root.add_device(slot, device)
            .map_err(|e| device_err("a PCI device")(e.to_string()))?;
    }
    // The standalone VGA framebuffer occupies the top of the 32-bit window.
    let mmio32 = if standalone_vga {
        layout::PCI_MMIO32.start..layout::VGA_STANDALONE_FRAMEBUFFER.start
    } else {
        layout::PCI_MMIO32
    };
    if !bios {
        root.assign_bars(&BarWindows {
            io: layout::PCI_IO,
            mmio32,
            mmio64: layout.pci_mmio64.clone(),
        })
        .map_err(|e| device_err("PCI BARs")(e.to_string()))?;
    }
    let root = Arc::new(Mutex::new(root));
    let ports = pci::ConfigPorts {
        root: root.clone(),
        reset_register,
    };
    io_bus
        .insert(
            pci::CONFIG_ADDRESS_PORT,
            pci::CONFIG_PORTS_LEN,
            Arc::new(ports),
        )
        .map_err(|e| device_err("PCI config ports")(e.to_string()))?;
    let ecam = &layout::PCI_ECAM;
    mmio_bus
        .insert(
            ecam.start,
            ecam.end - ecam.start,
            Arc::new(Ecam(root.clone())),
        )
        .map_err(|e| device_err("PCI ECAM")(e.to_string()))?;
    Ok(AttachedPci { root, mapper })
}
