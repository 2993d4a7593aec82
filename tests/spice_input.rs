//! The SPICE inputs and main channels against a real client, natively (no
//! VM): spice-glib (Debian's /usr/bin/python3 with gi, driven by
//! tests/e2e/spice_input_client.py) follows the mouse modes the server
//! offers as the tablet comes and goes, sends positions only to the tablet
//! side and motion only to the PS/2 side, and sees the guest's LEDs; its
//! lock-key sync becomes lock-key presses.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use saffron::spice::KeyboardLeds;
use support::*;

const PYTHON: &str = "/usr/bin/python3";

struct Client {
    stdin: ChildStdin,
    lines: Receiver<String>,
    child: std::process::Child,
}

impl Client {
    fn start(port: u16) -> Client {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/e2e/spice_input_client.py"
        );
        let mut child = Command::new(PYTHON)
            .args([script, "127.0.0.1", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the spice-glib client");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        Client {
            stdin,
            lines,
            child,
        }
    }

    fn wait(&self, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line == wanted => return,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("the client never said {wanted:?}");
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("DONE") => return,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no DONE for {line}");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "QUIT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn recorded(t: &TestServer, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = t.input.0.lock().unwrap().clone();
        if log.iter().any(|l| l == wanted) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has_spice_glib() -> bool {
    have(PYTHON)
        && Command::new(PYTHON)
            .args([
                "-c",
                "import gi; gi.require_version('SpiceClientGLib', '2.0')",
            ])
            .status()
            .is_ok_and(|s| s.success())
}

#[test]
fn mouse_modes_follow_the_tablet_and_route_input() {
    if !has_spice_glib() {
        eprintln!("SKIPPED: no spice-glib for {PYTHON}");
        return;
    }
    let t = start_server(640, 480, "");
    let mut client = Client::start(t.port);
    client.wait("MODE 1");
    client.wait("READY");

    // No tablet: positions are ignored, motion goes through.
    client.command("POSITION 10 10 0 0");
    client.command("MOTION 3 4 0");
    assert!(recorded(&t, "motion 3 4 0")
        .iter()
        .all(|l| !l.starts_with("position")));

    // The tablet's driver starts: client mode is offered and spice-glib takes it.
    t.server.notifier().set_client_mouse_allowed(true);
    client.wait("MODE 2");
    assert!(recorded(&t, "mode client").contains(&"mode client".to_string()));
    client.command("POSITION 320 240 0 1");
    let log = recorded(&t, "position 0 320 240 1");
    assert!(log.contains(&"position 0 320 240 1".to_string()), "{log:?}");
    t.input.0.lock().unwrap().clear();
    client.command("MOTION 9 9 0");
    client.command("POSITION 1 2 0 0");
    let log = recorded(&t, "position 0 1 2 0");
    assert!(!log.iter().any(|l| l.starts_with("motion")), "{log:?}");

    // The driver goes away: back to server mode.
    t.server.notifier().set_client_mouse_allowed(false);
    client.wait("MODE 1");
    client.command("MOTION 5 6 0");
    assert!(recorded(&t, "motion 5 6 0").contains(&"mode server".to_string()));

    // LEDs both ways.
    t.server.set_keyboard_leds(KeyboardLeds {
        caps_lock: true,
        ..Default::default()
    });
    client.wait("LEDS 4");
    t.input.0.lock().unwrap().clear();
    client.command("LOCKS 4"); // the same as the guest's: nothing to press
    client.command("LOCKS 6"); // num lock differs: pressed once
    let log = recorded(&t, "key [45, c5]");
    assert_eq!(log, vec!["key [45, c5]"]);
}

#[test]
fn forced_server_mode_ignores_the_tablet() {
    if !has_spice_glib() {
        eprintln!("SKIPPED: no spice-glib for {PYTHON}");
        return;
    }
    let t = start_server(640, 480, "mouse=server");
    let mut client = Client::start(t.port);
    client.wait("READY");
    t.server.notifier().set_client_mouse_allowed(true);
    std::thread::sleep(Duration::from_millis(500));
    client.command("POSITION 10 10 0 0");
    client.command("MOTION 1 1 0");
    let log = recorded(&t, "motion 1 1 0");
    assert!(
        !log.iter()
            .any(|l| l.starts_with("position") || l == "mode client"),
        "{log:?}"
    );
}
