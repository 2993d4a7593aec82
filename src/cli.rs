//! The command line: `saffron run ...`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use devices::block::{options::HELP as DISK_HELP, DiskOptions};
use devices::qxl::{config::HELP as QXL_HELP, QxlConfig};
use saffron::net::{options::HELP as NET_HELP, NetOptions};
use saffron::replay::Pace;
use saffron::seccomp::SeccompMode;
use saffron::spice::{config::HELP as SPICE_HELP, SpiceConfig};

use crate::vmm::{
    AudioModel, BootSource, CpuModel, DirtyTracking, LinuxKernel, SerialMode, VgaMode, VmConfig,
    MAX_CPUS,
};

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  the guest powered off (or you pressed Ctrl-a x on the console)
  1  saffron failed: the VM could not start or stopped on an error
  2  the command line is invalid
  3  the guest rebooted";

#[derive(Debug, Parser)]
#[command(
    name = "saffron",
    version,
    about = "A small KVM hypervisor with a built-in SPICE display"
)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a virtual machine: a Linux kernel directly, or the disks
    /// through a BIOS.
    #[command(after_help = EXIT_STATUS_HELP)]
    Run(RunArgs),
    /// Replay a recording of QXL commands (libspice's SPICE_REPLAY format)
    /// through a QXL device and serve it over SPICE.
    #[command(after_help = REPLAY_HELP)]
    Replay(ReplayArgs),
}

const REPLAY_HELP: &str = "\
Recordings come from QEMU with SPICE_WORKER_RECORD_FILENAME=FILE (libspice-server),
from `saffron run --record FILE`, or from tests/fixtures/make-recording. gzip-compressed
files are read as they are. The commands go through the same QXL device, renderer and
SPICE server a live guest uses. At the end one line `replay: key=value ...` is printed.

Exit status:
  0  the recording was replayed to its end
  1  it could not be read (not a recording, or broken/truncated part-way: the events
     before the damage were replayed), or the device could not be created
  2  the command line is invalid";

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording (`-` reads standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Serve the display over SPICE (same options as `saffron run --spice`).
    /// The final picture stays served until saffron is stopped (or --linger).
    #[arg(long, value_name = "OPTIONS", value_parser = parse_spice, long_help = SPICE_HELP)]
    pub spice: Option<SpiceConfig>,

    /// `recorded`: as the recording's timestamps say; `client`: as fast as the
    /// SPICE clients take the updates; `fast`: as fast as the device takes
    /// the commands.
    #[arg(long, value_name = "PACE", default_value = "recorded")]
    pub pace: Pace,

    /// Longest pause (seconds) between two events with --pace recorded.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_seconds)]
    pub max_gap: f64,

    /// With --pace recorded: play this many times faster than recorded (0.1 to 100;
    /// e.g. 3 turns a guest's 5 frames a second under TCG into 15).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,

    /// Replay the recording again and again (not with `-`).
    #[arg(long = "loop")]
    pub repeat: bool,

    /// With --spice: wait until a display client is connected before starting.
    #[arg(long)]
    pub wait_client: bool,

    /// With --spice: keep serving this many seconds after the end, then exit
    /// (default: until stopped).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub linger: Option<f64>,

    /// Record what the device accepted to FILE (the same format).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// QXL sizes: ram=SIZE,vram=SIZE[,vgamem=SIZE] (the primary surface must fit vgamem).
    #[arg(long, value_name = "OPTIONS", value_parser = parse_qxl, long_help = QXL_HELP)]
    pub qxl: Option<QxlConfig>,

    /// Once the server listens, restrict every thread to the system calls
    /// replaying needs (as `saffron run --seccomp`).
    #[arg(long, value_name = "on|log|off", default_value = "on", value_parser = SeccompMode::parse)]
    pub seccomp: SeccompMode,
}

pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86400.0).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' is not a number of seconds (0 to 86400)")),
    }
}

pub fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.1..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' is not a speed factor (0.1 to 100)")),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The guest kernel, booted directly (no BIOS): a bzImage (e.g.
    /// /boot/vmlinuz-*) or an ELF vmlinux; with `--firmware bios`, a
    /// bzImage booted through SeaBIOS as QEMU does. Without it the VM boots
    /// its disks through SeaBIOS.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// An initial ramdisk (initramfs) for the kernel.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// The kernel command line (default: console=ttyS0).
    #[arg(long, value_name = "STRING")]
    pub cmdline: Option<String>,

    /// The firmware: `bios` (SeaBIOS, from the installed seabios package;
    /// the default without --kernel), `none` (the default with --kernel),
    /// or the path of a BIOS image. With --kernel, the BIOS boots the
    /// kernel (QEMU's linuxboot option ROM, from its data files).
    #[arg(long, value_name = "bios|none|PATH")]
    pub firmware: Option<String>,

    /// With a BIOS: `menu=on[,splash-time=MS]` shows the BIOS's boot menu
    /// prompt ("Press ESC for boot menu") for MS milliseconds (default 3000).
    #[arg(long, value_name = "OPTIONS", value_parser = parse_boot)]
    pub boot: Option<BootMenu>,

    /// Guest memory: a number with an optional K, M, G or T suffix (binary
    /// units; a bare number is MiB). At least 64M. Memory beyond 3 GiB is
    /// placed above 4 GiB.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_memory)]
    pub memory: u64,

    /// Number of virtual CPUs (1 to 8).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_CPUS)))]
    pub cpus: u8,

    /// The CPU the guest sees: `host` (the host CPU's features as KVM offers
    /// them, the default), less features: `host,-xsave,avx2=off,...` (QEMU's
    /// names; taking one out also takes out those that need it, e.g. -xsave
    /// takes AVX too). `+FEATURE` checks that the host has it.
    #[arg(long, value_name = "host[,-FEATURE...]", default_value = "host", value_parser = CpuModel::parse)]
    pub cpu: CpuModel,

    /// Where the serial console (COM1) goes: `stdio` (interactive; Ctrl-a x
    /// quits), `file=PATH` (output only), or `none`.
    #[arg(long, value_name = "MODE", default_value = "stdio", value_parser = parse_serial)]
    pub serial: SerialMode,

    /// Run on a PVM host (/dev/kvm from kvm_pvm): only for PVM-aware kernels.
    #[arg(long)]
    pub pvm_guest: bool,

    /// The VGA fallback (what the kernel's early console and `nomodeset`
    /// use): `none`, `text` (80x25 text mode for vgacon) or WIDTHxHEIGHT (a
    /// 32-bit VESA linear framebuffer the kernel's vesafb draws on). With
    /// QXL it lives in QXL's BAR 0 and the default is 1024x768; with
    /// `--display none` the default is `none`.
    // `std::option::Option`: the parser itself yields `None` for `none`.
    #[arg(long, value_name = "MODE", value_parser = parse_vga)]
    pub vga: Option<std::option::Option<VgaMode>>,

    /// How the VGA finds what the guest redrew: `kvm` (KVM's dirty page
    /// log; the guest pays a write fault per page per refresh) or `compare`
    /// (the visible memory is compared with a copy at each refresh).
    #[arg(long, value_name = "HOW", default_value = "kvm", value_parser = parse_dirty_tracking)]
    pub vga_dirty_tracking: DirtyTracking,

    /// Serve the control socket (JSON requests, one per line) at PATH: see
    /// README.md, "Control socket".
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,

    /// Serve the display over SPICE: port=N[,addr=IP][,password=SECRET|disable-ticketing][,unix=PATH].
    /// Without it no port is opened.
    #[arg(long, value_name = "OPTIONS", value_parser = parse_spice, long_help = SPICE_HELP)]
    pub spice: Option<SpiceConfig>,

    /// The display device: `qxl` (a QXL PCI display with the VGA fallback,
    /// the default) or `none` (no QXL; `--vga` may still give a plain VGA).
    #[arg(long, value_name = "DEVICE", default_value = "qxl", value_parser = parse_display)]
    pub display: DisplayKind,

    /// QXL sizes and revision: ram=SIZE,vram=SIZE[,vram64=SIZE][,vgamem=SIZE][,revision=4|5].
    #[arg(long, value_name = "OPTIONS", value_parser = parse_qxl, long_help = QXL_HELP)]
    pub qxl: Option<QxlConfig>,

    /// Record the QXL device's commands to FILE (libspice's SPICE_REPLAY
    /// format; replay it with `saffron replay FILE`).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// The sound card: `hda` (an Intel HD Audio controller with a duplex
    /// codec, as QEMU's intel-hda + hda-duplex; its sound goes to SPICE
    /// clients) or `none`. The default is `hda` with `--spice`, `none`
    /// without.
    #[arg(long, value_name = "hda|none", value_parser = parse_audio)]
    pub audio: Option<AudioModel>,

    /// A disk image as a virtio-blk device (repeatable; the first is /dev/vda):
    /// path=IMG[,format=raw|qcow2][,readonly=on][,serial=ID][,cache=writeback|writethrough|unsafe].
    #[arg(long = "disk", value_name = "OPTIONS", value_parser = parse_disk, long_help = DISK_HELP)]
    pub disks: Vec<DiskOptions>,

    /// A network card (virtio-net), repeatable: user[,hostfwd=tcp::HOSTPORT-:GUESTPORT]
    /// (passt; the default) or tap=NAME, each with [,mac=ADDR].
    #[arg(long = "net", value_name = "OPTIONS", num_args = 0..=1, default_missing_value = "user",
          value_parser = parse_net, long_help = NET_HELP)]
    pub nets: Vec<NetOptions>,

    /// Once set up, restrict every thread to the system calls a VM needs
    /// (seccomp-bpf): `on` (the default) kills saffron on any other call,
    /// `log` lets it through and has the kernel log it, `off` sets no filter.
    #[arg(long, value_name = "on|log|off", default_value = "on", value_parser = SeccompMode::parse)]
    pub seccomp: SeccompMode,
}

/// The VGA mode with QXL unless `--vga` says otherwise.
pub const DEFAULT_QXL_VGA: VgaMode = VgaMode::Linear {
    width: 1024,
    height: 768,
};

/// `--display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayKind {
    Qxl,
    None,
}

impl RunArgs {
    /// The VM's configuration; an error (one line) when options contradict each other.
    pub fn vm_config(&self) -> Result<VmConfig, String> {
        if self.record.is_some() && self.display == DisplayKind::None {
            return Err("--record needs a QXL display (not --display none)".into());
        }
        let qxl = match (self.display, self.qxl) {
            (DisplayKind::Qxl, qxl) => Some(qxl.unwrap_or_default()),
            (DisplayKind::None, None) => None,
            (DisplayKind::None, Some(_)) => {
                return Err("--qxl cannot be used with --display none".into())
            }
        };
        let vga = match (self.vga, &qxl) {
            (Some(vga), _) => vga,
            (None, Some(_)) => Some(DEFAULT_QXL_VGA),
            (None, None) => None,
        };
        // The VBE modes live in QXL's vgamem, or in the standalone framebuffer.
        let vbe_size = qxl.map_or(crate::vmm::VGA_FRAMEBUFFER_SIZE as u64, |q| q.vgamem_size);
        if let Some(VgaMode::Linear { width, height }) = vga {
            if u64::from(width) * u64::from(height) * 4 > vbe_size {
                return Err(format!(
                    "--vga {width}x{height} at 32 bits per pixel does not fit in the {} MiB \
                     framebuffer{}",
                    vbe_size >> 20,
                    if qxl.is_some() { " (QXL's vgamem)" } else { "" }
                ));
            }
        }
        let audio = match self.audio {
            Some(AudioModel::Hda) if self.spice.is_none() => {
                return Err("--audio hda needs --spice (its sound goes to SPICE clients)".into())
            }
            Some(model) => model,
            None if self.spice.is_some() => AudioModel::Hda,
            None => AudioModel::None,
        };
        Ok(VmConfig {
            boot_menu: self.boot_menu()?,
            boot: self.boot_source()?,
            memory: self.memory,
            cpus: self.cpus,
            cpu_model: self.cpu.clone(),
            serial: self.serial.clone(),
            allow_pvm: self.pvm_guest,
            vga,
            vga_dirty_tracking: self.vga_dirty_tracking,
            api_socket: self.api_socket.clone(),
            spice: self.spice.clone(),
            qxl,
            record: self.record.clone(),
            disks: self.disks.clone(),
            nets: self.nets.clone(),
            audio,
            seccomp: self.seccomp,
        })
    }
}

/// `--boot`: whether the BIOS shows its boot menu prompt, and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootMenu {
    pub menu: bool,
    pub splash_ms: u16,
}

pub fn parse_boot(text: &str) -> Result<BootMenu, String> {
    let mut boot = BootMenu {
        menu: false,
        splash_ms: 3000,
    };
    for item in text.split(',') {
        match item.split_once('=') {
            Some(("menu", "on")) => boot.menu = true,
            Some(("menu", "off")) => boot.menu = false,
            Some(("splash-time", ms)) => {
                boot.splash_ms = ms
                    .parse()
                    .map_err(|_| format!("splash-time={ms}: milliseconds, 0 to 65535"))?
            }
            _ => return Err(format!("'{item}' is not menu=on|off or splash-time=MS")),
        }
    }
    Ok(boot)
}

impl RunArgs {
    /// The BIOS boot menu's wait, if shown.
    fn boot_menu(&self) -> Result<Option<u16>, String> {
        let direct =
            self.kernel.is_some() && matches!(self.firmware.as_deref(), None | Some("none"));
        match self.boot {
            Some(_) if direct => {
                Err("--boot needs a BIOS: add --firmware bios to boot the kernel through it".into())
            }
            Some(BootMenu {
                menu: true,
                splash_ms,
            }) => Ok(Some(splash_ms)),
            _ => Ok(None),
        }
    }

    /// A kernel, a BIOS (see `--firmware`), or a kernel through a BIOS.
    fn boot_source(&self) -> Result<BootSource, String> {
        let kernel = self.kernel.as_ref().map(|kernel| LinuxKernel {
            kernel: kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self
                .cmdline
                .clone()
                .unwrap_or_else(|| "console=ttyS0".into()),
        });
        if kernel.is_none() && (self.initrd.is_some() || self.cmdline.is_some()) {
            return Err("--initrd and --cmdline need --kernel".into());
        }
        match (self.firmware.as_deref(), kernel) {
            (None | Some("none"), Some(linux)) => Ok(BootSource::Kernel(linux)),
            (Some("none"), None) => Err("nothing to boot: --firmware none needs --kernel".into()),
            (firmware, kernel) => {
                let bios = match firmware {
                    None | Some("bios") => {
                        firmware::bios::default_bios().map_err(|e| e.to_string())?
                    }
                    Some(path) => PathBuf::from(path),
                };
                Ok(BootSource::Firmware { bios, kernel })
            }
        }
    }
}

const MIB: u64 = 1 << 20;

/// Parses sizes like `512M`, `1G`, `1536` (MiB), `2GiB`.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let without_b = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match without_b.char_indices().last() {
        Some((i, 'k')) => (&without_b[..i], 10),
        Some((i, 'm')) => (&without_b[..i], 20),
        Some((i, 'g')) => (&without_b[..i], 30),
        Some((i, 't')) => (&without_b[..i], 40),
        _ => (without_b, 20),
    };
    let number: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{trimmed}' is not a size (try 512M or 2G)"))?;
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("'{trimmed}' is too large"))?;
    if bytes < 64 * MIB {
        return Err(format!(
            "'{trimmed}' is too small: a guest needs at least 64M"
        ));
    }
    if bytes % 4096 != 0 {
        return Err(format!("'{trimmed}' is not a multiple of 4K"));
    }
    Ok(bytes)
}

pub fn parse_spice(text: &str) -> Result<SpiceConfig, String> {
    SpiceConfig::parse(text)
}

pub fn parse_net(text: &str) -> Result<NetOptions, String> {
    NetOptions::parse(text)
}

pub fn parse_disk(text: &str) -> Result<DiskOptions, String> {
    DiskOptions::parse(text)
}

pub fn parse_display(text: &str) -> Result<DisplayKind, String> {
    match text {
        "qxl" => Ok(DisplayKind::Qxl),
        "none" => Ok(DisplayKind::None),
        _ => Err(format!("'{text}' is not one of qxl, none")),
    }
}

pub fn parse_audio(text: &str) -> Result<AudioModel, String> {
    match text {
        "hda" | "intel-hda" => Ok(AudioModel::Hda),
        "none" => Ok(AudioModel::None),
        _ => Err(format!("'{text}' is not one of hda, none")),
    }
}

pub fn parse_qxl(text: &str) -> Result<QxlConfig, String> {
    QxlConfig::parse(text).map_err(|e| e.to_string().trim_start_matches("--qxl: ").to_string())
}

pub fn parse_serial(text: &str) -> Result<SerialMode, String> {
    match text {
        "stdio" => Ok(SerialMode::Stdio),
        "none" => Ok(SerialMode::None),
        _ => match text.strip_prefix("file=") {
            Some("") => Err("file= needs a path, e.g. file=/tmp/console.log".into()),
            Some(path) => Ok(SerialMode::File(PathBuf::from(path))),
            None => Err(format!("'{text}' is not one of stdio, file=PATH, none")),
        },
    }
}

pub fn parse_dirty_tracking(text: &str) -> Result<DirtyTracking, String> {
    match text {
        "kvm" => Ok(DirtyTracking::Kvm),
        "compare" => Ok(DirtyTracking::Compare),
        _ => Err(format!("'{text}' is not one of kvm, compare")),
    }
}

/// Parses `none`, `text` or `WIDTHxHEIGHT`.
pub fn parse_vga(text: &str) -> Result<Option<VgaMode>, String> {
    match text {
        "none" => return Ok(None),
        "text" => return Ok(Some(VgaMode::Text)),
        _ => {}
    }
    let invalid = || format!("'{text}' is not one of none, text, WIDTHxHEIGHT (e.g. 1024x768)");
    let (w, h) = text.split_once('x').ok_or_else(invalid)?;
    let width: u16 = w.parse().map_err(|_| invalid())?;
    let height: u16 = h.parse().map_err(|_| invalid())?;
    if !(64..=4096).contains(&width) || !(64..=4096).contains(&height) || !width.is_multiple_of(8) {
        return Err(format!(
            "'{text}': the width must be a multiple of 8, and both sides 64 to 4096"
        ));
    }
    Ok(Some(VgaMode::Linear { width, height }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Ok(512 * MIB));
        assert_eq!(parse_memory("1G"), Ok(1024 * MIB));
        assert_eq!(parse_memory("5g"), Ok(5 * 1024 * MIB));
        assert_eq!(parse_memory("2GiB"), Ok(2048 * MIB));
        assert_eq!(parse_memory("1536"), Ok(1536 * MIB));
        assert_eq!(parse_memory("65536K"), Ok(64 * MIB));
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("63M").is_err());
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("99999999999T").is_err());
        assert!(parse_memory("").is_err());
    }

    #[test]
    fn serial_modes() {
        assert_eq!(parse_serial("stdio"), Ok(SerialMode::Stdio));
        assert_eq!(parse_serial("none"), Ok(SerialMode::None));
        assert_eq!(
            parse_serial("file=/tmp/x"),
            Ok(SerialMode::File("/tmp/x".into()))
        );
        assert!(parse_serial("file=").is_err());
        assert!(parse_serial("tcp:1234").is_err());
    }

    #[test]
    fn vga_modes() {
        assert_eq!(parse_vga("none"), Ok(None));
        assert_eq!(parse_vga("text"), Ok(Some(VgaMode::Text)));
        assert_eq!(
            parse_vga("1024x768"),
            Ok(Some(VgaMode::Linear {
                width: 1024,
                height: 768
            }))
        );
        assert!(parse_vga("1920x1080").is_ok());
        assert!(parse_vga("1023x768").is_err(), "width not a multiple of 8");
        assert!(parse_vga("0x0").is_err());
        assert!(parse_vga("99999x1").is_err());
        assert!(parse_vga("vga").is_err());
        assert!(parse_vga("1024x").is_err());
    }

    #[test]
    fn spice_option() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["saffron", "run", "--kernel", "k"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Run(run) => run.spice,
                Command::Replay(_) => unreachable!(),
            })
        };
        assert_eq!(parse(&[]).unwrap(), None);
        let spice = parse(&["--spice", "port=5930,password=x"])
            .unwrap()
            .unwrap();
        assert_eq!(spice.tcp, Some("127.0.0.1:5930".parse().unwrap()));
        let error = parse(&["--spice", "port=5930,bogus"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown option 'bogus'"), "{error}");
    }

    #[test]
    fn display_options() {
        let config = |extra: &[&str]| {
            let mut args = vec!["saffron", "run", "--kernel", "k"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Run(run) => run.vm_config(),
                Command::Replay(_) => unreachable!(),
            })
        };
        assert_eq!(
            config(&[]).unwrap().unwrap().qxl,
            Some(QxlConfig::default())
        );
        assert_eq!(config(&["--display", "none"]).unwrap().unwrap().qxl, None);
        let qxl = config(&["--qxl", "ram=128M,revision=5"])
            .unwrap()
            .unwrap()
            .qxl
            .unwrap();
        assert_eq!((qxl.ram_size, qxl.revision), (128 << 20, 5));
        assert!(config(&["--display", "none", "--qxl", "ram=128M"])
            .unwrap()
            .is_err());
        let error = config(&["--qxl", "ram=100M"]).unwrap_err().to_string();
        assert!(error.contains("power of two"), "{error}");
        assert!(config(&["--display", "vga"]).is_err());
    }

    #[test]
    fn vga_defaults_follow_the_display() {
        let vga = |extra: &[&str]| {
            let mut args = vec!["saffron", "run", "--kernel", "k"];
            args.extend_from_slice(extra);
            match Cli::try_parse_from(args).unwrap().command {
                Command::Run(run) => run.vm_config().map(|c| c.vga),
                Command::Replay(_) => unreachable!(),
            }
        };
        assert_eq!(vga(&[]), Ok(Some(DEFAULT_QXL_VGA)), "QXL: VGA at 1024x768");
        assert_eq!(vga(&["--vga", "none"]), Ok(None));
        assert_eq!(vga(&["--vga", "text"]), Ok(Some(VgaMode::Text)));
        assert_eq!(vga(&["--display", "none"]), Ok(None));
        assert_eq!(
            vga(&["--display", "none", "--vga", "800x600"]),
            Ok(Some(VgaMode::Linear {
                width: 800,
                height: 600
            }))
        );
        // The mode must fit in the VBE memory: 16 MiB by default, QXL's vgamem.
        assert!(vga(&["--vga", "4096x4096"]).is_err());
        assert!(vga(&["--display", "none", "--vga", "4096x4096"]).is_err());
        assert!(vga(&["--qxl", "ram=256M,vgamem=64M", "--vga", "4096x4096"]).is_ok());
        let error = vga(&["--vga", "2560x2048"]).unwrap_err();
        assert!(error.contains("16 MiB"), "{error}");
    }

    #[test]
    fn replay_options() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["saffron", "replay", "x.rec"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Replay(r) => r,
                Command::Run(_) => unreachable!(),
            })
        };
        let r = parse(&[]).unwrap();
        assert_eq!((r.pace, r.repeat, r.max_gap), (Pace::Recorded, false, 1.0));
        let r = parse(&["--pace", "client", "--loop", "--spice", "port=5999"]).unwrap();
        assert_eq!(r.pace, Pace::Client);
        assert!(r.repeat && r.spice.is_some());
        assert!(parse(&["--pace", "slow"]).is_err());
        assert_eq!(parse(&["--speed", "2.5"]).unwrap().speed, 2.5);
        assert!(parse(&["--speed", "0"]).is_err());
        assert!(parse(&["--speed", "1000"]).is_err());
        assert!(parse(&["--max-gap", "-1"]).is_err());
        assert!(parse(&["--linger", "nan"]).is_err());
    }

    #[test]
    fn cpus_are_bounded() {
        let parse = |n: &str| Cli::try_parse_from(["saffron", "run", "--kernel", "k", "--cpus", n]);
        assert!(parse("0").is_err());
        assert!(parse("9").is_err());
        assert!(parse("8").is_ok());
    }
}
