//! The drawable observer: how a later consumer (the SPICE server, to turn
//! QXL drawing into SPICE draw messages) sees each command the device
//! accepted, SPICE-free.
//!
//! The display worker calls the observer on its own thread, in ring order,
//! after the command took effect (drawn into the surface, surface created,
//! cursor changed) and *before* it is released to the guest: pixel data the
//! types point to ([`PixelData`](super::commands::PixelData) ranges) can be
//! read with `memory` only during the call; copy what must outlive it. An
//! observer must return quickly and never block on a client: the guest's
//! display waits for it. Register one with
//! [`QxlControl::set_observer`](super::QxlControl::set_observer).
//!
//! Together the calls describe everything the device accepted, in order,
//! which is what a recorder needs (`saffron run --record`): commands as
//! parsed (refused and dropped ones are not shown), primary creation with
//! the surface's memory range, and every accepted I/O port command after it
//! took effect ([`DrawableObserver::io`]).

use super::commands::{CursorCmd, Drawable, SurfaceCmd, UpdateCmd};
use super::memory::BarMemory;
use super::surfaces::SurfaceInfo;

pub trait DrawableObserver: Send {
    /// A drawable was drawn (after validation; refused drawables are not shown).
    fn drawable(&mut self, drawable: &Drawable, memory: &BarMemory);

    /// An off-screen surface was created (`info`: where its pixels are,
    /// readable during the call) or destroyed (`info` is `None`).
    fn surface(&mut self, _cmd: &SurfaceCmd, _info: Option<&SurfaceInfo>) {}

    /// A `QXL_CMD_UPDATE` was accepted (the device renders eagerly, so it
    /// has nothing else to do).
    fn update(&mut self, _cmd: &UpdateCmd) {}

    /// An I/O port command (`QXL_IO_*`, the port number as the guest wrote
    /// it, async variants included) was carried out without putting the
    /// device in its error state. Called after its effects (commands it
    /// drained, the primary it created) were shown. Not called for the
    /// notify and interrupt ports.
    fn io(&mut self, _port: u8) {}

    /// A cursor command was applied (the display's cursor already shows it).
    fn cursor(&mut self, _cmd: &CursorCmd) {}

    /// The primary surface was created (`Some`) or destroyed (`None`).
    fn primary(&mut self, _primary: Option<&SurfaceInfo>) {}

    /// The device was reset: every surface is gone.
    fn reset(&mut self) {}
}
