//! A client that stops reading for 30 s while the picture keeps changing:
//! the server's memory must stay bounded (this test runs in its own
//! process so its RSS is the server's), and the next client gets a
//! correct picture.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn stalled_client_keeps_memory_bounded() {
    let seconds: u64 = std::env::var("SAFFRON_STALL_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let t = start_server(1920, 1080, "");
    let (mut main, session) = RawClient::main_session(t.port, "");
    let mut display = RawClient::open(t.port, session, 2, "");
    display.send(1, &1u32.to_le_bytes()); // ACK_SYNC
    let mut init = vec![1u8];
    init.extend_from_slice(&20971520i64.to_le_bytes());
    init.push(1);
    init.extend_from_slice(&3145728i32.to_le_bytes());
    display.send(101, &init);
    // From here on nobody reads the display socket.
    let start = Instant::now();
    let baseline = rss_kib();
    let mut peak = baseline;
    let mut frame = 0;
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..10 {
            frame += 1;
            animate(&t.display, frame);
        }
        std::thread::sleep(Duration::from_millis(10));
        let rss = rss_kib();
        peak = peak.max(rss);
        samples.push(rss);
    }
    let half = samples.len() / 2;
    let first_half_peak = samples[..half].iter().max().copied().unwrap_or(0);
    let second_half_peak = samples[half..].iter().max().copied().unwrap_or(0);
    eprintln!(
        "stalled client, {seconds} s, {frame} frames of 1920x1080: RSS baseline {baseline} KiB, \
         peak {peak} KiB (first half {first_half_peak}, second half {second_half_peak})"
    );
    // A full 1920x1080 frame is 8100 KiB; allow a few of them, no growth.
    assert!(
        peak - baseline < 48 * 1024,
        "RSS grew by {} KiB",
        peak - baseline
    );
    assert!(
        second_half_peak <= first_half_peak + 4 * 1024,
        "RSS keeps growing: {first_half_peak} → {second_half_peak} KiB"
    );
    // The main channel still answers.
    main.send(104, &[]);
    // A new client replaces the stalled one and sees the current picture.
    if have("/usr/bin/spicy-screenshot") {
        let shot =
            spicy_screenshot(t.port, None, &temp_path("after-stall.ppm")).expect("screenshot");
        assert_same_picture(&shot, &t.display);
    }
    assert!(
        display.closed_by_server(),
        "the stalled client was not disconnected"
    );
}
