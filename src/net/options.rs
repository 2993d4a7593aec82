//! `--net` as QEMU's `-nic` spells it: `user[,hostfwd=tcp::8080-:80...]
//! [,dns=ADDR]` or `tap=NAME` (also `tap,ifname=NAME`), each with
//! `mac=` and `model=virtio`.

use std::net::IpAddr;

/// The help text of `--net`.
pub const HELP: &str = "A network card (virtio-net), repeatable:
  user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-:GUESTPORT]...[,dns=ADDR]
      user-mode networking through passt (the default backend): the guest
      gets its address by DHCP; hostfwd forwards a host port to the guest;
      dns= is the DNS server the guest is told by DHCP (default: the host's);
      the gateway's address reaches the host itself, so dns=GATEWAY uses a
      resolver that listens on the host's loopback
  tap=NAME (or tap,ifname=NAME)
      an existing TAP device, or one saffron creates when it may
  both take mac=52:54:00:12:34:56 (default: that, plus the card's index)
  and model=virtio";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A host port forwarded to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub protocol: Protocol,
    /// The host address to listen on (all when absent).
    pub host_addr: Option<IpAddr>,
    pub host_port: u16,
    pub guest_port: u16,
}

/// User-mode networking's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserNet {
    pub forwards: Vec<Forward>,
    pub dns: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetBackendKind {
    User(UserNet),
    Tap { name: String },
}

/// One `--net`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    pub backend: NetBackendKind,
    pub mac: Option<[u8; 6]>,
}

impl NetOptions {
    /// Parses one `--net` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(',');
        let first = parts.next().unwrap_or_default();
        let (mut backend, rest_first) = match first.split_once('=') {
            None if first == "user" || first.is_empty() => (Some(Kind::User), None),
            None if first == "tap" => (Some(Kind::Tap(None)), None),
            Some(("tap", name)) => (Some(Kind::Tap(Some(name.to_string()))), None),
            _ => (None, Some(first)),
        };
        let mut user = UserNet::default();
        let mut mac = None;
        for part in rest_first.into_iter().chain(parts) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("--net: {part:?} is not KEY=VALUE"))?;
            match key {
                "hostfwd" => user.forwards.push(parse_forward(value)?),
                "dns" => user.dns = Some(parse_addr("dns", value)?),
                "mac" => mac = Some(parse_mac(value)?),
                "model" if matches!(value, "virtio" | "virtio-net-pci" | "virtio-net") => {}
                "model" => return Err(format!("--net: model {value:?} is not supported (virtio)")),
                "ifname" => match &mut backend {
                    Some(Kind::Tap(name @ None)) => *name = Some(value.to_string()),
                    _ => return Err("--net: ifname= goes with tap".into()),
                },
                _ => return Err(format!("--net: unknown option {key:?}")),
            }
        }
        let backend = match backend.unwrap_or(Kind::User) {
            Kind::User => NetBackendKind::User(user),
            Kind::Tap(name) => {
                if user != UserNet::default() {
                    return Err("--net: hostfwd= and dns= go with user, not tap".into());
                }
                let name = name.ok_or("--net tap needs a device name: tap=NAME")?;
                check_ifname(&name)?;
                NetBackendKind::Tap { name }
            }
        };
        Ok(NetOptions { backend, mac })
    }
}

enum Kind {
    User,
    Tap(Option<String>),
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let mac = devices::virtio::net::parse_mac(text).ok_or_else(|| {
        format!("--net: mac {text:?} is not six hex bytes like 52:54:00:12:34:56")
    })?;
    if !devices::virtio::net::is_unicast(&mac) {
        return Err(format!("--net: mac {text} is not a unicast address"));
    }
    Ok(mac)
}

fn parse_addr(what: &str, text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("--net: {what} {text:?} is not an IP address"))
}

fn parse_port(what: &str, text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!(
            "--net: hostfwd {what} port {text:?} is not 1-65535"
        )),
    }
}

/// `[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT` (QEMU's); passt
/// forwards to the guest's one address, so GUESTADDR must be empty.
fn parse_forward(text: &str) -> Result<Forward, String> {
    let bad = || format!("--net: hostfwd {text:?} is not [tcp|udp]:[HOSTADDR]:HOSTPORT-:GUESTPORT");
    let (host, guest) = text.split_once('-').ok_or_else(bad)?;
    let mut h = host.split(':');
    let (protocol, addr, port) = match (h.next(), h.next(), h.next(), h.next()) {
        (Some(p), Some(a), Some(port), None) => (p, a, port),
        _ => return Err(bad()),
    };
    let protocol = match protocol {
        "" | "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return Err(bad()),
    };
    let host_addr = (!addr.is_empty())
        .then(|| parse_addr("hostfwd address", addr))
        .transpose()?;
    let (guest_addr, guest_port) = guest.split_once(':').ok_or_else(bad)?;
    if !guest_addr.is_empty() {
        return Err(format!(
            "--net: hostfwd {text:?}: passt forwards to the guest's own address; leave the guest address out (-:PORT)"
        ));
    }
    Ok(Forward {
        protocol,
        host_addr,
        host_port: parse_port("host", port)?,
        guest_port: parse_port("guest", guest_port)?,
    })
}

fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--net: tap name {name:?} is not an interface name (1-15 letters, digits, - _ .)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_with_forwards() {
        let o = NetOptions::parse("user,hostfwd=tcp::8080-:80,hostfwd=udp:127.0.0.1:5353-:53,dns=10.0.2.3,mac=52:54:00:00:00:09").unwrap();
        let NetBackendKind::User(u) = &o.backend else {
            panic!("{o:?}")
        };
        assert_eq!(u.forwards.len(), 2);
        assert_eq!(
            u.forwards[1],
            Forward {
                protocol: Protocol::Udp,
                host_addr: Some("127.0.0.1".parse().unwrap()),
                host_port: 5353,
                guest_port: 53
            }
        );
        assert_eq!(u.dns, Some("10.0.2.3".parse().unwrap()));
        assert_eq!(o.mac, Some([0x52, 0x54, 0, 0, 0, 9]));
        // The backend may be left out.
        assert!(matches!(
            NetOptions::parse("hostfwd=tcp::2222-:22").unwrap().backend,
            NetBackendKind::User(_)
        ));
    }

    #[test]
    fn tap_names() {
        for text in ["tap=tap0", "tap,ifname=tap0", "tap=tap0,model=virtio"] {
            let o = NetOptions::parse(text).unwrap();
            assert_eq!(
                o.backend,
                NetBackendKind::Tap {
                    name: "tap0".into()
                },
                "{text}"
            );
        }
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for text in [
            "tap",
            "tap=",
            "tap=a/b",
            "tap=waytoolonginterfacename",
            "tap=tap0,hostfwd=tcp::1-:2",
            "user,hostfwd=tcp::0-:80",
            "user,hostfwd=tcp::80",
            "user,hostfwd=sctp::80-:80",
            "user,hostfwd=tcp::80-10.0.2.15:80",
            "user,mac=01:00:00:00:00:01",
            "user,mac=52:54",
            "user,model=e1000",
            "user,dns=nowhere",
            "user,frob=1",
            "user,ifname=x",
            "vde",
        ] {
            let e = NetOptions::parse(text).unwrap_err();
            assert!(!e.contains('\n') && e.starts_with("--net"), "{text}: {e}");
        }
    }
}
