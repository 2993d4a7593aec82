//! The QXL device's configuration: BAR sizes and revision, with the rules
//! that keep them consistent (docs/qxl.md §1.3), and the `--qxl` option syntax.

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Help text for the `--qxl` option.
pub const HELP: &str = "\
QXL display device options, comma-separated (all optional):
  ram=SIZE       BAR 0: VGA/VBE framebuffer, command memory and rings (default 64M;
                 a power of two, at least 2 x vgamem, at most 256M)
  vram=SIZE      BAR 1: off-screen surface memory (default 64M; a power of two, 4K..256M)
  vram64=SIZE    BAR 4: a larger 64-bit surface BAR (power of two, larger than vram, at most 16G);
                 BAR 1 then shows its first `vram` bytes
  vgamem=SIZE    the primary-surface / VGA area at the start of BAR 0 (default 16M; a power of
                 two, 8M..256M); it limits the largest mode (16M: 2560x1600)
  revision=4|5   PCI revision (default 4); with 5, legacy VGA port writes no longer switch the
                 device back to VGA mode
  xres=W,yres=H  the screen size the guest driver should prefer (announced as the client's
                 monitor; W x H x 4 must fit in vgamem)
  heads=N        outputs (monitors) of the card, 1..4 (default 1; QEMU's max_outputs, also
                 accepted): clients may open one window per output
SIZE is a number with an optional K, M or G suffix (a bare number is MiB).";

/// Sizes and revision of one QXL device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QxlConfig {
    /// BAR 0 ("RAM" in spice terms, "vram" in Linux's): surface-0 area, command pages, header.
    pub ram_size: u64,
    /// BAR 1: surface memory (aliases the first bytes of `vram64_size` when that is set).
    pub vram_size: u64,
    /// BAR 4, when present: the whole surface memory.
    pub vram64_size: Option<u64>,
    /// Bytes at the start of BAR 0 for the primary surface and VGA (`surface0_area_size`).
    pub vgamem_size: u64,
    /// PCI revision: 4 or 5.
    pub revision: u8,
    /// The preferred screen size announced to the guest at boot (`xres`, `yres`).
    pub initial_size: Option<(u32, u32)>,
    /// Outputs the card offers (`heads`, 1..=[`MAX_HEADS`]).
    pub heads: u32,
}

/// Most outputs one card offers.
pub const MAX_HEADS: u32 = 4;

impl Default for QxlConfig {
    fn default() -> Self {
        QxlConfig {
            ram_size: 64 * MIB,
            vram_size: 64 * MIB,
            vram64_size: None,
            vgamem_size: 16 * MIB,
            revision: 4,
            initial_size: None,
            heads: 1,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--qxl: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// Parses `64M`, `1G`, `4096K`, `16` (MiB).
fn parse_size(key: &str, text: &str) -> Result<u64, ConfigError> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, unit) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], KIB),
        Some('m') => (&lower[..lower.len() - 1], MIB),
        Some('g') => (&lower[..lower.len() - 1], GIB),
        _ => (lower, MIB),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| invalid(format!("{key}={text}: not a size (try 64M)")))
}

fn human(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{}G", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{}M", bytes / MIB)
    } else {
        format!("{}K", bytes / KIB)
    }
}

impl QxlConfig {
    /// Parses the `--qxl` option (see [`HELP`]) on top of the defaults.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config = QxlConfig::default();
        let (mut xres, mut yres) = (None, None);
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| invalid(format!("'{item}' is not KEY=VALUE")))?;
            match key {
                "ram" => config.ram_size = parse_size(key, value)?,
                "vram" => config.vram_size = parse_size(key, value)?,
                "vram64" => config.vram64_size = Some(parse_size(key, value)?),
                "vgamem" => config.vgamem_size = parse_size(key, value)?,
                "xres" | "yres" => {
                    let v = value
                        .parse::<u32>()
                        .map_err(|_| invalid(format!("{key}={value}: not a number of pixels")))?;
                    *(if key == "xres" { &mut xres } else { &mut yres }) = Some(v);
                }
                "heads" | "max_outputs" => {
                    config.heads = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_HEADS).contains(n))
                        .ok_or_else(|| {
                            invalid(format!("{key}={value}: must be 1 to {MAX_HEADS}"))
                        })?;
                }
                "revision" => {
                    config.revision = match value {
                        "4" => 4,
                        "5" => 5,
                        _ => return Err(invalid(format!("revision={value}: must be 4 or 5"))),
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "unknown option '{key}' (known: ram, vram, vram64, vgamem, revision, xres, yres, heads)"
                    )))
                }
            }
        }
        config.initial_size = match (xres, yres) {
            (Some(w), Some(h)) => Some((w, h)),
            (None, None) => None,
            _ => return Err(invalid("xres and yres go together")),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the size rules; every BAR must be a power of two.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pow2 = |key: &str, v: u64| {
            if v.is_power_of_two() {
                Ok(())
            } else {
                Err(invalid(format!(
                    "{key}={}: must be a power of two",
                    human(v)
                )))
            }
        };
        pow2("vgamem", self.vgamem_size)?;
        if !(8 * MIB..=256 * MIB).contains(&self.vgamem_size) {
            return Err(invalid(format!(
                "vgamem={}: must be between 8M and 256M",
                human(self.vgamem_size)
            )));
        }
        pow2("ram", self.ram_size)?;
        if self.ram_size < 2 * self.vgamem_size || self.ram_size > 256 * MIB {
            return Err(invalid(format!(
                "ram={}: must be at least 2 x vgamem ({}) and at most 256M",
                human(self.ram_size),
                human(2 * self.vgamem_size)
            )));
        }
        pow2("vram", self.vram_size)?;
        if !(4 * KIB..=256 * MIB).contains(&self.vram_size) {
            return Err(invalid(format!(
                "vram={}: must be between 4K and 256M",
                human(self.vram_size)
            )));
        }
        if let Some(vram64) = self.vram64_size {
            pow2("vram64", vram64)?;
            if vram64 <= self.vram_size || vram64 > 16 * GIB {
                return Err(invalid(format!(
                    "vram64={}: must be larger than vram ({}) and at most 16G",
                    human(vram64),
                    human(self.vram_size)
                )));
            }
        }
        if let Some((w, h)) = self.initial_size {
            if w == 0
                || h == 0
                || w > 8192
                || h > 8192
                || u64::from(w) * u64::from(h) * 4 > self.vgamem_size
            {
                return Err(invalid(format!(
                    "xres={w},yres={h}: must be 1..8192 each and fit in vgamem ({})",
                    human(self.vgamem_size)
                )));
            }
        }
        if self.revision != 4 && self.revision != 5 {
            return Err(invalid(format!(
                "revision={}: must be 4 or 5",
                self.revision
            )));
        }
        Ok(())
    }

    /// Bytes of surface memory (the backing of BAR 1 and BAR 4).
    pub fn surface_memory_size(&self) -> u64 {
        self.vram64_size.unwrap_or(self.vram_size)
    }

    /// Where the RAM header lives in BAR 0.
    pub fn ram_header_offset(&self) -> u64 {
        self.ram_size - super::defs::ram::RESERVED
    }

    /// Command pages between the surface-0 area and the header (`num_pages`).
    pub fn num_pages(&self) -> u32 {
        ((self.ram_header_offset() - self.vgamem_size) / 4096) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_options() {
        let c = QxlConfig::parse("").unwrap();
        assert_eq!(c, QxlConfig::default());
        assert_eq!(c.ram_header_offset(), 0x03FF_E000);
        assert_eq!(c.num_pages(), 12286);
        let c = QxlConfig::parse("ram=128M,vram=32M,vram64=1G,vgamem=32M,revision=5").unwrap();
        assert_eq!(c.ram_size, 128 * MIB);
        assert_eq!(c.vram_size, 32 * MIB);
        assert_eq!(c.vram64_size, Some(GIB));
        assert_eq!(c.surface_memory_size(), GIB);
        assert_eq!(c.revision, 5);
        assert_eq!(QxlConfig::parse("ram=65536K").unwrap().ram_size, 64 * MIB);
        let c = QxlConfig::parse("xres=1920,yres=1080").unwrap();
        assert_eq!(c.initial_size, Some((1920, 1080)));
        assert_eq!(c.heads, 1);
        assert_eq!(QxlConfig::parse("heads=4").unwrap().heads, 4);
        assert_eq!(QxlConfig::parse("max_outputs=2").unwrap().heads, 2);
    }

    #[test]
    fn bad_options_say_why() {
        let err = |s: &str| QxlConfig::parse(s).unwrap_err().to_string();
        assert!(
            err("ram=48M").contains("power of two"),
            "{}",
            err("ram=48M")
        );
        assert!(err("ram=16M").contains("at least 2 x vgamem"));
        assert!(err("vgamem=4M").contains("between 8M and 256M"));
        assert!(err("vram64=32M").contains("larger than vram"));
        assert!(err("revision=3").contains("4 or 5"));
        assert!(err("bogus=1").contains("unknown option 'bogus'"));
        assert!(err("ram").contains("KEY=VALUE"));
        assert!(err("ram=lots").contains("not a size"));
        assert!(err("ram=99999999999G").contains("not a size"));
        assert!(err("xres=1920").contains("go together"));
        assert!(err("xres=4096,yres=4096").contains("fit in vgamem"));
        assert!(err("xres=-1,yres=2").contains("not a number"));
        assert!(err("heads=0").contains("1 to 4"));
        assert!(err("heads=5").contains("1 to 4"));
        assert!(err("heads=two").contains("1 to 4"));
    }
}
