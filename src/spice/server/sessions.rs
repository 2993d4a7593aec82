//! The link stage and sessions: a link request becomes an open channel
//! of a new session (main) or of the current one (the others); a new
//! main link ends the previous session; the main channel's decisions
//! reach the session's other channels.

use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use super::{log_close, EventLoop, CHANNELS};
use crate::spice::channel::{Notify, Outbox};
use crate::spice::connection::State;
use crate::spice::image_cache::SessionImages;
use crate::spice::link::{self, LinkRequest, LinkStep};
use crate::spice::protocol::{channel, common_cap, main_cap, mouse_mode, LinkError};
use crate::spice::session::{ChannelKind, Opening, ServerContext, Session, SessionView};
use crate::spice::wire::HeaderMode;

impl EventLoop {
    /// What the session's main channel decided, when that changed since
    /// the last pass; the input sink follows its mouse mode.
    pub(super) fn session_decisions(&mut self) -> Option<SessionView> {
        let session = self.session.as_mut()?;
        let mut view = session.view;
        for conn in self.connections.values() {
            if let State::Open {
                session: s,
                channel,
                ..
            } = &conn.state
            {
                if *s == session.id {
                    channel.decide(&mut view);
                }
            }
        }
        if view.mouse_mode != self.sink_mouse_mode {
            self.sink_mouse_mode = view.mouse_mode;
            self.server
                .input
                .mouse_mode(view.mouse_mode == mouse_mode::CLIENT);
        }
        if view == session.view {
            return None;
        }
        session.view = view;
        Some(view)
    }

    /// Moves the link stage on; true if it made progress worth repeating.
    pub(super) fn advance_link(&mut self, token: Token) -> bool {
        let Some(conn) = self.connections.get_mut(&token) else {
            return false;
        };
        let State::Linking { linker, request } = &mut conn.state else {
            return false;
        };
        match linker.step(&mut conn.input) {
            LinkStep::NeedMore => false,
            LinkStep::Refuse(error) => {
                log_close(conn, &format!("link refused ({error:?})"));
                conn.raw_out.extend(link::encode_error_reply(error));
                conn.closing = true;
                false
            }
            LinkStep::Request(req) => {
                let tls = conn.stream.is_tls();
                // The Unix socket (mode 0600, this machine only) serves
                // every channel, whatever the TLS rules say.
                let admitted = match conn.source {
                    None => Ok(()),
                    Some(_) => self.setup.channel_policy.admits(req.channel_type, tls),
                };
                if let Err(error) = admitted {
                    tracing::info!(
                        "spice: {}: channel type {} is not served {} TLS ({error:?})",
                        conn.peer,
                        req.channel_type,
                        if tls { "over" } else { "without" }
                    );
                    conn.raw_out.extend(link::encode_error_reply(error));
                    conn.closing = true;
                    return false;
                }
                let Some(channel_caps) = kind_of(&req, &self.server).map(|k| (k.caps)()) else {
                    log_close(
                        conn,
                        &format!("no channel type {} id {}", req.channel_type, req.channel_id),
                    );
                    conn.raw_out
                        .extend(link::encode_error_reply(LinkError::ChannelNotAvailable));
                    conn.closing = true;
                    return false;
                };
                conn.raw_out.extend(link::encode_link_reply(
                    self.setup.key.public_der(),
                    &link::server_common_caps(),
                    &channel_caps,
                ));
                linker.accept();
                *request = Some(req);
                true
            }
            LinkStep::Ticket(ticket) => {
                let req = request.take();
                let Some(req) = req else {
                    conn.closed = true;
                    return false;
                };
                let tickets = self.setup.shared.tickets.lock();
                let tickets = tickets.unwrap_or_else(|p| p.into_inner()).clone();
                if tickets.expired(std::time::SystemTime::now()) {
                    log_close(conn, &"the password has expired");
                    conn.raw_out
                        .extend(link::encode_link_result(LinkError::PermissionDenied));
                    conn.closing = true;
                    return false;
                }
                let now = Instant::now();
                if let Some(until) = self.guard.barred_until(conn.source, now) {
                    // Not even checked: guessing in parallel gains nothing.
                    log_close(
                        conn,
                        &"a ticket while its address is barred after a wrong one",
                    );
                    conn.raw_out
                        .extend(link::encode_link_result(LinkError::PermissionDenied));
                    conn.hold_until = Some(until);
                    conn.closing = true;
                    return false;
                }
                if !self.setup.key.check(&ticket, &tickets.policy) {
                    let delay = self.guard.failed(conn.source, now);
                    log_close(conn, &format!("wrong password (answered in {delay:?})"));
                    conn.raw_out
                        .extend(link::encode_link_result(LinkError::PermissionDenied));
                    conn.hold_until = Some(now + delay);
                    conn.closing = true;
                    return false;
                }
                self.guard.succeeded(conn.source);
                self.open_channel(token, req);
                true
            }
        }
    }

    /// The ticket was right: join or start the session and start the channel.
    fn open_channel(&mut self, token: Token, req: LinkRequest) {
        let Some(kind) = kind_of(&req, &self.server) else {
            return;
        };
        let joined = if req.channel_type == channel::MAIN {
            self.start_session(&req)
        } else {
            self.join_session(token, &req)
        };
        let Some(session) = joined else {
            return;
        };
        let mode = if req.common_caps.has(common_cap::MINI_HEADER) {
            HeaderMode::Mini
        } else {
            HeaderMode::Full
        };
        let mut outbox = Outbox::new(mode);
        self.server.compression = *self
            .setup
            .shared
            .compression
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(state) = self.session.as_mut().filter(|s| s.id == session) else {
            return;
        };
        let opening = Opening {
            id: req.channel_id,
            client_caps: &req.channel_caps,
            session: state,
            server: &self.server,
            now: Instant::now(),
            now_ns: self.server.epoch.elapsed().as_nanos() as u64,
        };
        let channel = (kind.open)(&opening, &mut outbox);
        if req.channel_type == channel::MAIN {
            // The session starts out as its main channel decides.
            channel.decide(&mut state.view);
        }
        let name = kind.channel_name(req.channel_id, &self.server);
        let Some(conn) = self.connections.get_mut(&token) else {
            return;
        };
        tracing::info!(
            "spice: {} linked {name} channel (session {session:#x})",
            conn.peer
        );
        conn.raw_out.extend(link::encode_link_result(LinkError::Ok));
        conn.state = State::Open {
            session,
            id: (req.channel_type, req.channel_id),
            name,
            channel,
            outbox,
        };
    }

    /// A main channel linked: a new session replaces the old one.
    fn start_session(&mut self, req: &LinkRequest) -> Option<u32> {
        if let Some(old) = self.session.take() {
            self.end_session(old.id, "another client connected to this VM");
        }
        let mut id = rand::random::<u32>();
        while id == 0 {
            id = rand::random();
        }
        // A new client session: its caches and GLZ window start empty,
        // and its link is not known until its network test is over.
        self.session = Some(Session {
            id,
            images: Arc::new(SessionImages::default()),
            client_caches: client_keeps_caches(req),
            view: SessionView {
                mouse_mode: mouse_mode::SERVER,
                client_link: None,
            },
        });
        Some(id)
    }

    /// Another channel linked: it must quote the session's id; a channel
    /// linked twice replaces the older link.
    fn join_session(&mut self, token: Token, req: &LinkRequest) -> Option<u32> {
        match self.session.as_ref().map(|s| s.id) {
            Some(id) if id == req.connection_id => {
                let wanted = (req.channel_type, req.channel_id);
                for (t, other) in self.connections.iter_mut() {
                    if let State::Open {
                        session,
                        id: linked,
                        name,
                        ..
                    } = &other.state
                    {
                        if *t != token && *session == id && *linked == wanted {
                            tracing::info!("spice: {name} replaced by a new link");
                            other.closed = true;
                        }
                    }
                }
                Some(id)
            }
            _ => {
                if let Some(conn) = self.connections.get_mut(&token) {
                    log_close(conn, &format!("unknown session {:#x}", req.connection_id));
                    conn.raw_out
                        .extend(link::encode_link_result(LinkError::BadConnectionId));
                    conn.closing = true;
                }
                None
            }
        }
    }

    /// Tells a session's client why, writes what we can, and closes it.
    pub(super) fn end_session(&mut self, session: u32, why: &str) {
        let timestamp = self.now_ns();
        for conn in self.connections.values_mut() {
            let State::Open {
                session: s,
                id,
                name,
                outbox,
                ..
            } = &mut conn.state
            else {
                continue;
            };
            if *s != session {
                continue;
            }
            if id.0 == channel::MAIN {
                outbox.push(&Notify {
                    timestamp,
                    severity: Notify::SEVERITY_WARN,
                    visibility: Notify::VISIBILITY_HIGH,
                    what: 0,
                    message: why.to_string(),
                });
            }
            tracing::info!("spice: {}: {why}; closing {name}", conn.peer);
            let _ = conn.flush();
            conn.closed = true;
        }
    }
}

/// Whether the client of this main channel link keeps a cursor cache and
/// a pixmap cache that take any 64-bit id. No capability says so.
/// spice-html5 falls short: it has no cursor cache (it ignores the cursor
/// flags: a shape sent as a cache id would come out empty), its pixmap
/// cache reads ids as 32-bit numbers (`(hi << 32) | lo` in JavaScript)
/// and keeps a JPEG only once the browser has decoded it. It is also the
/// one client whose main channel does not advertise `NAME_AND_UUID`;
/// spice-gtk (remote-viewer, spicy, spice-glib) does, and has both caches.
/// A client we cannot tell gets whole shapes and pictures, which every
/// client shows.
fn client_keeps_caches(main_link: &LinkRequest) -> bool {
    main_link.channel_caps.has(main_cap::NAME_AND_UUID)
}

/// The kind of channel a link asks for; `None` if we have no such channel.
fn kind_of(req: &LinkRequest, server: &ServerContext) -> Option<&'static ChannelKind> {
    CHANNELS.iter().find(|k| {
        k.channel_type == req.channel_type && usize::from(req.channel_id) < (k.count)(server)
    })
}

/// Every channel except main, in the order clients open them.
pub(super) fn channel_list(server: &ServerContext) -> Vec<(u8, u8)> {
    CHANNELS
        .iter()
        .filter(|k| k.channel_type != channel::MAIN)
        .flat_map(|k| (0..(k.count)(server)).map(|i| (k.channel_type, i as u8)))
        .collect()
}
