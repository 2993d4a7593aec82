//! A panic is a bug in saffron. In any thread (a vCPU, a device worker, the
//! SPICE loop, an encoder) it ends saffron at once with a clear error and
//! exit status 1, rather than leaving a VM running with one of its threads
//! gone: hung, or half working.

use std::io::Write;

/// Installs the panic hook (before any thread starts).
pub fn install(status: u8) {
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let payload = info.payload();
        let message = (payload.downcast_ref::<&str>().copied())
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        crate::vmm::console::restore_terminal();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "\r\nsaffron: internal error (a bug) in thread '{name}'{at}: {message}; stopping"
        );
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            let _ = writeln!(err, "{}", std::backtrace::Backtrace::force_capture());
        }
        std::process::exit(i32::from(status));
    }));
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Run by the test below in a child process: a panic in a thread of
    /// its own, with the hook installed, while the main thread waits on.
    #[test]
    #[ignore = "a child process of a_panic_in_any_thread_ends_the_process_with_status_1"]
    fn child_panics_in_a_thread() {
        super::install(1);
        let _ = std::thread::Builder::new()
            .name("worker".into())
            .spawn(|| panic!("the worker broke"));
        std::thread::sleep(Duration::from_secs(30));
    }

    #[test]
    fn a_panic_in_any_thread_ends_the_process_with_status_1() {
        let started = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "fatal::tests::child_panics_in_a_thread"])
            .args(["--ignored", "--nocapture"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("internal error (a bug) in thread 'worker'")
                && stderr.contains("the worker broke"),
            "{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "it did not wait"
        );
    }
}
