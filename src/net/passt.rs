//! User-mode networking through passt (docs/virtio-net.md §5.2): saffron
//! starts `passt` with one end of a socket pair (`--fd`), in the
//! foreground and for this one client (`--one-off`), so passt ends when
//! saffron's end closes, however saffron ends. passt answers DHCP, ARP and
//! NDP itself, gives the guest the host's address and routes, maps the
//! gateway's address to the host, and forwards the given host ports.

use std::io;
use std::net::{IpAddr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use super::{Forward, NetError, Protocol, UserNet};

/// How long passt may take to fail at start before it counts as running.
const START_CHECK: Duration = Duration::from_millis(300);

/// A running passt; it exits when the frame socket closes.
pub struct Passt {
    child: Child,
}

impl Passt {
    /// Starts passt for `user`: the process and saffron's end of its socket.
    pub fn start(user: &UserNet) -> Result<(Passt, UnixStream), NetError> {
        let program = find_in_path("passt").ok_or(NetError::NoPasst)?;
        for forward in &user.forwards {
            check_port_free(forward)?;
        }
        let (ours, theirs) = UnixStream::pair().map_err(NetError::PasstStart)?;
        // passt sizes the buffers of a socket it accepts (`--socket`), not
        // of one it is given; these are the sizes it would choose.
        super::unix_buffer::enlarge(&theirs);
        // passt's end must survive exec; ours must not.
        fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| NetError::PasstStart(e.into()))?;
        let child = Command::new(program)
            .args(arguments(user, theirs.as_raw_fd()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NetError::PasstStart)?;
        drop(theirs);
        let mut passt = Passt { child };
        passt.check_started()?;
        Ok((passt, ours))
    }

    /// passt checks its options and ports at once; one that fails exits
    /// within a moment.
    fn check_started(&mut self) -> Result<(), NetError> {
        let deadline = Instant::now() + START_CHECK;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut detail = String::new();
                if let Some(mut err) = self.child.stderr.take() {
                    let _ = io::Read::read_to_string(&mut err, &mut detail);
                }
                let detail = last_line(&detail)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default();
                return Err(NetError::PasstExited {
                    status: status.to_string(),
                    detail,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // From now on passt's messages go to our stderr.
        if let Some(err) = self.child.stderr.take() {
            std::thread::Builder::new()
                .name("passt-log".into())
                .spawn(move || forward_log(err))
                .map_err(NetError::PasstStart)?;
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// passt's command line.
fn arguments(user: &UserNet, fd: i32) -> Vec<String> {
    let mut args: Vec<String> = ["--foreground", "--quiet", "--stderr", "--one-off", "--fd"]
        .map(String::from)
        .to_vec();
    args.push(fd.to_string());
    for f in &user.forwards {
        let flag = match f.protocol {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        };
        let addr = f.host_addr.map(|a| format!("{a}/")).unwrap_or_default();
        args.push(flag.into());
        args.push(format!("{addr}{}:{}", f.host_port, f.guest_port));
    }
    if let Some(dns) = user.dns {
        args.extend(["--dns".into(), dns.to_string()]);
    }
    args
}

/// Refuses a forward whose host port is taken now (passt would only warn).
fn check_port_free(f: &Forward) -> Result<(), NetError> {
    let addr = f.host_addr.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let result = match f.protocol {
        Protocol::Tcp => TcpListener::bind((addr, f.host_port)).map(drop),
        Protocol::Udp => UdpSocket::bind((addr, f.host_port)).map(drop),
    };
    // A host without IPv6 still has IPv4's wildcard.
    let result = match result {
        Err(e) if f.host_addr.is_none() && e.kind() == io::ErrorKind::AddrNotAvailable => {
            let any = IpAddr::from([0, 0, 0, 0]);
            match f.protocol {
                Protocol::Tcp => TcpListener::bind((any, f.host_port)).map(drop),
                Protocol::Udp => UdpSocket::bind((any, f.host_port)).map(drop),
            }
        }
        other => other,
    };
    result.map_err(|source| NetError::PortInUse {
        proto: f.protocol.name(),
        addr: f
            .host_addr
            .map_or("every address".into(), |a| a.to_string()),
        port: f.host_port,
        source,
    })
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// Copies passt's messages to our stderr, each line marked.
fn forward_log(err: std::process::ChildStderr) {
    use io::BufRead;
    for line in io::BufReader::new(err).lines() {
        let Ok(line) = line else { break };
        // Without a system logger passt says so for every message; as
        // root it says it becomes "nobody". Neither is news to the user.
        let noise = line.starts_with("Failed to send") && line.ends_with("to syslog")
            || line.starts_with("Don't run as root");
        if !noise {
            tracing::warn!("passt: {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetOptions;

    fn user(text: &str) -> UserNet {
        match NetOptions::parse(text).unwrap().backend {
            crate::net::NetBackendKind::User(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forwards_become_passt_port_specs() {
        let u = user("user,hostfwd=tcp::8080-:80,hostfwd=udp:127.0.0.1:5353-:53,dns=10.0.2.3");
        let args = arguments(&u, 7).join(" ");
        assert_eq!(
            args,
            "--foreground --quiet --stderr --one-off --fd 7 -t 8080:80 -u 127.0.0.1/5353:53 \
             --dns 10.0.2.3"
        );
    }

    #[test]
    fn a_port_in_use_is_refused() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let u = user(&format!("user,hostfwd=tcp:127.0.0.1:{port}-:80"));
        let e = check_port_free(&u.forwards[0]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("port {port} on 127.0.0.1 is in use")),
            "{e}"
        );
    }
}
