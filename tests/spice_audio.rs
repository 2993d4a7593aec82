//! The playback and record channels with a real client: spice-glib from
//! Python (tests/spice/audio_client.py). A thread stands in for the sound
//! card: it plays a tone into the server's audio hub in real time, and
//! reads what the client records, as the HDA card's pump does. Each way
//! as Opus (spice-glib takes it by default) and as raw PCM (the server's
//! `playback-compression=off`, the client's `SPICE_DISABLE_OPUS`).

mod support;

use std::f64::consts::PI;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::audio::{AudioBackend, Direction, PcmFormat, Volume};
use saffron::spice::{AudioHub, NoInput, ServerInputs, SpiceConfig, SpiceServer};
use support::GlibClient;

const STEREO_48K: PcmFormat = PcmFormat {
    rate: 48000,
    channels: 2,
};
const TICK: Duration = Duration::from_millis(5);

fn start(hub: &Arc<AudioHub>, options: &str) -> (SpiceServer, u16) {
    let mut config = SpiceConfig::parse(&format!("port=1,disable-ticketing{options}")).unwrap();
    config.tcp = Some("127.0.0.1:0".parse().unwrap());
    let server = SpiceServer::start(
        &config,
        ServerInputs {
            displays: Vec::new(),
            input: Arc::new(NoInput),
            tablet: false,
            agent: None,
            audio: Some(hub.clone()),
        },
    )
    .unwrap();
    let port = server.local_addr().unwrap().port();
    (server, port)
}

/// Plays `seconds` of a `freq` sine, paced like the card: every 5 ms what
/// is due.
fn play_tone(hub: &AudioHub, freq: f64, seconds: f64) {
    hub.started(Direction::Output, STEREO_48K);
    let start = Instant::now();
    let total = (seconds * 48000.0) as usize;
    let mut frame = 0;
    while frame < total {
        std::thread::sleep(TICK);
        let due = ((start.elapsed().as_secs_f64() * 48000.0) as usize).min(total);
        let mut pcm = Vec::with_capacity((due - frame) * 4);
        for i in frame..due {
            let v = (12000.0 * (2.0 * PI * freq * i as f64 / 48000.0).sin()) as i16;
            pcm.extend_from_slice(&v.to_le_bytes());
            pcm.extend_from_slice(&v.to_le_bytes());
        }
        hub.output(&pcm);
        frame = due;
    }
    hub.stopped(Direction::Output);
}

/// The frequency of the left channel from its rising zero crossings
/// (each after the signal went below -1000 since the last, so that a
/// lossy codec's noise near zero adds none).
fn frequency(pcm: &[u8]) -> f64 {
    let left: Vec<f64> = pcm
        .chunks_exact(4)
        .map(|f| f64::from(i16::from_le_bytes([f[0], f[1]])))
        .collect();
    let mut armed = false;
    let mut crossings = Vec::new();
    for (i, w) in left.windows(2).enumerate() {
        armed |= w[0] < -1000.0;
        if armed && w[0] < 0.0 && w[1] >= 0.0 {
            crossings.push(i as f64 + -w[0] / (w[1] - w[0]));
            armed = false;
        }
    }
    match (crossings.first(), crossings.last()) {
        (Some(a), Some(b)) if b > a => (crossings.len() - 1) as f64 * 48000.0 / (b - a),
        _ => 0.0,
    }
}

fn field(line: &str, index: usize) -> f64 {
    line.split_whitespace().nth(index).unwrap().parse().unwrap()
}

#[test]
fn the_client_hears_the_tone_as_opus() {
    hears_the_tone("");
}

#[test]
fn the_client_hears_the_tone_as_raw_pcm() {
    hears_the_tone(",playback-compression=off");
}

fn hears_the_tone(options: &str) {
    let hub = Arc::new(AudioHub::default());
    let (server, port) = start(&hub, options);
    hub.volume(
        Direction::Output,
        Volume {
            left: 30000,
            right: 65535,
            mute: false,
        },
    );
    let mut client = GlibClient::run("audio_client.py", port, &[]);
    assert_eq!(client.wait_for("VOLUME"), "VOLUME 30000 65535");
    // The channels are open once the volume arrived.
    play_tone(&hub, 440.0, 2.0);
    assert_eq!(
        client.wait_for("PLAYBACK_START"),
        "PLAYBACK_START 1 2 48000"
    );
    let stop = client.wait_for("PLAYBACK_STOP");
    assert_eq!(field(&stop, 1), 2.0 * 48000.0 * 4.0, "{stop}");
    assert!(field(&stop, 2) <= 50.0, "a gap over 50 ms: {stop}");
    assert!((field(&stop, 3) - 440.0).abs() <= 2.0, "{stop}");
    assert!(field(&stop, 4) > 0.9, "{stop}");
    let mode = if options.is_empty() { "opus" } else { "raw" };
    let sent = server.control().sent();
    eprintln!(
        "{mode}: {stop}; {} packets, {} bytes",
        sent.audio_packets, sent.audio_bytes
    );
    assert_eq!(sent.audio_packets, 200);
    if mode == "opus" {
        assert!(sent.audio_bytes < 200 * 480, "{} bytes", sent.audio_bytes);
    } else {
        assert_eq!(sent.audio_bytes, 200 * 1920);
    }
    hub.volume(
        Direction::Output,
        Volume {
            left: 30000,
            right: 65535,
            mute: true,
        },
    );
    assert_eq!(client.wait_for("MUTE"), "MUTE 1");
    assert_eq!(hub.playback_stats().dropped, 0);
}

/// A client records a 1 kHz tone as Opus; then a second client of the
/// same server, without Opus, as raw PCM.
#[test]
fn what_clients_record_reaches_the_card_as_opus_then_raw() {
    let hub = Arc::new(AudioHub::default());
    let (_server, port) = start(&hub, "");
    let client = GlibClient::run("audio_client.py", port, &["--record-tone=1000"]);
    record_once(&hub, client, true);
    let env = [("SPICE_DISABLE_OPUS", "1")];
    let client = GlibClient::run_with_env("audio_client.py", port, &["--record-tone=1000"], &env);
    record_once(&hub, client, false);
}

fn record_once(hub: &AudioHub, mut client: GlibClient, opus: bool) {
    // The client links meanwhile: the record channel sends START when it
    // opens, or when the card starts after that.
    let before = hub.record_stats();
    std::thread::sleep(Duration::from_millis(500));
    hub.started(Direction::Input, STEREO_48K);
    assert_eq!(client.wait_for("RECORD_START"), "RECORD_START 1 2 48000");
    let mut got = Vec::new();
    let mut silent_ticks = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(TICK);
        let mut buf = vec![0u8; 960];
        let n = hub.input(&mut buf);
        if n == 0 && !got.is_empty() {
            silent_ticks += 1;
        }
        got.extend_from_slice(&buf[..n]);
    }
    hub.stopped(Direction::Input);
    let sent = field(&client.wait_for("RECORD_STOP"), 1);
    let stats = hub.record_stats();
    let opus_bytes = stats.opus_bytes - before.opus_bytes;
    eprintln!(
        "recorded {} bytes, {} of them from {opus_bytes} bytes of Opus",
        got.len(),
        stats.bytes - before.bytes,
    );
    assert_eq!(opus_bytes > 0, opus, "Opus unless the client disables it");
    assert!(got.len() > 48000 * 4, "{} bytes of {sent}", got.len());
    let f = frequency(&got);
    assert!((f - 1000.0).abs() <= 2.0, "{f} Hz");
    assert!(silent_ticks < 20, "{silent_ticks} ticks without data");
}

/// Reads a raw client's messages until `until`, answering the display
/// channel's ACK flow control; each message's type, body and arrival (ms
/// since `epoch`).
fn collect(
    mut client: support::RawClient,
    until: Instant,
    epoch: Instant,
) -> Vec<(u16, Vec<u8>, f64)> {
    let mut got = Vec::new();
    let (mut window, mut unacked) = (0u32, 0u32);
    while Instant::now() < until {
        let Ok((t, body)) = client.receive() else {
            break;
        };
        let at = epoch.elapsed().as_secs_f64() * 1000.0;
        if t == 3 {
            // SET_ACK(generation, window): ACK_SYNC, then ACK every window.
            client.send(1, &body[..4]);
            window = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if window > 0 {
            unacked += 1;
            if unacked >= window {
                client.send(2, &[]);
                unacked = 0;
            }
        }
        got.push((t, body, at));
    }
    got
}

/// How far ahead of its multimedia time each message arrived (ms), median.
fn median_lag(times: &[(u32, f64)]) -> f64 {
    let mut lags: Vec<f64> = times.iter().map(|&(mm, at)| at - f64::from(mm)).collect();
    lags.sort_by(f64::total_cmp);
    lags[lags.len() / 2]
}

/// Lip-sync: while the picture changes at video rates (an MJPEG stream)
/// and the card plays, stream frames and sound packets carry times of one
/// clock: each arrives as long after its time as the other, within 100 ms.
#[test]
fn video_frames_and_sound_share_the_multimedia_clock() {
    let display = devices::display::Display::new();
    assert!(display.resize(0, 640, 480));
    let hub = Arc::new(AudioHub::default());
    let mut config = SpiceConfig::parse("port=1,disable-ticketing,streaming-video=all").unwrap();
    config.tcp = Some("127.0.0.1:0".parse().unwrap());
    let server = SpiceServer::start(
        &config,
        ServerInputs {
            displays: vec![display.clone()],
            input: Arc::new(NoInput),
            tablet: false,
            agent: None,
            audio: Some(hub.clone()),
        },
    )
    .unwrap();
    let port = server.local_addr().unwrap().port();
    let (_main, session) = support::RawClient::main_session(port, "");
    let mut screen = support::RawClient::open(port, session, 2, "");
    let mut init = vec![1u8];
    init.extend_from_slice(&20971520i64.to_le_bytes());
    init.push(1);
    init.extend_from_slice(&3145728i32.to_le_bytes());
    screen.send(101, &init);
    let speaker = support::RawClient::open(port, session, 5, "");
    let epoch = Instant::now();
    let until = epoch + Duration::from_secs(4);
    let video = std::thread::spawn(move || collect(screen, until, epoch));
    let audio = std::thread::spawn(move || collect(speaker, until, epoch));
    let player = {
        let hub = hub.clone();
        std::thread::spawn(move || play_tone(&hub, 440.0, 3.0))
    };
    for frame in 0..90 {
        support::animate(&display, frame);
        std::thread::sleep(Duration::from_millis(33));
    }
    player.join().unwrap();
    let frames: Vec<(u32, f64)> = video
        .join()
        .unwrap()
        .into_iter()
        .filter(|(t, _, _)| *t == 123)
        .map(|(_, b, at)| (u32::from_le_bytes(b[4..8].try_into().unwrap()), at))
        .collect();
    let packets: Vec<(u32, f64)> = audio
        .join()
        .unwrap()
        .into_iter()
        .filter(|(t, _, _)| *t == 101)
        .map(|(_, b, at)| (u32::from_le_bytes(b[..4].try_into().unwrap()), at))
        .collect();
    assert!(frames.len() >= 15, "{} stream frames", frames.len());
    assert!(packets.len() >= 250, "{} sound packets", packets.len());
    let (v, a) = (median_lag(&frames), median_lag(&packets));
    eprintln!(
        "{} frames, {} packets; arrival minus multimedia time: video {v:.1} ms, sound {a:.1} ms",
        frames.len(),
        packets.len()
    );
    assert!((v - a).abs() < 100.0, "video {v:.1} ms vs sound {a:.1} ms");
}
