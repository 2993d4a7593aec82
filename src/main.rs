//! saffron: a small KVM hypervisor with a built-in SPICE display.

#![deny(clippy::undocumented_unsafe_blocks)]

mod api;
mod cli;
mod fatal;
mod replay_command;
mod vmm;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use vmm::VmExit;

/// Exit statuses, as `saffron --help` documents them.
const EXIT_POWER_OFF: u8 = 0;
const EXIT_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REBOOT: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's message (which may continue on indented lines,
            // e.g. the missing arguments) up to the usage block.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!(
                "saffron: {}",
                message.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SAFFRON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    fatal::install(EXIT_ERROR);

    match cli.command {
        Command::Replay(args) => match replay_command::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                if !e.is_empty() {
                    eprintln!("saffron: {e}");
                }
                ExitCode::from(EXIT_ERROR)
            }
        },
        Command::Run(args) => {
            let config = match args.vm_config() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("saffron: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match vmm::run(&config) {
                Ok(VmExit::PowerOff) | Ok(VmExit::Stopped) => ExitCode::from(EXIT_POWER_OFF),
                Ok(VmExit::Reset) => ExitCode::from(EXIT_REBOOT),
                Ok(VmExit::Error(message)) => {
                    eprintln!("saffron: {message}");
                    ExitCode::from(EXIT_ERROR)
                }
                Err(e) => {
                    eprintln!("saffron: {e}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
    }
}
