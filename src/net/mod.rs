//! Network backends for the virtio-net card (docs/virtio-net.md §5):
//! user-mode networking through passt ([`passt`], frames over a socket
//! with [`stream`]'s framing) and TAP devices ([`tap`]), and the `--net`
//! option that picks one ([`options`]).

pub mod guest_io;
pub mod options;
pub mod passt;
pub mod stream;
pub mod tap;
pub mod unix_buffer;

pub use options::{Forward, NetBackendKind, NetOptions, Protocol, UserNet};

/// Why a network backend cannot start: one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("--net user needs passt (Debian package passt), which is not in PATH")]
    NoPasst,
    #[error("--net user: cannot start passt: {0}")]
    PasstStart(std::io::Error),
    #[error("--net user: passt exited at start ({status}){detail}")]
    PasstExited { status: String, detail: String },
    #[error(
        "--net user: hostfwd {proto} port {port} on {addr} is in use or not allowed: {source}"
    )]
    PortInUse {
        proto: &'static str,
        addr: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("--net tap={name}: {reason}")]
    Tap { name: String, reason: String },
}
