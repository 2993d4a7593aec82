//! Listening Unix sockets that only their owner may use (the SPICE
//! `unix=` socket and the control socket carry the screen, the keyboard
//! and the VM's controls).

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Binds a listening socket at `path` with mode 0600 from the first moment
/// anyone could reach it: it is bound inside a fresh directory only we may
/// enter, made 0600 there, then linked to `path` (which must not exist by
/// then). A stale socket at `path` (nobody listens) is replaced; anything
/// else there is an error.
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    clear_stale_socket(path)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let private = parent.join(format!(".saffron-{}-{}", std::process::id(), unique()));
    DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::hard_link(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result
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
}
