#!/usr/bin/python3
"""Native TLS tests: `saffron replay` of a real recording serves its picture with
`--spice port=P,tls-port=T,x509-dir=DIR,tls-channel=default`, and real clients connect.

    /usr/bin/python3 tests/spice/test_tls.py [TEST...]

- a spice-glib client given the plaintext port, the TLS port and the CA links on the plaintext
  port, is answered NEED_SECURED, moves to the TLS port and sees the recording's picture pixel
  for pixel (the live QEMU picture of tests/replay);
- a client that trusts another CA does not get in;
- `openssl s_client` negotiates TLS 1.3 and sees the configured certificate; TLS 1.1 is refused;
- remote-viewer (under Xvfb) with --spice-ca-file shows the picture.

The certificates are made with `openssl` for each run. Needs the replay fixtures
(tests/replay/test_replay.py makes them in build/replay-fixtures) and target/release/saffron
(or $SAFFRON_BIN). Prints PASS/FAIL per test; exit status 1 when a test failed.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE.parent / "replay"))
from recording import REPO, free_port, run_each  # noqa: E402
from screens import (GlibClient, Picture, diff_pictures, read_ppm,  # noqa: E402
                     remote_viewer_shows)

FIXTURES = REPO / "build" / "replay-fixtures"
WORKLOAD = "console"
SAFFRON = Path(os.environ.get("SAFFRON_BIN", REPO / "target" / "release" / "saffron"))


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={name}", "-keyout", "ca-key.pem", "-out", "ca-cert.pem", cwd=directory)


def make_certificates(directory: Path) -> None:
    """ca-cert.pem, server-cert.pem and server-key.pem (for 127.0.0.1) in `directory`, as
    QEMU's x509-dir holds them."""
    make_ca(directory, "saffron test CA")
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=saffron-test-server",
            "-keyout", "server-key.pem", "-out", "server.csr", cwd=directory)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server-cert.pem",
            cwd=directory)


class Server:
    """saffron replay of the workload with TLS, kept running for all tests."""

    def __init__(self, x509: Path):
        self.port, self.tls_port = free_port(), free_port()
        spice = (f"port={self.port},tls-port={self.tls_port},x509-dir={x509},"
                 "tls-channel=default,disable-ticketing")
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [str(SAFFRON), "replay", str(FIXTURES / f"{WORKLOAD}.rec"), "--pace", "fast",
             "--spice", spice], stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, "SAFFRON_LOG": "info"}, start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        assert ready, "saffron replay gave no summary within 120 s"
        summary = self.proc.stdout.readline()
        assert summary.startswith("replay:"), f"no summary: {summary!r} {self.stderr()[-800:]}"

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def client_options(ca: Path, server: Server) -> tuple:
    return (f"--tls-port={server.tls_port}", f"--ca-file={ca}")


def test_client_moves_to_the_tls_port_and_sees_the_picture(server: Server, x509: Path) -> None:
    with GlibClient(server.port, options=client_options(x509 / "ca-cert.pem", server)) as c:
        c.wait_still(timeout=60)
        picture = c.dump(Path(tempfile.mkdtemp(prefix="tls-")) / "client.bgrx")
    difference = diff_pictures(picture, read_ppm(FIXTURES / f"{WORKLOAD}.live.ppm"))
    assert difference is None, f"the picture over TLS: {difference}"
    log = server.stderr()
    assert "is not served without TLS (NeedSecured)" in log, log[-1500:]
    assert re.search(r"connection from 127\.0\.0\.1:\d+ \(TLS\)", log), log[-1500:]


def test_a_client_trusting_another_ca_is_refused(server: Server, _x509: Path) -> None:
    other = Path(tempfile.mkdtemp(prefix="tls-other-ca-"))
    make_ca(other, "another CA")
    with GlibClient(server.port, options=client_options(other / "ca-cert.pem", server)) as c:
        try:
            while (got := c.next(20)) is not None:
                assert not got[1].startswith("PRIMARY"), "a client with the wrong CA got in"
        except AssertionError as e:
            assert "ERROR channel" in str(e), e
            return
    raise AssertionError("the client with the wrong CA reported no error")


def s_client(server: Server, ca: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.tls_port}",
                           "-CAfile", str(ca), "-verify_return_error", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_openssl_sees_tls13_and_the_certificate(server: Server, x509: Path) -> None:
    ca = x509 / "ca-cert.pem"
    result = s_client(server, ca, "-tls1_3")
    out = result.stdout
    assert result.returncode == 0, result.stderr[-800:]
    assert re.search(r"New, TLSv1\.3", out), out[-1500:]
    assert "CN = saffron-test-server" in out or "CN=saffron-test-server" in out, out[:1500]
    assert "Verify return code: 0 (ok)" in out, out[-800:]
    old = s_client(server, ca, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert old.returncode != 0 and "TLSv1.1" not in re.findall(r"New, (\S+),", old.stdout), \
        old.stdout[-800:]


def test_remote_viewer_over_tls(server: Server, x509: Path) -> None:
    live = read_ppm(FIXTURES / f"{WORKLOAD}.live.ppm")
    # A piece of the console with text on it (the first rows that are not all black).
    top = next(y for y in range(live.height) if any(live.rows[y]))
    patch = Picture(min(live.width, 320), 16,
                    [row[:3 * min(live.width, 320)] for row in live.rows[top:top + 16]])
    uri = f"spice://127.0.0.1?port={server.port}&tls-port={server.tls_port}"
    remote_viewer_shows([f"--spice-ca-file={x509 / 'ca-cert.pem'}", uri], patch, "tls")


def main() -> None:
    tests = {name: fn for name, fn in globals().items() if name.startswith("test_")}
    selected = sys.argv[1:]
    unknown = [n for n in selected if n not in tests]
    if unknown:
        sys.exit(f"unknown tests: {' '.join(unknown)}; available: {' '.join(tests)}")
    if not (FIXTURES / f"{WORKLOAD}.rec").is_file():
        sys.exit(f"test_tls: no {FIXTURES}/{WORKLOAD}.rec (tests/replay/test_replay.py makes it)")
    x509 = Path(tempfile.mkdtemp(prefix="saffron-x509-"))
    make_certificates(x509)
    server = Server(x509)
    try:
        passed, failed = run_each(tests, selected, lambda fn: fn(server, x509))
    finally:
        server.stop()
    assert "panicked" not in server.stderr(), server.stderr()[-1500:]
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
