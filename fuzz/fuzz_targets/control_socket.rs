//! The control socket's protocol (`saffron::control`), fed any request
//! lines: every line gets one JSON object with `ok`, never a panic; what
//! reaches the machine has been checked (keys, pointer events, password
//! changes, compression options).
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron::control::handle;
use saffron::machine::{Keys, Machine, PasswordChange, PointerEvent, Refusal};
use serde_json::Value;

/// A machine that accepts everything and has no screen (so screendump
/// never writes a file).
struct Fake;

impl Machine for Fake {
    fn status(&self) -> Value {
        Value::Null
    }
    fn screen(&self, _head: Option<u32>) -> Result<(u32, u32, Vec<u8>), Refusal> {
        Err(Refusal {
            code: "no_display",
            message: String::new(),
        })
    }
    fn send_keys(&self, keys: &Keys) -> Result<(), Refusal> {
        if let Keys::Names(names) = keys {
            assert!(names.len() < 1 << 20);
        }
        Ok(())
    }
    fn pointer(&self, _: PointerEvent) -> Result<(), Refusal> {
        Ok(())
    }
    fn press_power_button(&self) {}
    fn reset(&self) {}
    fn quit(&self) {}
    fn set_spice_compression(&self, changes: &[(&str, &str)]) -> Result<Value, Refusal> {
        assert!(!changes.is_empty() && changes.len() <= 4);
        Ok(Value::Null)
    }
    fn spice_password(&self, change: PasswordChange) -> Result<(), Refusal> {
        if let PasswordChange::Set {
            password: Some(p), ..
        } = change
        {
            assert!(p.len() < 1 << 20);
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let (response, _) = handle(text, &Fake);
        assert!(response["ok"].is_boolean(), "{response}");
    }
});
