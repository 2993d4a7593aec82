//! The control socket (`saffron run --api-socket PATH`): a Unix stream
//! socket where each connection sends one JSON request per line and gets one
//! JSON response per line (see [`protocol`] and README.md, "Control socket").
//!
//! Limits keep a misbehaving client from hurting the VM: a request line is at
//! most [`MAX_LINE`] bytes (longer ones get an error and the connection is
//! closed), at most [`MAX_CONNECTIONS`] connections are served at once, and
//! the socket is only accessible to its owner (mode 0600).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use saffron::control as protocol;
use saffron::control::After;
use saffron::machine::Machine;
use saffron::unix_socket::bind_private;

/// Longest request line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// Input read and dropped after refusing an overlong line.
const DRAIN_LIMIT: u64 = 1 << 20;
/// Connections served at the same time.
pub const MAX_CONNECTIONS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("control socket {path}: {reason}")]
    Socket { path: String, reason: String },
}

/// The listening socket; dropping it removes the socket file.
pub struct ApiServer {
    path: PathBuf,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `path` and serves requests on a thread of its own.
pub fn start(path: &Path, machine: Arc<dyn Machine>) -> Result<ApiServer, ApiError> {
    let error = |reason: String| ApiError::Socket {
        path: path.display().to_string(),
        reason,
    };
    let listener = bind_private(path).map_err(|e| error(e.to_string()))?;
    let server = ApiServer {
        path: path.to_owned(),
    };
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || accept_loop(listener, machine))
        .map_err(|e| error(e.to_string()))?;
    Ok(server)
}

fn accept_loop(listener: UnixListener, machine: Arc<dyn Machine>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = send(
                &mut stream,
                &protocol::error("busy", "too many connections"),
            );
            continue;
        }
        let machine = machine.clone();
        let active = active.clone();
        let spawned = std::thread::Builder::new()
            .name("api-client".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &*machine) {
                    tracing::debug!("control socket client: {e}");
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            tracing::warn!("control socket: cannot start a thread for a client");
        }
    }
}

fn send(stream: &mut UnixStream, response: &serde_json::Value) -> std::io::Result<()> {
    let mut line = response.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    stream.flush()
}

/// Serves one connection until it closes.
fn serve(stream: UnixStream, machine: &dyn Machine) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = Vec::new();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            let message = format!("a request line is at most {MAX_LINE} bytes");
            send(&mut writer, &protocol::error("request_too_long", message))?;
            // Closing with unread input would reset the connection before the
            // client reads the answer: stop writing, then drain a bounded
            // amount of input for a short while.
            writer.shutdown(std::net::Shutdown::Write)?;
            writer.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
            let _ = std::io::copy(&mut reader.take(DRAIN_LIMIT), &mut std::io::sink());
            return Ok(());
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            send(
                &mut writer,
                &protocol::error("bad_json", "the request is not UTF-8"),
            )?;
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let (response, after) = protocol::handle(text, machine);
        send(&mut writer, &response)?;
        match after {
            After::Nothing => {}
            After::Reset => machine.reset(),
            After::Quit => machine.quit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saffron::machine::{Keys, PasswordChange, PointerEvent, Refusal};
    use serde_json::{json, Value};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<&'static str>>);

    impl Machine for Recorder {
        fn status(&self) -> Value {
            json!({"running": true})
        }
        fn screen(&self, _head: Option<u32>) -> Result<(u32, u32, Vec<u8>), Refusal> {
            Err(Refusal {
                code: "no_display",
                message: String::new(),
            })
        }
        fn send_keys(&self, _keys: &Keys) -> Result<(), Refusal> {
            self.0.lock().unwrap().push("keys");
            Ok(())
        }
        fn pointer(&self, _event: PointerEvent) -> Result<(), Refusal> {
            self.0.lock().unwrap().push("pointer");
            Ok(())
        }
        fn press_power_button(&self) {
            self.0.lock().unwrap().push("power");
        }
        fn reset(&self) {
            self.0.lock().unwrap().push("reset");
        }
        fn quit(&self) {
            self.0.lock().unwrap().push("quit");
        }
        fn set_spice_compression(&self, _changes: &[(&str, &str)]) -> Result<Value, Refusal> {
            Ok(Value::Null)
        }
        fn spice_password(&self, _change: PasswordChange) -> Result<(), Refusal> {
            Ok(())
        }
    }

    fn socket_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("saffron-api-{}-{name}.sock", std::process::id()))
    }

    fn request(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, line: &str) -> Value {
        stream.write_all(line.as_bytes()).unwrap();
        let mut response = String::new();
        reader.read_line(&mut response).unwrap();
        serde_json::from_str(&response).unwrap()
    }

    #[test]
    fn serves_requests_line_by_line() {
        let path = socket_path("lines");
        let machine = Arc::new(Recorder::default());
        let server = start(&path, machine.clone()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut stream = UnixStream::connect(&path).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let status = request(&mut stream, &mut reader, "{\"command\":\"status\"}\n");
        assert_eq!(status["return"]["running"], true);
        let bad = request(&mut stream, &mut reader, "{oops\n\n");
        assert_eq!(bad["error"]["code"], "bad_json");
        let power = request(&mut stream, &mut reader, "{\"command\":\"powerdown\"}\n");
        assert_eq!(power["ok"], true);
        let reset = request(
            &mut stream,
            &mut reader,
            "{\"command\":\"reset\",\"id\":\"r\"}\n",
        );
        assert_eq!(
            (reset["ok"].clone(), reset["id"].clone()),
            (json!(true), json!("r"))
        );
        drop(stream);
        // The reset happens after the response was sent.
        for _ in 0..100 {
            if machine.0.lock().unwrap().len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(*machine.0.lock().unwrap(), vec!["power", "reset"]);
        drop(server);
        assert!(!path.exists(), "socket removed on drop");
    }

    #[test]
    fn overlong_lines_are_refused_and_the_connection_closed() {
        let path = socket_path("long");
        let _server = start(&path, Arc::new(Recorder::default())).unwrap();
        let mut stream = UnixStream::connect(&path).unwrap();
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                // Never ends with a newline; the server stops reading.
                let chunk = vec![b'x'; 4096];
                for _ in 0..(MAX_LINE / 4096 + 4) {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                }
            })
        };
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let value: Value = serde_json::from_str(response.trim()).unwrap();
        assert_eq!(value["error"]["code"], "request_too_long");
        writer.join().unwrap();
    }

    #[test]
    fn stale_sockets_are_replaced_but_other_files_are_not() {
        let path = socket_path("stale");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file behind
        let server = start(&path, Arc::new(Recorder::default())).unwrap();
        // A second server on a live socket is refused.
        assert!(start(&path, Arc::new(Recorder::default())).is_err());
        drop(server);
        let file = socket_path("regular");
        std::fs::write(&file, b"precious").unwrap();
        let error = start(&file, Arc::new(Recorder::default())).err().unwrap();
        assert!(error.to_string().contains("not a socket"), "{error}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
        std::fs::remove_file(&file).unwrap();
    }
}
