//! Saffron's library part: the pieces that are useful on their own and are
//! tested or fuzzed without a VM: the SPICE server and the QXL
//! record/replay tools.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod control;
pub mod machine;
pub mod net;
pub mod replay;
pub mod seccomp;
pub mod spice;
pub mod unix_socket;
