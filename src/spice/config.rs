//! The `--spice` option: where the server listens and who may connect.
//!
//! ```text
//! --spice addr=127.0.0.1,port=5930[,password=SECRET|disable-ticketing][,unix=PATH]
//!         [,mouse=client|server]
//!         [,image-compression=auto_glz|auto_lz|quic|glz|lz|lz4|off]
//!         [,jpeg-wan-compression=auto|never|always]
//!         [,zlib-glz-wan-compression=auto|never|always]
//!         [,streaming-video=off|all|filter]
//!         [,agent=on|off][,agent-mouse=on|off]
//!         [,disable-copy-paste][,disable-agent-file-xfer]
//!         [,tls-port=N,x509-dir=DIR][,tls-channel=NAME][,plaintext-channel=NAME]
//!         [,allow-plaintext][,playback-compression=on|off]
//! ```
//!
//! * `port=N` listens on TCP (address `addr`, default 127.0.0.1: loopback
//!   only unless an address is given); `unix=PATH` listens on a Unix socket
//!   (`spice+unix://PATH`), mode 0600 from the start. At least one of them is needed; both may be used.
//! * `password=SECRET` makes clients give that password; so do
//!   `password-file=PATH` (its first line) and the environment variable
//!   [`PASSWORD_ENV`], which keep it off the command line that every user
//!   can read in /proc.
//! * `disable-ticketing` lets anyone in.
//! * Neither: reachable only from this machine (loopback TCP, Unix
//!   socket), no password is asked — like a local console, with a warning
//!   that any local user may connect. A non-loopback address without
//!   either is refused, so a VM's screen and keyboard are never put on a
//!   network without a password by accident.
//! * `tls-port=N` with `x509-dir=DIR` serves TLS (see [`super::tls`]). A
//!   plaintext `port=` on a non-loopback address is refused unless every
//!   channel is TLS-only (`tls-channel=default`: the plaintext port only
//!   sends clients to the TLS one) or `allow-plaintext` says cleartext on
//!   the network is wanted.
//! * `mouse=client` offers only SPICE's client mouse mode (absolute
//!   positions, through the tablet), `mouse=server` only server mode
//!   (relative motion, through the PS/2 mouse). Without it both are offered
//!   once the guest's tablet driver is running, and client mode is the
//!   starting one; until then, server mode only.
//! * `agent=off` leaves out the guest agent's port (a virtio-serial port
//!   `com.redhat.spice.0` for spice-vdagent); `agent-mouse=off` keeps
//!   client mouse mode off the agent; `disable-copy-paste` and
//!   `disable-agent-file-xfer` stop clipboard and file transfer messages,
//!   as QEMU's options of those names.
//! * `playback-compression=off` sends the guest's sound as raw PCM (QEMU's
//!   option; on by default: Opus for clients that take it). What clients
//!   record comes as they pick (Opus or raw) either way, as with libspice.
//! * The compression options have libspice's names and meanings (see
//!   [`super::codec::policy`]); defaults auto_glz, auto, auto, filter.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::agent::AgentOptions;
use super::codec::policy::{CompressionOptions, OPTION_NAMES};
use super::ticket::{check_password, TicketPolicy};
use super::tls::{self, TlsOptions};

/// What `--spice` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiceConfig {
    /// TCP address to listen on for plaintext, if any.
    pub tcp: Option<SocketAddr>,
    /// TCP address to listen on for TLS, and the TLS options.
    pub tls_addr: Option<SocketAddr>,
    pub tls: TlsOptions,
    /// Unix socket path to listen on, if any.
    pub unix: Option<PathBuf>,
    pub ticket: TicketPolicy,
    /// Neither a password nor `disable-ticketing` was given: any local user
    /// may connect (the server warns).
    pub open_to_local_users: bool,
    /// Which mouse modes clients get.
    pub mouse: MousePolicy,
    /// How images are compressed.
    pub compression: CompressionOptions,
    /// The guest agent and what it may carry.
    pub agent: AgentOptions,
    /// Sound as Opus for clients that take it (`playback-compression`).
    pub playback_compression: bool,
}

/// Which SPICE mouse modes are offered (`mouse=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MousePolicy {
    /// Client mode when an absolute pointer is available, else server mode.
    #[default]
    Auto,
    /// Client mode only.
    Client,
    /// Server mode only.
    Server,
}

/// Text for `--help`.
pub const HELP: &str = "\
Serve the VM's display with the built-in SPICE server. Options, comma-separated:
  port=N               listen on TCP port N
  addr=IP              on this address (default 127.0.0.1: this machine only)
  unix=PATH            listen on a Unix socket (spice+unix://PATH)
  password=SECRET      clients must give this password (at most 60 bytes)
  password-file=PATH   the password is the first line of PATH (or put it in the
                       environment variable SAFFRON_SPICE_PASSWORD: unlike the
                       command line, other users cannot read those)
  disable-ticketing    no password at all
  mouse=client|server  offer only this mouse mode (default: client mode once the
                       guest's tablet driver runs, server mode until then)
  image-compression=auto_glz|auto_lz|quic|glz|lz|lz4|off
                       lossless image coding (default auto_glz: QUIC for
                       photographic images, GLZ for the rest)
  jpeg-wan-compression=auto|never|always
                       JPEG for photographic updates (auto: slow links only)
  zlib-glz-wan-compression=auto|never|always
                       zlib over GLZ (auto: slow links only)
  streaming-video=off|all|filter
                       areas redrawn at video rates go as MJPEG streams
                       (filter, the default: only photo-like ones; all: any;
                       off: never); lossless again once they stop
  agent=on|off         the guest agent's port, com.redhat.spice.0 (default on):
                       spice-vdagent in the guest gives clipboard sharing,
                       resolution that follows the window, file transfer
  agent-mouse=on|off   client mouse mode through the agent when there is no
                       tablet (default on)
  disable-copy-paste   no clipboard sharing through the agent
  disable-agent-file-xfer
                       no file transfer through the agent
  tls-port=N           also listen for TLS on port N (TLS 1.2 and 1.3)
  x509-dir=DIR         the TLS certificate: DIR/server-cert.pem and
                       DIR/server-key.pem (or x509-cert-file=, x509-key-file=)
  tls-channel=NAME     channel NAME (main, display, inputs, cursor, ...) only
                       over TLS; NAME=default: every channel not named
  plaintext-channel=NAME
                       channel NAME only without TLS
  allow-plaintext      allow the plaintext port= on a non-loopback address
  playback-compression=on|off
                       the guest's sound as Opus for clients that take it
                       (default on; off: raw PCM, 1.5 Mbit/s)
Without password= or disable-ticketing no password is asked, which is allowed
only for loopback addresses and Unix sockets; any other address needs one of
the two, and TLS (or allow-plaintext). Example: --spice port=5930 then
remote-viewer spice://127.0.0.1:5930";

/// The environment variable that may hold the password (so that it is not
/// on the command line, which other users can read in /proc).
pub const PASSWORD_ENV: &str = "SAFFRON_SPICE_PASSWORD";

impl SpiceConfig {
    /// Parses the `--spice` value (one-line errors); the password may also
    /// come from [`PASSWORD_ENV`].
    pub fn parse(text: &str) -> Result<SpiceConfig, String> {
        let env = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        Self::parse_with_env(text, env)
    }

    /// [`Self::parse`], with the environment's password given.
    pub fn parse_with_env(text: &str, env_password: Option<String>) -> Result<SpiceConfig, String> {
        if text.chars().any(char::is_control) {
            // (Errors quote option names and values: they stay one line.)
            return Err("the options contain a control character (a line break?)".into());
        }
        let mut addr: Option<IpAddr> = None;
        let mut port: Option<u16> = None;
        let mut unix: Option<PathBuf> = None;
        let mut password: Option<String> = None;
        let mut disable_ticketing = false;
        let mut mouse: Option<MousePolicy> = None;
        let mut compression = CompressionOptions::default();
        let mut seen_compression: Vec<&str> = Vec::new();
        let mut agent = AgentOptions::default();
        let mut seen_agent: Vec<&str> = Vec::new();
        let mut tls = TlsOptions::default();
        let mut allow_plaintext = false;
        let mut playback_compression: Option<bool> = None;
        for item in text.split(',').map(str::trim) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let once = |seen: bool| {
                if seen {
                    Err(format!("{key} is given twice"))
                } else {
                    Ok(())
                }
            };
            let need = |v: Option<&str>| match v {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(format!("{key} needs a value, e.g. {key}={}", example(key))),
            };
            match key {
                "addr" => {
                    once(addr.is_some())?;
                    let v = need(value)?;
                    let v = v.trim_start_matches('[').trim_end_matches(']');
                    addr = Some(v.parse().map_err(|_| {
                        format!("addr: '{v}' is not an IP address (e.g. 127.0.0.1 or ::1)")
                    })?);
                }
                "port" => {
                    once(port.is_some())?;
                    let v = need(value)?;
                    port = Some(
                        v.parse::<u16>()
                            .ok()
                            .filter(|&p| p != 0)
                            .ok_or_else(|| format!("port: '{v}' is not a port (1 to 65535)"))?,
                    );
                }
                "unix" => {
                    once(unix.is_some())?;
                    unix = Some(PathBuf::from(need(value)?));
                }
                "password" | "password-file" => {
                    if password.is_some() {
                        return Err("give one password= or password-file=".into());
                    }
                    let v = need(value)?;
                    password = Some(match key {
                        "password" => check_password(&v).map(|()| v)?,
                        _ => read_password_file(&v)?,
                    });
                }
                "disable-ticketing" => {
                    if value.is_some() {
                        return Err("disable-ticketing takes no value".into());
                    }
                    once(disable_ticketing)?;
                    disable_ticketing = true;
                }
                "mouse" => {
                    once(mouse.is_some())?;
                    mouse = Some(match need(value)?.as_str() {
                        "client" => MousePolicy::Client,
                        "server" => MousePolicy::Server,
                        v => return Err(format!("mouse: '{v}' is not client or server")),
                    });
                }
                "agent" | "agent-mouse" => {
                    once(seen_agent.contains(&key))?;
                    seen_agent.push(key);
                    let on = match need(value)?.as_str() {
                        "on" => true,
                        "off" => false,
                        v => return Err(format!("{key}: '{v}' is not on or off")),
                    };
                    if key == "agent" {
                        agent.enabled = on;
                    } else {
                        agent.mouse = on;
                    }
                }
                "disable-copy-paste" | "disable-agent-file-xfer" => {
                    if value.is_some() {
                        return Err(format!("{key} takes no value"));
                    }
                    once(seen_agent.contains(&key))?;
                    seen_agent.push(key);
                    if key == "disable-copy-paste" {
                        agent.copy_paste = false;
                    } else {
                        agent.file_transfer = false;
                    }
                }
                key if tls::OPTION_NAMES.contains(&key) => tls.set(key, &need(value)?)?,
                "playback-compression" => {
                    once(playback_compression.is_some())?;
                    playback_compression = Some(match need(value)?.as_str() {
                        "on" => true,
                        "off" => false,
                        v => return Err(format!("{key}: '{v}' is not on or off")),
                    });
                }
                "allow-plaintext" => {
                    if value.is_some() {
                        return Err("allow-plaintext takes no value".into());
                    }
                    once(allow_plaintext)?;
                    allow_plaintext = true;
                }
                key if OPTION_NAMES.contains(&key) => {
                    once(seen_compression.contains(&key))?;
                    seen_compression.push(key);
                    compression.set(key, &need(value)?)?;
                }
                "" => return Err("empty option (stray comma?)".into()),
                other => {
                    return Err(format!(
                        "unknown option '{other}' (known: addr, port, unix, password, password-file, disable-ticketing, mouse, image-compression, jpeg-wan-compression, zlib-glz-wan-compression, streaming-video, agent, agent-mouse, disable-copy-paste, disable-agent-file-xfer, tls-port, x509-dir, x509-cert-file, x509-key-file, tls-channel, plaintext-channel, allow-plaintext, playback-compression)"
                    ))
                }
            }
        }
        if password.is_some() && disable_ticketing {
            return Err("password= and disable-ticketing contradict each other".into());
        }
        if let Some(p) = env_password.filter(|_| password.is_none()) {
            if disable_ticketing {
                return Err(format!(
                    "{PASSWORD_ENV} and disable-ticketing contradict each other"
                ));
            }
            check_password(&p).map_err(|e| format!("{PASSWORD_ENV}: {e}"))?;
            password = Some(p);
        }
        tls.check()?;
        if addr.is_some() && port.is_none() && tls.port.is_none() {
            return Err("addr= needs port= or tls-port= too".into());
        }
        if port.is_none() && unix.is_none() && tls.port.is_none() {
            return Err("give port=N (TCP) or unix=PATH, e.g. --spice port=5930".into());
        }
        let ip = addr.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let remote = !ip.is_loopback() && (port.is_some() || tls.port.is_some());
        if remote && port.is_some() && !allow_plaintext && !tls.policy.all_secure() {
            return Err(format!(
                "{ip} is reachable from other machines and port= is plaintext: serve TLS \
                 (tls-port=N,x509-dir=DIR,tls-channel=default), or add allow-plaintext"
            ));
        }
        let open_to_local_users = password.is_none() && !disable_ticketing;
        if remote && open_to_local_users {
            return Err(format!(
                "{ip} is reachable from other machines: add password=SECRET, or disable-ticketing to allow anyone"
            ));
        }
        let ticket = match password {
            Some(p) => TicketPolicy::Password(p),
            None => TicketPolicy::Disabled,
        };
        Ok(SpiceConfig {
            tcp: port.map(|p| SocketAddr::new(ip, p)),
            tls_addr: tls.port.map(|p| SocketAddr::new(ip, p)),
            tls,
            unix,
            ticket,
            open_to_local_users,
            mouse: mouse.unwrap_or_default(),
            compression,
            agent,
            playback_compression: playback_compression.unwrap_or(true),
        })
    }
}

/// The password in a file: its first line (without the line end).
fn read_password_file(path: &str) -> Result<String, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("password-file: cannot read {path}: {e}"))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let password = String::from_utf8(line.to_vec())
        .map_err(|_| format!("password-file: {path} is not UTF-8 text"))?;
    check_password(&password).map_err(|e| format!("password-file: {e}"))?;
    Ok(password)
}

fn example(key: &str) -> &'static str {
    match key {
        "addr" => "127.0.0.1",
        "port" => "5930",
        "unix" => "/run/saffron/vm.sock",
        "mouse" => "client",
        "image-compression" => "auto_glz",
        "jpeg-wan-compression" | "zlib-glz-wan-compression" => "auto",
        "streaming-video" => "filter",
        "agent" | "agent-mouse" | "playback-compression" => "on",
        _ => "SECRET",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spice::codec::policy::{ImageCompression, StreamingVideo, WanCompression};

    #[test]
    fn parses_the_documented_forms() {
        let c = SpiceConfig::parse("port=5930").unwrap();
        assert_eq!(c.tcp, Some("127.0.0.1:5930".parse().unwrap()));
        assert_eq!(c.unix, None);
        assert_eq!(c.ticket, TicketPolicy::Disabled);
        assert!(c.open_to_local_users);

        let c =
            SpiceConfig::parse("addr=0.0.0.0,port=5900,password=s3cret,allow-plaintext").unwrap();
        assert_eq!(c.tcp, Some("0.0.0.0:5900".parse().unwrap()));
        assert_eq!(c.ticket, TicketPolicy::Password("s3cret".into()));

        let c = SpiceConfig::parse("addr=::1,port=1,disable-ticketing").unwrap();
        assert_eq!(c.tcp, Some("[::1]:1".parse().unwrap()));

        let c = SpiceConfig::parse("unix=/tmp/s.sock").unwrap();
        assert_eq!((c.tcp, c.unix), (None, Some("/tmp/s.sock".into())));

        let c = SpiceConfig::parse("addr=192.168.1.5,port=5930,disable-ticketing,allow-plaintext")
            .unwrap();
        assert_eq!(c.ticket, TicketPolicy::Disabled);
        assert!(!c.open_to_local_users);
        let c =
            SpiceConfig::parse("addr=192.168.1.5,tls-port=5931,x509-dir=/x,password=p").unwrap();
        assert_eq!(c.tls_addr, Some("192.168.1.5:5931".parse().unwrap()));
        assert_eq!(c.tcp, None);
        let c = SpiceConfig::parse(
            "addr=192.168.1.5,port=5930,tls-port=5931,x509-dir=/x,password=p,tls-channel=default",
        )
        .unwrap();
        assert_eq!(c.tcp, Some("192.168.1.5:5930".parse().unwrap()));
        assert_eq!(c.mouse, MousePolicy::Auto);

        let c = SpiceConfig::parse("port=1,mouse=client").unwrap();
        assert_eq!(c.mouse, MousePolicy::Client);
        let c = SpiceConfig::parse("mouse=server,unix=/tmp/s").unwrap();
        assert_eq!(c.mouse, MousePolicy::Server);
        assert_eq!(c.compression, CompressionOptions::default());
        assert_eq!(c.agent, AgentOptions::default());
        let c = SpiceConfig::parse(
            "port=1,agent=off,agent-mouse=off,disable-copy-paste,disable-agent-file-xfer",
        )
        .unwrap();
        assert_eq!(
            c.agent,
            AgentOptions {
                enabled: false,
                mouse: false,
                copy_paste: false,
                file_transfer: false
            }
        );

        let c = SpiceConfig::parse(
            "port=1,image-compression=quic,jpeg-wan-compression=always,\
             zlib-glz-wan-compression=never,streaming-video=all",
        )
        .unwrap();
        assert_eq!(
            c.compression,
            CompressionOptions {
                image: ImageCompression::Quic,
                jpeg: WanCompression::Always,
                zlib_glz: WanCompression::Never,
                streaming: StreamingVideo::All,
            }
        );
    }

    #[test]
    fn refuses_with_one_line_errors() {
        for (text, needle) in [
            ("", "empty option"),
            ("port=0", "not a port"),
            ("port=70000", "not a port"),
            ("port=", "needs a value"),
            ("addr=1.2.3.4", "needs port"),
            ("addr=foo,port=1", "not an IP"),
            ("port=1,port=2", "twice"),
            ("port=1,password=a,disable-ticketing", "contradict"),
            ("port=1,colour=red", "unknown option 'colour'"),
            ("password=x", "give port"),
            ("addr=10.0.0.1,port=5930", "reachable from other machines"),
            ("addr=10.0.0.1,port=5930,password=x", "port= is plaintext"),
            (
                "addr=10.0.0.1,tls-port=5931,x509-dir=/x,allow-plaintext",
                "add password=SECRET",
            ),
            ("port=1,allow-plaintext=1", "takes no value"),
            (
                "port=1,password=a,password-file=/x",
                "one password= or password-file=",
            ),
            (
                "port=1,password-file=/nonexistent",
                "cannot read /nonexistent",
            ),
            ("port=1,tls-port=2", "needs the server's certificate"),
            ("port=1,disable-ticketing=yes", "takes no value"),
            ("port=1,,unix=/x", "stray comma"),
            ("\u{2}0\ng", "control character"),
            ("port=1,mouse=tablet", "not client or server"),
            ("port=1,mouse=", "needs a value"),
            ("port=1,mouse=client,mouse=server", "twice"),
            ("port=1,image-compression=zip", "not one of auto_glz"),
            ("port=1,image-compression=", "needs a value"),
            (
                "port=1,jpeg-wan-compression=sometimes",
                "not one of auto, never",
            ),
            ("port=1,streaming-video=on", "not one of off, all, filter"),
            ("port=1,image-compression=lz,image-compression=glz", "twice"),
            ("port=1,agent=maybe", "not on or off"),
            ("port=1,agent=on,agent=off", "twice"),
            ("port=1,disable-copy-paste=1", "takes no value"),
            (
                "port=1,disable-agent-file-xfer,disable-agent-file-xfer",
                "twice",
            ),
        ] {
            let e = SpiceConfig::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains('\n'));
        }
        let e = SpiceConfig::parse_with_env("port=1,disable-ticketing", Some("p".into()));
        assert!(e.unwrap_err().contains("contradict"));
        let c = SpiceConfig::parse_with_env("port=1", Some("from-env".into())).unwrap();
        assert_eq!(c.ticket, TicketPolicy::Password("from-env".into()));
        assert!(!c.open_to_local_users);
        let c = SpiceConfig::parse_with_env("port=1,password=cli", Some("env".into())).unwrap();
        assert_eq!(c.ticket, TicketPolicy::Password("cli".into()));
        let dir = std::env::temp_dir().join(format!("saffron-pw-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\nignored\n").unwrap();
        let c = SpiceConfig::parse(&format!("port=1,password-file={}", dir.display())).unwrap();
        assert_eq!(c.ticket, TicketPolicy::Password("s3cret".into()));
        std::fs::remove_file(&dir).unwrap();
        let long = format!("port=1,password={}", "x".repeat(61));
        assert!(SpiceConfig::parse(&long)
            .unwrap_err()
            .contains("at most 60"));
    }
}
