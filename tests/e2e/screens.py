"""Screens and the control socket, for end-to-end tests: a control-socket client, PNG (what
saffron's screendump writes) and PPM (what spicy-screenshot writes) readers, pixel masks, where
the tty1 marker is, and pixel-for-pixel comparison of two pictures.

    api = Api(sock)                      # waits for the socket; api.call("status") -> "return"
    pic = screendump(api, tmp, "name")   # Picture, also copied to the results directory
    pic = spice_screenshot(port, "name") # spicy-screenshot against saffron's SPICE server
    pic = glib_screenshot(port, "name")  # a headless spice-glib client's surface, once still
    diff_pictures(a, b) -> str | None    # None when equal, else where they differ
"""

from __future__ import annotations

import json
import math
import queue
import shlex
import socket
import struct
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from harness import RESULTS_DIR, TTY1_MARKER, Guest, GuestTimeout


class Api:
    """A control socket client (one JSON request per line)."""

    def __init__(self, path: Path, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError as e:
                self.sock.close()
                if time.monotonic() > deadline:
                    # A VMM that has not opened its socket yet is as slow as a stalled guest
                    # (the nested machine at its worst): run_tests retries it as a stall.
                    raise GuestTimeout(f"control socket {path}: {e} after {timeout} s") from e
                time.sleep(0.1)
        self.sock.settimeout(30)
        self.file = self.sock.makefile("rwb")

    def raw(self, line: bytes) -> dict:
        self.file.write(line)
        self.file.flush()
        answer = self.file.readline()
        if not answer:
            raise EOFError("control socket closed")
        return json.loads(answer)

    def request(self, command: str, **args) -> dict:
        """The whole response (ok or not)."""
        return self.raw(json.dumps({"command": command, **args}).encode() + b"\n")

    def call(self, command: str, **args) -> dict:
        response = self.request(command, **args)
        assert response.get("ok") is True, f"{command}: {response}"
        return response["return"]

    def close(self):
        self.file.close()
        self.sock.close()


@dataclass
class Picture:
    """RGB rows."""
    width: int
    height: int
    rows: list[bytes]

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        return tuple(self.rows[y][3 * x:3 * x + 3])

    def crop(self, x: int, y: int, width: int, height: int) -> "Picture":
        return Picture(width, height, [row[3 * x:3 * (x + width)]
                                       for row in self.rows[y:y + height]])


def read_png(path: Path) -> Picture:
    """An 8-bit RGB PNG (what saffron writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2), "expected 8-bit RGB"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 2:
            line = bytearray(_add_bytes(bytes(line), bytes(prev)))
        elif kind != 0:
            for i in range(stride):
                a = line[i - 3] if i >= 3 else 0
                b = prev[i]
                c = prev[i - 3] if i >= 3 else 0
                if kind == 1:
                    line[i] = (line[i] + a) & 0xff
                elif kind == 3:
                    line[i] = (line[i] + (a + b) // 2) & 0xff
                elif kind == 4:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    line[i] = (line[i] + pred) & 0xff
        rows.append(bytes(line))
        prev = line
    return Picture(width, height, rows)


def _add_bytes(a: bytes, b: bytes) -> bytes:
    """Bytewise (a + b) mod 256, in big-int arithmetic (saffron's PNGs filter every row
    "Up"; per-byte Python is far too slow in the nested machine)."""
    n = len(a)
    low, high = int.from_bytes(b"\x7f" * n, "big"), int.from_bytes(b"\x80" * n, "big")
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(n, "big")


def read_ppm(path: Path) -> Picture:
    """A binary PPM (what spicy-screenshot writes)."""
    data = path.read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P6" and fields[3] == b"255", fields
    width, height = int(fields[1]), int(fields[2])
    pixels = data[pos + 1:]
    assert len(pixels) >= width * height * 3, "short PPM"
    return Picture(width, height, [pixels[y * width * 3:(y + 1) * width * 3]
                                   for y in range(height)])


def write_png(path: Path, picture: Picture) -> None:
    """An 8-bit RGB PNG of `picture`."""
    raw = b"".join(b"\x00" + row for row in picture.rows)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                                + struct.pack(">I", zlib.crc32(kind + body)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", picture.width, picture.height,
                                                  8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_mask_png(path: Path, mask: list[str]) -> None:
    """A black/white RGB PNG of a mask ('#' white)."""
    rows = [b"".join(b"\xff\xff\xff" if c == "#" else b"\x00\x00\x00" for c in row)
            for row in mask]
    write_png(path, Picture(len(mask[0]), len(mask), rows))


def crop_mask(picture: Picture, x: int, y: int, w: int, h: int) -> list[str]:
    """The rectangle as '#' (bright: text) and '.' (dark: background)."""
    out = []
    for row in picture.rows[y:y + h]:
        px = row[x * 3:(x + w) * 3]
        out.append("".join("#" if sum(px[i:i + 3]) > 3 * 0x80 else "."
                           for i in range(0, len(px), 3)))
    return out


def marker_position(guest: Guest) -> tuple[int, int, int, int]:
    """(rows, cols, row, col) of the marker line on tty1, from /dev/vcsa1 (its header) and
    /dev/vcs1 (the characters, no line breaks). Kept to a few bytes of serial output: heavy
    serial output makes nested guests triple-fault now and then (with or without a display)."""
    header = guest.run("hexdump -v -n 2 -e '2/1 \"%u \"' /dev/vcsa1", check=True).output.split()
    rows, cols = int(header[0]), int(header[1])
    found = guest.run(f"awk '{{print index($0, \"{TTY1_MARKER}\")}}' /dev/vcs1",
                      check=True).output.split()
    at = int(found[0]) - 1 if found else -1
    if at < 0:
        screen = guest.run("cat /dev/vcs1 | tr -s ' '", check=True).output
        raise AssertionError(f"no {TTY1_MARKER!r} on tty1 ({rows}x{cols}): {screen[:500]!r}")
    return rows, cols, at // cols, at % cols


def one_screen(width: int, height: int, device: str) -> dict:
    """`status`'s `display` for one screen of this size shown by `device` ("qxl" or "vga") on a
    card with one output."""
    return {"width": width, "height": height, "device": device, "max_heads": 1,
            "heads": [{"id": 0, "x": 0, "y": 0, "width": width, "height": height}]}


def screendump(api: Api, directory: str, name: str, head: int | None = None) -> Picture:
    """A screendump over the control socket, of the screen or of one head (a copy goes to the
    results directory)."""
    path = Path(directory) / f"{name}.png"
    extra = {} if head is None else {"head": head}
    result = api.call("screendump", path=str(path), **extra)
    picture = read_png(path)
    assert (picture.width, picture.height) == (result["width"], result["height"])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.png").write_bytes(path.read_bytes())
    return picture


def spice_screenshot(port: int, name: str) -> Picture:
    """What a SPICE client (spicy-screenshot) sees; the PPM is kept in the results directory."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.ppm"
    result = subprocess.run(["spicy-screenshot", "-h", "127.0.0.1", "-p", str(port),
                             "-o", str(path)], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"spicy-screenshot failed: {result.stderr[-500:]}"
    return read_ppm(path)


GLIB_CLIENT = Path(__file__).resolve().parents[1] / "spice" / "glib_client.py"


class GlibClient:
    """tests/spice/glib_client.py as a subprocess: its event lines, each with its arrival
    time. It stays connected for `lifetime` seconds at most; `options` are more of its
    `--name=value` options."""

    def __init__(self, port: int, lifetime: float = 60, options: tuple = ()):
        self.proc = subprocess.Popen(["/usr/bin/python3", str(GLIB_CLIENT), "127.0.0.1",
                                      str(port), f"--lifetime={int(lifetime)}", *options],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.primary: tuple[int, int, int] | None = None
        # When the latest update to the primary surface arrived.
        self.last_invalidate: float | None = None
        self.said: list[str] = []

    def __enter__(self) -> "GlibClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.strip()))
        self.lines.put((time.monotonic(), None))

    def next(self, timeout: float) -> tuple[float, str] | None:
        """The next line (None when none came within timeout); fails on ERROR or exit."""
        try:
            at, line = self.lines.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            return None
        assert line is not None, f"spice-glib client exited: {self.said[-5:]}"
        self.said.append(line)
        assert not line.startswith("ERROR"), f"spice-glib client: {line}"
        if line.startswith("PRIMARY"):
            self.primary = tuple(map(int, line.split()[1:4]))
            self.last_invalidate = None
        elif line.startswith("INVALIDATE") and self.primary:
            self.last_invalidate = at
        return at, line

    def wait_still(self, settle: float = 1.5, timeout: float = 60, fresh: bool = True) -> None:
        """Waits until the client has a primary surface and no update came for `settle` s:
        after at least one new update (`fresh`), or counting from the latest update already
        seen (not `fresh`: when the client may already hold the change awaited)."""
        deadline = time.monotonic() + timeout
        last_update = None if fresh else self.last_invalidate
        while True:
            now = time.monotonic()
            if self.primary and last_update is not None and now - last_update >= settle:
                return
            if now > deadline:
                raise AssertionError(f"spice-glib client: no still picture in {timeout} s: "
                                     f"{self.said[-5:]}")
            wait = settle - (now - last_update) if last_update is not None else 1.0
            got = self.next(min(wait, deadline - now))
            if got is None:
                continue
            words = got[1].split()
            if words[0] == "PRIMARY":
                last_update = None
            elif words[0] == "INVALIDATE" and self.primary:
                last_update = got[0]

    def dump(self, path: Path) -> Picture:
        """The client's picture now (the raw dump stays at `path`)."""
        self.proc.stdin.write(f"DUMP {path}\n")
        self.proc.stdin.flush()
        while not (got := self.next(30)) or not got[1].startswith("DUMPED"):
            assert got, "spice-glib client: no DUMPED"
        return read_bgrx(path, *self.primary)

    def close(self) -> None:
        try:
            self.proc.stdin.write("QUIT\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(30)


def glib_screenshot(port: int, name: str, settle: float = 1.5, timeout: float = 60) -> Picture:
    """What a headless spice-glib client (tests/spice/glib_client.py) holds once its display
    has had no update for `settle` seconds; the raw dump is kept in the results directory."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with GlibClient(port, lifetime=timeout + 30) as client:
        client.wait_still(settle, timeout)
        return client.dump(RESULTS_DIR / f"{name}.bgrx")


def psnr(a: Picture, b: Picture, x: int, y: int, w: int, h: int) -> float:
    """PSNR (dB) of the R, G, B bytes of a rectangle of two pictures; inf when equal."""
    total = 0
    for row in range(y, y + h):
        ra, rb = a.rows[row][3 * x:3 * (x + w)], b.rows[row][3 * x:3 * (x + w)]
        total += sum((p - q) * (p - q) for p, q in zip(ra, rb))
    return math.inf if total == 0 else 10 * math.log10(255 * 255 * 3 * w * h / total)


def read_bgrx(path: Path, width: int, height: int, stride: int) -> Picture:
    """A raw dump of B,G,R,X rows (glib_client.py's DUMP) as a Picture."""
    raw = path.read_bytes()
    rows = []
    for y in range(height):
        bgrx = raw[y * stride:y * stride + width * 4]
        rgb = bytearray(width * 3)
        rgb[0::3], rgb[1::3], rgb[2::3] = bgrx[2::4], bgrx[1::4], bgrx[0::4]
        rows.append(bytes(rgb))
    return Picture(width, height, rows)


def diff_pictures(a: Picture, b: Picture) -> str | None:
    """None when both are the same size with the same pixels; else what differs."""
    if (a.width, a.height) != (b.width, b.height):
        return f"sizes differ: {a.width}x{a.height} vs {b.width}x{b.height}"
    bad_rows = [y for y in range(a.height) if a.rows[y] != b.rows[y]]
    if not bad_rows:
        return None
    y = bad_rows[0]
    x = next(i // 3 for i in range(0, len(a.rows[y]), 3)
             if a.rows[y][i:i + 3] != b.rows[y][i:i + 3])
    return (f"{len(bad_rows)} rows differ (rows {bad_rows[0]}..{bad_rows[-1]}); first at "
            f"({x},{y}): {a.pixel(x, y)} vs {b.pixel(x, y)}")


def still_console(guest: Guest) -> None:
    """Makes tty1 hold still for pixel comparisons: no cursor, no blinking."""
    guest.run("echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null;"
              " printf '\\033[?25l' > /dev/tty1", check=True)


def client_matches_screendump(api: Api, directory: str, name: str, shoot, attempts: int,
                              pause: float = 0.3) -> Picture:
    """A client's picture (`shoot(name)`) equals a screendump taken just before it; returns
    the picture. A screen that may change on its own (a blinking text cursor, a clock) can
    catch the client in another phase, so it is asked again, up to `attempts` times (a real
    difference fails every time)."""
    difference = "never compared"
    for attempt in range(attempts):
        before = screendump(api, directory, f"{name}-dump")
        shot = shoot(name)
        difference = diff_pictures(before, shot)
        if difference is None:
            print(f"  {name}: the client sees the screendump exactly "
                  f"({shot.width}x{shot.height}, attempt {attempt + 1})")
            return shot
        time.sleep(pause)
    raise AssertionError(f"{name}: the client's picture differs {attempts} times: {difference}")


def find_patch(screen: Picture, patch: Picture) -> tuple | None:
    """Where `patch` appears unscaled in `screen`, or None. Its busiest row is searched for as
    a substring of each screen row (fast, even under TCG); the other rows are then checked."""
    anchor = max(range(patch.height), key=lambda dy: len(set(patch.rows[dy])) * 1000
                 + sum(1 for b in patch.rows[dy] if b))
    needle = patch.rows[anchor]
    for y in range(anchor, screen.height - (patch.height - anchor) + 1):
        start = 0
        while (at := screen.rows[y].find(needle, start)) >= 0:
            top = y - anchor
            if at % 3 == 0 and all(
                    screen.rows[top + dy][at:at + len(needle)] == patch.rows[dy]
                    for dy in range(patch.height)):
                return at // 3, top
            start = at + 1
    return None


def remote_viewer_shows(args: list[str], patch: Picture, name: str, timeout: float = 90) -> tuple:
    """Runs `remote-viewer ARGS` under Xvfb, screenshots the X screen every second until `patch`
    (a piece of the guest's screen) appears in it; returns where."""
    out = RESULTS_DIR / f"{name}-x"
    quoted = " ".join(shlex.quote(a) for a in args)
    script = (f"remote-viewer {quoted} & RV=$!; "
              f"for i in $(seq 1 {int(timeout)}); do sleep 1; "
              f"import -window root -depth 8 {out}.tmp.ppm 2>/dev/null && mv {out}.tmp.ppm {out}.ppm; "
              f"[ -e {out}.done ] && break; done; kill $RV")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in (f"{out}.ppm", f"{out}.done"):
        Path(stale).unlink(missing_ok=True)
    viewer = subprocess.Popen(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "sh", "-c", script],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, found, last = time.monotonic() + timeout, None, 0.0
    try:
        while found is None and time.monotonic() < deadline:
            time.sleep(1)
            shot = Path(f"{out}.ppm")
            if shot.exists() and shot.stat().st_mtime != last:
                last = shot.stat().st_mtime
                found = find_patch(read_ppm(shot), patch)
    finally:
        Path(f"{out}.done").write_text("")
        try:
            viewer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            viewer.kill()
    assert found is not None, f"remote-viewer never showed the patch (last: {out}.ppm)"
    return found
