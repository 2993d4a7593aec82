//! The VMM core: builds a KVM virtual machine (memory, interrupt
//! controllers, vCPUs, platform devices, PCI), boots a kernel in it and
//! reports how it ended.

mod agent;
mod audio;
mod bios;
mod boot;
mod build;
pub mod console;
mod control;
mod cpu;
mod cpu_model;
mod disks;
pub mod display_server;
mod exit;
pub mod host;
pub mod input;
mod interrupts;
pub mod keys;
mod memory;
mod net;
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
use devices::pci::{self, host_bridge::HostBridge, BarWindows, Ecam, PciRoot};
use devices::qxl::QxlConfig;
use devices::serial::{self, Serial};
use firmware::layout::{self, MemoryLayout};
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
    /// The CPU features the guest sees (`--cpu`).
    pub cpu_model: CpuModel,
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
    /// Network cards (`--net`), in order.
    pub nets: Vec<saffron::net::NetOptions>,
    /// The sound card.
    pub audio: AudioModel,
    /// The system call filter set once the VM is set up (`--seccomp`).
    pub seccomp: saffron::seccomp::SeccompMode,
}

pub use cpu_model::CpuModel;

pub const MAX_CPUS: u8 = 8;

/// `--audio`: which sound card the VM has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioModel {
    /// Intel HD Audio with a duplex codec.
    Hda,
    None,
}
/// The PCI slot of the QXL display device.
pub const QXL_SLOT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    Seccomp(String),
    #[error("{0}")]
    CpuModel(String),
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
    #[error("cannot set up {what}: {source}")]
    Device { what: &'static str, source: Cause },
    #[error("cannot open the serial output file {path}: {source}")]
    SerialFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{requested} vCPUs requested, but this host's KVM allows at most {max}")]
    TooManyCpus { requested: u8, max: usize },
    #[error("{} of guest memory requested, but this host has only {} of RAM", human_size(*requested), human_size(*available))]
    NotEnoughHostMemory { requested: u64, available: u64 },
    #[error("cannot read {}: {source}", path.display())]
    Input { path: PathBuf, source: Cause },
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    #[error(transparent)]
    Spice(#[from] saffron::spice::SpiceError),
    #[error(transparent)]
    Disk(#[from] devices::block::DiskError),
    #[error(transparent)]
    Net(#[from] saffron::net::NetError),
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

/// What made a device or service fail to set up, kept as its own error.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

fn input_err<E: Into<Cause>>(path: &std::path::Path) -> impl Fn(E) -> VmError + '_ {
    move |e| VmError::Input {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn device_err<E: Into<Cause>>(what: &'static str) -> impl Fn(E) -> VmError {
    move |e| VmError::Device {
        what,
        source: e.into(),
    }
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
            firmware::bios::BiosImage::load(bios).map_err(input_err(bios))?;
            match kernel {
                Some(linux) => (linux, true),
                None => return Ok(()),
            }
        }
    };
    for path in std::iter::once(kernel).chain(initrd.as_ref()) {
        let error = input_err(path);
        let file = std::fs::File::open(path).map_err(&error)?;
        let meta = file.metadata().map_err(&error)?;
        if !meta.is_file() {
            return Err(input_err(path)("not a regular file"));
        }
    }
    if through_bios {
        // The header is enough here; the BIOS step reads the whole file.
        use std::io::Read;
        let file = std::fs::File::open(kernel).map_err(input_err(kernel))?;
        let len = file.metadata().map_err(input_err(kernel))?.len();
        let mut header = Vec::with_capacity(firmware::linuxboot::HEADER_LEN);
        file.take(firmware::linuxboot::HEADER_LEN as u64)
            .read_to_end(&mut header)
            .map_err(input_err(kernel))?;
        firmware::linuxboot::check(&header, usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(input_err(kernel))?;
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

/// Builds the VM, boots it, and blocks until it ends: the steps of
/// [`build`], each with its own typed errors.
pub fn run(config: &VmConfig) -> Result<VmExit, VmError> {
    check_inputs(config)?;
    let images = disks::open(&config.disks)?;
    let backends = net::open(&config.nets)?;
    // Before any thread starts: only the stats thread takes SIGUSR2.
    stats::block_dump_signal();
    let machine = build::Machine::create(config)?;
    let platform = Platform::new(&machine.vm, config, &machine.exit, &machine.io_bus)?;
    let mut devices = build::Devices::attach(&machine, &platform, config, images, backends)?;
    let boot = build::boot(&machine, &platform, &devices, config)?;
    let vcpus = build::create_vcpus(&machine, config, boot.entry.as_ref())?;
    let services = build::start_services(&machine, &platform, &mut devices, config)?;
    saffron::seccomp::apply(config.seccomp).map_err(VmError::Seccomp)?;
    build::start_vcpus(&machine, vcpus, config.seccomp)?;

    let reason = machine.exit.wait();
    let _ = lock(&platform.serial).flush_output();
    if let Some(q) = &devices.qxl {
        q.control.stop();
    }
    // Each disk's I/O thread finishes its request and flushes the image.
    drop(devices);
    drop(services);
    drop(boot);
    // Keep guest memory alive until here: vCPU threads may still be running.
    drop(machine);
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
        .map_err(device_err("the ACPI tables"))?;
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
        .ok_or_else(|| device_err("the VGA")("QXL's BAR 0 was not assigned"))?;
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
                io_bus.insert(base, len, dev).map_err(device_err(what))
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
            Serial::new(edge(serial::COM1_IRQ)?, output).map_err(device_err("the serial port"))?,
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
        .map_err(device_err("the PCI host bridge"))?;
    for (slot, device) in devices {
        root.add_device(slot, device)
            .map_err(device_err("a PCI device"))?;
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
        .map_err(device_err("PCI BARs"))?;
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
        .map_err(device_err("PCI config ports"))?;
    let ecam = &layout::PCI_ECAM;
    mmio_bus
        .insert(
            ecam.start,
            ecam.end - ecam.start,
            Arc::new(Ecam(root.clone())),
        )
        .map_err(device_err("PCI ECAM"))?;
    Ok(AttachedPci { root, mapper })
}
