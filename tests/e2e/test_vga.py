#!/usr/bin/python3
"""End-to-end tests of the VGA fallback display and the control socket.

Runs inside the nested machine (real KVM), from the repository root:
    flock /tmp/saffron-nested.lock tests/nested/run -- /usr/bin/python3 tests/e2e/test_vga.py [TEST...]

Needs on the host first: `cargo build --release` and
`guest-drivers/linux/build-image build/guest-linux`.

What is checked:
- QXL present (the default machine), `nomodeset`: the qxl driver stays away and Linux's vesafb
  draws the console into the VGA framebuffer at the start of QXL's BAR 0 (1024x768x32 preset,
  described in screen_info; KVM's dirty log of BAR 0). A `screendump` over the control socket
  shows the guest's "SAFFRON TTY1 MARKER" line where /dev/vcsa1 says it is, pixel for pixel
  equal to the reference in tests/e2e/reference/ (made once from a run, see REFERENCE below),
  and a SPICE client (spicy-screenshot) sees exactly the screendump's picture.
- `--display none --vga 1024x768` (no QXL: the standalone framebuffer), without nomodeset,
  `--vga-dirty-tracking compare`: the same marker, in the screendump and the SPICE client.
- `--vga text` (with QXL, nomodeset): vgacon writes text mode memory; the screendump shows the
  marker drawn with Saffron's own font, checked against a rendering of
  devices/src/vga/font8x16.txt.
- The refresh statistics (dirty pages per frame, time per refresh) while the guest scrolls.
- `status` (display size and the device showing it, mouse mode), `powerdown` (the guest's ACPI
  power-button counter goes up), `reset` (saffron exits with status 3), `quit` (status 0), and
  errors for bad requests.
"""

import dataclasses
import json
import random
import re
import tempfile
import time
from pathlib import Path

from harness import REPO, RESULTS_DIR, TTY1_MARKER, Guest, GuestImage, run_tests
from screens import (Api, crop_mask, read_png, diff_pictures, marker_position, screendump,
                     one_screen, spice_screenshot, still_console, write_mask_png)

REFERENCE = REPO / "tests" / "e2e" / "reference"
FONT_SOURCE = REPO / "devices" / "src" / "vga" / "font8x16.txt"


def saffron(image: GuestImage, name: str, vga: str, sock: Path, tracking: str = "kvm",
            extra: tuple = ()) -> Guest:
    return Guest.saffron(image, memory="1G", cpus=2, name=name,
                         extra_args=["--vga", vga, "--api-socket", str(sock),
                                     "--vga-dirty-tracking", tracking, *extra])


def spice_args() -> tuple[int, tuple]:
    port = random.randint(20000, 60000)
    return port, ("--spice", f"port={port},disable-ticketing")


def spice_sees_the_screendump(api: Api, guest: Guest, port: int, directory: str,
                              name: str) -> None:
    """A SPICE client's picture equals the screendump, pixel for pixel (the console held
    still; a screen that changed between the two is retried)."""
    still_console(guest)
    time.sleep(0.5)
    for attempt in range(3):
        before = screendump(api, directory, f"{name}-dump")
        shot = spice_screenshot(port, f"{name}-spice")
        after = screendump(api, directory, f"{name}-dump-after")
        difference = diff_pictures(before, shot)
        if difference is None:
            print(f"  {name}: the SPICE client sees the screendump exactly "
                  f"({shot.width}x{shot.height})")
            return
        if diff_pictures(before, after) is None:
            raise AssertionError(f"{name}: the SPICE client's picture differs: {difference}")
        time.sleep(1)
    raise AssertionError(f"{name}: the screen kept changing: {difference}")


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
    picture = read_png(reference)
    expected = crop_mask(picture, 0, 0, picture.width, picture.height)
    if expected != mask:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        write_mask_png(RESULTS_DIR / f"{name}.actual.png", mask)
        diff = sum(a != b for ra, rb in zip(expected, mask) for a, b in zip(ra, rb))
        raise AssertionError(f"marker differs from {reference} in {diff} pixels "
                             f"(actual saved to {RESULTS_DIR / (name + '.actual.png')})")


def wait_for_marker_pixels(api: Api, guest: Guest, directory: str, name: str, cell_w: int,
                           cell_h: int) -> tuple[list[str], int, int]:
    """The marker's mask in a screendump, where vcsa1 says it is; retries while the screen
    may still be catching up."""
    _, cols, row, col = marker_position(guest)
    width = len(TTY1_MARKER) * cell_w
    for attempt in range(20):
        picture = screendump(api, directory, name)
        mask = crop_mask(picture, col * cell_w, row * cell_h, width, cell_h)
        if any("#" in line for line in mask):
            return mask, picture.width, picture.height
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


def test_vesafb_nomodeset_through_qxl_bar0():
    """The default machine (QXL with the VGA fallback) booted with nomodeset."""
    image = GuestImage.default()
    image = dataclasses.replace(image, cmdline=image.cmdline + " nomodeset")
    port, spice = spice_args()
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        with saffron(image, "vga-vesafb-nomodeset", "1024x768", sock, "kvm", spice) as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            dmesg = guest.run("dmesg | grep -E 'vesafb|Console|fb0|qxl'", check=True).output
            assert "vesafb: mode is 1024x768x32, linelength=4096" in dmesg, dmesg
            assert "[drm] Initialized qxl" not in dmesg, dmesg
            fb = guest.run("cat /proc/fb", check=True).output
            assert "VESA VGA" in fb, fb
            # vesafb's framebuffer is QXL's BAR 0 (00:02.0, resource 0).
            bar0 = guest.run("head -1 /sys/bus/pci/devices/0000:00:02.0/resource",
                             check=True).output.split()[0]
            lfb = re.search(r"vesafb: framebuffer at (0x[0-9a-f]+)", dmesg)
            assert lfb and int(lfb.group(1), 16) == int(bar0, 16), (bar0, dmesg)

            status = api.call("status")
            print(f"  status: {json.dumps({k: v for k, v in status.items() if k != 'vga'})}")
            assert status["state"] == "running" and status["vcpus"] == 2
            assert status["memory_bytes"] == 1 << 30 and status["uptime_seconds"] > 0
            assert status["display"] == one_screen(1024, 768, "vga"), status["display"]
            assert status["mouse"]["mode"] == "server"

            mask, w, h = wait_for_marker_pixels(api, guest, tmp, "vesafb-screen", 8, 16)
            assert (w, h) == (1024, 768)
            check_marker_shape(mask, 8)
            check_against_reference(mask, "tty1-marker-vesafb-8x16")
            spice_sees_the_screendump(api, guest, port, tmp, "vesafb-qxl-bar0")

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


def test_standalone_vga_compare_tracking_and_quit():
    """No QXL (`--display none --vga 1024x768`): the VGA's own framebuffer and display."""
    image = GuestImage.default()
    port, spice = spice_args()
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "api.sock"
        extra = ("--display", "none", *spice)
        with saffron(image, "vga-standalone", "1024x768", sock, "compare", extra) as guest:
            api = Api(sock)
            guest.wait_ready(timeout=120)
            fb = guest.run("cat /proc/fb", check=True).output
            assert "VESA VGA" in fb, fb
            display = api.call("status")["display"]
            assert display == one_screen(1024, 768, "vga"), display
            mask, w, h = wait_for_marker_pixels(api, guest, tmp, "vesafb-default-screen", 8, 16)
            assert (w, h) == (1024, 768)
            check_marker_shape(mask, 8)
            check_against_reference(mask, "tty1-marker-vesafb-8x16")
            spice_sees_the_screendump(api, guest, port, tmp, "vesafb-standalone")
            scroll_and_report(api, guest, "fbcon scrolling at 1024x768x32, compare tracking", 2)
            before = refresh_stats(api)
            time.sleep(2)
            report_refresh_cost(before, refresh_stats(api), "idle console, compare tracking")
            api.call("quit")
            assert guest.wait_exit(timeout=30) == 0


def test_vgacon_text_mode_with_builtin_font():
    """`--vga text` with QXL present (nomodeset): vgacon in QXL's display."""
    image = GuestImage.default()
    image = dataclasses.replace(image, cmdline=image.cmdline + " nomodeset")
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
            assert api.call("status")["display"]["device"] == "vga"
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
