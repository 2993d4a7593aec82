//! Client mouse mode through the agent: an [`InputSink`] in front of the
//! VMM's that sends pointer positions, buttons and wheel steps to the
//! agent (`VD_AGENT_MOUSE_STATE`, docs/spice-agent.md §5) while the
//! session is in client mode and the guest has no tablet driver; the rest
//! goes to the VMM's sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Agent;
use crate::spice::inputs_channel::{InputSink, MouseButtons};

/// `VD_AGENT_*BUTTON_MASK` bits.
const LEFT: u32 = 1 << 1;
const MIDDLE: u32 = 1 << 2;
const RIGHT: u32 = 1 << 3;
const WHEEL_UP: u32 = 1 << 4;
const WHEEL_DOWN: u32 = 1 << 5;
const SIDE: u32 = 1 << 6;
const EXTRA: u32 = 1 << 7;
/// Wheel steps sent for one event at most.
const MAX_WHEEL_STEPS: i32 = 16;

fn agent_buttons(b: MouseButtons) -> u32 {
    [
        (MouseButtons::LEFT, LEFT),
        (MouseButtons::MIDDLE, MIDDLE),
        (MouseButtons::RIGHT, RIGHT),
        (MouseButtons::SIDE, SIDE),
        (MouseButtons::EXTRA, EXTRA),
    ]
    .iter()
    .filter(|(ours, _)| b.0 & ours != 0)
    .fold(0, |mask, (_, theirs)| mask | theirs)
}

#[derive(Default)]
struct Pointer {
    client_mode: bool,
    display: u8,
    x: u32,
    y: u32,
}

/// The sink the input channel gets when there is an agent.
pub struct AgentMouse {
    inner: Arc<dyn InputSink>,
    agent: Arc<Mutex<Agent>>,
    /// The guest's tablet driver runs (then positions go to the tablet).
    tablet: Arc<AtomicBool>,
    pointer: Mutex<Pointer>,
}

impl AgentMouse {
    pub fn new(
        inner: Arc<dyn InputSink>,
        agent: Arc<Mutex<Agent>>,
        tablet: Arc<AtomicBool>,
    ) -> Self {
        AgentMouse {
            inner,
            agent,
            tablet,
            pointer: Mutex::new(Pointer::default()),
        }
    }

    fn pointer(&self) -> std::sync::MutexGuard<'_, Pointer> {
        self.pointer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn agent(&self) -> std::sync::MutexGuard<'_, Agent> {
        self.agent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether pointer input goes to the agent now.
    fn through_agent(&self) -> bool {
        self.pointer().client_mode
            && !self.tablet.load(Ordering::Relaxed)
            && self.agent().carries_mouse()
    }

    fn send(&self, buttons: u32) {
        let (display, x, y) = {
            let p = self.pointer();
            (p.display, p.x, p.y)
        };
        self.agent().mouse_state(display, x, y, buttons);
    }
}

impl InputSink for AgentMouse {
    fn key(&self, scancodes: &[u8]) {
        self.inner.key(scancodes);
    }

    fn relative_motion(&self, dx: i32, dy: i32, buttons: MouseButtons) {
        self.inner.relative_motion(dx, dy, buttons);
    }

    fn absolute_position(&self, display: u8, x: u32, y: u32, buttons: MouseButtons) {
        if !self.through_agent() {
            return self.inner.absolute_position(display, x, y, buttons);
        }
        {
            let mut p = self.pointer();
            (p.display, p.x, p.y) = (display, x, y);
        }
        self.send(agent_buttons(buttons));
    }

    fn buttons(&self, buttons: MouseButtons) {
        if !self.through_agent() {
            return self.inner.buttons(buttons);
        }
        self.send(agent_buttons(buttons));
    }

    fn wheel(&self, dz: i32, buttons: MouseButtons) {
        if !self.through_agent() {
            return self.inner.wheel(dz, buttons);
        }
        let held = agent_buttons(buttons);
        let step = if dz < 0 { WHEEL_UP } else { WHEEL_DOWN };
        for _ in 0..dz.abs().min(MAX_WHEEL_STEPS) {
            self.send(held | step);
            self.send(held);
        }
    }

    fn mouse_mode(&self, client: bool) {
        self.pointer().client_mode = client;
        self.inner.mouse_mode(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_masks() {
        assert_eq!(agent_buttons(MouseButtons(0)), 0);
        assert_eq!(agent_buttons(MouseButtons(MouseButtons::LEFT)), 2);
        assert_eq!(
            agent_buttons(MouseButtons(MouseButtons::RIGHT | MouseButtons::MIDDLE)),
            8 | 4
        );
        assert_eq!(
            agent_buttons(MouseButtons(MouseButtons::SIDE | MouseButtons::EXTRA)),
            0x40 | 0x80
        );
    }
}
