//! The control socket's protocol: one JSON object per line in each
//! direction. Requests name a `command` and its arguments (plus an optional
//! `id`, echoed back); responses are `{"ok": true, "return": ...}` or
//! `{"ok": false, "error": {"code": ..., "message": ...}}`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::screendump;

/// What the control socket can do to the machine (the VMM implements it).
pub trait Machine: Send + Sync {
    /// State, uptime, vCPUs, memory, display size, ...
    fn status(&self) -> Value;
    /// Head 0 as it is now: width, height and 32-bit BGRX pixels, rows
    /// `width * 4` bytes apart; `None` without a display.
    fn screen(&self) -> Option<(u32, u32, Vec<u8>)>;
    /// Presses the ACPI power button.
    fn press_power_button(&self);
    /// Ends the VM as if the guest rebooted (saffron exits with status 3).
    fn reset(&self);
    /// Ends the VM as if the guest powered off (status 0).
    fn quit(&self);
}

#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    // Struct variants (even empty) so that unknown arguments are refused.
    Status {},
    Screendump { path: String },
    Powerdown {},
    Reset {},
    Quit {},
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

fn run(command: Command, machine: &dyn Machine) -> (Value, After) {
    match command {
        Command::Status {} => (ok(machine.status()), After::Nothing),
        Command::Screendump { path } => {
            let Some((width, height, pixels)) = machine.screen() else {
                return (
                    error("no_display", "this VM has no display"),
                    After::Nothing,
                );
            };
            match screendump::write_png(std::path::Path::new(&path), width, height, &pixels) {
                Ok(()) => (
                    ok(json!({"path": path, "width": width, "height": height})),
                    After::Nothing,
                ),
                Err(e) => (error("io_error", e), After::Nothing),
            }
        }
        Command::Powerdown {} => {
            machine.press_power_button();
            (ok(json!({})), After::Nothing)
        }
        Command::Reset {} => (ok(json!({})), After::Reset),
        Command::Quit {} => (ok(json!({})), After::Quit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeMachine {
        pub presses: Mutex<u32>,
        pub screen: Option<(u32, u32, Vec<u8>)>,
    }

    impl Machine for FakeMachine {
        fn status(&self) -> Value {
            json!({"running": true, "vcpus": 2})
        }
        fn screen(&self) -> Option<(u32, u32, Vec<u8>)> {
            self.screen.clone()
        }
        fn press_power_button(&self) {
            *self.presses.lock().unwrap() += 1;
        }
        fn reset(&self) {}
        fn quit(&self) {}
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
        let request = json!({"command": "screendump", "path": dir.join("no/such/dir.png")});
        let (response, _) = handle(&request.to_string(), &machine);
        assert_eq!(code(&response), "io_error");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
