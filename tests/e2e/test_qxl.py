#!/usr/bin/python3
"""End-to-end tests of the QXL display: Debian's kernel binds its `qxl` driver to saffron's device,
the console shows on the screen a SPICE client sees, and mode switches reach the client.

Runs inside the nested machine (real KVM), from the repository root:
    flock /tmp/saffron-nested.lock tests/nested/run -- /usr/bin/python3 tests/e2e/test_qxl.py [TEST...]

Needs on the host first: `cargo build --release` and `tests/e2e/qxl-image` (the test guest plus the
`qxl-modeset` KMS helper, in build/guest-qxl; $SAFFRON_QXL_IMAGE overrides the directory).

Screens are taken with `spicy-screenshot` (spice-gtk) against `saffron run --spice
port=N,disable-ticketing`. The tty1 check reads the text of tty1 from the guest's /dev/vcs1, finds
the marker line in it, and compares the marker's character cells with glyphs kept in
tests/e2e/data/fbcon-marker-glyphs.txt (made once from a screenshot with --make-reference SHOT.ppm);
every other character cell on screen must look like every other cell of the same character.
The cursor test shows a KMS cursor with `qxl-modeset ... cursor` and watches the cursor channel with
tests/e2e/spice_cursor.py (spice-glib).
"""

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from harness import REPO, RESULTS_DIR, Guest, GuestError, GuestImage, run_tests
from screens import Picture, read_ppm, spice_screenshot

TTY1_MARKER = "SAFFRON TTY1 MARKER"
GLYPHS = REPO / "tests" / "e2e" / "data" / "fbcon-marker-glyphs.txt"
CELL_W, CELL_H = 8, 16           # fbcon's default font on a 1024x768 qxldrmfb
BACKGROUND = (0, 0, 0)

EXPECTED_DMESG = [
    r"\[drm\] Device Version 0\.0",
    r"\[drm\] 12286 io pages at offset 0x1000000",
    r"\[drm\] 16777216 byte draw area at offset 0x0",
    r"\[drm\] RAM header offset: 0x3ffe000",
    r"\[drm\] qxl: 64M of Surface memory size",
    r"\[drm\] slot 0 \(main\): base 0x[0-9a-f]+, size 0x03ffe000",
    r"\[drm\] slot 1 \(surfaces\): base 0x[0-9a-f]+, size 0x04000000",
    r"\[drm\] Initialized qxl 0\.1\.0 20120117 for 0000:00:02\.0",
    r"fbcon: qxldrmfb \(fb0\) is primary device",
]
BAD_DMESG = [r"bug mode", r"\*ERROR\*", r"qxl.*(fail|timeout)", r"WARNING: .*(drm|qxl)", r"release_idr"]


def qxl_dmesg(guest: Guest) -> str:
    """The kernel log lines about DRM, qxl, fbcon and warnings (the whole log is too much serial
    output for the nested machine)."""
    return guest.run("dmesg | grep -i -E 'drm|qxl|fbcon|bug mode|error|warning|release_idr'",
                     check=True).output


def image() -> GuestImage:
    directory = Path(os.environ.get("SAFFRON_QXL_IMAGE", REPO / "build" / "guest-qxl"))
    kernel, initrd = directory / "vmlinux", directory / "initramfs.cpio.gz"
    if not (kernel.is_file() and initrd.is_file()):
        raise GuestError(f"no QXL test image in {directory}: run tests/e2e/qxl-image on the host")
    cmdline = (directory / "cmdline").read_text().strip()
    return GuestImage(kernel, initrd, cmdline)


# ---- screenshots ----------------------------------------------------------------------------

def cell(picture: Picture, col: int, row: int) -> str:
    """A character cell as 16 lines of '#' (not background) and '.'."""
    lines = []
    for y in range(row * CELL_H, (row + 1) * CELL_H):
        lines.append("".join("#" if picture.pixel(x, y) != BACKGROUND else "."
                             for x in range(col * CELL_W, (col + 1) * CELL_W)))
    return "\n".join(lines)


def tty1_text(guest: Guest, cols: int) -> list:
    """tty1's text as rows of `cols` characters, read from /dev/vcs1 (only printable ASCII; each
    row's trailing blanks are trimmed in the guest, to keep serial output small)."""
    out = guest.run(f"tr -c '\\40-\\176' ' ' </dev/vcs1 | fold -w {cols} | sed 's/ *$//'",
                    check=True).output
    return [line.ljust(cols) for line in out.split("\n")[:-1]]


def reference_glyphs() -> dict:
    glyphs, current, lines = {}, None, []
    for line in GLYPHS.read_text().splitlines():
        if line.startswith("char "):
            current, lines = chr(int(line.split()[1])), []
        elif line and current is not None:
            lines.append(line)
            if len(lines) == CELL_H:
                glyphs[current] = "\n".join(lines)
    return glyphs


def check_console(picture: Picture, rows: list, cursor: tuple) -> None:
    """The screen shows tty1's text: the marker cells match the reference glyphs, equal characters
    look alike everywhere, spaces are blank."""
    cols = picture.width // CELL_W
    marker_row = next(r for r, text in enumerate(rows) if TTY1_MARKER in text)
    marker_col = rows[marker_row].index(TTY1_MARKER)
    reference = reference_glyphs()
    for i, ch in enumerate(TTY1_MARKER):
        got = cell(picture, marker_col + i, marker_row)
        assert got == reference[ch], f"marker char {ch!r} at row {marker_row}:\n{got}\nexpected\n{reference[ch]}"
    seen = {}
    for r, text in enumerate(rows[:picture.height // CELL_H]):
        for c, ch in enumerate(text[:cols]):
            if (c, r) == cursor:
                continue
            bits = cell(picture, c, r)
            if ch == " ":
                assert "#" not in bits, f"space at ({c},{r}) is not blank"
            elif ch in seen:
                assert bits == seen[ch][1], f"{ch!r} at ({c},{r}) differs from {seen[ch][0]}"
            else:
                assert "#" in bits, f"{ch!r} at ({c},{r}) is blank"
                seen[ch] = ((c, r), bits)
    print(f"  marker at row {marker_row}, col {marker_col}; {len(seen)} distinct characters checked")


def make_reference(shot: Path) -> None:
    """Writes GLYPHS from a screenshot whose row 0 starts with the marker (a fresh boot)."""
    picture = read_ppm(shot)
    out = []
    for i, ch in enumerate(TTY1_MARKER):
        if f"char {ord(ch)}" in "\n".join(out):
            continue
        out += [f"char {ord(ch)} {ch}", cell(picture, i, 0), ""]
    GLYPHS.parent.mkdir(parents=True, exist_ok=True)
    GLYPHS.write_text("# 8x16 fbcon glyphs of the tty1 marker, from a saffron screenshot\n" + "\n".join(out))
    print(f"wrote {GLYPHS}")


# ---- tests ----------------------------------------------------------------------------------

def spice_guest(name: str, extra=()):
    port = random.randint(20000, 60000)
    guest = Guest.saffron(image(), memory="1G", cpus=2,
                          extra_args=["--spice", f"port={port},disable-ticketing", *extra], name=name)
    return guest, port


def wait_marker_drawn(guest: Guest) -> None:
    # tty1's shell prompt comes last; give fbcon's deferred damage worker a moment.
    for _ in range(50):
        if "# " in "".join(tty1_text(guest, 128)):
            break
        time.sleep(0.2)
    time.sleep(1)


def test_qxl_binds_and_shows_the_console():
    guest, port = spice_guest("qxl-console")
    with guest:
        guest.wait_ready(timeout=120)
        dmesg = qxl_dmesg(guest)
        for pattern in EXPECTED_DMESG:
            assert re.search(pattern, dmesg), f"dmesg lacks {pattern!r}:\n{dmesg[-3000:]}"
        for pattern in BAD_DMESG:
            found = re.search(pattern, dmesg, re.I)
            assert not found, f"dmesg: {found.group(0)!r}"
        assert guest.run("cat /proc/fb", check=True).output.strip() == "0 qxldrmfb"
        interrupts = guest.run("grep qxl /proc/interrupts", check=True).output
        count = sum(int(n) for n in interrupts.split()[1:3])
        print(f"  {count} qxl interrupts: {interrupts.strip()}")
        assert count > 0
        wait_marker_drawn(guest)
        picture = spice_screenshot(port, "qxl-console")
        assert (picture.width, picture.height) == (1024, 768), (picture.width, picture.height)
        rows = tty1_text(guest, picture.width // CELL_W)
        prompt_row = max(r for r, t in enumerate(rows) if t.strip())
        cursor = (len(rows[prompt_row].rstrip()) + 1, prompt_row)
        check_console(picture, rows, cursor)
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0
        warnings = [l for l in guest.stderr.splitlines() if "QXL" in l]
        assert not warnings, f"saffron logged: {warnings[:5]}"


def test_mode_switch_reaches_the_client():
    guest, port = spice_guest("qxl-modeset")
    with guest:
        guest.wait_ready(timeout=120)
        wait_marker_drawn(guest)
        before = spice_screenshot(port, "qxl-mode-before")
        assert (before.width, before.height) == (1024, 768)
        # A subshell's background job: no job-control messages on the console.
        guest.run("(qxl-modeset 1920 1080 12 204080 >/tmp/modeset.log 2>&1 &)", check=True)
        for _ in range(50):
            log = guest.run("cat /tmp/modeset.log", check=True).output
            if "MODESET-OK" in log or "error" in log.lower() or "no " in log:
                break
            time.sleep(0.2)
        assert "MODESET-OK 1920x1080" in log, log
        time.sleep(1)
        big = spice_screenshot(port, "qxl-mode-1920")
        assert (big.width, big.height) == (1920, 1080), (big.width, big.height)
        for x, y in [(0, 0), (960, 540), (1919, 1079)]:
            assert big.pixel(x, y) == (0x20, 0x40, 0x80), f"pixel ({x},{y}) = {big.pixel(x, y)}"
        # The helper exits after 12 s; fbdev takes the screen back at its mode.
        deadline = time.monotonic() + 40
        while True:
            after = spice_screenshot(port, "qxl-mode-after")
            if (after.width, after.height) == (1024, 768) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert (after.width, after.height) == (1024, 768), (after.width, after.height)
        time.sleep(1)
        after = spice_screenshot(port, "qxl-mode-after")
        rows = tty1_text(guest, 128)
        prompt_row = max(r for r, t in enumerate(rows) if t.strip())
        check_console(after, rows, (len(rows[prompt_row].rstrip()) + 1, prompt_row))
        dmesg = qxl_dmesg(guest)
        for pattern in BAD_DMESG:
            assert not re.search(pattern, dmesg, re.I), pattern
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


def test_guest_cursor_reaches_the_client():
    guest, port = spice_guest("qxl-cursor")
    with guest:
        guest.wait_ready(timeout=120)
        client = subprocess.Popen(
            ["/usr/bin/python3", str(REPO / "tests" / "e2e" / "spice_cursor.py"), "127.0.0.1",
             str(port), "25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(3)                        # let the client connect first
            guest.run("(qxl-modeset 1024 768 4 000000 0 cursor >/tmp/cursor.log 2>&1 &)",
                      check=True)
            out, err = client.communicate(timeout=60)
        finally:
            client.kill()
        print("  client: " + " | ".join(out.splitlines()))
        log = guest.run("cat /tmp/cursor.log", check=True).output
        assert "CURSOR-MOVED" in log, log
        events = out.splitlines()
        sets = [e.split() for e in events if e.startswith("CURSOR-SET")]
        assert sets, f"no cursor shape reached the client: {events} {err[-500:]}"
        # 64x64, hot spot (0,0), opaque blue inside, transparent border (ARGB).
        assert sets[-1][1:] == ["64", "64", "0", "0", "0xff0000ff", "0x00000000"], sets[-1]
        assert "CURSOR-MOVE 300 200" in events, events
        assert events.index("CURSOR-MOVE 300 200") > events.index(" ".join(sets[-1])), events
        assert "CURSOR-HIDE" in events[events.index("CURSOR-MOVE 300 200"):], \
            f"the cursor plane was disabled when the helper exited: {events}"
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


def test_preferred_size_from_the_rom():
    """`--qxl xres=,yres=` puts a client monitors config (with its CRC) in the ROM; Linux takes
    it as the preferred mode, so the console comes up at that size."""
    guest, port = spice_guest("qxl-xres", ["--qxl", "xres=1280,yres=800"])
    with guest:
        guest.wait_ready(timeout=120)
        wait_marker_drawn(guest)
        picture = spice_screenshot(port, "qxl-xres")
        assert (picture.width, picture.height) == (1280, 800), (picture.width, picture.height)
        rows = tty1_text(guest, picture.width // CELL_W)
        prompt_row = max(r for r, t in enumerate(rows) if t.strip())
        check_console(picture, rows, (len(rows[prompt_row].rstrip()) + 1, prompt_row))
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


def test_display_none_has_no_display_device():
    with Guest.saffron(image(), memory="512M", cpus=1, extra_args=["--display", "none"],
                       name="qxl-none") as guest:
        guest.wait_ready(timeout=120)
        # The host bridge and the tablet; no display device.
        devices = guest.run("ls /sys/bus/pci/devices", check=True).output.split()
        assert devices == ["0000:00:00.0", "0000:00:03.0"], devices
        assert guest.run("cat /proc/fb", check=True).output.strip() == ""
        guest.send("poweroff -f\n")
        assert guest.wait_exit(timeout=60) == 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-reference":
        make_reference(Path(sys.argv[2]))
        sys.exit(0)
    run_tests(globals())
