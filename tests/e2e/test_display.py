#!/usr/bin/python3
"""End-to-end tests of the integrated machine's display and control socket: QXL with the VGA
fallback on its BAR 0, keys and pointer over the control socket, and SPICE clients that see
exactly what the screendump shows.

Runs inside the nested machine (real KVM), from the repository root:
    flock /tmp/saffron-nested.lock tests/nested/run -- /usr/bin/python3 tests/e2e/test_display.py [TEST...]

Needs on the host first: `cargo build --release` and `tests/e2e/qxl-image` (the test guest plus
the `qxl-modeset` KMS helper, in build/guest-qxl; $SAFFRON_QXL_IMAGE overrides the directory).

What is checked:
- The default machine without nomodeset: vesafb starts on the VGA framebuffer (QXL's BAR 0),
  then Linux's qxl driver takes the screen (fb0 is qxldrmfb); `status` says QXL shows the
  1024x768 screen; the screendump shows the tty1 marker (reference glyphs as in test_vga).
- `send-key` over the control socket types a command into tty1's shell (names and combos,
  shift for capitals and symbols); `pointer-position` / `pointer-button` reach the tablet's
  evdev device; bad key names and displays are refused.
- SPICE clients (spicy-screenshot and a headless spice-glib client from Python) see the
  screendump pixel for pixel, at 1024x768 (the console) and after a KMS mode switch to
  1920x1080 (`qxl-modeset ... pattern`, whose pixels are also checked against the pattern's
  formula), with `image-compression=off` and with a compressing lossless mode (`glz`).
- `remote-viewer spice://...` under Xvfb shows the guest: the tty1 marker is found in a
  screenshot of the X screen.
- Client faults: clients killed mid-transfer, 20 reconnects in a row (each picture exact), a
  client stopped (SIGSTOP) for 30 s while the console scrolls: the guest keeps answering on
  the serial console, saffron's memory stays bounded, and the next client's picture is exact.
"""

import os
import random
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from harness import TTY1_MARKER, Guest, GuestError, run_tests
from screens import (Api, Picture, crop_mask, diff_pictures, glib_screenshot, marker_position,
                     read_png, remote_viewer_shows, screendump, spice_screenshot,
                     one_screen, still_console)
from test_input import input_device, record, recorded
from test_qxl import image as qxl_image

REFERENCE = Path(__file__).resolve().parent / "reference" / "tty1-marker-vesafb-8x16.png"
EV_KEY, EV_ABS = 1, 3
ABS_X, ABS_Y = 0, 1
BTN_LEFT = 0x110
AXIS_MAX = 32767

# What to press for a character: send-key names (US layout).
KEY_NAMES = {" ": "spc", "-": "minus", "/": "slash", ".": "dot", "=": "equal", "\n": "ret",
             ">": "shift-dot", "_": "shift-minus", "\"": "shift-apostrophe"}


def keys_for(text: str) -> list:
    """`send-key` arguments that type `text`: a name, or a combo for shifted characters."""
    out = []
    for ch in text:
        if ch.isalpha() and ch.isupper():
            out.append(f"shift-{ch.lower()}")
        elif ch.isalnum():
            out.append([ch])
        else:
            name = KEY_NAMES[ch]
            out.append(name if "-" in name else [name])
    return out


def saffron(name: str, sock: Path, spice: str | None = None, extra=()) -> Guest:
    args = ["--api-socket", str(sock)]
    if spice:
        args += ["--spice", spice]
    return Guest.saffron(qxl_image(), memory="1G", cpus=2, extra_args=[*args, *extra], name=name)


def wait_qxl_console(api: Api, guest: Guest, timeout: float = 60) -> None:
    """Waits until the qxl driver shows the console (status says QXL owns the screen)."""
    deadline = time.monotonic() + timeout
    while True:
        display = api.call("status")["display"]
        if display == one_screen(1024, 768, "qxl"):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"QXL never took the screen: {display}")
        time.sleep(0.5)


def marker_mask(picture: Picture, row: int, col: int) -> list:
    return crop_mask(picture, col * 8, row * 16, len(TTY1_MARKER) * 8, 16)


def test_qxl_takes_over_and_send_key_types_into_tty1():
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        with saffron("display-takeover", sock) as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            # The early console ran on vesafb (the VGA framebuffer in QXL's BAR 0) until the
            # qxl driver took over and removed it.
            dmesg = guest.run("dmesg | grep -E 'vesafb: mode|qxldrmfb|Initialized qxl'",
                              check=True).output
            assert "vesafb: mode is 1024x768x32" in dmesg, dmesg
            assert "fbcon: qxldrmfb (fb0) is primary device" in dmesg, dmesg
            assert guest.run("cat /proc/fb", check=True).output.strip() == "0 qxldrmfb"
            wait_qxl_console(api, guest)
            status = api.call("status")
            print(f"  status: display {status['display']}, mouse {status['mouse']}")
            assert status["mouse"] == {"mode": "server", "tablet_driver": True}, status

            # The screendump (QXL's picture now) shows the marker where vcsa1 says it is.
            _, _, row, col = marker_position(guest)
            for attempt in range(20):
                mask = marker_mask(screendump(api, tmp, "takeover"), row, col)
                if any("#" in line for line in mask):
                    break
                time.sleep(0.25)
            reference = read_png(REFERENCE)
            expected = crop_mask(reference, 0, 0, reference.width, reference.height)
            assert mask == expected, "the marker in QXL's screendump differs from the reference"

            # send-key types into tty1's shell: its output comes back on the serial console.
            for keys in keys_for('echo "Send_Key-OK" >/dev/ttyS0\n'):
                api.call("send-key", keys=keys)
            guest.wait_for(r"Send_Key-OK\r?\n", timeout=30)
            print("  send-key typed a command into tty1")
            for bad, code in [(["nokey"], "bad_request"), ("ctrl-nokey", "bad_request"),
                              ([], "bad_request"), (["a"] * 17, "bad_request")]:
                response = api.request("send-key", keys=bad)
                assert response["ok"] is False and response["error"]["code"] == code, response

            # Pointer commands reach the tablet.
            tablet = input_device(guest, r"Saffron Virtio Tablet")
            record(guest, tablet)
            time.sleep(0.5)
            api.call("pointer-position", x=512, y=384)
            api.call("pointer-button", button="left")
            api.call("pointer-position", x=1023, y=0, display=0)
            events = recorded(guest, tablet, expect=6)
            print(f"  tablet events: {events}")
            xs = [v for k, c, v in events if (k, c) == (EV_ABS, ABS_X)]
            ys = [v for k, c, v in events if (k, c) == (EV_ABS, ABS_Y)]
            # p on a W-pixel axis: round(p * 32767 / (W - 1)), as saffron scales.
            axis = lambda p, extent: (p * AXIS_MAX + (extent - 1) // 2) // (extent - 1)
            assert xs == [axis(512, 1024), AXIS_MAX], xs
            assert ys == [axis(384, 768), 0], ys
            keys = [(c, v) for k, c, v in events if k == EV_KEY]
            assert keys == [(BTN_LEFT, 1), (BTN_LEFT, 0)], keys
            response = api.request("pointer-position", x=1, y=1, display=3)
            assert response["error"]["code"] == "no_device", response
            api.call("pointer-motion", dx=5, dy=-5)
            api.call("pointer-wheel", dz=1)

            guest.send("poweroff -f\n")
            assert guest.wait_exit(timeout=60) == 0


def pattern_pixel(x: int, y: int) -> tuple:
    """qxl-modeset's "pattern" (guest-drivers/linux/tools/qxl-modeset.c)."""
    return ((7 * x + 3 * y) & 0xff, (x ^ (5 * y)) & 0xff, (x * y >> 3) & 0xff)


def same_picture(api: Api, port: int, tmp: str, name: str) -> Picture:
    """A screendump and the pictures of two SPICE clients (spicy-screenshot, spice-glib) of an
    unchanging screen are equal, pixel for pixel; returns the picture."""
    for attempt in range(3):
        before = screendump(api, tmp, f"{name}-dump")
        shot = spice_screenshot(port, f"{name}-spice")
        difference = diff_pictures(before, shot)
        if difference is None:
            glib = glib_screenshot(port, f"{name}-glib")
            difference = diff_pictures(before, glib)
        if difference is None:
            print(f"  {name}: spicy-screenshot == spice-glib == screendump "
                  f"({shot.width}x{shot.height})")
            return shot
        after = screendump(api, tmp, f"{name}-dump-after")
        if diff_pictures(before, after) is None:
            raise AssertionError(f"{name}: the SPICE client's picture differs: {difference}")
        time.sleep(1)
    raise AssertionError(f"{name}: the screen kept changing: {difference}")


def screenshots_equal_screendumps(compression: str) -> None:
    port = random.randint(20000, 60000)
    spice = f"port={port},disable-ticketing,image-compression={compression}"
    name = f"display-pixels-{compression}"
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        with saffron(name, sock, spice) as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            wait_qxl_console(api, guest)
            still_console(guest)
            time.sleep(1)
            console = same_picture(api, port, tmp, f"{name}-1024x768")
            assert (console.width, console.height) == (1024, 768)
            _, _, row, col = marker_position(guest)
            assert any("#" in line for line in marker_mask(console, row, col)), \
                "the marker is not on the screen"

            # A KMS mode switch to 1920x1080 showing a pattern, kept for a while.
            guest.run("(qxl-modeset 1920 1080 120 pattern >/tmp/modeset.log 2>&1 &)",
                      check=True)
            deadline = time.monotonic() + 60
            while True:
                log = guest.run("cat /tmp/modeset.log", check=True).output
                if "MODESET-OK" in log or "error" in log.lower() or "no " in log:
                    break
                if time.monotonic() > deadline:
                    raise GuestError(f"qxl-modeset said nothing: {log!r}")
                time.sleep(0.5)
            assert "MODESET-OK 1920x1080" in log, log
            for _ in range(40):
                display = api.call("status")["display"]
                if (display["width"], display["height"]) == (1920, 1080):
                    break
                time.sleep(0.5)
            time.sleep(1)
            big = same_picture(api, port, tmp, f"{name}-1920x1080")
            assert (big.width, big.height) == (1920, 1080), (big.width, big.height)
            rng = random.Random(1920)
            points = [(0, 0), (1919, 1079), (1919, 0), (0, 1079)] + \
                [(rng.randrange(1920), rng.randrange(1080)) for _ in range(3000)]
            wrong = [(x, y) for x, y in points if big.pixel(x, y) != pattern_pixel(x, y)]
            assert not wrong, (f"{len(wrong)} of {len(points)} pixels differ from the pattern, "
                               f"e.g. {wrong[0]}: {big.pixel(*wrong[0])} vs "
                               f"{pattern_pixel(*wrong[0])}")
            guest.send("poweroff -f\n")
            assert guest.wait_exit(timeout=60) == 0


def test_spice_screenshot_equals_screendump_uncompressed():
    screenshots_equal_screendumps("off")


def test_spice_screenshot_equals_screendump_glz():
    screenshots_equal_screendumps("glz")


def rss_kib(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def test_remote_viewer_and_client_faults():
    port = random.randint(20000, 60000)
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        with saffron("display-faults", sock, f"port={port},disable-ticketing") as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            wait_qxl_console(api, guest)
            still_console(guest)
            time.sleep(1)
            _, _, row, col = marker_position(guest)
            reference = screendump(api, tmp, "faults-reference")

            # remote-viewer under Xvfb shows the marker (the guest's pixels, unscaled).
            marker = Picture(len(TTY1_MARKER) * 8, 16,
                             [r[col * 8 * 3:(col + len(TTY1_MARKER)) * 8 * 3]
                              for r in reference.rows[row * 16:row * 16 + 16]])
            at = remote_viewer_shows([f"spice://127.0.0.1:{port}"], marker, "faults-remote-viewer")
            print(f"  remote-viewer shows the tty1 marker at {at} of the X screen")

            # Clients killed in the middle of the transfer.
            for delay in (0.1, 0.3, 0.6, 1.0, 2.0):
                client = subprocess.Popen(["spicy-screenshot", "-h", "127.0.0.1", "-p",
                                           str(port), "-o", f"{tmp}/killed.ppm"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(delay)
                client.kill()
                client.wait(30)
            # 20 reconnects in a row, each picture exact.
            for i in range(20):
                difference = diff_pictures(reference, spice_screenshot(port, "faults-reconnect"))
                assert difference is None, f"reconnect {i}: {difference}"
            print("  5 clients killed mid-transfer, then 20 exact reconnects")

            # A client that stops reading for 30 s while the console scrolls.
            rss_before = rss_kib(guest.proc.pid)
            stalled = subprocess.Popen(["/usr/bin/python3", str(Path(__file__).parents[1] / "spice" / "glib_client.py"),
                                        "127.0.0.1", str(port)],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            time.sleep(3)
            stalled.send_signal(signal.SIGSTOP)
            # A subshell's background job: no job-control messages on the serial console.
            guest.run("rm -f /tmp/scrolled; ((i=0; while [ $i -lt 3000 ]; do"
                      " echo scrolling line $i >/dev/tty1; i=$((i+1)); done;"
                      " touch /tmp/scrolled) >/dev/null 2>&1 &)", check=True)
            rss_max, answers = rss_before, []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                start = time.monotonic()
                said = guest.run("echo alive", check=True, timeout=20).output
                assert said.strip() == "alive", f"the serial shell said {said!r}"
                answers.append(time.monotonic() - start)
                rss_max = max(rss_max, rss_kib(guest.proc.pid))
                time.sleep(2)
            stalled.send_signal(signal.SIGCONT)
            stalled.kill()
            stalled.wait(30)
            growth = rss_max - rss_before
            print(f"  client stopped 30 s: serial answered {len(answers)} times "
                  f"(slowest {max(answers):.2f} s); saffron RSS {rss_before} KiB before, "
                  f"at most {rss_max} KiB during (+{growth} KiB)")
            assert growth < 64 * 1024, f"saffron grew by {growth} KiB with a stalled client"

            # The next client's picture is exact (once the console stopped scrolling).
            for _ in range(120):
                if guest.run("[ -e /tmp/scrolled ] && echo yes || echo no",
                             check=True).output.strip() == "yes":
                    break
                time.sleep(1)
            else:
                raise AssertionError("the console never finished scrolling")
            still_console(guest)
            time.sleep(2)
            same_picture(api, port, tmp, "faults-after")
            guest.send("poweroff -f\n")
            assert guest.wait_exit(timeout=60) == 0


if __name__ == "__main__":
    run_tests(globals())
