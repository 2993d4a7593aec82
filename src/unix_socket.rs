//! Listening Unix sockets that only their owner may use (the SPICE
//! `unix=` socket and the control socket carry the screen, the keyboard
//! and the VM's controls).

use std::fs::{DirBuilder, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Longest path a Unix socket address holds (`sun_path`, 108 bytes with
/// the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Binds a listening socket at `path` with mode 0600 from the first moment
/// anyone could reach it: it is bound inside a fresh directory only we may
/// enter, made 0600 there, then linked to `path` (which must not exist by
/// then). A stale socket at `path` (nobody listens) is replaced; anything
/// else there is an error, and so is a path longer than
/// [`MAX_SOCKET_PATH`] bytes (a socket address cannot hold it, so clients
/// could not connect by it).
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {len} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH}"),
        ));
    }
    clear_stale_socket(path)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let private = parent.join(format!(".saffron-{}-{}", std::process::id(), unique()));
    DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("s");
    let result = (|| {
        let listener = bind_in(&private, &staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::hard_link(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result
}

/// Binds `staged`, a name in directory `dir`; when that name is too long
/// for a socket address (a `path` that fits, in a deep directory), through
/// the directory's short name `/proc/self/fd/N`.
fn bind_in(dir: &Path, staged: &Path) -> io::Result<UnixListener> {
    if staged.as_os_str().len() <= MAX_SOCKET_PATH {
        return UnixListener::bind(staged);
    }
    let dir = File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}/s", dir.as_raw_fd()));
    UnixListener::bind(short)
}

/// A number no other call in this process got.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Removes a socket file left behind by a process that is gone; refuses to
/// touch anything else.
fn clear_stale_socket(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let refuse = |why: &str| io::Error::new(io::ErrorKind::AlreadyExists, why.to_string());
    if !meta.file_type().is_socket() {
        return Err(refuse("exists and is not a socket"));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(refuse("is in use by another process"));
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_private_and_stale_ones_replaced() {
        let dir = std::env::temp_dir().join(format!("saffron-us-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.sock");
        let listener = bind_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(UnixStream::connect(&path).is_ok());
        let e = bind_private(&path).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(listener);
        bind_private(&path).expect("a stale socket is replaced");
        std::fs::write(dir.join("f"), b"x").unwrap();
        let e = bind_private(&dir.join("f")).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "no staging directory left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_that_fits_works_however_deep_and_a_longer_one_is_refused() {
        // (A short base of our own: a long TMPDIR would leave no room.)
        let base = PathBuf::from(format!("/tmp/saffron-deep-{}", std::process::id()));
        let prefix = base.as_os_str().len() + 1;
        // A directory name that leaves the socket path exactly at the limit.
        let name = "d".repeat(MAX_SOCKET_PATH - prefix - "/x.sock".len());
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.sock");
        assert_eq!(path.as_os_str().len(), MAX_SOCKET_PATH);
        let _listener = bind_private(&path).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = bind_private(&dir.join("xy.sock")).unwrap_err();
        assert!(e.to_string().contains("at most 107"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
