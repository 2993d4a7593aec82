//! Checks the agent message stream of one direction, piece by piece (a
//! piece is one `AGENT_DATA` message, or up to 2048 bytes of a chunk from
//! the agent), as libspice's agent message filter does
//! (docs/spice-agent.md §4): a piece either starts a message with a whole
//! `VDAgentMessage` header of protocol 1, or continues the current message
//! without running past its end. Each message is passed or discarded by
//! its type, the direction, and what `--spice` allows.

use zerocopy::FromBytes;

use super::wire::{kind, MessageHeader, MESSAGE_HEADER_SIZE, PROTOCOL};

/// Which way the messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToAgent,
    AgentToClient,
}

/// What `--spice` lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub copy_paste: bool,
    pub file_transfer: bool,
}

/// What to do with a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Dropped; the reason is for logs.
    Discard(&'static str),
}

/// One piece, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The type of the message it belongs to.
    pub kind: u32,
    /// Whether it starts that message.
    pub first: bool,
    /// Whether it ends it.
    pub last: bool,
    pub verdict: Verdict,
}

/// Why a stream is broken (the sender is cut off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("an agent message starts with {0} bytes, not a whole header")]
    ShortHeader(usize),
    #[error("agent message protocol {0}, not 1")]
    Protocol(u32),
    #[error("a piece runs {0} bytes past the end of its agent message")]
    Overrun(usize),
}

/// The state of one direction's stream.
#[derive(Debug)]
pub struct Filter {
    direction: Direction,
    /// Bytes of the current message still to come (0: the next piece
    /// starts a message).
    remaining: u64,
    kind: u32,
    verdict: Verdict,
}

impl Filter {
    pub fn new(direction: Direction) -> Self {
        Filter {
            direction,
            remaining: 0,
            kind: 0,
            verdict: Verdict::Pass,
        }
    }

    /// Forgets a message in the middle (the other end started over).
    pub fn reset(&mut self) {
        self.remaining = 0;
    }

    /// Checks the next piece.
    pub fn process(&mut self, piece: &[u8], policy: Policy) -> Result<Piece, FilterError> {
        let first = self.remaining == 0;
        let mut data = piece.len() as u64;
        if first {
            let header = MessageHeader::read_from_prefix(piece)
                .map_err(|_| FilterError::ShortHeader(piece.len()))?
                .0;
            if header.protocol.get() != PROTOCOL {
                return Err(FilterError::Protocol(header.protocol.get()));
            }
            data -= MESSAGE_HEADER_SIZE as u64;
            self.remaining = u64::from(header.size.get());
            self.kind = header.kind.get();
            self.verdict = verdict(self.direction, self.kind, policy);
        }
        if data > self.remaining {
            let over = (data - self.remaining) as usize;
            self.remaining = 0;
            return Err(FilterError::Overrun(over));
        }
        self.remaining -= data;
        Ok(Piece {
            kind: self.kind,
            first,
            last: self.remaining == 0,
            verdict: self.verdict,
        })
    }
}

/// Whether a message of type `t` may go this way.
fn verdict(direction: Direction, t: u32, policy: Policy) -> Verdict {
    use kind::*;
    if kind::is_clipboard(t) && !policy.copy_paste {
        return Verdict::Discard("copy and paste is disabled");
    }
    if kind::is_file_transfer(t) && !policy.file_transfer {
        return Verdict::Discard("file transfer is disabled");
    }
    // Clipboard, capabilities, file transfer and volume go both ways.
    let both_ways = kind::is_clipboard(t)
        || kind::is_file_transfer(t)
        || matches!(t, ANNOUNCE_CAPABILITIES | AUDIO_VOLUME_SYNC);
    let allowed = both_ways
        || match direction {
            Direction::ClientToAgent => {
                matches!(t, MONITORS_CONFIG | DISPLAY_CONFIG | MAX_CLIPBOARD)
            }
            Direction::AgentToClient => t == REPLY,
        };
    if allowed {
        Verdict::Pass
    } else if (1..END).contains(&t) {
        Verdict::Discard("a message type that does not go this way")
    } else {
        Verdict::Discard("an unknown message type")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    const OPEN: Policy = Policy {
        copy_paste: true,
        file_transfer: true,
    };

    fn message(t: u32, size: u32, data: &[u8]) -> Vec<u8> {
        let h = MessageHeader {
            protocol: PROTOCOL.into(),
            kind: t.into(),
            opaque: 0.into(),
            size: size.into(),
        };
        let mut b = h.as_bytes().to_vec();
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn messages_over_several_pieces() {
        let mut f = Filter::new(Direction::ClientToAgent);
        let p = f
            .process(&message(kind::CLIPBOARD, 10, &[1; 4]), OPEN)
            .unwrap();
        assert_eq!((p.first, p.last, p.verdict), (true, false, Verdict::Pass));
        let p = f.process(&[2; 6], OPEN).unwrap();
        assert_eq!((p.kind, p.first, p.last), (kind::CLIPBOARD, false, true));
        // The next piece starts a message again.
        let p = f
            .process(&message(kind::MONITORS_CONFIG, 0, &[]), OPEN)
            .unwrap();
        assert!(p.first && p.last);
    }

    #[test]
    fn broken_streams() {
        let mut f = Filter::new(Direction::AgentToClient);
        assert_eq!(f.process(&[0; 19], OPEN), Err(FilterError::ShortHeader(19)));
        let mut m = message(kind::REPLY, 8, &[0; 8]);
        m[0] = 2;
        assert_eq!(f.process(&m, OPEN), Err(FilterError::Protocol(2)));
        // The end of one message and the start of the next in one piece.
        let m = message(kind::REPLY, 8, &[0; 8 + 20]);
        assert_eq!(f.process(&m, OPEN), Err(FilterError::Overrun(20)));
        f.process(&message(kind::REPLY, 8, &[0; 4]), OPEN).unwrap();
        assert_eq!(f.process(&[0; 5], OPEN), Err(FilterError::Overrun(1)));
    }

    #[test]
    fn policies_and_directions() {
        let closed = Policy {
            copy_paste: false,
            file_transfer: false,
        };
        let mut f = Filter::new(Direction::ClientToAgent);
        for t in [
            kind::CLIPBOARD_GRAB,
            kind::FILE_XFER_DATA,
            kind::MOUSE_STATE,
            99,
            0,
        ] {
            let p = f.process(&message(t, 0, &[]), closed).unwrap();
            assert!(matches!(p.verdict, Verdict::Discard(_)), "{t}");
        }
        let p = f
            .process(&message(kind::MONITORS_CONFIG, 0, &[]), closed)
            .unwrap();
        assert_eq!(p.verdict, Verdict::Pass);
        let mut f = Filter::new(Direction::AgentToClient);
        let p = f
            .process(&message(kind::MONITORS_CONFIG, 0, &[]), OPEN)
            .unwrap();
        assert!(matches!(p.verdict, Verdict::Discard(_)));
        let p = f.process(&message(kind::REPLY, 0, &[]), OPEN).unwrap();
        assert_eq!(p.verdict, Verdict::Pass);
    }
}
