//! `saffron replay`: reads a recording and feeds it, event by event and in
//! file order, to the [`Guest`] driver of a real QXL device, at the pace
//! asked for, and sums up what happened.
//!
//! Pacing ([`Pace`]):
//! * `Recorded`: events are spaced as their timestamps say (gaps longer
//!   than `max_gap` are shortened to it, so a recording with a long idle
//!   stretch, or a crafted timestamp, cannot stall the replay);
//! * `Client`: after each command the device finished, wait until the
//!   display clients have received everything ([`ClientGate`]); without a
//!   client this is as fast as the device takes commands;
//! * `Fast`: as fast as the device takes commands (benchmarks).
//!
//! Errors: a recording that cannot be parsed any further ends the replay
//! with [`Summary::error`]; a truncated one ends it at the last complete
//! event ([`Summary::truncated`]); a single event that cannot be replayed
//! (inconsistent sizes, does not fit the device, refused by the device) is
//! skipped, counted and logged.

use std::path::Path;
use std::time::{Duration, Instant};

use devices::qxl::{QxlConfig, QxlStatsSnapshot};

use super::guest::{Guest, GuestError};
use super::model::{Command, EventKind};
use super::reader::{Item, Limits, ReadError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Recorded,
    Client,
    Fast,
}

impl std::str::FromStr for Pace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "recorded" => Ok(Pace::Recorded),
            "client" => Ok(Pace::Client),
            "fast" => Ok(Pace::Fast),
            _ => Err(format!("'{s}': the pace is recorded, client or fast")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PlayerOptions {
    pub pace: Pace,
    /// Longest pause `Recorded` pacing makes between two events.
    pub max_gap: Duration,
    /// `Recorded` pacing plays this many times faster than recorded.
    pub speed: f64,
    pub limits: Limits,
}

impl Default for PlayerOptions {
    fn default() -> Self {
        PlayerOptions {
            pace: Pace::Recorded,
            max_gap: Duration::from_secs(1),
            speed: 1.0,
            limits: Limits::default(),
        }
    }
}

/// What `Client` pacing waits for.
pub trait ClientGate {
    /// Returns once every connected display client has been sent (and has
    /// acknowledged) the current picture; at once without clients.
    fn wait_caught_up(&self);
}

/// Any waiting function is a gate (the replay command passes the SPICE
/// server's wait, so the player needs no SPICE types).
impl<F: Fn()> ClientGate for F {
    fn wait_caught_up(&self) {
        self()
    }
}

/// Problems kept for the summary (the rest are only counted).
const KEPT_PROBLEMS: usize = 8;
/// How long the end of a replay waits for the device to release everything.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What one pass over a recording did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub events: u64,
    pub commands: u64,
    pub draws: u64,
    pub cursor_commands: u64,
    pub surface_commands: u64,
    pub update_commands: u64,
    pub messages: u64,
    pub device_messages: u64,
    /// Events the reader found inconsistent (not replayed).
    pub skipped: u64,
    /// Events the driver could not replay (did not fit the device, ...).
    pub failed: u64,
    /// The first few reasons for skipped and failed events.
    pub problems: Vec<String>,
    /// Bytes of the recording read.
    pub bytes: u64,
    /// Time between the first and the last event's timestamps.
    pub recorded_span: Duration,
    pub elapsed: Duration,
    /// The device's counters during the pass.
    pub device: QxlStatsSnapshot,
    /// Commands the device had not released at the end.
    pub unreleased: usize,
    /// The file ended inside an event.
    pub truncated: Option<String>,
    /// The file could not be parsed any further.
    pub error: Option<String>,
}

impl Summary {
    fn problem(&mut self, event: u32, what: &str) {
        tracing::warn!("replay: event {event}: {what}");
        if self.problems.len() < KEPT_PROBLEMS {
            self.problems.push(format!("event {event}: {what}"));
        }
    }

    /// One line of `key=value` pairs.
    pub fn line(&self) -> String {
        format!(
            "events={} commands={} draws={} cursor={} surface={} update={} device_messages={} \
             skipped={} failed={} refused={} dropped={} pixels={} bytes={} recorded={:.3}s elapsed={:.3}s{}{}",
            self.events,
            self.commands,
            self.draws,
            self.cursor_commands,
            self.surface_commands,
            self.update_commands,
            self.device_messages,
            self.skipped,
            self.failed,
            self.device.bad_commands,
            self.device.dropped_drawables,
            self.device.pixels_drawn,
            self.bytes,
            self.recorded_span.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            if self.truncated.is_some() {
                " truncated=1"
            } else {
                ""
            },
            if self.error.is_some() { " error=1" } else { "" },
        )
    }
}

fn delta(after: QxlStatsSnapshot, before: QxlStatsSnapshot) -> QxlStatsSnapshot {
    QxlStatsSnapshot {
        port_writes: after.port_writes - before.port_writes,
        notifies: after.notifies - before.notifies,
        commands: after.commands - before.commands,
        drawables: after.drawables - before.drawables,
        cursor_commands: after.cursor_commands - before.cursor_commands,
        releases: after.releases - before.releases,
        interrupts: after.interrupts - before.interrupts,
        bad_commands: after.bad_commands - before.bad_commands,
        guest_bugs: after.guest_bugs - before.guest_bugs,
        dropped_drawables: after.dropped_drawables - before.dropped_drawables,
        pixels_drawn: after.pixels_drawn - before.pixels_drawn,
        surface_copy_bytes: after.surface_copy_bytes - before.surface_copy_bytes,
    }
}

/// A QXL device and its driver, replaying recordings.
pub struct Player {
    guest: Guest,
    options: PlayerOptions,
}

impl Player {
    pub fn new(qxl: QxlConfig, options: PlayerOptions) -> Result<Player, GuestError> {
        Ok(Player {
            guest: Guest::new(qxl)?,
            options,
        })
    }

    pub fn guest(&mut self) -> &mut Guest {
        &mut self.guest
    }

    pub fn display(&self) -> std::sync::Arc<devices::display::Display> {
        self.guest.display()
    }

    /// Replays `path` once. `Err` only when it cannot be opened or is not a
    /// recording; everything else is in the summary.
    pub fn play(
        &mut self,
        path: &Path,
        gate: Option<&dyn ClientGate>,
    ) -> Result<Summary, ReadError> {
        let mut reader = super::open(path, self.options.limits)?;
        let mut summary = Summary::default();
        let before = self.guest.stats();
        let start = Instant::now();
        // Recorded pacing: (first timestamp, last timestamp, virtual time).
        let mut clock: Option<(u64, u64, Duration)> = None;
        loop {
            let item = match reader.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e @ ReadError::Truncated { .. }) => {
                    summary.truncated = Some(e.to_string());
                    break;
                }
                Err(e) => {
                    summary.error = Some(e.to_string());
                    break;
                }
            };
            summary.events += 1;
            let (counter, timestamp) = match &item {
                Item::Event(e) => (e.counter, e.timestamp),
                Item::Skipped {
                    counter, timestamp, ..
                } => (*counter, *timestamp),
            };
            let (first, _, _) = *clock.get_or_insert((timestamp, timestamp, Duration::ZERO));
            summary.recorded_span = Duration::from_nanos(timestamp - first);
            if self.options.pace == Pace::Recorded {
                if let Some((_, last, virtual_time)) = clock.as_mut() {
                    let gap = Duration::from_nanos(timestamp - *last)
                        .div_f64(self.options.speed.clamp(0.1, 100.0))
                        .min(self.options.max_gap);
                    *virtual_time += gap;
                    *last = timestamp;
                    let due = start + *virtual_time;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
            }
            let event = match item {
                Item::Event(e) => e,
                Item::Skipped { reason, .. } => {
                    summary.skipped += 1;
                    summary.problem(counter, &reason);
                    continue;
                }
            };
            match &event.kind {
                EventKind::Device { message, primary } => {
                    summary.device_messages += 1;
                    if let Err(e) = self.guest.device_message(*message, primary.as_ref()) {
                        summary.failed += 1;
                        summary.problem(counter, &format!("device message {message}: {e}"));
                    }
                }
                EventKind::Command(command) => {
                    match command {
                        Command::Empty(_) => continue,
                        Command::Draw(_) => summary.draws += 1,
                        Command::Cursor(_) => summary.cursor_commands += 1,
                        Command::Surface(_) => summary.surface_commands += 1,
                        Command::Update(_) => summary.update_commands += 1,
                        Command::Message(_) => summary.messages += 1,
                    }
                    summary.commands += 1;
                    match self.guest.command(command) {
                        Ok(id) => {
                            if let (Pace::Client, Some(gate)) = (self.options.pace, gate) {
                                self.guest.wait_released(id, DRAIN_TIMEOUT);
                                gate.wait_caught_up();
                            }
                        }
                        Err(e) => {
                            summary.failed += 1;
                            summary.problem(counter, &e);
                        }
                    }
                }
            }
        }
        self.guest.drain(DRAIN_TIMEOUT);
        if let (Pace::Client, Some(gate)) = (self.options.pace, gate) {
            gate.wait_caught_up();
        }
        summary.unreleased = self.guest.outstanding();
        summary.bytes = reader.offset();
        summary.elapsed = start.elapsed();
        summary.device = delta(self.guest.stats(), before);
        Ok(summary)
    }
}
