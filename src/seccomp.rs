//! seccomp-bpf (`--seccomp on|log|off`): once set-up is done (files open,
//! sockets listening, guest memory mapped, threads started), every thread
//! of saffron may make only the system calls running a VM needs. A guest
//! or client that found a bug in a device or the SPICE server then cannot
//! make saffron start programs, open new sockets, trace, mount, change
//! directories or permissions, or push input into the user's terminal
//! (`ioctl` is allowed except `TIOCSTI` and `TIOCLINUX`). Opening files by
//! name stays possible (screendump writes one), so this is a filter of
//! calls, not a confinement of the file system.
//!
//! One allowlist for all threads (set with TSYNC, and inherited by the
//! threads started later), and a second filter stacked on it on the
//! threads that run guest-driven code: the vCPUs, which run the device
//! models for every port and MMIO access ([`restrict_vcpu_thread`]: no
//! socket calls, no files opened for writing, renamed or removed, no new
//! threads), and the device workers (about the same, the network card's
//! keeping its socket calls; applied at their next round of work through
//! `devices::thread_layer`). The allowlist is built from the calls saffron's threads were
//! seen to make (strace of the native SPICE tests and of the end-to-end
//! tests in the nested machine: vCPUs, device workers, the SPICE loop and
//! its encoder pool, the control socket) plus what the Rust runtime and
//! glibc use on their own (see docs/seccomp.md). `on` kills the process
//! on any other call (the shell reports "Bad system call"); `log` lets it
//! through and has the kernel log it (for finding what a new feature
//! needs).

use std::collections::BTreeMap;

use devices::thread_layer::WorkerKind;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What `--seccomp` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeccompMode {
    /// No filter.
    Off,
    /// Other calls are allowed and logged by the kernel.
    Log,
    /// Other calls kill the process.
    #[default]
    On,
}

impl SeccompMode {
    pub fn parse(text: &str) -> Result<SeccompMode, String> {
        match text {
            "on" => Ok(SeccompMode::On),
            "log" => Ok(SeccompMode::Log),
            "off" => Ok(SeccompMode::Off),
            other => Err(format!("'{other}' is not on, log or off")),
        }
    }
}

/// The system calls allowed after set-up (x86-64 numbers), in groups.
const ALLOWED: &[&[i64]] = &[OTHER_CALLS, SOCKETS, FILE_CHANGES];

/// Calls on sockets already open: SPICE and control socket clients, passt.
const SOCKETS: &[i64] = &[
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
];

/// Renaming and removing files: the control socket's screendump (a new
/// file, renamed into place), the socket files removed at exit.
const FILE_CHANGES: &[i64] = &[
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
];

const OTHER_CALLS: &[i64] = &[
    // Memory.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // Threads and waiting.
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_restart_syscall,
    libc::SYS_sigaltstack,
    libc::SYS_prctl,
    // Files already open, and sockets.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    libc::SYS_ftruncate,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_close,
    libc::SYS_dup,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_ioctl,
    libc::SYS_eventfd2,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_getrandom,
    // Files by name: screendump, the replayed recording.
    libc::SYS_openat,
    libc::SYS_uname,
    libc::SYS_getcwd,
    // A panic's backtrace finds the executable (RUST_BACKTRACE).
    libc::SYS_readlink,
    libc::SYS_readlinkat,
];

/// Calls taken away from the vCPU threads on top of [`ALLOWED`]. Reading
/// files by name stays (a panic's backtrace reads the executable).
const VCPU_DENIED: &[&[i64]] = &[SOCKETS, FILE_CHANGES, NEW_THREADS, DISK_CHANGES];

/// Calls taken away from the device threads (disk, QXL, sound and VGA
/// workers): they hand their work to other threads.
const DEVICE_DENIED: &[&[i64]] = &[SOCKETS, FILE_CHANGES, NEW_THREADS];

/// Calls taken away from a network card's thread: it keeps the calls on
/// its backend's socket (passt's), but takes no connections.
const NETWORK_DENIED: &[&[i64]] = &[FILE_CHANGES, NEW_THREADS, &[libc::SYS_accept4]];

/// Calls taken away from the SPICE loop: it takes connections and starts
/// a display worker for some, but writes no files.
const SERVER_DENIED: &[&[i64]] = &[FILE_CHANGES, DISK_CHANGES];

/// Calls taken away from the SPICE display workers and encoders: they
/// work on guest pixels and hand messages to the SPICE loop in memory.
const COMPUTE_DENIED: &[&[i64]] = &[SOCKETS, FILE_CHANGES, NEW_THREADS, DISK_CHANGES];

/// Every thread is started during set-up.
const NEW_THREADS: &[i64] = &[libc::SYS_clone, libc::SYS_clone3];

/// Calls that change a disk image's size or lock it: the disk threads'.
const DISK_CHANGES: &[i64] = &[libc::SYS_ftruncate, libc::SYS_fallocate, libc::SYS_flock];

/// `openat` flags refused on the narrowed threads (every layer): any of them
/// opens a file for writing or changes it.
const DENIED_OPEN_FLAGS: &[libc::c_int] = &[
    libc::O_WRONLY,
    libc::O_RDWR,
    libc::O_CREAT,
    libc::O_TRUNC,
    libc::O_APPEND,
];

/// `seccomp(2)`'s operation that installs a filter: allowed, so that a
/// thread can narrow its own calls further (it can never widen them).
const SECCOMP_SET_MODE_FILTER: u64 = 1;

/// `ioctl` requests refused although `ioctl` is allowed: pushing input
/// into a terminal (fd 0 may be the user's).
const REFUSED_IOCTLS: &[u64] = &[libc::TIOCSTI, libc::TIOCLINUX];

/// What a call outside a filter gets in `mode`; `None` for `Off`.
fn refusal(mode: SeccompMode) -> Option<SeccompAction> {
    match mode {
        SeccompMode::Off => None,
        SeccompMode::Log => Some(SeccompAction::Log),
        SeccompMode::On => Some(SeccompAction::KillProcess),
    }
}

/// Installs the filter on every thread (no-op for `Off`).
pub fn apply(mode: SeccompMode) -> Result<(), String> {
    let Some(mismatch) = refusal(mode) else {
        return Ok(());
    };
    let program = program(mismatch.clone())?;
    let device = layer_program(DEVICE_DENIED, mismatch.clone())?;
    let network = layer_program(NETWORK_DENIED, mismatch.clone())?;
    let server = layer_program(SERVER_DENIED, mismatch.clone())?;
    let compute = layer_program(COMPUTE_DENIED, mismatch)?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| format!("seccomp: {e}"))?;
    // The device and SPICE threads narrow themselves at their next round
    // of work. A failure (the kernel out of memory) leaves that thread
    // under the process-wide filter only, and says so.
    devices::thread_layer::register(move |kind| {
        let layer = match kind {
            WorkerKind::Network => &network,
            WorkerKind::Server => &server,
            WorkerKind::Compute => &compute,
            WorkerKind::Other => &device,
        };
        if let Err(e) = seccompiler::apply_filter(layer) {
            tracing::error!("seccomp: a {kind:?} thread cannot narrow its calls: {e}");
        }
    });
    let count = ALLOWED.iter().map(|group| group.len()).sum::<usize>();
    tracing::info!("seccomp: {count} system calls allowed ({mode:?})");
    Ok(())
}

/// Narrows the calling thread (a vCPU) further: [`VCPU_DENIED`] and
/// `openat` for writing get what `mode` gives a refused call. Call it
/// from the thread itself, after [`apply`].
pub fn restrict_vcpu_thread(mode: SeccompMode) -> Result<(), String> {
    let Some(refused) = refusal(mode) else {
        return Ok(());
    };
    let program = layer_program(VCPU_DENIED, refused)?;
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))
}

/// Rules matching each call of `groups` whatever its arguments.
fn every_call_of(groups: &[&[i64]]) -> BTreeMap<i64, Vec<SeccompRule>> {
    let calls = groups.iter().flat_map(|group| group.iter());
    calls.map(|&nr| (nr, Vec::new())).collect()
}

fn error(e: seccompiler::BackendError) -> String {
    format!("seccomp: {e}")
}

/// A layer refusing `denied` and `openat` for writing, allowing the rest.
fn layer_program(denied: &[&[i64]], refused: SeccompAction) -> Result<BpfProgram, String> {
    let mut rules = every_call_of(denied);
    // openat(dirfd, path, flags, mode): refused when any flag is set (the
    // rules of one call are alternatives).
    let open_rules = DENIED_OPEN_FLAGS
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            let op = SeccompCmpOp::MaskedEq(flag);
            SeccompCondition::new(2, SeccompCmpArgLen::Dword, op, flag)
                .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    rules.insert(libc::SYS_openat, open_rules);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, refused, TargetArch::x86_64)
        .map_err(error)?;
    filter.try_into().map_err(|e| format!("seccomp: {e}"))
}

fn program(mismatch: SeccompAction) -> Result<BpfProgram, String> {
    let mut rules = every_call_of(ALLOWED);
    // ioctl: any request but the refused ones (all conditions must hold).
    let conditions = REFUSED_IOCTLS
        .iter()
        .map(|&request| {
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, request)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    rules.insert(
        libc::SYS_ioctl,
        vec![SeccompRule::new(conditions).map_err(error)?],
    );
    // seccomp(SECCOMP_SET_MODE_FILTER, 0, program): no flags (no TSYNC,
    // no listener).
    let install = [(0, SECCOMP_SET_MODE_FILTER), (1, 0)]
        .into_iter()
        .map(|(arg, value)| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    rules.insert(
        libc::SYS_seccomp,
        vec![SeccompRule::new(install).map_err(error)?],
    );
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(error)?;
    filter.try_into().map_err(|e| format!("seccomp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Run by the test below in a child process: the filter installed, a
    /// thread makes a call the VMM never makes.
    #[test]
    #[ignore = "a child process of a_forbidden_call_kills_the_process"]
    fn child_makes_a_forbidden_call() {
        apply(SeccompMode::On).unwrap();
        // Allowed calls still work.
        std::thread::spawn(|| std::fs::metadata("/").unwrap())
            .join()
            .unwrap();
        std::thread::spawn(|| {
            // mkdir: never allowed after set-up.
            let _ = std::fs::create_dir("/tmp/saffron-seccomp-test");
        })
        .join()
        .unwrap();
        println!("still alive");
    }

    /// Like the child above, with an ioctl that pushes input into a terminal.
    #[test]
    #[ignore = "a child process of a_forbidden_call_kills_the_process"]
    fn child_pushes_terminal_input() {
        apply(SeccompMode::On).unwrap();
        let byte = b'x';
        // SAFETY: TIOCSTI reads one byte from a valid pointer; fd 0 need
        // not be a terminal (the filter kills before the kernel looks).
        unsafe { libc::ioctl(0, libc::TIOCSTI, &byte) };
        println!("still alive");
    }

    /// A file written by the main thread (as screendump may), then read
    /// and written again by a thread narrowed by `narrow`.
    fn write_from_a_narrowed_thread(narrow: impl FnOnce() + Send + 'static) {
        apply(SeccompMode::On).unwrap();
        let path = std::env::temp_dir().join(format!("saffron-seccomp-{}", std::process::id()));
        std::fs::write(&path, b"other threads may").unwrap();
        std::thread::spawn(move || {
            narrow();
            // Reading stays allowed.
            std::fs::read(&path).unwrap();
            let _ = std::fs::write(&path, b"a narrowed thread may not");
        })
        .join()
        .unwrap();
        println!("still alive");
    }

    /// Like the children above: a vCPU thread opens a file for writing.
    #[test]
    #[ignore = "a child process of a_forbidden_call_kills_the_process"]
    fn child_vcpu_thread_writes_a_file() {
        write_from_a_narrowed_thread(|| restrict_vcpu_thread(SeccompMode::On).unwrap());
    }

    /// A device thread, narrowed as its loop does, opens a file for writing.
    #[test]
    #[ignore = "a child process of a_forbidden_call_kills_the_process"]
    fn child_device_thread_writes_a_file() {
        write_from_a_narrowed_thread(|| {
            devices::thread_layer::ThreadLayer::default().before_work()
        });
    }

    /// The SPICE loop, narrowed as its loop does, keeps its sockets but
    /// opens a file for writing.
    #[test]
    #[ignore = "a child process of a_forbidden_call_kills_the_process"]
    fn child_spice_loop_writes_a_file() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        write_from_a_narrowed_thread(move || {
            devices::thread_layer::ThreadLayer::new(WorkerKind::Server).before_work();
            a.local_addr().unwrap();
        });
    }

    /// An encoder thread of the SPICE pool opens a file for writing (the
    /// pool's threads narrow themselves before their first job; this
    /// needs two cores, as a single one encodes on the caller).
    #[test]
    #[ignore = "a child process of a_forbidden_call_kills_the_process"]
    fn child_encoder_writes_a_file() {
        crate::spice::codec::parallel::start_pool();
        apply(SeccompMode::On).unwrap();
        let path = std::env::temp_dir().join(format!("saffron-seccomp-{}", std::process::id()));
        let jobs = [0u8; 2];
        // Work on memory is what encoders do: allowed.
        let sums = crate::spice::codec::parallel::map(&jobs, u64::MAX, |&b| {
            vec![b; 1 << 22].iter().map(|&x| u64::from(x)).sum::<u64>()
        });
        println!("encoded {sums:?}");
        crate::spice::codec::parallel::map(&jobs, u64::MAX, |_| {
            let _ = std::fs::write(&path, b"an encoder may not");
        });
        println!("still alive");
    }

    /// A vCPU thread uses a socket, which the SPICE threads may.
    #[test]
    #[ignore = "a child process of a_forbidden_call_kills_the_process"]
    fn child_vcpu_thread_uses_a_socket() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        apply(SeccompMode::On).unwrap();
        a.local_addr().unwrap();
        std::thread::spawn(move || {
            restrict_vcpu_thread(SeccompMode::On).unwrap();
            let _ = a.local_addr();
        })
        .join()
        .unwrap();
        println!("still alive");
    }

    #[test]
    fn a_forbidden_call_kills_the_process() {
        for child in [
            "child_makes_a_forbidden_call",
            "child_pushes_terminal_input",
            "child_vcpu_thread_writes_a_file",
            "child_vcpu_thread_uses_a_socket",
            "child_device_thread_writes_a_file",
            "child_spice_loop_writes_a_file",
            "child_encoder_writes_a_file",
        ] {
            let process = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", &format!("seccomp::tests::{child}")])
                .args(["--ignored", "--nocapture"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let file = std::env::temp_dir().join(format!("saffron-seccomp-{}", process.id()));
            let out = process.wait_with_output().unwrap();
            let _ = std::fs::remove_file(file);
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{child}: {out:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.contains("still alive"));
            if child == "child_encoder_writes_a_file" {
                assert!(stdout.contains("encoded [0, 0]"), "{stdout}");
            }
        }
    }

    #[test]
    fn modes_parse() {
        assert_eq!(SeccompMode::parse("on"), Ok(SeccompMode::On));
        assert_eq!(SeccompMode::parse("log"), Ok(SeccompMode::Log));
        assert_eq!(SeccompMode::parse("off"), Ok(SeccompMode::Off));
        assert!(SeccompMode::parse("yes").is_err());
        assert!(program(SeccompAction::KillProcess).is_ok());
        assert!(layer_program(VCPU_DENIED, SeccompAction::KillProcess).is_ok());
        assert!(layer_program(DEVICE_DENIED, SeccompAction::KillProcess).is_ok());
        assert!(layer_program(NETWORK_DENIED, SeccompAction::KillProcess).is_ok());
        assert!(layer_program(SERVER_DENIED, SeccompAction::KillProcess).is_ok());
        assert!(layer_program(COMPUTE_DENIED, SeccompAction::KillProcess).is_ok());
    }
}
