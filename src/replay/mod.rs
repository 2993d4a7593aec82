//! Record and replay real QXL command streams in libspice's
//! `SPICE_REPLAY 1` format (docs/replay-format.md).
//!
//! ```text
//!  file ─► reader (strict grammar, caps) ─► model::Event ─► player (pacing, summary)
//!                                                             │
//!              guest (a guest driver in Rust) ◄───────────────┘
//!                layout: structures into BAR memory, QXLPHYSICAL via our memslots
//!                rings + notify ports + release ring + interrupts
//!                   ▼
//!              the real QXL device (worker thread, parser, renderer) ─► Display ─► SPICE server
//!                   │ DrawableObserver
//!                   ▼
//!              recorder ─► writer ─► file   (`saffron run --record`, `saffron replay --record`)
//! ```
//!
//! * [`model`]: the recorded events as Rust values; [`reader`] and
//!   [`writer`]: the text+binary format, exact inverses.
//! * [`layout`], [`heap`], [`guest`]: acting as the guest driver.
//! * [`player`]: `saffron replay` (pacing, loop, summary).
//! * [`recorder`]: a device observer that writes the format.

pub mod guest;
pub mod heap;
pub mod layout;
pub mod model;
pub mod player;
pub mod reader;
pub mod recorder;
pub mod writer;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;

pub use player::{Pace, Player, PlayerOptions, Summary};
pub use reader::{Item, Limits, ReadError, Reader};
pub use recorder::Recorder;

/// Opens a recording (plain or gzip-compressed, as
/// `SPICE_WORKER_RECORD_FILTER=gzip` makes them; `-` is stdin).
pub fn open(path: &Path, limits: Limits) -> Result<Reader<Box<dyn Read + Send>>, ReadError> {
    let mut source: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path)?)
    };
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match source.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let head = std::io::Cursor::new(magic[..got].to_vec());
    let source: Box<dyn Read + Send> = match magic[..got] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(head.chain(source))),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            return Err(ReadError::Io(std::io::Error::other(
                "zstd-compressed recording: decompress it first (zstd -d)",
            )))
        }
        _ => Box::new(head.chain(source)),
    };
    Reader::new(source, limits)
}
