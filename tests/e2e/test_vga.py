#!/usr/bin/python3
"""End-to-end tests of the VGA fallback display and the control socket.

Runs inside the nested machine (real KVM), from the repository root:
    flock /tmp/saffron-nested.lock tests/nested/run -- /usr/bin/python3 tests/e2e/test_vga.py [TEST...]

Needs on the host first: `cargo build --release` and
`guest-drivers/linux/build-image build/guest-linux`.

What is checked:
- `--vga 1024x768` (a VESA linear framebuffer described in screen_info) with `nomodeset` (KVM's
  dirty log) and without (`--vga-dirty-tracking compare`): Linux's vesafb draws the console there; a `screendump` over the control socket shows
  the guest's "SAFFRON TTY1 MARKER" line where /dev/vcsa1 says it is, pixel for pixel equal to
  the reference in tests/e2e/reference/ (made once from a run, see REFERENCE below).
- `--vga text`: vgacon writes text mode memory; the screendump shows the marker drawn with
  Saffron's own font, checked against a rendering of devices/src/vga/font8x16.txt.
- A SPICE client (spicy-screenshot, `--spice`) sees the same marker as the screendump.
- The refresh statistics (dirty pages per frame, time per refresh) while the guest scrolls.
- `status`, `powerdown` (the guest's ACPI power-button counter goes up), `reset` (saffron
  exits with status 3), `quit` (status 0), and errors for bad requests.
"""

import dataclasses
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from harness import REPO, RESULTS_DIR, TTY1_MARKER, Guest, GuestImage, run_tests

REFERENCE = REPO / "tests" / "e2e" / "reference"
FONT_SOURCE = REPO / "devices" / "src" / "vga" / "font8x16.txt"


# ---------------------------------------------------------------------------------------------
# Control socket client


class Api:
    def __init__(self, path: Path, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
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

    def call(self, command: str, **args) -> dict:
        response = self.raw(json.dumps({"command": command, **args}).encode() + b"\n")
        assert response.get("ok") is True, f"{command}: {response}"
        return response["return"]

    def close(self):
        self.file.close()
        self.sock.close()


def saffron(image: GuestImage, name: str, vga: str, sock: Path, tracking: str = "kvm",
            extra: tuple = ()) -> Guest:
    return Guest.saffron(image, memory="1G", cpus=2, name=name,
                         extra_args=["--vga", vga, "--api-socket", str(sock),
                                     "--vga-dirty-tracking", tracking, *extra])


def read_ppm(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of a binary PPM (what spicy-screenshot writes)."""
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
    return width, height, [pixels[y * width * 3:(y + 1) * width * 3] for y in range(height)]


def scroll_and_report(api: Api, guest: Guest, what: str, rounds: int) -> None:
    """Scrolls tty1 (a full-screen redraw per line) and prints what the refreshes cost."""
    before = refresh_stats(api)
    started = time.monotonic()
    guest.run(f"for i in $(seq {rounds}); do cat /proc/cpuinfo >/dev/tty1; done",
              timeout=300, check=True)
    seconds = time.monotonic() - started
    time.sleep(0.5)
    after = refresh_stats(api)
    report_refresh_cost(before, after, f"{what}, guest busy {seconds:.1f} s")
    assert after["frames"] > before["frames"]


# ---------------------------------------------------------------------------------------------
# Pictures


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB PNG (what saffron writes)."""
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
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xff
            elif kind == 2:
                line[i] = (line[i] + b) & 0xff
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xff
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xff
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def write_mask_png(path: Path, mask: list[str]) -> None:
    """A black/white RGB PNG of a mask ('#' white)."""
    height, width = len(mask), len(mask[0])
    raw = b"".join(b"\x00" + b"".join(b"\xff\xff\xff" if c == "#" else b"\x00\x00\x00"
                                      for c in row) for row in mask)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                                + struct.pack(">I", zlib.crc32(kind + body)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def crop_mask(rows: list[bytes], x: int, y: int, w: int, h: int) -> list[str]:
    """The rectangle as '#' (bright: text) and '.' (dark: background)."""
    out = []
    for row in rows[y:y + h]:
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


def font_glyphs() -> dict[int, list[str]]:
    """Saffron's built-in font, parsed from its source."""
    glyphs, code, rows = {}, None, []
    for line in FONT_SOURCE.read_text().splitlines():
        if code is None:
            if line.startswith("@"):
                code, rows = int(line[1:3], 16), []
            continue
        rows.append(line)
        if len(rows) == 16:
            glyphs[code], code = rows, None
    return glyphs


def check_against_reference(mask: list[str], name: str) -> None:
    """Compares a mask with tests/e2e/reference/NAME.png; without a reference, saves the
    candidate in the results directory and fails (look at it, then copy it there)."""
    reference = REFERENCE / f"{name}.png"
    if not reference.exists():
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        candidate = RESULTS_DIR / f"{name}.png"
        write_mask_png(candidate, mask)
        raise AssertionError(f"no reference {reference}: candidate written to {candidate}")
    w, h, rows = read_png(reference)
    expected = crop_mask(rows, 0, 0, w, h)
    if expected != mask:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        write_mask_png(RESULTS_DIR / f"{name}.actual.png", mask)
        diff = sum(a != b for ra, rb in zip(expected, mask) for a, b in zip(ra, rb))
        raise AssertionError(f"marker differs from {reference} in {diff} pixels "
                             f"(actual saved to {RESULTS_DIR / (name + '.actual.png')})")


def screendump(api: Api, directory: str, name: str) -> tuple[int, int, list[bytes]]:
    path = Path(directory) / f"{name}.png"
    result = api.call("screendump", path=str(path))
    width, height, rows = read_png(path)
    assert (width, height) == (result["width"], result["height"])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.png").write_bytes(path.read_bytes())
    return width, height, rows


def wait_for_marker_pixels(api: Api, guest: Guest, directory: str, name: str, cell_w: int,
                           cell_h: int) -> tuple[list[str], int, int]:
    """The marker's mask in a screendump, where vcsa1 says it is; retries while the screen
    may still be catching up."""
    _, cols, row, col = marker_position(guest)
    width = len(TTY1_MARKER) * cell_w
    for attempt in range(20):
        w, h, rows = screendump(api, directory, name)
        mask = crop_mask(rows, col * cell_w, row * cell_h, width, cell_h)
        if any("#" in line for line in mask):
            return mask, w, h
        time.sleep(0.25)
    raise AssertionError(f"{name}: the marker cells are blank in the screendump")


def check_marker_shape(mask: list[str], cell_w: int) -> None:
    """Independent of any reference: letters are lit, spaces are dark."""
    for i, ch in enumerate(TTY1_MARKER):
        cell = [line[i * cell_w:(i + 1) * cell_w] for line in mask]
        lit = sum(line.count("#") for line in cell)
        if ch == " ":
            assert lit == 0, f"space at {i} has {lit} lit pixels"
        else:
            assert 10 <= lit <= cell_w * len(mask) // 2, f"{ch!r} at {i}: {lit} lit pixels"


def refresh_stats(api: Api) -> dict:
    return api.call("status")["vga"]


def report_refresh_cost(before: dict, after: dict, what: str) -> None:
    d = {k: after[k] - before[k] for k in before if isinstance(before[k], int)}
    frames = max(d["frames"], 1)
    idle = max(d["refreshes"] - d["frames"], 1)
    print(f"  {what}: {d['refreshes']} refreshes, {d['frames']} with damage "
          f"({d['full_frames']} full), {d['dirty_pages'] / frames:.1f} dirty pages/frame "
          f"(max ever {after['max_dirty_pages']}), {d['pixels'] / frames:.0f} pixels/frame, "
          f"{(d['busy_us'] - d['idle_busy_us']) / frames:.0f} us per frame with damage, "
          f"{d['idle_busy_us'] / idle:.1f} us per idle refresh")


# ---------------------------------------------------------------------------------------------
# Tests


def test_vesafb_nomodeset_screendump_status_powerdown_reset():
    image = GuestImage.default()
    image = dataclasses.replace(image, cmdline=image.cmdline + " nomodeset")
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        with saffron(image, "vga-vesafb-nomodeset", "1024x768", sock, "kvm") as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            dmesg = guest.run("dmesg | grep -E 'vesafb|Console|fb0'", check=True).output
            assert "vesafb: mode is 1024x768x32, linelength=4096" in dmesg, dmesg
            fb = guest.run("cat /proc/fb", check=True).output
            assert "VESA VGA" in fb, fb

            status = api.call("status")
            print(f"  status: {json.dumps({k: v for k, v in status.items() if k != 'vga'})}")
            assert status["state"] == "running" and status["vcpus"] == 2
            assert status["memory_bytes"] == 1 << 30 and status["uptime_seconds"] > 0
            assert status["display"] == {"width": 1024, "height": 768}

            mask, w, h = wait_for_marker_pixels(api, guest, tmp, "vesafb-screen", 8, 16)
            assert (w, h) == (1024, 768)
            check_marker_shape(mask, 8)
            check_against_reference(mask, "tty1-marker-vesafb-8x16")

            # Scroll tty1 for a while: what a full-screen redraw costs.
            scroll_and_report(api, guest, "fbcon scrolling at 1024x768x32, KVM dirty log", 5)
            # Idle: refreshes keep running but find nothing to do.
            before = refresh_stats(api)
            time.sleep(2)
            after = refresh_stats(api)
            report_refresh_cost(before, after, "idle console, KVM dirty log")
            expected = 2 * after["refresh_hz"]
            assert after["refreshes"] - before["refreshes"] >= 0.7 * expected, \
                f"refresh thread stalled: {after['refreshes'] - before['refreshes']} in 2 s"

            # Power button: the guest's ACPI counts the fixed event (enabled by its button
            # driver, which the test image loads).
            counter = "/sys/firmware/acpi/interrupts/ff_pwr_btn"
            guest.run("ls /sys/bus/acpi/drivers/button/LNXPWRBN:00", check=True)
            first = int(guest.run(f"cat {counter}", check=True).output.split()[0])
            api.call("powerdown")
            deadline = time.monotonic() + 10
            while True:
                now = int(guest.run(f"cat {counter}", check=True).output.split()[0])
                if now > first:
                    break
                assert time.monotonic() < deadline, f"{counter} stays at {now}"
                time.sleep(0.2)
            print(f"  power button: {counter} {first} -> {now}")

            # Bad requests are answered, the VM keeps running.
            assert api.raw(b"{not json\n")["error"]["code"] == "bad_json"
            assert api.raw(b'{"command":"fly"}\n')["error"]["code"] == "bad_request"
            assert api.call("status")["state"] == "running"

            api.call("reset")
            assert guest.wait_exit(timeout=30) == 3, "reset must end saffron with status 3"
            assert not sock.exists(), "the socket file is removed at exit"


def test_vesafb_without_nomodeset_compare_tracking_and_quit():
    image = GuestImage.default()
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        port = 5900 + os.getpid() % 1000
        spice = ("--spice", f"port={port},disable-ticketing")
        with saffron(image, "vga-vesafb", "1024x768", sock, "compare", spice) as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            fb = guest.run("cat /proc/fb", check=True).output
            assert "VESA VGA" in fb, fb
            mask, w, h = wait_for_marker_pixels(api, guest, tmp, "vesafb-default-screen", 8, 16)
            assert (w, h) == (1024, 768)
            check_marker_shape(mask, 8)
            check_against_reference(mask, "tty1-marker-vesafb-8x16")
            # A SPICE client sees the same picture as the screendump.
            _, _, row, col = marker_position(guest)
            shot = Path(tmp) / "spice.ppm"
            subprocess.run(["spicy-screenshot", "-h", "127.0.0.1", "-p", str(port),
                            "-o", str(shot)], check=True, timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sw, sh, srows = read_ppm(shot)
            assert (sw, sh) == (1024, 768), (sw, sh)
            spice_mask = crop_mask(srows, col * 8, row * 16, len(TTY1_MARKER) * 8, 16)
            assert spice_mask == mask, "the SPICE client sees a different marker"
            print("  spicy-screenshot shows the same marker as the screendump")
            scroll_and_report(api, guest, "fbcon scrolling at 1024x768x32, compare tracking", 2)
            before = refresh_stats(api)
            time.sleep(2)
            report_refresh_cost(before, refresh_stats(api), "idle console, compare tracking")
            api.call("quit")
            assert guest.wait_exit(timeout=30) == 0


def test_vgacon_text_mode_with_builtin_font():
    image = GuestImage.default()
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        with saffron(image, "vga-text", "text", sock) as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            dmesg = guest.run("dmesg | grep Console", check=True).output
            assert re.search(r"Console: colour VGA\+ 80x25", dmesg), dmesg
            rows, cols, row, col = marker_position(guest)
            assert (rows, cols) == (25, 80)
            mask, w, h = wait_for_marker_pixels(api, guest, tmp, "vgacon-screen", 9, 16)
            assert (w, h) == (720, 400)
            # Expected: the marker drawn with Saffron's font (9th dot blank for letters).
            glyphs = font_glyphs()
            expected = ["".join(glyphs[ord(ch)][line] + "." for ch in TTY1_MARKER)
                        for line in range(16)]
            if mask != expected:
                write_mask_png(RESULTS_DIR / "vgacon-marker.actual.png", mask)
                raise AssertionError("the marker is not drawn with the built-in font:\n"
                                     + "\n".join(mask))
            scroll_and_report(api, guest, "vgacon scrolling, 80x25 text, KVM dirty log", 10)
            api.call("quit")
            assert guest.wait_exit(timeout=30) == 0


if __name__ == "__main__":
    run_tests(globals())
