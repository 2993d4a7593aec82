//! Helpers for the SPICE tests with real clients: a server on a random
//! loopback port serving a synthetic Display, a raw protocol client for
//! link-level checks, a slow link (a throttling proxy), PPM parsing, and
//! running client programs with a timeout.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::display::{Display, Rect};
use saffron::spice::ticket::encrypt_ticket;
use saffron::spice::{InputSink, MouseButtons, ServerInputs, SpiceConfig, SpiceServer};

/// The test picture: BGRX of pixel (x, y), `seed` varies it.
pub fn pattern(x: u32, y: u32, seed: u32) -> [u8; 4] {
    [
        (x.wrapping_mul(7) + y + seed) as u8,
        (y.wrapping_mul(3) ^ seed) as u8,
        (x ^ y) as u8,
        0,
    ]
}

pub fn paint(display: &Display, seed: u32) {
    display.draw(0, |s| {
        for y in 0..s.height {
            for (x, px) in s.row_mut(y).chunks_mut(4).enumerate() {
                px.copy_from_slice(&pattern(x as u32, y, seed));
            }
        }
        Some(s.bounds())
    });
}

/// Everything the input sink received, as text.
#[derive(Default)]
pub struct RecordedInput(pub Mutex<Vec<String>>);

impl InputSink for RecordedInput {
    fn key(&self, s: &[u8]) {
        self.0.lock().unwrap().push(format!("key {s:02x?}"));
    }
    fn relative_motion(&self, dx: i32, dy: i32, b: MouseButtons) {
        self.0
            .lock()
            .unwrap()
            .push(format!("motion {dx} {dy} {}", b.0));
    }
    fn absolute_position(&self, d: u8, x: u32, y: u32, b: MouseButtons) {
        self.0
            .lock()
            .unwrap()
            .push(format!("position {d} {x} {y} {}", b.0));
    }
    fn buttons(&self, b: MouseButtons) {
        self.0.lock().unwrap().push(format!("buttons {}", b.0));
    }
    fn wheel(&self, dz: i32, b: MouseButtons) {
        self.0.lock().unwrap().push(format!("wheel {dz} {}", b.0));
    }
    fn mouse_mode(&self, client: bool) {
        let mode = if client { "client" } else { "server" };
        self.0.lock().unwrap().push(format!("mode {mode}"));
    }
}

pub struct TestServer {
    pub server: SpiceServer,
    pub display: Arc<Display>,
    pub input: Arc<RecordedInput>,
    pub port: u16,
}

/// A server on a free loopback port showing `pattern(.., 0)`.
/// `options` are extra `--spice` options (e.g. "password=x").
pub fn start_server(width: u32, height: u32, options: &str) -> TestServer {
    let display = Display::new();
    assert!(display.resize(0, width, height));
    paint(&display, 0);
    let mut text = "port=1".to_string();
    if !options.is_empty() {
        text = format!("{text},{options}");
    }
    let mut config = SpiceConfig::parse(&text).unwrap();
    config.tcp = Some("127.0.0.1:0".parse().unwrap());
    let input = Arc::new(RecordedInput::default());
    let server = SpiceServer::start(
        &config,
        ServerInputs {
            displays: vec![display.clone()],
            input: input.clone(),
            tablet: false,
            agent: None,
            audio: None,
        },
    )
    .unwrap();
    let port = server.local_addr().unwrap().port();
    TestServer {
        server,
        display,
        input,
        port,
    }
}

/// A slow network link on loopback: a proxy to the server's `port` that
/// passes what the server sends at `bytes_per_second` at most (in 4 KiB
/// pieces, without saving up while idle), and what the client sends at
/// once. Clients connect to the returned port; every connection goes
/// through it.
pub fn slow_link(port: u16, bytes_per_second: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (mut up_from, mut up_to) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_from, &mut up_to);
                let _ = up_to.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || throttled_copy(server, client, bytes_per_second));
        }
    });
    proxy_port
}

fn throttled_copy(mut from: TcpStream, mut to: TcpStream, bytes_per_second: u64) {
    let mut buf = [0u8; 4096];
    let mut next = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        next = next.max(now) + Duration::from_secs_f64(n as f64 / bytes_per_second as f64);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The result of the connected client's network test, once it is over
/// (within 20 s).
pub fn wait_for_network_test(t: &TestServer) -> saffron::spice::LinkEstimate {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(link) = t.server.control().client_link() {
            return link;
        }
        assert!(Instant::now() < deadline, "the network test did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a client program is installed (tests using it are skipped,
/// loudly, if not).
pub fn have(program: &str) -> bool {
    let found = Path::new(program).exists();
    if !found {
        eprintln!("SKIPPED: {program} is not installed");
    }
    found
}

pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Option<Output> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// A PPM (P6) image.
pub struct Ppm {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Ppm {
    pub fn read(path: &Path) -> Ppm {
        let data = std::fs::read(path).unwrap();
        let mut fields = Vec::new();
        let mut at = 0;
        while fields.len() < 4 {
            while data[at].is_ascii_whitespace() {
                at += 1;
            }
            if data[at] == b'#' {
                while data[at] != b'\n' {
                    at += 1;
                }
                continue;
            }
            let start = at;
            while !data[at].is_ascii_whitespace() {
                at += 1;
            }
            fields.push(String::from_utf8_lossy(&data[start..at]).to_string());
        }
        assert_eq!(fields[0], "P6");
        assert_eq!(fields[3], "255");
        let (width, height) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
        let rgb = data[at + 1..].to_vec();
        assert_eq!(rgb.len(), (width * height * 3) as usize);
        Ppm { width, height, rgb }
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Whether the display's head appears unscaled at (ox, oy).
    pub fn shows_at(&self, display: &Display, ox: u32, oy: u32) -> bool {
        let head = display.head(0).unwrap();
        if ox + head.width > self.width || oy + head.height > self.height {
            return false;
        }
        (0..head.height).all(|y| {
            head.row(y)
                .chunks(4)
                .enumerate()
                .all(|(x, px)| self.pixel(ox + x as u32, oy + y) == [px[2], px[1], px[0]])
        })
    }

    /// Where the display's head appears unscaled, if anywhere.
    pub fn find(&self, display: &Display) -> Option<(u32, u32)> {
        let first = {
            let head = display.head(0).unwrap();
            let p = &head.row(0)[..4];
            [p[2], p[1], p[0]]
        };
        for oy in 0..self.height {
            for ox in 0..self.width {
                if self.pixel(ox, oy) == first && self.shows_at(display, ox, oy) {
                    return Some((ox, oy));
                }
            }
        }
        None
    }
}

/// Runs spicy-screenshot; the PPM if it wrote one.
pub fn spicy_screenshot(port: u16, password: Option<&str>, out: &Path) -> Option<Ppm> {
    let _ = std::fs::remove_file(out);
    let mut cmd = Command::new("/usr/bin/spicy-screenshot");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-o"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = password {
        cmd.args(["-w", p]);
    }
    let output = wait_with_timeout(cmd.spawn().unwrap(), Duration::from_secs(30))?;
    if !output.status.success() || !out.exists() {
        return None;
    }
    Some(Ppm::read(out))
}

/// Asserts a screenshot equals the display's head pixel for pixel.
pub fn assert_same_picture(ppm: &Ppm, display: &Display) {
    let head = display.head(0).unwrap();
    assert_eq!((ppm.width, ppm.height), (head.width, head.height));
    assert!(
        ppm.shows_at(display, 0, 0),
        "screenshot differs from the display"
    );
}

pub fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("saffron-spice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A minimal raw SPICE client for link-level tests.
pub struct RawClient {
    pub stream: TcpStream,
}

pub const MINI_HEADER: u32 = 1 << 3;
pub const AUTH_SELECTION: u32 = 1;

pub enum LinkOutcome {
    /// The server's link reply carried this error.
    Refused(u32),
    /// The link result after the ticket.
    Result(u32, RawClient),
}

impl RawClient {
    pub fn link(
        port: u16,
        connection_id: u32,
        channel_type: u8,
        channel_id: u8,
        password: &str,
        major: u32,
    ) -> LinkOutcome {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut mess = Vec::new();
        mess.extend_from_slice(&connection_id.to_le_bytes());
        mess.extend_from_slice(&[channel_type, channel_id]);
        mess.extend_from_slice(&1u32.to_le_bytes());
        mess.extend_from_slice(&0u32.to_le_bytes());
        mess.extend_from_slice(&18u32.to_le_bytes());
        mess.extend_from_slice(&(MINI_HEADER | AUTH_SELECTION).to_le_bytes());
        let mut msg = b"REDQ".to_vec();
        msg.extend_from_slice(&major.to_le_bytes());
        msg.extend_from_slice(&2u32.to_le_bytes());
        msg.extend_from_slice(&(mess.len() as u32).to_le_bytes());
        msg.extend_from_slice(&mess);
        stream.write_all(&msg).unwrap();
        let mut header = [0u8; 16];
        stream.read_exact(&mut header).unwrap();
        assert_eq!(&header[..4], b"REDQ");
        let size = u32::from_le_bytes(header[12..16].try_into().unwrap()) as usize;
        let mut reply = vec![0u8; size];
        stream.read_exact(&mut reply).unwrap();
        let error = u32::from_le_bytes(reply[..4].try_into().unwrap());
        if error != 0 {
            return LinkOutcome::Refused(error);
        }
        let mut out = 1u32.to_le_bytes().to_vec();
        out.extend_from_slice(&encrypt_ticket(&reply[4..166], password));
        stream.write_all(&out).unwrap();
        let mut result = [0u8; 4];
        stream.read_exact(&mut result).unwrap();
        LinkOutcome::Result(u32::from_le_bytes(result), RawClient { stream })
    }

    /// Links or panics.
    pub fn open(port: u16, connection_id: u32, channel_type: u8, password: &str) -> RawClient {
        match Self::link(port, connection_id, channel_type, 0, password, 2) {
            LinkOutcome::Result(0, c) => c,
            LinkOutcome::Result(e, _) | LinkOutcome::Refused(e) => panic!("link error {e}"),
        }
    }

    pub fn send(&mut self, msg_type: u16, body: &[u8]) {
        let mut m = msg_type.to_le_bytes().to_vec();
        m.extend_from_slice(&(body.len() as u32).to_le_bytes());
        m.extend_from_slice(body);
        self.stream.write_all(&m).unwrap();
    }

    /// The next message (type, body).
    pub fn receive(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let mut h = [0u8; 6];
        self.stream.read_exact(&mut h)?;
        let size = u32::from_le_bytes(h[2..6].try_into().unwrap()) as usize;
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
        Ok((u16::from_le_bytes([h[0], h[1]]), body))
    }

    /// Links a main channel and returns it with the session id from INIT.
    pub fn main_session(port: u16, password: &str) -> (RawClient, u32) {
        let mut main = Self::open(port, 0, 1, password);
        let (t, body) = main.receive().unwrap();
        assert_eq!(t, 103, "MAIN_INIT first");
        (main, u32::from_le_bytes(body[..4].try_into().unwrap()))
    }

    /// Whether the server closed the connection (reads until EOF or timeout).
    pub fn closed_by_server(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 65536];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Resident memory of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Draws a band that moves each call (animation step `frame`).
pub fn animate(display: &Display, frame: u32) {
    display.draw(0, |s| {
        let band = 64;
        let x = (frame * 16) % (s.width - band);
        for y in 0..s.height {
            let row = s.row_mut(y);
            for xx in x..x + band {
                let at = xx as usize * 4;
                row[at..at + 4].copy_from_slice(&[frame as u8, y as u8, (frame >> 8) as u8, 0]);
            }
        }
        Some(Rect::new(x as i32, 0, (x + band) as i32, s.height as i32))
    });
}

/// tests/spice/glib_client.py (spice-glib from Python) connected to a
/// server: reads its event lines, sends it commands.
pub struct GlibClient {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl GlibClient {
    pub fn connect(port: u16) -> GlibClient {
        Self::connect_with(port, &[])
    }

    /// With extra options of the script (e.g. `--cache-size=BYTES`).
    pub fn connect_with(port: u16, options: &[&str]) -> GlibClient {
        Self::run("glib_client.py", port, options)
    }

    /// Another client script of tests/spice with the same conventions.
    pub fn run(script: &str, port: u16, options: &[&str]) -> GlibClient {
        Self::run_with_env(script, port, options, &[])
    }

    /// The same, with environment variables set for the client.
    pub fn run_with_env(
        script: &str,
        port: u16,
        options: &[&str],
        env: &[(&str, &str)],
    ) -> GlibClient {
        let script = format!("{}/tests/spice/{script}", env!("CARGO_MANIFEST_DIR"));
        let port = port.to_string();
        let mut child = Command::new("/usr/bin/python3")
            .envs(env.iter().copied())
            .args([script.as_str(), "127.0.0.1", &port])
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        GlibClient {
            child: Some(child),
            stdin,
            lines,
        }
    }

    /// The next line starting with `prefix` (within 30 s; an ERROR line
    /// fails the test).
    pub fn wait_for(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let line = self.lines.next().expect("client output").unwrap();
            assert!(!line.starts_with("ERROR"), "{line}");
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("no {prefix}");
    }

    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("client running");
        writeln!(stdin, "{command}").unwrap();
    }

    /// The client's primary surface (B, G, R, X rows), through a file
    /// named after `name` and this client (tests run side by side).
    pub fn dump(&mut self, name: &str) -> Vec<u8> {
        let client = self.child.as_ref().map_or(0, |c| c.id());
        let path = temp_path(&format!("{client}-{name}"));
        self.send(&format!("DUMP {}", path.display()));
        self.wait_for("DUMPED");
        let picture = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(path);
        picture
    }
}

impl Drop for GlibClient {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "QUIT");
        }
        if let Some(child) = self.child.take() {
            let _ = wait_with_timeout(child, Duration::from_secs(10));
        }
    }
}
