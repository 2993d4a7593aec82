//! What a running VM offers to whoever controls it: its state, its screen,
//! keys and pointer, the power button, reset and quit, the SPICE server's
//! options and password, network links. The VMM implements [`Machine`];
//! the control socket's protocol ([`crate::control`]) turns requests into
//! calls, so the VMM knows nothing of sockets or JSON requests.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

/// What can be done to a running VM from outside (the VMM implements it).
pub trait Machine: Send + Sync {
    /// State, uptime, vCPUs, memory, display size, ...
    fn status(&self) -> Value;
    /// The screen as it is now, or one head (monitor) of it: width, height
    /// and 32-bit BGRX pixels, rows `width * 4` bytes apart.
    fn screen(&self, head: Option<u32>) -> Result<(u32, u32, Vec<u8>), Refusal>;
    /// Presses the keys in order and releases them in reverse.
    fn send_keys(&self, keys: &Keys) -> Result<(), Refusal>;
    /// Moves the pointer, or presses its buttons or wheel.
    fn pointer(&self, event: PointerEvent) -> Result<(), Refusal>;
    /// Presses the ACPI power button.
    fn press_power_button(&self);
    /// Ends the VM as if the guest rebooted (saffron exits with status 3).
    fn reset(&self);
    /// Ends the VM as if the guest powered off (status 0).
    fn quit(&self);
    /// Changes the SPICE server's compression options for clients that
    /// connect from now on (`--spice` names and values); returns them all.
    fn set_spice_compression(&self, changes: &[(&str, &str)]) -> Result<Value, Refusal>;
    /// Changes who may link to the SPICE server.
    fn spice_password(&self, change: PasswordChange) -> Result<(), Refusal>;
    /// Sets the link of network card `name` (`net0`, ...) up or down.
    fn set_link(&self, name: &str, _up: bool) -> Result<(), Refusal> {
        Err(Refusal {
            code: "no_device",
            message: format!("this VM has no network card {name:?}"),
        })
    }
}

/// `set-password` and `expire-password` (QMP's `set_password` and
/// `expire_password` for SPICE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordChange {
    /// The password from the next link on (`None`: none); `disconnect`
    /// ends the connected client's session.
    Set {
        password: Option<String>,
        disconnect: bool,
    },
    /// No link gets in from then on (`None`: never), and the client
    /// connected then is disconnected.
    Expire(Option<SystemTime>),
}

/// Why the machine refused a request: an error `code` and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// The keys of a `send-key`: a list of names (`["ctrl", "alt", "delete"]`)
/// or one combination (`"ctrl-alt-delete"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Keys {
    Names(Vec<String>),
    Combo(String),
}

/// Pointer buttons by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Button {
    Left,
    Middle,
    Right,
    Side,
    Extra,
}

/// A pointer command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointerEvent {
    /// Relative motion of the PS/2 mouse (positive `dy` is down).
    Motion { dx: i32, dy: i32 },
    /// The tablet's pointer at pixel (`x`, `y`) of display `display`.
    Position { display: u8, x: u32, y: u32 },
    /// A button of the pointer used last pressed, released, or (`None`) clicked.
    Button {
        button: Button,
        pressed: Option<bool>,
    },
    /// Wheel steps of the pointer used last (negative is up).
    Wheel { dz: i32 },
}
