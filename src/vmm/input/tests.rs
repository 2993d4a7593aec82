//! Tests of the input controller: keys into the PS/2 keyboard, motion into
//! the PS/2 mouse, positions scaled onto the tablet.

use std::sync::atomic::{AtomicUsize, Ordering};

use devices::bus::BusDeviceMut;
use devices::interrupt::{EdgeInterrupt, NoInterrupt};
use devices::system::{SystemEvent, SystemEvents};
use devices::virtio::pci::Wiring;
use devices::virtio::GuestMemory;
use vm_memory::GuestAddress;

use super::*;

#[derive(Default)]
struct Count(AtomicUsize);
impl EdgeInterrupt for Count {
    fn trigger(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
struct NoEvents;
impl SystemEvents for NoEvents {
    fn request(&self, _: SystemEvent) {}
}

fn ps2() -> Arc<Mutex<I8042>> {
    Arc::new(Mutex::new(I8042::new(
        Arc::new(Count::default()),
        Arc::new(Count::default()),
        Arc::new(NoEvents),
    )))
}

fn tablet() -> Tablet {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    Arc::new(Mutex::new(
        VirtioPciDevice::new(
            VirtioInput::tablet(),
            Wiring {
                memory,
                msi: Arc::new(NoInterrupt),
                intx: Arc::new(NoInterrupt),
                intx_line: 0,
            },
        )
        .unwrap(),
    ))
}

fn display(width: u32, height: u32) -> Arc<Display> {
    let d = Display::new();
    assert!(d.resize(SHOWN_HEAD, width, height));
    d
}

/// Reads everything the i8042 has for the guest.
fn guest_reads(ps2: &Arc<Mutex<I8042>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dev = lock(ps2);
    loop {
        let mut status = [0u8];
        dev.read(4, &mut status);
        if status[0] & 1 == 0 {
            return out;
        }
        let mut b = [0u8];
        dev.read(0, &mut b);
        out.push(b[0]);
    }
}

fn enable_mouse(ps2: &Arc<Mutex<I8042>>) {
    let mut dev = lock(ps2);
    dev.write(4, &[0xa8]);
    dev.write(4, &[0xd4]);
    dev.write(0, &[0xf4]);
    drop(dev);
    assert_eq!(guest_reads(ps2), vec![0xfa]);
}

fn tablet_events(t: &Tablet) -> Vec<InputEvent> {
    lock(t).device().pending_events().copied().collect()
}

#[test]
fn scaling_round_trips_within_a_pixel() {
    for (w, h) in [(1024u64, 768u64), (1920, 1080), (640, 480), (3840, 2160)] {
        for (extent, step) in [(w, 1), (h, 1)] {
            for p in (0..extent).step_by(step) {
                let v = scale_to_axis(p, extent) as u64;
                assert!(v <= 32767);
                // The two ways guests map an axis back to pixels.
                let libinput = (v * extent) / 32768;
                let exact = (v * (extent - 1) + 16383) / 32767;
                assert_eq!(exact, p, "{extent}: {p}");
                assert!(libinput.abs_diff(p) <= 1, "{extent}: {p} → {libinput}");
            }
        }
        assert_eq!(scale_to_axis(w - 1, w), 32767);
        assert_eq!(scale_to_axis(0, w), 0);
        assert_eq!(scale_to_axis(u64::MAX, w), 32767, "clamped");
    }
    assert_eq!(scale_to_axis(5, 1), 0);
    assert_eq!(scale_to_axis(5, 0), 0);
}

#[test]
fn positions_on_several_displays() {
    let sizes = [Some((1024, 768)), None, Some((1920, 1080))];
    // Display 0 spans the left 1024 of 2944 pixels.
    assert_eq!(desktop_position(&sizes, 0, 0, 0), Some((0, 0)));
    assert_eq!(
        desktop_position(&sizes, 0, 1023, 767),
        Some((scale_to_axis(1023, 2944), scale_to_axis(767, 1080)))
    );
    assert_eq!(
        desktop_position(&sizes, 2, 1919, 1079),
        Some((32767, 32767))
    );
    assert_eq!(desktop_position(&sizes, 1, 5, 5), None, "blank display");
    assert_eq!(desktop_position(&sizes, 3, 5, 5), None, "no such display");
    // Outside the display: clamped to its edge, not onto the next one.
    assert_eq!(
        desktop_position(&sizes, 0, 5000, 5000),
        desktop_position(&sizes, 0, 1023, 767)
    );
    assert_eq!(
        desktop_position(&[Some((1024, 768))], 0, 512, 384),
        Some((scale_to_axis(512, 1024), scale_to_axis(384, 768)))
    );
}

#[test]
fn send_keys_presses_and_releases_in_order() {
    let ps2 = ps2();
    let input = InputController::new(ps2.clone(), None, vec![]);
    input.send_keys(&["ctrl", "alt", "delete"]).unwrap();
    assert_eq!(
        guest_reads(&ps2),
        vec![0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d]
    );
    input.send_key_combo("shift-a").unwrap();
    assert_eq!(guest_reads(&ps2), vec![0x2a, 0x1e, 0x9e, 0xaa]);
    assert!(matches!(
        input.send_key_combo("ctrl-bogus"),
        Err(InputError::KeyName(_))
    ));
    assert!(guest_reads(&ps2).is_empty(), "nothing sent for a bad name");
}

#[test]
fn spice_keys_and_unknown_codes() {
    let ps2 = ps2();
    let input = InputController::new(ps2.clone(), None, vec![]);
    input.key(&[0x1e, 0x00, 0x9e, 0xe0, 0x77, 0xe0, 0x48]);
    assert_eq!(guest_reads(&ps2), vec![0x1e, 0x9e, 0xe0, 0x48]);
}

#[test]
fn relative_motion_and_wheel_reach_the_ps2_mouse() {
    let ps2 = ps2();
    enable_mouse(&ps2);
    let input = InputController::new(ps2.clone(), Some(tablet()), vec![display(1024, 768)]);
    input.relative_motion(3, -2, MouseButtons(MouseButtons::LEFT));
    assert_eq!(guest_reads(&ps2), vec![0x09, 3, 2]);
    input.wheel(1, MouseButtons(MouseButtons::LEFT));
    // No wheel without the IntelliMouse protocol: a plain packet.
    assert_eq!(guest_reads(&ps2), Vec::<u8>::new());
    input.buttons(MouseButtons(0));
    assert_eq!(guest_reads(&ps2), vec![0x08, 0, 0]);
    // Hostile sizes are clamped before they reach the mouse.
    input.relative_motion(i32::MAX, i32::MIN, MouseButtons(0));
    let packets = guest_reads(&ps2);
    assert!(packets.len() <= 3 * devices::i8042::MOTION_PACKETS_QUEUED + 3 * 20);
}

#[test]
fn client_mode_goes_to_the_tablet() {
    let ps2 = ps2();
    enable_mouse(&ps2);
    let t = tablet();
    let input = InputController::new(ps2.clone(), Some(t.clone()), vec![display(1920, 1080)]);
    input.mouse_mode(true);
    input.absolute_position(0, 960, 540, MouseButtons(MouseButtons::RIGHT));
    input.wheel(-1, MouseButtons(MouseButtons::RIGHT));
    input.buttons(MouseButtons(0));
    assert_eq!(
        tablet_events(&t),
        vec![
            InputEvent::new(EV_KEY, BTN_RIGHT, 1),
            InputEvent::new(EV_ABS, ABS_X, scale_to_axis(960, 1920)),
            InputEvent::new(EV_ABS, ABS_Y, scale_to_axis(540, 1080)),
            InputEvent::new(0, 0, 0),
            InputEvent::new(EV_REL, REL_WHEEL, 1),
            InputEvent::new(0, 0, 0),
            InputEvent::new(EV_KEY, BTN_RIGHT, 0),
            InputEvent::new(0, 0, 0),
        ]
    );
    assert!(guest_reads(&ps2).is_empty(), "nothing on the PS/2 mouse");
    // A display that does not exist: dropped.
    input.absolute_position(4, 1, 1, MouseButtons(0));
    assert_eq!(tablet_events(&t).len(), 8);
    assert_eq!(
        input.pointer_position(4, 1, 1),
        Err(InputError::NoSuchDisplay(4))
    );
}

#[test]
fn switching_modes_releases_held_buttons() {
    let ps2 = ps2();
    enable_mouse(&ps2);
    let t = tablet();
    let input = InputController::new(ps2.clone(), Some(t.clone()), vec![display(800, 600)]);
    input.relative_motion(0, 0, MouseButtons(MouseButtons::LEFT));
    assert_eq!(guest_reads(&ps2), vec![0x09, 0, 0]);
    input.mouse_mode(true);
    assert_eq!(
        guest_reads(&ps2),
        vec![0x08, 0, 0],
        "released on the PS/2 mouse"
    );
    input.absolute_position(0, 1, 1, MouseButtons(MouseButtons::MIDDLE));
    input.mouse_mode(false);
    let events = tablet_events(&t);
    assert_eq!(
        events[events.len() - 2..],
        [
            InputEvent::new(EV_KEY, BTN_MIDDLE, 0),
            InputEvent::new(0, 0, 0)
        ]
    );
}

#[test]
fn scripted_pointer() {
    let ps2 = ps2();
    enable_mouse(&ps2);
    let t = tablet();
    let input = InputController::new(ps2.clone(), Some(t.clone()), vec![display(1024, 768)]);
    input.pointer_motion(10, 0);
    input.pointer_button(PointerButton::Left, true);
    input.pointer_button(PointerButton::Left, false);
    assert_eq!(guest_reads(&ps2), vec![0x08, 10, 0, 0x09, 0, 0, 0x08, 0, 0]);
    input.pointer_position(0, 1023, 0).unwrap();
    input.pointer_button(PointerButton::Side, true);
    input.pointer_wheel(2);
    assert_eq!(
        tablet_events(&t),
        vec![
            InputEvent::new(EV_ABS, ABS_X, 32767),
            InputEvent::new(EV_ABS, ABS_Y, 0),
            InputEvent::new(0, 0, 0),
            InputEvent::new(EV_KEY, BTN_SIDE, 1),
            InputEvent::new(0, 0, 0),
            InputEvent::new(EV_REL, REL_WHEEL, -2),
            InputEvent::new(0, 0, 0),
        ]
    );
    let no_tablet = InputController::new(ps2, None, vec![display(1024, 768)]);
    assert_eq!(
        no_tablet.pointer_position(0, 1, 1),
        Err(InputError::NoTablet)
    );
}

#[test]
fn the_link_replays_state_when_the_server_arrives() {
    // Without a server, reports are kept (and nothing panics).
    let link = SpiceLink::default();
    link.leds_changed(Leds(4));
    link.driver_ready(true);
    assert_eq!(*lock(&link.state), (Leds(4), true));
}

#[test]
fn key_presses_are_rate_limited_but_releases_pass() {
    let ps2 = ps2();
    let input = InputController::new(ps2.clone(), None, vec![]);
    let mut bytes = Vec::new();
    for _ in 0..1000 {
        input.key(&[0x2a, 0xaa]);
        bytes.extend(guest_reads(&ps2));
    }
    let presses = bytes.iter().filter(|b| **b == 0x2a).count();
    let releases = bytes.iter().filter(|b| **b == 0xaa).count();
    assert!(presses >= KEY_PRESS_BURST as usize, "{presses}");
    assert!(
        presses < KEY_PRESS_BURST as usize + 50,
        "{presses} got through"
    );
    assert_eq!(
        presses, releases,
        "every press that got through is released"
    );
    // The bucket refills.
    std::thread::sleep(std::time::Duration::from_millis(100));
    input.key(&[0x1e, 0x9e]);
    assert_eq!(guest_reads(&ps2), vec![0x1e, 0x9e]);
}

#[test]
fn positions_on_a_monitor_land_on_its_part_of_the_screen() {
    let ps2 = ps2();
    let t = tablet();
    let screen = display(2048, 768);
    screen.set_max_monitors(2);
    let monitor = |id, x| devices::display::Monitor {
        id,
        x,
        y: 0,
        width: 1024,
        height: 768,
    };
    screen.set_guest_monitors(vec![monitor(0, 0), monitor(1, 1024)]);
    let input = InputController::new(ps2, Some(t.clone()), vec![screen.clone()]);
    input.mouse_mode(true);
    input.absolute_position(1, 10, 20, MouseButtons(0));
    input.pointer_position(0, 5000, 767).unwrap();
    assert_eq!(
        tablet_events(&t),
        vec![
            InputEvent::new(EV_ABS, ABS_X, scale_to_axis(1034, 2048)),
            InputEvent::new(EV_ABS, ABS_Y, scale_to_axis(20, 768)),
            InputEvent::new(0, 0, 0),
            InputEvent::new(EV_ABS, ABS_X, scale_to_axis(1023, 2048)),
            InputEvent::new(EV_ABS, ABS_Y, scale_to_axis(767, 768)),
            InputEvent::new(0, 0, 0),
        ]
    );
    // One monitor left on a surface the guest kept wider: the pointer
    // spans the monitor, as the guest's desktop does.
    screen.set_guest_monitors(vec![monitor(0, 0)]);
    input.pointer_position(0, 512, 0).unwrap();
    let events = tablet_events(&t);
    assert_eq!(
        events[events.len() - 3],
        InputEvent::new(EV_ABS, ABS_X, scale_to_axis(512, 1024))
    );
    // A monitor the guest turned off, or one it does not have.
    screen.set_guest_monitors(vec![monitor(0, 0), devices::display::Monitor::default()]);
    assert_eq!(
        input.pointer_position(1, 1, 1),
        Err(InputError::NoSuchDisplay(1))
    );
    assert_eq!(
        input.pointer_position(2, 1, 1),
        Err(InputError::NoSuchDisplay(2))
    );
}
