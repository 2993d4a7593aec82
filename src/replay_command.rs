//! `saffron replay`: the command-line side of [`saffron::replay`] (the
//! SPICE server, the recorder, looping, the summary and exit status).

use std::sync::Arc;
use std::time::Duration;

use saffron::replay::{Pace, Player, PlayerOptions, Recorder};
use saffron::spice::{NoInput, ServerInputs, SpiceServer};

use crate::cli::ReplayArgs;

/// Runs the command; `Err` is a one-line message for exit status 1 (empty
/// when it was already printed).
pub fn run(args: &ReplayArgs) -> Result<(), String> {
    let file = args.file.display().to_string();
    if args.repeat && args.file.as_os_str() == "-" {
        return Err("--loop cannot re-read standard input".into());
    }
    let options = PlayerOptions {
        pace: args.pace,
        max_gap: Duration::from_secs_f64(args.max_gap),
        speed: args.speed,
        ..PlayerOptions::default()
    };
    let mut player =
        Player::new(args.qxl.unwrap_or_default(), options).map_err(|e| format!("replay: {e}"))?;
    if let Some(path) = &args.record {
        let recorder = Recorder::create(path, player.guest().memory_view())
            .map_err(|e| format!("--record {}: {e}", path.display()))?;
        player
            .guest()
            .control()
            .set_observer(Some(Box::new(recorder)));
    }
    let server = match &args.spice {
        Some(config) => {
            let server = SpiceServer::start(
                config,
                ServerInputs {
                    displays: vec![player.display()],
                    input: Arc::new(NoInput),
                    tablet: false,
                    agent: None,
                    audio: None,
                },
            )
            .map_err(|e| e.to_string())?;
            if let Some(addr) = server.local_addr() {
                eprintln!("saffron: serving the replay on spice://{addr}");
            }
            Some(server)
        }
        None => None,
    };
    saffron::seccomp::apply(args.seccomp)?;
    if args.wait_client {
        if let Some(server) = &server {
            server.wait_for_display_client();
        }
    }
    // Paced by the client: each frame waits until the display clients
    // have everything the last one showed.
    let caught_up = server
        .as_ref()
        .map(|s| move || s.wait_display_clients_caught_up());
    let gate = caught_up
        .as_ref()
        .map(|f| f as &dyn saffron::replay::player::ClientGate);
    let mut failure = None;
    loop {
        let summary = player
            .play(
                &args.file,
                if args.pace == Pace::Client {
                    gate
                } else {
                    None
                },
            )
            .map_err(|e| format!("{file}: {e}"))?;
        println!("replay: {}", summary.line());
        if let Some(e) = summary.error.as_ref().or(summary.truncated.as_ref()) {
            failure = Some(format!("{file}: {e}"));
            break;
        }
        if !args.repeat {
            break;
        }
    }
    // Stop recording (the worker drops the recorder, closing the file).
    if args.record.is_some() {
        player.guest().control().set_observer(None);
        player.guest().drain(Duration::from_secs(1));
    }
    if let (Some(_), Some(e)) = (&server, &failure) {
        // Said now, not after lingering; the exit status still tells.
        eprintln!("saffron: {e}");
        failure = Some(String::new());
    }
    if server.is_some() {
        match args.linger {
            Some(seconds) => std::thread::sleep(Duration::from_secs_f64(seconds)),
            None => loop {
                std::thread::park();
            },
        }
    }
    drop(server);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
