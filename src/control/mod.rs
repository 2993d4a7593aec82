//! The control socket's protocol: one JSON object per line in each
//! direction. Requests name a `command` and its arguments (plus an
//! optional `id`, echoed back); responses are `{"ok": true, "return": ...}`
//! or `{"ok": false, "error": {"code": ..., "message": ...}}`. (The socket
//! itself is the binary's `api` module; this part is in the library so
//! that it can be fuzzed.) Requests become calls of the VM's interface,
//! [`crate::machine::Machine`].

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::machine::{Button, Keys, Machine, PasswordChange, PointerEvent, Refusal};
use crate::spice::codec::policy::OPTION_NAMES;

pub mod screendump;

#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
enum Command {
    // Struct variants (even empty) so that unknown arguments are refused.
    Status {},
    Screendump {
        path: String,
        head: Option<u32>,
    },
    SendKey {
        keys: Keys,
    },
    PointerMotion {
        dx: i32,
        dy: i32,
    },
    PointerPosition {
        x: u32,
        y: u32,
        #[serde(default)]
        display: u8,
    },
    PointerButton {
        button: Button,
        pressed: Option<bool>,
    },
    PointerWheel {
        dz: i32,
    },
    Powerdown {},
    Reset {},
    Quit {},
    SetPassword {
        password: Option<String>,
        protocol: Option<String>,
        connected: Option<String>,
    },
    ExpirePassword {
        time: String,
        protocol: Option<String>,
    },
    SetLink {
        name: String,
        up: bool,
    },
    #[serde(rename_all = "kebab-case")]
    SetSpiceCompression {
        image_compression: Option<String>,
        jpeg_wan_compression: Option<String>,
        zlib_glz_wan_compression: Option<String>,
        streaming_video: Option<String>,
    },
}

/// Done after the response is written (so the client hears the answer
/// before the VM goes away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Nothing,
    Reset,
    Quit,
}

pub fn error(code: &str, message: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": {"code": code, "message": message.to_string()}})
}

fn ok(value: Value) -> Value {
    json!({"ok": true, "return": value})
}

/// Handles one request line; returns the response and what to do after sending it.
pub fn handle(line: &str, machine: &dyn Machine) -> (Value, After) {
    let mut request: Map<String, Value> = match serde_json::from_str(line) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return (
                error("bad_request", "a request is a JSON object"),
                After::Nothing,
            )
        }
        Err(e) => return (error("bad_json", e), After::Nothing),
    };
    let id = request.remove("id");
    let (mut response, after) = match serde_json::from_value::<Command>(Value::Object(request)) {
        Ok(command) => run(command, machine),
        Err(e) => (error("bad_request", e), After::Nothing),
    };
    if let (Some(id), Value::Object(map)) = (id, &mut response) {
        map.insert("id".into(), id);
    }
    (response, after)
}

/// The response to a command that returns nothing.
fn done(result: Result<(), Refusal>) -> (Value, After) {
    match result {
        Ok(()) => (ok(json!({})), After::Nothing),
        Err(refusal) => (error(refusal.code, refusal.message), After::Nothing),
    }
}

fn run(command: Command, machine: &dyn Machine) -> (Value, After) {
    match command {
        Command::Status {} => (ok(machine.status()), After::Nothing),
        Command::Screendump { path, head } => {
            let (width, height, pixels) = match machine.screen(head) {
                Ok(picture) => picture,
                Err(refusal) => return (error(refusal.code, refusal.message), After::Nothing),
            };
            match screendump::write_png(std::path::Path::new(&path), width, height, &pixels) {
                Ok(()) => (
                    ok(json!({"path": path, "width": width, "height": height})),
                    After::Nothing,
                ),
                Err(e) => (error("io_error", e), After::Nothing),
            }
        }
        Command::SendKey { keys } => done(machine.send_keys(&keys)),
        Command::PointerMotion { dx, dy } => done(machine.pointer(PointerEvent::Motion { dx, dy })),
        Command::PointerPosition { x, y, display } => {
            done(machine.pointer(PointerEvent::Position { display, x, y }))
        }
        Command::PointerButton { button, pressed } => {
            done(machine.pointer(PointerEvent::Button { button, pressed }))
        }
        Command::PointerWheel { dz } => done(machine.pointer(PointerEvent::Wheel { dz })),
        Command::Powerdown {} => {
            machine.press_power_button();
            (ok(json!({})), After::Nothing)
        }
        Command::SetPassword {
            password,
            protocol,
            connected,
        } => done(set_password(machine, password, protocol, connected)),
        Command::ExpirePassword { time, protocol } => done(
            spice_only(protocol)
                .and_then(|()| expiry(&time, SystemTime::now()))
                .and_then(|at| machine.spice_password(PasswordChange::Expire(at))),
        ),
        Command::SetLink { name, up } => done(machine.set_link(&name, up)),
        Command::Reset {} => (ok(json!({})), After::Reset),
        Command::Quit {} => (ok(json!({})), After::Quit),
        Command::SetSpiceCompression {
            image_compression,
            jpeg_wan_compression,
            zlib_glz_wan_compression,
            streaming_video,
        } => {
            // The fields in the order of the `--spice` option names.
            let values = [
                image_compression,
                jpeg_wan_compression,
                zlib_glz_wan_compression,
                streaming_video,
            ];
            let changes: Vec<(&str, &str)> = OPTION_NAMES
                .into_iter()
                .zip(&values)
                .filter_map(|(key, value)| Some((key, value.as_deref()?)))
                .collect();
            if changes.is_empty() {
                let names = OPTION_NAMES.join(", ");
                return (
                    error("bad_request", format!("name at least one of {names}")),
                    After::Nothing,
                );
            }
            match machine.set_spice_compression(&changes) {
                Ok(options) => (ok(options), After::Nothing),
                Err(refusal) => (error(refusal.code, refusal.message), After::Nothing),
            }
        }
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal {
        code: "bad_request",
        message: message.into(),
    }
}

/// QMP's `protocol` argument: only SPICE passwords exist here.
fn spice_only(protocol: Option<String>) -> Result<(), Refusal> {
    match protocol.as_deref() {
        None | Some("spice") => Ok(()),
        Some(other) => Err(bad_request(format!("protocol: '{other}' is not spice"))),
    }
}

fn set_password(
    machine: &dyn Machine,
    password: Option<String>,
    protocol: Option<String>,
    connected: Option<String>,
) -> Result<(), Refusal> {
    spice_only(protocol)?;
    let disconnect = match connected.as_deref() {
        None | Some("keep") => false,
        Some("disconnect") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "connected: '{other}' is not keep or disconnect"
            )))
        }
    };
    machine.spice_password(PasswordChange::Set {
        password,
        disconnect,
    })
}

/// QMP's expiry times: `now`, `never`, `+SECONDS` from now, or `SECONDS`
/// since the epoch.
fn expiry(time: &str, now: SystemTime) -> Result<Option<SystemTime>, Refusal> {
    let seconds = |text: &str| {
        text.parse::<u64>()
            .ok()
            .filter(|&s| s <= 1 << 40)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                bad_request(format!(
                    "time: '{time}' is not now, never, +SECONDS or SECONDS since 1970"
                ))
            })
    };
    match time {
        "now" => Ok(Some(now)),
        "never" => Ok(None),
        _ => match time.strip_prefix('+') {
            Some(rest) => Ok(Some(now + seconds(rest)?)),
            None => Ok(Some(SystemTime::UNIX_EPOCH + seconds(time)?)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeMachine {
        pub presses: Mutex<u32>,
        pub inputs: Mutex<Vec<String>>,
        pub screen: Option<(u32, u32, Vec<u8>)>,
    }

    impl Machine for FakeMachine {
        fn status(&self) -> Value {
            json!({"running": true, "vcpus": 2})
        }
        fn screen(&self, head: Option<u32>) -> Result<(u32, u32, Vec<u8>), Refusal> {
            match (&self.screen, head) {
                (Some(screen), None | Some(0)) => Ok(screen.clone()),
                (Some(_), Some(head)) => Err(Refusal {
                    code: "no_device",
                    message: format!("no head {head}"),
                }),
                (None, _) => Err(Refusal {
                    code: "no_display",
                    message: "this VM has no display".into(),
                }),
            }
        }
        fn send_keys(&self, keys: &Keys) -> Result<(), Refusal> {
            if *keys == Keys::Names(vec!["bogus".into()]) {
                return Err(Refusal {
                    code: "bad_request",
                    message: "unknown key 'bogus'".into(),
                });
            }
            self.inputs.lock().unwrap().push(format!("keys {keys:?}"));
            Ok(())
        }
        fn pointer(&self, event: PointerEvent) -> Result<(), Refusal> {
            if let PointerEvent::Position { display: 1.., .. } = event {
                return Err(Refusal {
                    code: "no_device",
                    message: "display 1 does not exist".into(),
                });
            }
            self.inputs.lock().unwrap().push(format!("{event:?}"));
            Ok(())
        }
        fn press_power_button(&self) {
            *self.presses.lock().unwrap() += 1;
        }
        fn reset(&self) {}
        fn quit(&self) {}
        fn set_spice_compression(&self, changes: &[(&str, &str)]) -> Result<Value, Refusal> {
            match changes {
                [("image-compression", "zip")] => Err(Refusal {
                    code: "bad_request",
                    message: "image-compression: 'zip' is not one of ...".into(),
                }),
                _ => Ok(json!(changes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>())),
            }
        }
        fn spice_password(&self, change: PasswordChange) -> Result<(), Refusal> {
            self.inputs.lock().unwrap().push(format!("{change:?}"));
            Ok(())
        }
    }

    fn code(response: &Value) -> &str {
        response["error"]["code"].as_str().unwrap_or("")
    }

    #[test]
    fn status_and_id_echo() {
        let machine = FakeMachine::default();
        let (response, after) = handle(r#"{"command": "status", "id": 7}"#, &machine);
        assert_eq!(response["ok"], true);
        assert_eq!(response["return"]["vcpus"], 2);
        assert_eq!(response["id"], 7);
        assert_eq!(after, After::Nothing);
    }

    #[test]
    fn bad_requests_get_clear_errors() {
        let machine = FakeMachine::default();
        for (line, expected) in [
            ("not json", "bad_json"),
            ("[1, 2]", "bad_request"),
            (r#"{"command": "launch_missiles"}"#, "bad_request"),
            (r#"{"no_command": 1}"#, "bad_request"),
            (r#"{"command": "screendump"}"#, "bad_request"),
            (r#"{"command": "screendump", "path": 5}"#, "bad_request"),
            (r#"{"command": "status", "extra": true}"#, "bad_request"),
            (
                r#"{"command": "screendump", "path": "/tmp/x.png"}"#,
                "no_display",
            ),
        ] {
            let (response, after) = handle(line, &machine);
            assert_eq!(response["ok"], false, "{line}");
            assert_eq!(code(&response), expected, "{line}: {response}");
            assert!(response["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            assert_eq!(after, After::Nothing);
        }
        let (response, _) = handle(r#"{"command": "launch_missiles"}"#, &machine);
        let message = response["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("screendump"),
            "lists the commands: {message}"
        );
    }

    #[test]
    fn keys_and_pointer() {
        let machine = FakeMachine::default();
        for line in [
            r#"{"command": "send-key", "keys": ["ctrl", "alt", "delete"]}"#,
            r#"{"command": "send-key", "keys": "shift-a"}"#,
            r#"{"command": "pointer-motion", "dx": -5, "dy": 7}"#,
            r#"{"command": "pointer-position", "x": 10, "y": 20}"#,
            r#"{"command": "pointer-button", "button": "right", "pressed": true}"#,
            r#"{"command": "pointer-button", "button": "left"}"#,
            r#"{"command": "pointer-wheel", "dz": -1}"#,
        ] {
            let (response, after) = handle(line, &machine);
            assert_eq!(response, json!({"ok": true, "return": {}}), "{line}");
            assert_eq!(after, After::Nothing);
        }
        assert_eq!(
            *machine.inputs.lock().unwrap(),
            vec![
                r#"keys Names(["ctrl", "alt", "delete"])"#.to_string(),
                r#"keys Combo("shift-a")"#.into(),
                "Motion { dx: -5, dy: 7 }".into(),
                "Position { display: 0, x: 10, y: 20 }".into(),
                "Button { button: Right, pressed: Some(true) }".into(),
                "Button { button: Left, pressed: None }".into(),
                "Wheel { dz: -1 }".into(),
            ]
        );
        for (line, expected) in [
            (
                r#"{"command": "send-key", "keys": ["bogus"]}"#,
                "bad_request",
            ),
            (r#"{"command": "send-key", "keys": 5}"#, "bad_request"),
            (r#"{"command": "send-key", "keys": [1]}"#, "bad_request"),
            (r#"{"command": "send-key"}"#, "bad_request"),
            (r#"{"command": "send_key", "keys": ["a"]}"#, "bad_request"),
            (
                r#"{"command": "pointer-position", "x": 1, "y": 1, "display": 1}"#,
                "no_device",
            ),
            (
                r#"{"command": "pointer-position", "x": -1, "y": 1}"#,
                "bad_request",
            ),
            (
                r#"{"command": "pointer-motion", "dx": 99999999999, "dy": 0}"#,
                "bad_request",
            ),
            (
                r#"{"command": "pointer-button", "button": "thumb"}"#,
                "bad_request",
            ),
            (r#"{"command": "pointer-wheel"}"#, "bad_request"),
        ] {
            let (response, _) = handle(line, &machine);
            assert_eq!(code(&response), expected, "{line}: {response}");
        }
    }

    #[test]
    fn power_commands() {
        let machine = FakeMachine::default();
        let (response, after) = handle(r#"{"command":"powerdown"}"#, &machine);
        assert_eq!(response["ok"], true);
        assert_eq!(after, After::Nothing);
        assert_eq!(*machine.presses.lock().unwrap(), 1);
        assert_eq!(handle(r#"{"command":"reset"}"#, &machine).1, After::Reset);
        assert_eq!(handle(r#"{"command":"quit"}"#, &machine).1, After::Quit);
    }

    #[test]
    fn password_commands_take_qmps_arguments() {
        let m = FakeMachine::default();
        let lines = [
            r#"{"command": "set-password", "password": "new"}"#,
            r#"{"command": "set-password", "password": null, "protocol": "spice", "connected": "disconnect"}"#,
            r#"{"command": "expire-password", "time": "never"}"#,
            r#"{"command": "expire-password", "time": "1700000000"}"#,
        ];
        for line in lines {
            assert_eq!(handle(line, &m).0["ok"], true, "{line}");
        }
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let calls = m.inputs.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                format!(
                    "{:?}",
                    PasswordChange::Set {
                        password: Some("new".into()),
                        disconnect: false
                    }
                ),
                format!(
                    "{:?}",
                    PasswordChange::Set {
                        password: None,
                        disconnect: true
                    }
                ),
                format!("{:?}", PasswordChange::Expire(None)),
                format!("{:?}", PasswordChange::Expire(Some(t))),
            ]
        );
        let now = SystemTime::now();
        assert_eq!(expiry("now", now), Ok(Some(now)));
        assert_eq!(expiry("+30", now), Ok(Some(now + Duration::from_secs(30))));
        for bad in [
            r#"{"command": "set-password", "password": "x", "protocol": "vnc"}"#,
            r#"{"command": "set-password", "password": "x", "connected": "fail"}"#,
            r#"{"command": "expire-password", "time": "soon"}"#,
            r#"{"command": "expire-password", "time": "+-5"}"#,
            r#"{"command": "expire-password"}"#,
        ] {
            assert_eq!(handle(bad, &m).0["error"]["code"], "bad_request", "{bad}");
        }
    }

    #[test]
    fn set_link_takes_qmps_arguments() {
        let m = FakeMachine::default();
        let (response, _) = handle(
            r#"{"command": "set-link", "name": "net0", "up": false}"#,
            &m,
        );
        // The fake machine has no network card: the default answer.
        assert_eq!(response["error"]["code"], "no_device", "{response}");
        for bad in [
            r#"{"command": "set-link", "name": "net0"}"#,
            r#"{"command": "set-link", "name": "net0", "up": "no"}"#,
            r#"{"command": "set-link", "up": true}"#,
        ] {
            assert_eq!(handle(bad, &m).0["error"]["code"], "bad_request", "{bad}");
        }
    }

    #[test]
    fn set_spice_compression_takes_the_spice_option_names() {
        let machine = FakeMachine::default();
        let line = r#"{"command": "set-spice-compression", "image-compression": "quic",
                       "streaming-video": "all"}"#;
        let (response, _) = handle(line, &machine);
        assert_eq!(
            response["return"],
            json!(["image-compression=quic", "streaming-video=all"])
        );
        for (line, expected) in [
            (r#"{"command": "set-spice-compression"}"#, "bad_request"),
            (
                r#"{"command": "set-spice-compression", "image_compression": "lz"}"#,
                "bad_request",
            ),
            (
                r#"{"command": "set-spice-compression", "image-compression": 4}"#,
                "bad_request",
            ),
            (
                r#"{"command": "set-spice-compression", "image-compression": "zip"}"#,
                "bad_request",
            ),
        ] {
            let (response, _) = handle(line, &machine);
            assert_eq!(code(&response), expected, "{line}: {response}");
        }
    }

    #[test]
    fn screendump_writes_a_png() {
        let dir = std::env::temp_dir().join(format!("saffron-api-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shot.png");
        let machine = FakeMachine {
            screen: Some((2, 1, vec![0x10, 0x20, 0x30, 0, 0xff, 0xff, 0xff, 0])),
            ..Default::default()
        };
        let request = json!({"command": "screendump", "path": path}).to_string();
        let (response, _) = handle(&request, &machine);
        assert_eq!(response["ok"], true, "{response}");
        assert_eq!(response["return"]["width"], 2);
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut rgb).unwrap();
        assert_eq!(&rgb[..6], &[0x30, 0x20, 0x10, 0xff, 0xff, 0xff]);
        // A path in a missing directory is an I/O error, not a crash.
        let request = json!({"command": "screendump", "path": path, "head": 1});
        let (response, _) = handle(&request.to_string(), &machine);
        assert_eq!(code(&response), "no_device");
        let request = json!({"command": "screendump", "path": dir.join("no/such/dir.png")});
        let (response, _) = handle(&request.to_string(), &machine);
        assert_eq!(code(&response), "io_error");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
