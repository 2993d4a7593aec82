//! What the control socket can do to a running VM: report its state, take a
//! screendump of the machine's display (head 0, whichever device shows it),
//! type keys and move the pointer, press the power button, reset or stop it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use devices::acpi_pm::AcpiPm;
use devices::bus::lock;
use devices::display::{Display, Rect, ScanoutSwitch, BYTES_PER_PIXEL};
use serde_json::{json, Value};

use super::exit::{ExitSignal, VmExit};
use super::input::{InputController, InputError, PointerButton, SpiceLink};
use super::vga::{VgaRefresher, REFRESH_HZ};
use saffron::machine::{Button, Keys, Machine, PasswordChange, PointerEvent, Refusal};
use saffron::spice::{CompressionOptions, SpiceControl, STATS_METHODS};

/// The display devices, for `status`.
pub struct Scanout {
    pub qxl: bool,
    /// The VGA's switch, when there is a VGA.
    pub vga: Option<Arc<ScanoutSwitch>>,
}

impl Scanout {
    /// Which device shows head 0 now: "qxl", "vga" or none.
    fn owner(&self) -> Option<&'static str> {
        match (&self.vga, self.qxl) {
            (Some(switch), true) if switch.native() => Some("qxl"),
            (Some(_), _) => Some("vga"),
            // QXL alone shows nothing until its driver creates a primary.
            (None, true) => Some("qxl"),
            (None, false) => None,
        }
    }
}

pub struct VmControl {
    pub started: Instant,
    pub cpus: u8,
    pub memory: u64,
    pub exit: Arc<ExitSignal>,
    pub power: Arc<Mutex<AcpiPm>>,
    /// The machine's display (QXL's, or the standalone VGA's).
    pub display: Option<Arc<Display>>,
    pub scanout: Scanout,
    pub refresher: Option<Arc<VgaRefresher>>,
    pub input: Arc<InputController>,
    /// What the input devices reported (the tablet driver).
    pub input_devices: Arc<SpiceLink>,
    /// The SPICE server, with `--spice`.
    pub spice: Option<SpiceControl>,
    /// The disks, in `--disk` order.
    pub disks: Vec<super::disks::DiskStatus>,
    /// The network cards, in `--net` order.
    pub nics: Vec<super::net::NicStatus>,
    /// The sound card's audio (`--audio hda`).
    pub audio: Option<Arc<saffron::spice::AudioHub>>,
}

/// `status.audio`: each direction's format while the guest uses it, and
/// its byte counts.
fn audio_status(hub: &saffron::spice::AudioHub) -> Value {
    let stream = |s: saffron::spice::audio::StreamStats| {
        json!({
            "active": s.format.is_some(),
            "rate": s.format.map(|f| f.rate),
            "channels": s.format.map(|f| f.channels),
            "bytes": s.bytes,
            "dropped": s.dropped,
            "opus_bytes": s.opus_bytes,
        })
    };
    json!({
        "model": "hda",
        "playback": stream(hub.playback_stats()),
        "record": stream(hub.record_stats()),
    })
}

/// The SPICE server's part of `status`: its compression options, what
/// its channels sent (images and bytes per encoding, streams, cursor
/// shapes), what the client's network test found, and the guest agent
/// (`null` with `agent=off`).
fn spice_status(spice: &SpiceControl) -> Value {
    let sent = spice.sent();
    let per_method = |counts: &[u64; 6]| -> serde_json::Map<String, Value> {
        STATS_METHODS
            .iter()
            .zip(counts)
            .map(|(name, n)| (name.to_string(), json!(n)))
            .collect()
    };
    let client_link = spice.client_link().map(|link| {
        json!({
            "latency_ms": link.latency.as_secs_f64() * 1000.0,
            "bits_per_second": link.bits_per_second,
            "low_bandwidth": link.low_bandwidth(),
        })
    });
    let agent = spice.agent().map(|a| {
        json!({
            "connected": a.connected,
            "caps": a.caps,
            "messages_from_client": a.messages_from_client,
            "pieces_to_client": a.pieces_to_client,
            "discarded": a.discarded,
            "waiting_for_agent": a.waiting_for_agent,
        })
    });
    json!({
        "compression": compression_json(spice.compression()),
        "client_link": client_link,
        "agent": agent,
        "sent": {
            "images": per_method(&sent.images),
            "image_bytes": per_method(&sent.image_bytes),
            "images_from_cache": sent.images_from_cache,
            "streams": sent.streams,
            "stream_frames": sent.stream_frames,
            "stream_bytes": sent.stream_bytes,
            "stream_frames_unchanged": sent.stream_frames_unchanged,
            "stream_stills_made_exact": sent.stream_stills_made_exact,
            "cursor_shapes": sent.cursor_shapes,
            "cursor_shapes_from_cache": sent.cursor_shapes_from_cache,
            "audio_packets": sent.audio_packets,
            "audio_bytes": sent.audio_bytes,
        },
    })
}

fn compression_json(options: CompressionOptions) -> Value {
    Value::Object(
        options
            .named()
            .iter()
            .map(|(key, value)| (key.to_string(), json!(value)))
            .collect(),
    )
}

fn refusal(error: InputError) -> Refusal {
    let code = match error {
        InputError::KeyName(_) => "bad_request",
        InputError::NoSuchDisplay(_) | InputError::NoTablet => "no_device",
    };
    Refusal {
        code,
        message: error.to_string(),
    }
}

impl Machine for VmControl {
    fn status(&self) -> Value {
        let display = self.display.as_ref().map(|d| {
            let layout = d.layout();
            let size = d.head(0).map(|head| (head.width, head.height));
            let heads: Vec<Value> = layout
                .monitors(size)
                .iter()
                .filter(|m| m.is_on())
                .map(|m| json!({"id": m.id, "x": m.x, "y": m.y, "width": m.width, "height": m.height}))
                .collect();
            json!({
                "width": size.map(|s| s.0),
                "height": size.map(|s| s.1),
                "device": self.scanout.owner(),
                "max_heads": layout.max,
                "heads": heads,
            })
        });
        let vga = self.refresher.as_ref().map(|r| {
            let s = r.stats();
            json!({
                "refresh_hz": REFRESH_HZ,
                "refreshes": s.refreshes,
                "frames": s.frames,
                "full_frames": s.full_frames,
                "dirty_pages": s.dirty_pages,
                "max_dirty_pages": s.max_dirty_pages,
                "rects": s.rects,
                "pixels": s.pixels,
                "busy_us": s.busy.as_micros() as u64,
                "max_busy_us": s.max_busy.as_micros() as u64,
                "idle_busy_us": s.idle_busy.as_micros() as u64,
            })
        });
        let mouse_mode = if self.input.client_mouse_mode() {
            "client"
        } else {
            "server"
        };
        json!({
            "state": "running",
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "vcpus": self.cpus,
            "memory_bytes": self.memory,
            "display": display,
            "disks": self.disks.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            "nics": self.nics.iter().map(|n| n.to_json()).collect::<Vec<_>>(),
            "mouse": {
                "mode": mouse_mode,
                "tablet_driver": self.input_devices.tablet_driver_ready(),
            },
            "vga": vga,
            "audio": self.audio.as_deref().map(audio_status),
            "spice": self.spice.as_ref().map(spice_status),
        })
    }

    fn screen(&self, head: Option<u32>) -> Result<(u32, u32, Vec<u8>), Refusal> {
        if let Some(refresher) = &self.refresher {
            // Up to date if the VGA shows the screen; nothing if QXL does.
            refresher.refresh();
        }
        let no_display = || Refusal {
            code: "no_display",
            message: "this VM has no display (or it shows nothing yet)".into(),
        };
        let display = self.display.as_ref().ok_or_else(no_display)?;
        // (The layout before the picture: both read locks are never held at once.)
        let layout = display.layout();
        let surface = display.head(0).ok_or_else(no_display)?;
        let area = match head {
            None => Rect::new(0, 0, surface.width as i32, surface.height as i32),
            Some(id) => {
                let m = layout
                    .monitors(Some((surface.width, surface.height)))
                    .into_iter()
                    .find(|m| m.id == id && m.is_on())
                    .ok_or_else(|| Refusal {
                        code: "no_device",
                        message: format!("the display has no head {id} turned on"),
                    })?;
                Rect::new(
                    m.x as i32,
                    m.y as i32,
                    (m.x + m.width) as i32,
                    (m.y + m.height) as i32,
                )
            }
        };
        let (left, right) = (area.left as usize, area.right as usize);
        let mut pixels = Vec::with_capacity(area.area() as usize * BYTES_PER_PIXEL);
        for y in area.top..area.bottom {
            let row = surface.row(y as u32);
            pixels.extend_from_slice(&row[left * BYTES_PER_PIXEL..right * BYTES_PER_PIXEL]);
        }
        Ok((area.width() as u32, area.height() as u32, pixels))
    }

    fn send_keys(&self, keys: &Keys) -> Result<(), Refusal> {
        match keys {
            Keys::Names(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                self.input.send_keys(&names)
            }
            Keys::Combo(combo) => self.input.send_key_combo(combo),
        }
        .map_err(refusal)
    }

    fn pointer(&self, event: PointerEvent) -> Result<(), Refusal> {
        let input = &self.input;
        match event {
            PointerEvent::Motion { dx, dy } => input.pointer_motion(dx, dy),
            PointerEvent::Position { display, x, y } => {
                input.pointer_position(display, x, y).map_err(refusal)?
            }
            PointerEvent::Button { button, pressed } => {
                let button = match button {
                    Button::Left => PointerButton::Left,
                    Button::Middle => PointerButton::Middle,
                    Button::Right => PointerButton::Right,
                    Button::Side => PointerButton::Side,
                    Button::Extra => PointerButton::Extra,
                };
                match pressed {
                    Some(pressed) => input.pointer_button(button, pressed),
                    None => {
                        input.pointer_button(button, true);
                        input.pointer_button(button, false);
                    }
                }
            }
            PointerEvent::Wheel { dz } => input.pointer_wheel(dz),
        }
        Ok(())
    }

    fn press_power_button(&self) {
        lock(&self.power).press_power_button();
    }

    fn reset(&self) {
        self.exit.request(VmExit::Reset);
    }

    fn quit(&self) {
        self.exit.request(VmExit::Stopped);
    }

    fn set_spice_compression(&self, changes: &[(&str, &str)]) -> Result<Value, Refusal> {
        let spice = self.spice.as_ref().ok_or_else(no_spice)?;
        let options = spice.set_compression(changes).map_err(|message| Refusal {
            code: "bad_request",
            message,
        })?;
        Ok(compression_json(options))
    }

    fn spice_password(&self, change: PasswordChange) -> Result<(), Refusal> {
        let spice = self.spice.as_ref().ok_or_else(no_spice)?;
        match change {
            PasswordChange::Set {
                password,
                disconnect,
            } => spice
                .set_password(password, disconnect)
                .map_err(|message| Refusal {
                    code: "bad_request",
                    message,
                }),
            PasswordChange::Expire(at) => {
                spice.expire_password(at);
                Ok(())
            }
        }
    }

    fn set_link(&self, name: &str, up: bool) -> Result<(), Refusal> {
        let nic = self.nics.iter().find(|n| n.name() == name);
        nic.ok_or_else(|| no_nic(name, &self.nics))?.set_link(up);
        Ok(())
    }
}

fn no_nic(name: &str, nics: &[super::net::NicStatus]) -> Refusal {
    let names: Vec<&str> = nics.iter().map(|n| n.name()).collect();
    Refusal {
        code: "no_device",
        message: if names.is_empty() {
            "this VM has no network card (see --net)".into()
        } else {
            format!("no network card {name:?} (cards: {})", names.join(", "))
        },
    }
}

fn no_spice() -> Refusal {
    Refusal {
        code: "no_device",
        message: "this VM has no SPICE server (see --spice)".into(),
    }
}
