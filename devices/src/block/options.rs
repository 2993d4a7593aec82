//! The `--disk` option: which image, its format, and how it is used.

use std::path::PathBuf;

/// Help text for `--disk`.
pub const HELP: &str = "\
A disk image for the guest, as a virtio-blk device (repeatable: the first is /dev/vda, the
next /dev/vdb, ...). Comma-separated options:
  path=IMG             the image file or host block device (`file=` works too; a value
                       without a key is taken as the path)
  format=raw|qcow2     the image format (default: qcow2 if the file starts like one, else
                       raw; a guessed raw disk may not write a qcow2 header to its sector 0)
  readonly=on|off      the guest may only read (default off); the image is locked shared
                       instead of exclusively
  serial=ID            the serial number the guest reads (at most 20 printable characters;
                       /dev/disk/by-id/virtio-ID)
  cache=MODE           writeback (default: guest flushes reach the disk), writethrough
                       (every write is durable at once) or unsafe (flushes ignored)
A qcow2 image's backing files are opened read-only and locked shared. An image another
process has open for writing is refused, and so is a second writer.";

/// The image file's format (`format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    /// The name `format=` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

/// When written data reaches the host's storage (`cache=`, QEMU's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Through the host's page cache; the guest's flushes are `fdatasync`s
    /// (the default).
    #[default]
    Writeback,
    /// Every write is durable before it completes.
    Writethrough,
    /// Flushes are ignored: fast, and a host crash loses data.
    Unsafe,
}

/// One `--disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOptions {
    pub path: PathBuf,
    /// `None`: found from the file's first bytes (see [`probe`]).
    pub format: Option<Format>,
    pub read_only: bool,
    /// GET_ID's answer (at most 20 bytes of printable ASCII).
    pub serial: Option<String>,
    pub cache: CacheMode,
}

impl DiskOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DiskOptions {
            path: path.into(),
            format: None,
            read_only: false,
            serial: None,
            cache: CacheMode::default(),
        }
    }
}

/// Why a `--disk` value is invalid.
fn invalid(message: impl Into<String>) -> String {
    message.into()
}

impl DiskOptions {
    /// Parses `path=IMG[,format=..][,readonly=on][,serial=ID][,cache=..]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut path = None;
        let mut options = DiskOptions::new("");
        for item in text.split(',') {
            let (key, value) = match item.split_once('=') {
                Some(pair) => pair,
                None if path.is_none() && !item.is_empty() => ("path", item),
                None => return Err(invalid(format!("'{item}' is not KEY=VALUE"))),
            };
            match key {
                "path" | "file" if value.is_empty() => return Err(invalid("path= is empty")),
                "path" | "file" => path = Some(PathBuf::from(value)),
                "format" => options.format = Some(parse_format(value)?),
                "readonly" => options.read_only = parse_switch(key, value)?,
                "serial" => options.serial = Some(parse_serial(value)?),
                "cache" => options.cache = parse_cache(value)?,
                _ => return Err(invalid(format!("unknown option '{key}'"))),
            }
        }
        options.path = path.ok_or_else(|| invalid("no image given (path=IMG)"))?;
        Ok(options)
    }
}

fn parse_format(value: &str) -> Result<Format, String> {
    match value {
        "raw" => Ok(Format::Raw),
        "qcow2" => Ok(Format::Qcow2),
        _ => Err(invalid(format!(
            "format '{value}' is not one of raw, qcow2"
        ))),
    }
}

fn parse_switch(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(invalid(format!("{key}={value}: say on or off"))),
    }
}

fn parse_cache(value: &str) -> Result<CacheMode, String> {
    match value {
        "writeback" => Ok(CacheMode::Writeback),
        "writethrough" => Ok(CacheMode::Writethrough),
        "unsafe" => Ok(CacheMode::Unsafe),
        "none" | "directsync" => Err(invalid(format!(
            "cache={value} (O_DIRECT) is not supported; use writeback or writethrough"
        ))),
        _ => Err(invalid(format!(
            "cache '{value}' is not one of writeback, writethrough, unsafe"
        ))),
    }
}

/// The serial number the guest reads: at most 20 printable ASCII characters.
fn parse_serial(value: &str) -> Result<String, String> {
    if value.len() > 20 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!(
            "serial '{value}' must be 1 to 20 printable characters without spaces"
        )));
    }
    if value.is_empty() {
        return Err(invalid("serial= is empty"));
    }
    Ok(value.to_string())
}
