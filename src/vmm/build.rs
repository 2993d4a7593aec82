//! The steps [`super::run`] takes to build a VM, in order: create the VM
//! (KVM, memory, buses), attach the devices (input, display, disks, PCI,
//! VGA), boot (a kernel or a BIOS), create the vCPUs, start the services
//! (stats, SPICE, control socket, console, VGA refresh), start the vCPUs.
//! Each step returns what the later ones need and typed errors.

use std::sync::Arc;

use devices::bus::{lock, Bus};
use devices::display::Display;
use devices::qxl::Qxl;
use firmware::layout::{self, MemoryLayout};
use kvm_bindings::{kvm_pit_config, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{VcpuFd, VmFd};

use super::{
    agent, attach_pci, audio, bios, boot, console, control, cpu, device_err, disks, display_server,
    exit, host, host_memory, input, interrupts, kvm_err, load_kernel, memory, net, qxl_bar0_base,
    stats, vcpu, vga, AudioModel, BootSource, DirtyTracking, KernelBoot, PciPlan, Platform,
    SerialMode, VmConfig, VmError, QXL_SLOT,
};

/// Step 1: the VM with its memory, buses and exit signal.
pub struct Machine {
    pub vm: Arc<VmFd>,
    pub layout: MemoryLayout,
    pub ram: memory::GuestRam,
    pub slots: Arc<memory::MemorySlots>,
    pub supported_cpuid: CpuId,
    pub exit: Arc<exit::ExitSignal>,
    pub io_bus: Arc<Bus>,
    pub mmio_bus: Arc<Bus>,
    /// Exits of all vCPUs (the stats dump).
    pub exits: Arc<stats::ExitTotals>,
}

impl Machine {
    pub fn create(config: &VmConfig) -> Result<Machine, VmError> {
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
        let mut supported_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("read the supported CPUID"))?;
        config
            .cpu_model
            .apply(&mut supported_cpuid)
            .map_err(VmError::CpuModel)?;
        let layout = MemoryLayout::new(config.memory, cpu::phys_bits(&supported_cpuid))?;
        let vm = Arc::new(kvm.create_vm().map_err(kvm_err("create a VM"))?);
        create_chipset(&vm)?;
        let ram = memory::allocate_ram(&layout)?;
        let slots = Arc::new(memory::MemorySlots::new(kvm.get_nr_memslots()));
        memory::map_ram(&vm, &slots, &ram)?;
        Ok(Machine {
            vm,
            layout,
            ram,
            slots,
            supported_cpuid,
            exit: Arc::new(exit::ExitSignal::default()),
            io_bus: Arc::new(Bus::new()),
            mmio_bus: Arc::new(Bus::new()),
            exits: Arc::new(stats::ExitTotals::default()),
        })
    }
}

/// KVM's own parts of the PC: the identity map and TSS pages, the
/// interrupt controllers and the PIT.
fn create_chipset(vm: &VmFd) -> Result<(), VmError> {
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
        .map_err(kvm_err("create the in-kernel PIT"))
}

/// Step 2: the devices besides the legacy platform.
pub struct Devices {
    /// What the input devices report (LEDs, the tablet's driver) goes to
    /// the SPICE server through this.
    pub spice_link: Arc<input::SpiceLink>,
    pub tablet: input::Tablet,
    /// The SPICE agent's virtio-serial port (`--spice` with `agent=on`).
    pub agent_port: Option<AgentPort>,
    pub qxl: Option<Qxl>,
    pub disks: disks::Disks,
    pub nics: net::Nics,
    /// The sound card (`--audio hda`).
    pub audio: Option<audio::Audio>,
    /// The PCI root and its BAR mapper, kept as long as the machine.
    _pci: super::AttachedPci,
    pub vga: Option<vga::VgaAttachment>,
    /// The machine's display: head 0 is what the user sees (QXL's picture
    /// or the VGA's, whichever owns it now).
    pub display: Option<Arc<Display>>,
}

impl Devices {
    pub fn attach(
        machine: &Machine,
        platform: &Platform,
        config: &VmConfig,
        images: Vec<disks::OpenDisk>,
        backends: Vec<net::OpenBackend>,
    ) -> Result<Devices, VmError> {
        let spice_link = Arc::new(input::SpiceLink::default());
        lock(&platform.i8042).set_led_observer(spice_link.clone());
        let tablet_gsi = layout::pci_irq_for(input::TABLET_SLOT, 0);
        let tablet = input::create_tablet(
            machine.ram.clone(),
            interrupts::KvmMsi::new(machine.vm.clone()),
            platform.level_lines.source(tablet_gsi),
            tablet_gsi,
            spice_link.clone(),
        )
        .map_err(device_err("the tablet"))?;
        let agent_port = create_agent_port(machine, platform, config)?;
        let mut qxl = create_qxl(platform, config)?;
        let disks = disks::attach(
            images,
            &machine.ram,
            interrupts::KvmMsi::new(machine.vm.clone()),
            &platform.level_lines,
        )?;
        let nics = net::attach(
            backends,
            &machine.ram,
            interrupts::KvmMsi::new(machine.vm.clone()),
            &platform.level_lines,
        )?;
        let audio = match config.audio {
            AudioModel::Hda => Some(audio::Audio::create(machine, platform)?),
            AudioModel::None => None,
        };
        let mut pci_devices: Vec<(u8, devices::pci::SharedPciDevice)> = vec![(
            input::TABLET_SLOT,
            tablet.clone() as devices::pci::SharedPciDevice,
        )];
        pci_devices.extend(disks.pci.iter().cloned());
        pci_devices.extend(nics.pci.iter().cloned());
        if let Some(a) = &agent_port {
            pci_devices.push((agent::SERIAL_SLOT, a.device.clone()));
        }
        if let Some(q) = &qxl {
            pci_devices.push((QXL_SLOT, q.pci.clone()));
        }
        if let Some(a) = &audio {
            pci_devices.push((audio::HDA_SLOT, a.device.clone()));
            a.start()?;
        }
        let pci = attach_pci(
            &machine.vm,
            &machine.slots,
            &machine.io_bus,
            &machine.mmio_bus,
            &machine.layout,
            platform.reset_register.clone(),
            PciPlan {
                devices: pci_devices,
                standalone_vga: qxl.is_none() && config.vga.is_some(),
                bios: matches!(config.boot, BootSource::Firmware { .. }),
            },
        )?;
        let vga = attach_vga(machine, config, qxl.as_ref(), &pci)?;
        if let Some(q) = qxl.as_mut() {
            q.spawn_worker()
                .map_err(device_err("the QXL display worker"))?;
        }
        let display = match (&qxl, &vga) {
            (Some(q), _) => Some(q.display.clone()),
            (None, Some(v)) => Some(v.display.clone()),
            (None, None) => None,
        };
        Ok(Devices {
            spice_link,
            tablet,
            agent_port,
            qxl,
            disks,
            nics,
            audio,
            _pci: pci,
            vga,
            display,
        })
    }
}

/// The SPICE agent's port and how it reaches the server.
pub struct AgentPort {
    pub device: agent::SerialPorts,
    pub id: devices::virtio::console::PortId,
    pub link: Arc<agent::PortLink>,
}

/// The virtio-serial device with the agent's port, when SPICE has an agent.
fn create_agent_port(
    machine: &Machine,
    platform: &Platform,
    config: &VmConfig,
) -> Result<Option<AgentPort>, VmError> {
    if !config.spice.as_ref().is_some_and(|s| s.agent.enabled) {
        return Ok(None);
    }
    let msi: Arc<dyn devices::interrupt::MsiDelivery> = interrupts::KvmMsi::new(machine.vm.clone());
    let wiring = interrupts::virtio_wiring(
        agent::SERIAL_SLOT,
        &machine.ram,
        &msi,
        &platform.level_lines,
    );
    let link = Arc::new(agent::PortLink::default());
    let (device, id) = agent::create(wiring, link.clone())
        .map_err(device_err("the SPICE agent's virtio-serial port"))?;
    Ok(Some(AgentPort { device, id, link }))
}

/// QXL in its slot, with the VGA fallback on its BAR 0 (as QEMU's
/// qxl-vga), and the recorder when asked for.
fn create_qxl(platform: &Platform, config: &VmConfig) -> Result<Option<Qxl>, VmError> {
    let Some(qxl_config) = config.qxl else {
        return Ok(None);
    };
    let gsi = layout::pci_irq_for(QXL_SLOT, 0);
    let interrupt = platform.level_lines.source(gsi);
    let qxl = Qxl::new(qxl_config, interrupt, gsi as u8).map_err(device_err("the QXL display"))?;
    if config.vga.is_some() {
        // Read when BAR 0 is mapped, i.e. before BAR assignment.
        qxl.set_bar0_dirty_logging(config.vga_dirty_tracking == DirtyTracking::Kvm);
    }
    if let Some(path) = &config.record {
        let recorder = saffron::replay::Recorder::create(
            path,
            devices::qxl::memory::BarMemory::new(
                qxl.memory.ram().clone(),
                qxl.memory.vram().clone(),
            ),
        )
        .map_err(|e| device_err("the recording")(format!("{}: {e}", path.display())))?;
        qxl.control.set_observer(Some(Box::new(recorder)));
    }
    Ok(Some(qxl))
}

/// The VGA: on QXL's BAR 0, or a framebuffer of its own (`--display none
/// --vga ...`).
fn attach_vga(
    machine: &Machine,
    config: &VmConfig,
    qxl: Option<&Qxl>,
    pci: &super::AttachedPci,
) -> Result<Option<vga::VgaAttachment>, VmError> {
    let Some(mode) = config.vga else {
        return Ok(None);
    };
    let framebuffer = match qxl {
        Some(q) => vga::Framebuffer::QxlBar0 {
            link: q.vga.clone(),
            // A BIOS places BAR 0 itself; the base only matters to a
            // kernel booted directly.
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
    vga::attach(
        &machine.vm,
        &machine.slots,
        &machine.io_bus,
        mode,
        config.vga_dirty_tracking,
        framebuffer,
    )
    .map(Some)
}

/// Step 3: what boots. A BIOS keeps its ROM mapped while this lives.
pub struct Boot {
    /// A kernel booted directly: where the boot CPU starts.
    pub entry: Option<boot::BootEntry>,
    _bios: Option<bios::Bios>,
}

pub fn boot(
    machine: &Machine,
    platform: &Platform,
    devices: &Devices,
    config: &VmConfig,
) -> Result<Boot, VmError> {
    match &config.boot {
        BootSource::Kernel(linux) => {
            let spec = KernelBoot {
                kernel: &linux.kernel,
                initrd: linux.initrd.as_deref(),
                cmdline: &linux.cmdline,
                cpus: config.cpus,
                layout: &machine.layout,
                screen: devices.vga.as_ref().map(|v| v.screen),
            };
            Ok(Boot {
                entry: Some(load_kernel(&machine.ram, &spec)?),
                _bios: None,
            })
        }
        BootSource::Firmware { bios, kernel } => {
            let setup = bios::BiosSetup {
                path: bios,
                kernel: kernel.as_ref(),
                cpus: config.cpus,
                layout: &machine.layout,
                qxl: devices.qxl.is_some(),
                boot_menu: config.boot_menu,
            };
            let installed = bios::install(
                &machine.vm,
                &machine.slots,
                &machine.ram,
                &machine.io_bus,
                &platform.rtc,
                &setup,
            )?;
            Ok(Boot {
                entry: None,
                _bios: Some(installed),
            })
        }
    }
}

/// Step 4: the vCPUs, configured; without a kernel entry the boot CPU
/// starts at the reset vector.
pub fn create_vcpus(
    machine: &Machine,
    config: &VmConfig,
    entry: Option<&boot::BootEntry>,
) -> Result<Vec<VcpuFd>, VmError> {
    let mut vcpus = Vec::new();
    for id in 0..config.cpus {
        let vcpu = machine
            .vm
            .create_vcpu(u64::from(id))
            .map_err(kvm_err("create a vCPU"))?;
        let cpuid = cpu::topology_cpuid(&machine.supported_cpuid, id, config.cpus);
        cpu::configure_common(&vcpu, id, &cpuid)?;
        if let (0, Some(entry)) = (id, entry) {
            cpu::configure_boot_cpu(&vcpu, entry)?;
        }
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

/// Step 5: what runs beside the guest. Dropping it stops the SPICE
/// server and the control socket and gives the terminal back.
pub struct Services {
    _spice: Option<saffron::spice::SpiceServer>,
    _api: Option<crate::api::ApiServer>,
    _raw_terminal: Option<console::RawTerminal>,
}

pub fn start_services(
    machine: &Machine,
    platform: &Platform,
    devices: &mut Devices,
    config: &VmConfig,
) -> Result<Services, VmError> {
    stats::spawn_dump_thread(stats::VmStats {
        exits: machine.exits.clone(),
        qxl: devices.qxl.as_ref().map(|q| q.control.clone()),
    })
    .map_err(device_err("the stats thread"))?;
    // Keys and pointers from SPICE clients and the control socket.
    let displays: Vec<Arc<Display>> = devices.display.iter().cloned().collect();
    let input = Arc::new(input::InputController::new(
        platform.i8042.clone(),
        Some(devices.tablet.clone()),
        displays.clone(),
    ));
    let spice = display_server::start(
        config.spice.as_ref(),
        display_server::DisplayDevices {
            displays,
            input: input.clone(),
            // Client mouse mode is offered once the tablet's driver runs.
            tablet: false,
            agent: devices.agent_port.as_ref().map(|a| {
                agent::spice_device(
                    &a.device,
                    a.id,
                    devices.qxl.as_ref().map(|q| q.control.clone()),
                )
            }),
            audio: devices.audio.as_ref().map(|a| a.hub.clone()),
        },
    )?;
    if let Some(server) = &spice {
        devices.spice_link.connect(server.notifier());
        if let Some(a) = &devices.agent_port {
            a.link.connect(server.notifier());
        }
    }
    let api = match &config.api_socket {
        Some(path) => Some(crate::api::start(
            path,
            Arc::new(vm_control(
                machine, platform, devices, config, input, &spice,
            )),
        )?),
        None => None,
    };
    let raw_terminal = match config.serial {
        SerialMode::Stdio => {
            let raw = console::RawTerminal::enter();
            console::spawn_input(platform.serial.clone(), machine.exit.clone())
                .map_err(device_err("the console"))?;
            Some(raw)
        }
        _ => None,
    };
    if let Some(vga) = &devices.vga {
        vga::spawn_refresh_thread(vga.refresher.clone())
            .map_err(device_err("the VGA refresh thread"))?;
    }
    Ok(Services {
        _spice: spice,
        _api: api,
        _raw_terminal: raw_terminal,
    })
}

/// What the control socket acts on.
fn vm_control(
    machine: &Machine,
    platform: &Platform,
    devices: &mut Devices,
    config: &VmConfig,
    input: Arc<input::InputController>,
    spice: &Option<saffron::spice::SpiceServer>,
) -> control::VmControl {
    control::VmControl {
        started: std::time::Instant::now(),
        cpus: config.cpus,
        memory: config.memory,
        exit: machine.exit.clone(),
        power: platform.pm.clone(),
        display: devices.display.clone(),
        scanout: control::Scanout {
            qxl: devices.qxl.is_some(),
            vga: devices.vga.as_ref().map(|v| v.switch.clone()),
        },
        refresher: devices.vga.as_ref().map(|v| v.refresher.clone()),
        input,
        input_devices: devices.spice_link.clone(),
        spice: spice.as_ref().map(|s| s.control()),
        disks: std::mem::take(&mut devices.disks.status),
        nics: std::mem::take(&mut devices.nics.status),
        audio: devices.audio.as_ref().map(|a| a.hub.clone()),
    }
}

/// Step 6: one thread per vCPU.
pub fn start_vcpus(
    machine: &Machine,
    vcpus: Vec<VcpuFd>,
    seccomp: saffron::seccomp::SeccompMode,
) -> Result<(), VmError> {
    let ctx = Arc::new(vcpu::VcpuContext {
        io_bus: machine.io_bus.clone(),
        mmio_bus: machine.mmio_bus.clone(),
        exit: machine.exit.clone(),
        totals: machine.exits.clone(),
        seccomp,
    });
    vcpu::install_debug_signal();
    for (id, vcpu) in vcpus.into_iter().enumerate() {
        vcpu::spawn(id as u8, vcpu, ctx.clone()).map_err(device_err("a vCPU thread"))?;
    }
    Ok(())
}
