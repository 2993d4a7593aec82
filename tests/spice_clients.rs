//! The SPICE server against real clients, natively (no VM): a synthetic
//! Display is served on a random loopback port and spicy-screenshot,
//! a spice-glib client (Debian's /usr/bin/python3 with gi) and
//! remote-viewer under Xvfb connect to it. Also link errors, tickets and
//! hostile clients, checked with a raw protocol client.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use devices::display::{CursorShape, Rect};
use support::*;

const SPICY: &str = "/usr/bin/spicy-screenshot";

#[test]
fn spicy_screenshot_is_pixel_exact_before_and_after_a_mode_switch() {
    if !have(SPICY) {
        return;
    }
    let t = start_server(1024, 768, "");
    let out = temp_path("mode.ppm");
    let shot = spicy_screenshot(t.port, None, &out).expect("screenshot");
    assert_same_picture(&shot, &t.display);

    t.display.resize(0, 1920, 1080);
    paint(&t.display, 5);
    let shot = spicy_screenshot(t.port, None, &out).expect("screenshot");
    assert_same_picture(&shot, &t.display);
}

#[test]
fn tickets() {
    if !have(SPICY) {
        return;
    }
    let out = temp_path("ticket.ppm");
    let t = start_server(320, 200, "password=secret");
    assert!(spicy_screenshot(t.port, Some("wrong"), &out).is_none());
    assert!(spicy_screenshot(t.port, None, &out).is_none());
    let shot = spicy_screenshot(t.port, Some("secret"), &out).expect("right password");
    assert_same_picture(&shot, &t.display);
    // The exact link results.
    for (password, result) in [("secret", 0), ("wrong", 7), ("", 7), ("secret2", 7)] {
        match RawClient::link(t.port, 0, 1, 0, password, 2) {
            LinkOutcome::Result(r, _) => assert_eq!(r, result, "password {password:?}"),
            LinkOutcome::Refused(e) => panic!("refused {e}"),
        }
    }
    drop(t);

    // disable-ticketing: any password, or none.
    let t = start_server(320, 200, "disable-ticketing");
    for password in ["", "anything"] {
        assert!(matches!(
            RawClient::link(t.port, 0, 1, 0, password, 2),
            LinkOutcome::Result(0, _)
        ));
    }
    assert!(spicy_screenshot(t.port, Some("whatever"), &out).is_some());
}

/// The link result for `password`, and how long it took.
fn timed_link(port: u16, connection_id: u32, channel: u8, password: &str) -> (u32, Duration) {
    let started = Instant::now();
    match RawClient::link(port, connection_id, channel, 0, password, 2) {
        LinkOutcome::Result(r, _) => (r, started.elapsed()),
        LinkOutcome::Refused(e) => panic!("refused {e}"),
    }
}

#[test]
fn wrong_passwords_wait_longer_each_time_and_passwords_change_and_expire() {
    let t = start_server(64, 48, "password=secret");
    // Wrong passwords: answered after 250 ms, 500 ms, 1 s; a right one at once.
    for floor in [250, 500, 1000] {
        let (result, took) = timed_link(t.port, 0, 1, "guess");
        assert_eq!(result, 7);
        assert!(
            took >= Duration::from_millis(floor),
            "{took:?} < {floor} ms"
        );
    }
    // While the address is barred its tickets are not even checked: the
    // right password, sent while another guess waits, is refused too.
    let port = t.port;
    let guesser = std::thread::spawn(move || timed_link(port, 0, 1, "guess"));
    std::thread::sleep(Duration::from_millis(200));
    let (result, took) = timed_link(t.port, 0, 1, "secret");
    assert_eq!(result, 7, "checked while barred");
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert_eq!(guesser.join().unwrap().0, 7);
    let (main, session) = RawClient::main_session(t.port, "secret");
    let (result, took) = timed_link(t.port, 0, 1, "guess");
    assert!(
        result == 7 && took < Duration::from_millis(500),
        "{took:?}: back to the first delay"
    );
    // set-password: the next link needs the new one; the session stays.
    let control = t.server.control();
    control.set_password(Some("new".into()), false).unwrap();
    assert_eq!(timed_link(t.port, session, 2, "secret").0, 7);
    assert_eq!(
        timed_link(t.port, session, 2, "new").0,
        0,
        "the session is still there"
    );
    assert!(control.set_password(Some("x".repeat(61)), false).is_err());
    // expire-password: the session ends, no link gets in.
    control.expire_password(Some(std::time::SystemTime::now()));
    let mut main = main;
    assert!(main.closed_by_server(), "the session ended at expiry");
    assert_eq!(timed_link(t.port, 0, 1, "new").0, 7);
    control.expire_password(None);
    let (_main, session) = RawClient::main_session(t.port, "new");
    // set-password with connected=disconnect ends the session.
    control.set_password(None, true).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        timed_link(t.port, session, 2, "").0,
        8,
        "the old session is gone"
    );
    RawClient::main_session(t.port, "anything");
}

#[test]
fn idle_prelink_sockets_do_not_keep_a_client_out() {
    let t = start_server(64, 48, "password=pw");
    let idle: Vec<std::net::TcpStream> = (0..64)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", t.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (_main, session) = RawClient::main_session(t.port, "pw");
    RawClient::open(t.port, session, 2, "pw");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The oldest idle ones were dropped to make room.
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert!(matches!(first.read(&mut [0u8; 16]), Ok(0)));
}

#[test]
fn link_errors() {
    let t = start_server(64, 64, "password=pw");
    // Unknown channel (smartcard), unknown display id, version mismatch.
    assert!(matches!(
        RawClient::link(t.port, 0, 8, 0, "pw", 2),
        LinkOutcome::Refused(9)
    ));
    assert!(matches!(
        RawClient::link(t.port, 0, 2, 1, "pw", 2),
        LinkOutcome::Refused(9)
    ));
    assert!(matches!(
        RawClient::link(t.port, 0, 1, 0, "pw", 3),
        LinkOutcome::Refused(4)
    ));
    // A display channel of no session, then of a live session.
    assert!(matches!(
        RawClient::link(t.port, 1234, 2, 0, "pw", 2),
        LinkOutcome::Result(8, _)
    ));
    let (_main, session) = RawClient::main_session(t.port, "pw");
    assert!(matches!(
        RawClient::link(t.port, session ^ 1, 2, 0, "pw", 2),
        LinkOutcome::Result(8, _)
    ));
    // The right session id, but the wrong password.
    assert!(matches!(
        RawClient::link(t.port, session, 2, 0, "nope", 2),
        LinkOutcome::Result(7, _)
    ));
    let mut display = RawClient::open(t.port, session, 2, "pw");
    assert_eq!(display.receive().unwrap().0, 3, "SET_ACK first");
}

#[test]
fn hostile_clients_are_disconnected_and_the_server_carries_on() {
    let t = start_server(64, 48, "");
    // Garbage instead of a link.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", t.port)).unwrap();
    s.write_all(&[0xde; 64]).unwrap();
    assert!(RawClient { stream: s }.closed_by_server());
    // A huge message size on an open channel.
    let (mut main, _) = RawClient::main_session(t.port, "");
    main.stream
        .write_all(&[104, 0, 0xff, 0xff, 0xff, 0x7f])
        .unwrap();
    assert!(main.closed_by_server());
    // A truncated fixed part, an unknown type.
    let (mut main, _) = RawClient::main_session(t.port, "");
    main.send(105, &[1]);
    assert!(main.closed_by_server());
    let (mut main, session) = RawClient::main_session(t.port, "");
    let mut inputs = RawClient::open(t.port, session, 3, "");
    inputs.send(199, &[]);
    assert!(inputs.closed_by_server());
    main.send(199, &[1, 2, 3]);
    assert!(main.closed_by_server());
    // A client that links halfway and goes away.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", t.port)).unwrap();
    s.write_all(b"REDQ\x02\x00\x00\x00").unwrap();
    drop(s);
    // Everything still works.
    let (mut main, _) = RawClient::main_session(t.port, "");
    main.send(104, &[]);
    loop {
        let (t, body) = main.receive().unwrap();
        if t == 104 {
            assert_eq!(body, [3, 0, 0, 0, 2, 0, 3, 0, 4, 0]);
            break;
        }
    }
}

#[test]
fn input_flood_is_rate_limited_not_fatal() {
    let t = start_server(64, 48, "");
    let (_main, session) = RawClient::main_session(t.port, "");
    let mut inputs = RawClient::open(t.port, session, 3, "");
    assert_eq!(inputs.receive().unwrap(), (101, vec![0, 0]));
    let start = Instant::now();
    let mut flood = Vec::new();
    for i in 0..3000u32 {
        flood.extend_from_slice(&[111, 0, 10, 0, 0, 0]);
        flood.extend_from_slice(&1i32.to_le_bytes());
        flood.extend_from_slice(&(i as i32).to_le_bytes());
        flood.extend_from_slice(&[0, 0]);
    }
    inputs.stream.write_all(&flood).unwrap();
    // All 3000 motions arrive (750 ACKs), throttled to the rate limit.
    for _ in 0..750 {
        assert_eq!(inputs.receive().unwrap().0, 111);
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300),
        "{elapsed:?}: not rate limited"
    );
    let log = t.input.0.lock().unwrap();
    assert_eq!(log.len(), 3000);
    assert_eq!(log[2999], "motion 1 2999 0");
}

#[test]
fn spice_glib_client_sees_updates_and_sends_keys() {
    if !have("/usr/bin/python3") || !have(SPICY) {
        return;
    }
    let t = start_server(640, 480, "");
    let mut client = GlibClient::connect(t.port);
    assert_eq!(client.wait_for("PRIMARY"), "PRIMARY 640 480 2560");
    assert_eq!(client.wait_for("INVALIDATE"), "INVALIDATE 0 0 640 480");
    assert_eq!(client.wait_for("MARK"), "MARK 1");
    let expect = |x: u32, y: u32| {
        let p = t.display.head(0).unwrap().pixel(x, y);
        format!("PIXEL {x} {y} 0x{:06x}", p & 0xffffff)
    };
    client.send("PIXEL 123 45");
    assert_eq!(client.wait_for("PIXEL"), expect(123, 45));

    // Change the picture server-side: the update arrives, exactly.
    t.display.draw(0, |s| {
        for y in 100..150 {
            for px in s.row_mut(y)[200 * 4..260 * 4].chunks_mut(4) {
                px.copy_from_slice(&[0x11, 0x22, 0x33, 0]);
            }
        }
        Some(Rect::new(200, 100, 260, 150))
    });
    assert_eq!(client.wait_for("INVALIDATE"), "INVALIDATE 200 100 60 50");
    client.send("PIXEL 230 120");
    assert_eq!(client.wait_for("PIXEL"), "PIXEL 230 120 0x332211");
    client.send("PIXEL 199 120");
    assert_eq!(client.wait_for("PIXEL"), expect(199, 120));

    // Keys go to the input sink as set-1 scancodes.
    client.send("KEY 0x1e");
    client.wait_for("KEYSENT");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = t.input.0.lock().unwrap().clone();
        if log.contains(&"key [1e]".to_string()) && log.contains(&"key [9e]".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "keys not received: {log:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(client);
}

#[test]
fn remote_viewer_under_xvfb_shows_the_picture() {
    if !have("/usr/bin/remote-viewer") || !have("/usr/bin/xvfb-run") || !have("/usr/bin/import") {
        return;
    }
    let t = start_server(640, 480, "");
    let shot = temp_path("remote-viewer.ppm");
    let _ = std::fs::remove_file(&shot);
    // Take a screenshot every half second for up to 20 s; stop at the
    // first one that shows the picture.
    let script = format!(
        "remote-viewer spice://127.0.0.1:{port} & RV=$!; \
         for i in $(seq 1 40); do sleep 0.5; \
           import -window root -depth 8 {out}.tmp.ppm 2>/dev/null && mv {out}.tmp.ppm {out}.$i.ppm; \
           [ -e {out}.done ] && break; done; kill $RV",
        port = t.port,
        out = shot.display()
    );
    let child = Command::new("/usr/bin/xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x1024x24", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut found = None;
    let mut i = 1;
    while Instant::now() < deadline && found.is_none() {
        let candidate = std::path::PathBuf::from(format!("{}.{i}.ppm", shot.display()));
        if candidate.exists() {
            found = Ppm::read(&candidate).find(&t.display);
            i += 1;
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::fs::write(format!("{}.done", shot.display()), b"").unwrap();
    let _ = wait_with_timeout(child, Duration::from_secs(30));
    let at = found.expect("remote-viewer never showed the picture unscaled");
    eprintln!("remote-viewer shows the picture at {at:?}");
}

#[test]
fn reconnects_and_killed_clients() {
    if !have(SPICY) {
        return;
    }
    let t = start_server(1920, 1080, "");
    let out = temp_path("reconnect.ppm");
    // Clients killed at various points of the transfer.
    for delay_ms in [5u64, 20, 50, 100, 200] {
        let mut child = Command::new(SPICY)
            .args(["-h", "127.0.0.1", "-p", &t.port.to_string(), "-o"])
            .arg(temp_path("killed.ppm"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    // 20 reconnects in a row, the picture changing in between; each exact.
    for i in 0..20 {
        paint(&t.display, i);
        let shot = spicy_screenshot(t.port, None, &out).expect("screenshot");
        assert_same_picture(&shot, &t.display);
    }
}

#[test]
fn unix_socket() {
    if !have(SPICY) {
        return;
    }
    let display = devices::display::Display::new();
    display.resize(0, 300, 200);
    paint(&display, 9);
    let path = temp_path("spice.sock");
    let config = saffron::spice::SpiceConfig::parse(&format!("unix={}", path.display())).unwrap();
    let server = saffron::spice::SpiceServer::start(
        &config,
        saffron::spice::ServerInputs {
            displays: vec![display.clone()],
            input: std::sync::Arc::new(saffron::spice::NoInput),
            tablet: false,
            agent: None,
            audio: None,
        },
    )
    .unwrap();
    assert!(server.local_addr().is_none(), "no TCP port without port=");
    let out = temp_path("unix.ppm");
    let child = Command::new(SPICY)
        .arg(format!("--uri=spice+unix://{}", path.display()))
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(child, Duration::from_secs(30)).expect("finished");
    assert!(status.status.success());
    assert_same_picture(&Ppm::read(&out), &display);
    server.stop();
    assert!(!path.exists(), "socket removed on stop");
}

#[test]
fn a_second_client_replaces_the_first() {
    let t = start_server(64, 48, "");
    let (mut old_main, old_session) = RawClient::main_session(t.port, "");
    let mut old_inputs = RawClient::open(t.port, old_session, 3, "");
    assert_eq!(old_inputs.receive().unwrap().0, 101);
    // Hold a key on the old client: it is released when it is replaced.
    old_inputs.send(101, &0x1eu32.to_le_bytes());
    std::thread::sleep(Duration::from_millis(200));
    let (_new_main, new_session) = RawClient::main_session(t.port, "");
    assert_ne!(new_session, old_session);
    // The old client is told why, then disconnected.
    let mut told = false;
    while let Ok((msg_type, body)) = old_main.receive() {
        if msg_type == 7 {
            told = String::from_utf8_lossy(&body).contains("another client connected");
        }
    }
    assert!(told, "no NOTIFY before the disconnect");
    assert!(old_inputs.closed_by_server());
    // Its session id is no longer valid; the new one is.
    assert!(matches!(
        RawClient::link(t.port, old_session, 2, 0, "", 2),
        LinkOutcome::Result(8, _)
    ));
    RawClient::open(t.port, new_session, 2, "");
    let log = t.input.0.lock().unwrap().clone();
    assert_eq!(log, vec!["key [1e]", "key [9e]"]);
}

#[test]
fn spice_glib_gets_repeated_cursor_shapes_from_its_cache() {
    if !have("/usr/bin/python3") || !have(SPICY) {
        return;
    }
    let t = start_server(640, 480, "");
    // Two 32×32 shapes of one colour each (B, G, R, A bytes); the client
    // prints the centre pixel as 0xAARRGGBB.
    let shape = |bgra: [u8; 4]| {
        Arc::new(CursorShape {
            width: 32,
            height: 32,
            hot_x: 1,
            hot_y: 1,
            argb: bgra.repeat(32 * 32),
        })
    };
    let (arrow, beam) = (
        shape([0x10, 0x20, 0x30, 0xff]),
        shape([0x60, 0x50, 0x40, 0xff]),
    );
    let show = |s: &Arc<CursorShape>| {
        // A copy, as a guest sends it again: equal content, new allocation.
        let copy = Arc::new(CursorShape::clone(s));
        t.display.update_cursor(|c| {
            c.shape = Some(copy);
            c.visible = true;
        });
    };
    show(&arrow);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/spice_cursor.py");
    let mut child = Command::new("/usr/bin/python3")
        .args([script, "127.0.0.1", &t.port.to_string(), "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_shape = || -> String {
        loop {
            let line = lines.next().expect("client output").unwrap();
            assert!(!line.starts_with("ERROR"), "{line}");
            if let Some(rest) = line.strip_prefix("CURSOR-SET ") {
                return rest.to_string();
            }
        }
    };
    let (arrow_seen, beam_seen) = (
        "32 32 1 1 0xff302010 0xff302010",
        "32 32 1 1 0xff405060 0xff405060",
    );
    assert_eq!(next_shape(), arrow_seen);
    for _ in 0..3 {
        show(&beam);
        assert_eq!(next_shape(), beam_seen);
        show(&arrow);
        assert_eq!(next_shape(), arrow_seen);
    }
    // Each shape went whole once, then as an id of the client's cache
    // (the counts are published after the loop's pass that sent them).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sent = t.server.control().sent();
        if (sent.cursor_shapes, sent.cursor_shapes_from_cache) == (7, 5) {
            break;
        }
        assert!(Instant::now() < deadline, "{sent:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_client_like_spice_html5_gets_whole_cursor_shapes() {
    // spice-html5 has no cursor cache; its main channel advertises no
    // NAME_AND_UUID, as this raw client's does not.
    let t = start_server(64, 64, "");
    let shape = |v: u8| {
        Arc::new(CursorShape {
            width: 4,
            height: 4,
            hot_x: 0,
            hot_y: 0,
            argb: vec![v; 64],
        })
    };
    let show = |v: u8| {
        t.display.update_cursor(|c| {
            c.shape = Some(shape(v));
            c.visible = true;
        })
    };
    show(1);
    let (_main, session) = RawClient::main_session(t.port, "");
    let mut cursor = RawClient::open(t.port, session, 4, "");
    let mut next = |wanted: u16| loop {
        let (msg_type, body) = cursor.receive().unwrap();
        if msg_type == wanted {
            return body;
        }
    };
    let init = next(101);
    // INIT: position, trail (9 bytes), then flags 0 (not cached), id 0,
    // the ALPHA header and all 64 bytes of pixels.
    assert_eq!(init[9..19], [0; 10]);
    assert_eq!(init[28..], [1; 64]);
    for v in [2, 1, 2] {
        show(v);
        let set = next(103);
        assert_eq!(set[5..15], [0; 10]);
        assert_eq!(set[24..], [v; 64]);
    }
}

/// Paints `seeds` one after the other; after each, waits until the
/// spice-glib client's picture equals the display's (colour bytes).
fn show_each_exactly(t: &TestServer, client: &mut GlibClient, seeds: &[u32]) {
    for &seed in seeds {
        paint(&t.display, seed);
        let want = t.display.head(0).unwrap().pixels.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = client.dump("cache-dump.raw");
            let same = got.len() == want.len()
                && got
                    .chunks_exact(4)
                    .zip(want.chunks_exact(4))
                    .all(|(a, b)| a[..3] == b[..3]);
            if same {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seed {seed}: the client's picture differs (a draw from an id it \
                 does not hold would leave spice-gtk waiting)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn pictures_that_come_back_are_drawn_from_the_client_cache_exactly() {
    if !have("/usr/bin/python3") || !have(SPICY) {
        return;
    }
    let t = start_server(640, 480, "");
    let mut client = GlibClient::connect(t.port);
    client.wait_for("MARK");
    // Two pictures, each shown twice: the second time from the cache.
    show_each_exactly(&t, &mut client, &[1, 2, 1, 2]);
    let sent = t.server.control().sent();
    assert!(sent.images_from_cache >= 2, "{sent:?}");
}

#[test]
fn a_small_client_cache_evicts_and_the_picture_stays_exact() {
    if !have("/usr/bin/python3") || !have(SPICY) {
        return;
    }
    let t = start_server(640, 480, "");
    // 700000 pixels: two 640x480 pictures (307200 pixels each, in pieces)
    // fit, three do not. Every picture after the second makes the server
    // drop the least recently shown (INVAL_LIST) before sending it: 1
    // joins the first picture, 2 drops that, 1 comes from the cache, 3
    // drops 2, 2 (dropped) drops 1, 1 (dropped) drops 3. A draw naming a dropped id would leave spice-gtk
    // waiting for it, and the picture would never match.
    let mut client = GlibClient::connect_with(t.port, &["--cache-size=2800000"]);
    client.wait_for("MARK");
    show_each_exactly(&t, &mut client, &[1, 2, 1, 3, 2, 1]);
    let sent = t.server.control().sent();
    assert!(sent.images_from_cache >= 2, "{sent:?}");
}

/// A client on a slow link gets the network test's large ping late (here
/// it reads it late): the latency comes from its prompt answers to the
/// empty pings, the link is found slow, measured again, and found slow
/// again. (On a real slow link the large ping also fills the server's
/// reply backlog, and the server must still take the answers as they
/// come; on loopback the kernel takes the whole ping at once, so this
/// test cannot show that part.)
#[test]
fn a_client_that_reads_the_large_ping_late_is_on_a_slow_link() {
    const LARGE_PING_READ_AFTER: Duration = Duration::from_millis(400);
    let t = start_server(64, 64, "");
    let (mut main, _) = RawClient::main_session(t.port, "");
    // Two rounds (a slow result is measured twice): an empty ping, or two,
    // then the large one.
    let mut large = 0;
    while large < 2 {
        let mut header = [0u8; 6];
        main.stream.read_exact(&mut header).unwrap();
        let msg_type = u16::from_le_bytes([header[0], header[1]]);
        let size = u32::from_le_bytes(header[2..6].try_into().unwrap()) as usize;
        assert_eq!(msg_type, 4, "only pings follow INIT");
        if size > 12 {
            // The link is slow: the rest comes later.
            std::thread::sleep(LARGE_PING_READ_AFTER);
            large += 1;
        }
        let mut body = vec![0u8; size];
        main.stream.read_exact(&mut body).unwrap();
        main.send(3, &body[..12]); // PONG: id and timestamp
    }
    let link = wait_for_network_test(&t);
    eprintln!("network test: {link:?}");
    assert!(link.latency < Duration::from_millis(100), "{link:?}");
    assert!(link.low_bandwidth(), "{link:?}");
}
